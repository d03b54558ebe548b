//! The one generic walker, and the schema vocabulary the generated tables are written in.
//!
//! The walker reads a body exactly the way kafka-protocol's decoders will, but allocates
//! nothing: every length prefix is compared with the bytes that remain *before* anything
//! is skipped or iterated, so the work done is bounded by the body size and a body that
//! passes cannot make the decoder reserve more than a small multiple of its own size.

use super::GuardError;

/// A wire type, as kafka-protocol's decoders read it.
///
/// String, bytes and array types switch to their compact encodings (unsigned varint
/// length + 1) in the message's flexible versions, like the decoders do; the schema
/// states the type once and the walker picks the encoding.
#[derive(Debug, Clone, Copy)]
#[allow(dead_code)] // the full wire vocabulary, so regenerated schemas never need the walker edited
pub(crate) enum Ty {
    /// One byte; any value is `true` except 0.
    Bool,
    /// Signed byte.
    Int8,
    /// Big-endian i16.
    Int16,
    /// Big-endian u16.
    UInt16,
    /// Big-endian i32.
    Int32,
    /// Big-endian u32.
    UInt32,
    /// Big-endian i64.
    Int64,
    /// Big-endian IEEE 754 double.
    Float64,
    /// 16 raw bytes.
    Uuid,
    /// A string that must not be null.
    String,
    /// A string that may be null (length -1, or compact 0).
    NullableString,
    /// Bytes that must not be null (also produce records in kafka-protocol's view).
    Bytes,
    /// Bytes that may be null.
    NullableBytes,
    /// An array that must not be null, of the given element type.
    Array(&'static Ty),
    /// An array that may be null.
    NullableArray(&'static Ty),
    /// A nested struct, always present.
    Struct(&'static StructSchema),
    /// A struct preceded by an i8 presence flag (1 = present, anything else = absent).
    OptionStruct(&'static StructSchema),
}

/// One positional field of a struct, present in `min..=max` only.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Field {
    /// For error messages.
    pub name: &'static str,
    /// First version the decoder reads this field in.
    pub min: i16,
    /// Last version the decoder reads this field in.
    pub max: i16,
    /// How it is encoded.
    pub ty: Ty,
}

impl Field {
    /// Short constructor so that the generated tables stay one line per field.
    pub(crate) const fn new(name: &'static str, min: i16, max: i16, ty: Ty) -> Self {
        Field { name, min, max, ty }
    }
}

/// A tagged field the decoder knows: it parses the value by type and ignores the size
/// prefix, so the guard must walk it by type too (and checks that the size agrees).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tagged {
    /// The tag number.
    pub tag: u32,
    /// The field, with the versions in which the decoder accepts this tag.
    pub field: Field,
}

impl Tagged {
    /// Short constructor, as for [`Field::new`].
    pub(crate) const fn new(tag: u32, name: &'static str, min: i16, max: i16, ty: Ty) -> Self {
        Tagged {
            tag,
            field: Field::new(name, min, max, ty),
        }
    }
}

/// A struct: positional fields, then (in flexible versions) the tagged-field section.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StructSchema {
    /// The kafka-protocol type it decodes into; the tests use it to look up that type's
    /// in-memory size.
    #[cfg_attr(not(test), allow(dead_code))]
    pub name: &'static str,
    /// In wire order.
    pub fields: &'static [Field],
    /// Tags the decoder parses by type; any other tag is skipped by its size.
    pub tagged: &'static [Tagged],
}

/// A request body's schema.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Message {
    /// The inclusive version range kafka-protocol decodes.
    pub versions: (i16, i16),
    /// First flexible version (`i16::MAX` if none).
    pub flexible: i16,
    /// The top-level struct.
    pub root: &'static StructSchema,
}

/// Cursor over the body; every read is bounds-checked and reports where it failed.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    version: i16,
    flexible: bool,
    /// Array elements claimed so far, at every nesting level.
    elements: u64,
}

/// Array elements one request may hold in total, at every nesting level.
///
/// The per-array check keeps each reservation proportional to the body, but a decoded
/// element is up to ~64 times its smallest encoding, so a body at the frame limit
/// (100 MiB by default) could still make the decoder build gigabytes. No real request
/// comes near this many elements (it would name 262,144 topics, partitions or groups),
/// and with it the decoded request stays within tens of MiB whatever the frame size.
pub(crate) const MAX_ELEMENTS: u64 = 1 << 18;

impl Reader<'_> {
    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn skip(&mut self, n: usize, field: &'static str) -> Result<(), GuardError> {
        if n > self.remaining() {
            return Err(GuardError::Truncated {
                at: self.pos,
                field,
            });
        }
        self.pos += n;
        Ok(())
    }

    fn take<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], GuardError> {
        let start = self.pos;
        self.skip(N, field)?;
        let mut out = [0; N];
        out.copy_from_slice(&self.buf[start..self.pos]);
        Ok(out)
    }

    /// Mirrors kafka-protocol's `UnsignedVarInt` decoder bit for bit: at most five bytes,
    /// high bits of the fifth silently dropped.
    fn uvarint(&mut self, field: &'static str) -> Result<u32, GuardError> {
        let mut value: u32 = 0;
        for i in 0..5 {
            let [b] = self.take::<1>(field)?;
            value |= u32::from(b & 0x7f) << (i * 7);
            if b < 0x80 {
                break;
            }
        }
        Ok(value)
    }

    /// Skips `len` bytes of a string or bytes value, refusing lengths past the end.
    fn skip_len(&mut self, len: i64, field: &'static str) -> Result<(), GuardError> {
        let remaining = self.remaining();
        match usize::try_from(len) {
            Ok(n) if n <= remaining => self.skip(n, field),
            _ => Err(GuardError::LengthTooLarge {
                field,
                claimed: len,
                remaining,
            }),
        }
    }

    /// Reads a length prefix: int16/int32 in classic versions, uvarint-1 in flexible
    /// ones. `None` means null; a null where the type is not nullable, or a negative
    /// length other than -1, is refused exactly as the decoder would refuse it.
    fn length(
        &mut self,
        classic_i16: bool,
        nullable: bool,
        field: &'static str,
    ) -> Result<Option<i64>, GuardError> {
        let len = if self.flexible {
            i64::from(self.uvarint(field)?) - 1
        } else if classic_i16 {
            i64::from(i16::from_be_bytes(self.take(field)?))
        } else {
            i64::from(i32::from_be_bytes(self.take(field)?))
        };
        match len {
            -1 if nullable => Ok(None),
            n if n < 0 => Err(GuardError::InvalidLength { field, claimed: n }),
            n => Ok(Some(n)),
        }
    }

    fn ty(&mut self, ty: &Ty, field: &'static str) -> Result<(), GuardError> {
        match *ty {
            Ty::Bool | Ty::Int8 => self.skip(1, field),
            Ty::Int16 | Ty::UInt16 => self.skip(2, field),
            Ty::Int32 | Ty::UInt32 => self.skip(4, field),
            Ty::Int64 | Ty::Float64 => self.skip(8, field),
            Ty::Uuid => self.skip(16, field),
            Ty::String | Ty::NullableString => {
                let nullable = matches!(ty, Ty::NullableString);
                match self.length(true, nullable, field)? {
                    Some(n) => self.skip_len(n, field),
                    None => Ok(()),
                }
            }
            Ty::Bytes | Ty::NullableBytes => {
                let nullable = matches!(ty, Ty::NullableBytes);
                match self.length(false, nullable, field)? {
                    Some(n) => self.skip_len(n, field),
                    None => Ok(()),
                }
            }
            Ty::Array(elem) | Ty::NullableArray(elem) => {
                let nullable = matches!(ty, Ty::NullableArray(_));
                let Some(count) = self.length(false, nullable, field)? else {
                    return Ok(());
                };
                // The decoder reserves `count` elements before reading any, so the count
                // is judged here: every element needs at least `min_size` bytes, and at
                // least one even when it could be empty (see `min_size`).
                let per = min_size(elem, self.version, self.flexible).max(1) as i64;
                let remaining = self.remaining();
                if count.saturating_mul(per) > remaining as i64 {
                    return Err(GuardError::LengthTooLarge {
                        field,
                        claimed: count,
                        remaining,
                    });
                }
                self.elements = self.elements.saturating_add(count.unsigned_abs());
                if self.elements > MAX_ELEMENTS {
                    return Err(GuardError::TooManyElements {
                        field,
                        limit: MAX_ELEMENTS,
                    });
                }
                for _ in 0..count {
                    self.ty(elem, field)?;
                }
                Ok(())
            }
            Ty::Struct(s) => self.strukt(s),
            Ty::OptionStruct(s) => {
                let [flag] = self.take::<1>(field)?;
                if flag == 1 {
                    self.strukt(s)?;
                }
                Ok(())
            }
        }
    }

    fn strukt(&mut self, s: &StructSchema) -> Result<(), GuardError> {
        for f in s.fields {
            if (f.min..=f.max).contains(&self.version) {
                self.ty(&f.ty, f.name)?;
            }
        }
        if !self.flexible {
            return Ok(());
        }
        let count = self.uvarint("tagged fields count")?;
        let remaining = self.remaining();
        // Each tagged field takes at least two bytes (tag and size).
        if u64::from(count) * 2 > remaining as u64 {
            return Err(GuardError::LengthTooLarge {
                field: "tagged fields count",
                claimed: i64::from(count),
                remaining,
            });
        }
        for _ in 0..count {
            let tag = self.uvarint("tag")?;
            let size = i64::from(self.uvarint("tagged field size")?);
            let known = s.tagged.iter().find(|t| t.tag == tag);
            let Some(Tagged { field, .. }) = known else {
                self.skip_len(size, "tagged field")?;
                continue;
            };
            if !(field.min..=field.max).contains(&self.version) {
                return Err(GuardError::UnexpectedTag {
                    tag,
                    version: self.version,
                });
            }
            if size > self.remaining() as i64 {
                return Err(GuardError::LengthTooLarge {
                    field: field.name,
                    claimed: size,
                    remaining: self.remaining(),
                });
            }
            let start = self.pos;
            self.ty(&field.ty, field.name)?;
            let used = (self.pos - start) as i64;
            if used != size {
                return Err(GuardError::TaggedSizeMismatch {
                    field: field.name,
                    size,
                    used,
                });
            }
        }
        Ok(())
    }
}

/// The fewest bytes one value of `ty` can occupy at this version.
///
/// A struct whose fields are all absent in a classic version would be zero bytes; an
/// array of those is still refused when it claims more elements than bytes remain.
/// That cannot reject a real client (no schema covered here has such a struct, and a
/// client could not mean anything by millions of empty elements) while it keeps the
/// decoder's up-front reservation proportional to the body.
pub(crate) fn min_size(ty: &Ty, version: i16, flexible: bool) -> usize {
    match *ty {
        Ty::Bool | Ty::Int8 | Ty::OptionStruct(_) => 1,
        Ty::Int16 | Ty::UInt16 => 2,
        Ty::Int32 | Ty::UInt32 => 4,
        Ty::Int64 | Ty::Float64 => 8,
        Ty::Uuid => 16,
        Ty::String | Ty::NullableString if !flexible => 2,
        Ty::Bytes | Ty::NullableBytes | Ty::Array(_) | Ty::NullableArray(_) if !flexible => 4,
        Ty::String | Ty::NullableString | Ty::Bytes | Ty::NullableBytes => 1,
        Ty::Array(_) | Ty::NullableArray(_) => 1,
        Ty::Struct(s) => {
            let fields: usize = s
                .fields
                .iter()
                .filter(|f| (f.min..=f.max).contains(&version))
                .map(|f| min_size(&f.ty, version, flexible))
                .sum();
            fields + usize::from(flexible)
        }
    }
}

/// Walks `body` as `message` at `version` and returns how many bytes the decoder will
/// consume, or why it must not be decoded.
pub(crate) fn walk(message: &Message, version: i16, body: &[u8]) -> Result<usize, GuardError> {
    let mut r = Reader {
        buf: body,
        pos: 0,
        version,
        flexible: version >= message.flexible,
        elements: 0,
    };
    r.strukt(message.root)?;
    Ok(r.pos)
}
