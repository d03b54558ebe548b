//! The small files beside a partition's segments (the persisted log start, the recovery
//! point) and the crash-safe way every one of them is replaced.

use std::fs::{self, File};
use std::io;
use std::path::Path;

use crate::storage::segment::Checkpoint;

/// Name of the file holding the persisted log start offset.
const LOG_START_FILE: &str = "log-start-offset";

/// The persisted log start offset, if the file is there and readable.
pub(super) fn read_log_start(dir: &Path) -> Option<i64> {
    let text = fs::read_to_string(dir.join(LOG_START_FILE)).ok()?;
    let mut fields = text.split_whitespace();
    if fields.next()? != "v1" {
        return None;
    }
    let offset = fields.next()?.parse().ok()?;
    fields.next().is_none().then_some(offset)
}

/// Atomically replaces the persisted log start offset.
pub(super) fn write_log_start(dir: &Path, offset: i64) -> io::Result<()> {
    write_atomically(dir, LOG_START_FILE, &format!("v1 {offset}\n"))
}

/// Writes `name` in `dir` via a temporary file, fsync, rename and directory fsync, so
/// a crash leaves either the old or the new content.
pub(in crate::storage) fn write_atomically(dir: &Path, name: &str, text: &str) -> io::Result<()> {
    replace_file(&dir.join(name), text.as_bytes())?;
    sync_dir(dir)
}

/// Replaces `path` with `bytes` via `<path>.tmp`, fsync and rename: a crash leaves the
/// old or the new content whole. The rename is durable once the directory is fsynced,
/// which callers do themselves ([`write_atomically`]) or leave to a later write that
/// does, if the old content standing until then is acceptable.
pub(crate) fn replace_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let mut file = File::create(&tmp)?;
    io::Write::write_all(&mut file, bytes)?;
    file.sync_all()?;
    fs::rename(&tmp, path)
}

/// Base offsets of the `{base:020}.log` files in `dir`, ascending.
pub(super) fn list_segments(dir: &Path) -> io::Result<Vec<i64>> {
    let mut bases = Vec::new();
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name();
        let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".log")) else {
            continue;
        };
        if stem.len() == 20 && stem.bytes().all(|b| b.is_ascii_digit()) {
            if let Ok(base) = stem.parse::<i64>() {
                bases.push(base);
            }
        }
    }
    bases.sort_unstable();
    Ok(bases)
}

/// Name of the file holding the active segment's recovery point.
const CHECKPOINT_FILE: &str = "recovery-point";

/// The recovery point written by the last clean flush, if it is there and readable.
pub(super) fn read_checkpoint(dir: &Path) -> Option<Checkpoint> {
    let text = fs::read_to_string(dir.join(CHECKPOINT_FILE)).ok()?;
    let mut fields = text.split_whitespace();
    if fields.next()? != "v1" {
        return None;
    }
    let checkpoint = Checkpoint {
        base: fields.next()?.parse().ok()?,
        size: fields.next()?.parse().ok()?,
        next_offset: fields.next()?.parse().ok()?,
    };
    fields.next().is_none().then_some(checkpoint)
}

/// Atomically replaces the recovery point (write, fsync, rename, fsync directory).
pub(super) fn write_checkpoint(dir: &Path, checkpoint: Checkpoint) -> io::Result<()> {
    let text = format!(
        "v1 {} {} {}\n",
        checkpoint.base, checkpoint.size, checkpoint.next_offset
    );
    write_atomically(dir, CHECKPOINT_FILE, &text)
}

/// Makes a new segment file's directory entry durable.
pub(in crate::storage) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}
