//! `ssl.principal.mapping.rules`: how a client certificate's distinguished name becomes
//! a principal name, with the syntax and semantics of Kafka's `SslPrincipalMapper`.
//!
//! Rules are comma-separated, tried in order, and the first that matches wins:
//! `DEFAULT` keeps the name as it is; `RULE:pattern/replacement/` applies when the
//! pattern matches the whole name, and the name becomes every match of the pattern
//! replaced as Java's `String.replaceAll` replaces (`$1` group references, `\` escapes),
//! lower- or upper-cased with a trailing `L` or `U`. A name no rule matches cannot
//! log in. Patterns are Rust `regex` syntax, which agrees with Java's for what such
//! rules use (classes, groups, lazy quantifiers); look-around and back-references in
//! the pattern are refused at start-up.

use std::fmt;
use std::sync::LazyLock;

use regex::{Captures, Regex};
use thiserror::Error;

/// Kafka's default: the distinguished name unchanged.
pub const DEFAULT_RULES: &str = "DEFAULT";

/// Kafka's `RULE_PATTERN`, with Java's `\s` spelled out (Rust's is Unicode).
const RULE_PATTERN: &str = r"(DEFAULT)|RULE:((\\.|[^\\/])*)/((\\.|[^\\/])*)/([LU]?).*?|(.*?)";
const SPACE: &str = r"[ \t\n\x0B\f\r]";

static RULE_SPLITTER: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(&format!(r"{SPACE}*({RULE_PATTERN}){SPACE}*(,{SPACE}*|$)")).ok());
static RULE_PARSER: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(&format!(r"^(?:{RULE_PATTERN})")).ok());

/// The rules do not parse; the message is Kafka's.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum RulesError {
    /// Kafka's `Invalid rule`.
    #[error("ssl.principal.mapping.rules: invalid rule: `{rule}`, unmatched substring: `{rest}`")]
    Invalid {
        /// The rule as split from the list.
        rule: String,
        /// What is left after the longest valid prefix.
        rest: String,
    },
    /// A rule's pattern is not a regular expression we can run.
    #[error("ssl.principal.mapping.rules: pattern `{pattern}` does not compile: {reason}")]
    Pattern {
        /// The pattern.
        pattern: String,
        /// The regex crate's message.
        reason: String,
    },
}

/// A name could not be mapped: the connection is refused, as Kafka fails it.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum MappingError {
    /// Kafka's `NoMatchingRule`.
    #[error("no rules apply to {name}, rules {rules}")]
    NoMatchingRule {
        /// The distinguished name.
        name: String,
        /// The rules, as Kafka prints them.
        rules: String,
    },
    /// The replacement refers to a group the pattern lacks, or ends in a lone `\`
    /// (Java throws the same at this point).
    #[error("replacement `{0}` of a principal mapping rule is invalid")]
    Replacement(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Case {
    Keep,
    Lower,
    Upper,
}

#[derive(Debug, Clone)]
enum Rule {
    Default,
    Replace {
        /// As written, for `Display` and `replaceAll`.
        pattern: Regex,
        /// The pattern anchored at both ends: Java's `Matcher.matches()`.
        whole: Regex,
        replacement: String,
        case: Case,
    },
}

/// Parsed `ssl.principal.mapping.rules`.
#[derive(Debug, Clone)]
pub struct PrincipalMapper {
    rules: Vec<Rule>,
}

impl PrincipalMapper {
    /// Parses the rules as Kafka does (empty entries are ignored; an empty list maps
    /// nothing).
    pub fn parse(rules: &str) -> Result<Self, RulesError> {
        let (Some(splitter), Some(parser)) = (&*RULE_SPLITTER, &*RULE_PARSER) else {
            return Err(RulesError::Pattern {
                pattern: RULE_PATTERN.to_string(),
                reason: "built-in rule grammar".to_string(),
            });
        };
        let mut parsed = Vec::new();
        for split in splitter.captures_iter(rules.trim()) {
            let rule = split.get(1).map_or("", |m| m.as_str());
            let invalid = |end: usize| RulesError::Invalid {
                rule: rule.to_string(),
                rest: rule.get(end..).unwrap_or_default().to_string(),
            };
            let Some(parts) = parser.captures(rule) else {
                return Err(invalid(0));
            };
            let end = parts.get(0).map_or(0, |m| m.end());
            if end != rule.len() {
                return Err(invalid(end));
            }
            if parts.get(1).is_some() {
                parsed.push(Rule::Default);
            } else if let Some(pattern) = parts.get(2) {
                let pattern = pattern.as_str();
                let compile = |text: &str| {
                    Regex::new(text).map_err(|e| RulesError::Pattern {
                        pattern: pattern.to_string(),
                        reason: e.to_string(),
                    })
                };
                let case = match parts.get(6).map(|m| m.as_str()) {
                    Some("L") => Case::Lower,
                    Some("U") => Case::Upper,
                    _ => Case::Keep,
                };
                parsed.push(Rule::Replace {
                    pattern: compile(pattern)?,
                    whole: compile(&format!(r"\A(?:{pattern})\z"))?,
                    replacement: parts.get(4).map_or("", |m| m.as_str()).to_string(),
                    case,
                });
            }
        }
        Ok(PrincipalMapper { rules: parsed })
    }

    /// The principal name for a distinguished name: the first rule that applies.
    pub fn name(&self, distinguished_name: &str) -> Result<String, MappingError> {
        for rule in &self.rules {
            if let Some(name) = rule.apply(distinguished_name)? {
                return Ok(name);
            }
        }
        Err(MappingError::NoMatchingRule {
            name: distinguished_name.to_string(),
            rules: self.to_string(),
        })
    }
}

/// Kafka's `SslPrincipalMapper.toString()`, which its tests compare.
impl fmt::Display for PrincipalMapper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rules: Vec<String> = self.rules.iter().map(Rule::to_string).collect();
        write!(f, "SslPrincipalMapper(rules = [{}])", rules.join(", "))
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rule::Default => f.write_str("DEFAULT"),
            Rule::Replace {
                pattern,
                replacement,
                case,
                ..
            } => {
                write!(f, "RULE:{}/{replacement}", pattern.as_str())?;
                match case {
                    Case::Lower => f.write_str("/L"),
                    Case::Upper => f.write_str("/U"),
                    Case::Keep => Ok(()),
                }
            }
        }
    }
}

impl Rule {
    fn apply(&self, name: &str) -> Result<Option<String>, MappingError> {
        let Rule::Replace {
            pattern,
            whole,
            replacement,
            case,
        } = self
        else {
            return Ok(Some(name.to_string()));
        };
        if !whole.is_match(name) {
            return Ok(None);
        }
        let groups = pattern.captures_len() - 1;
        let replacement = escape_literal_back_references(replacement, groups);
        let mapped = replace_all(pattern, name, &replacement)?;
        Ok(Some(match case {
            Case::Keep => mapped,
            Case::Lower => mapped.to_lowercase(),
            Case::Upper => mapped.to_uppercase(),
        }))
    }
}

/// Kafka's `escapeLiteralBackReferences` (from Apache NiFi): a `$n` naming a group the
/// pattern lacks is made literal, after first shortening `$123` to `$12` or `$1` where
/// those exist. Positions come from the original text while insertions shift the
/// edited one, exactly as in Kafka, so its results (odd ones included) carry over.
fn escape_literal_back_references(unescaped: &str, groups: usize) -> String {
    if groups == 0 {
        return unescaped.to_string();
    }
    let original: Vec<char> = unescaped.chars().collect();
    let mut value = original.clone();
    let mut i = 0;
    while i < original.len() {
        let digits = original[i + 1..]
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .count();
        if original[i] != '$' || digits == 0 {
            i += 1;
            continue;
        }
        let group_start = i + 1;
        let number: String = original[group_start..group_start + digits].iter().collect();
        i = group_start + digits;
        if number.starts_with('0') {
            continue;
        }
        // Kafka's Integer.parseInt would throw on overflow; a huge number is never a
        // group, so treating it as one past the last gives the literal text instead.
        let mut index = number.parse::<usize>().unwrap_or(usize::MAX);
        while index > groups && index >= 10 {
            index /= 10;
        }
        if index > groups && group_start - 1 <= value.len() {
            value.insert(group_start - 1, '\\');
        }
    }
    value.into_iter().collect()
}

/// Java's `String.replaceAll`: every match (an empty one after the previous match
/// included) replaced by the expanded replacement.
fn replace_all(pattern: &Regex, text: &str, replacement: &str) -> Result<String, MappingError> {
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut from = 0;
    while from <= text.len() {
        let Some(captures) = pattern.captures_at(text, from) else {
            break;
        };
        let Some(found) = captures.get(0) else {
            break;
        };
        out.push_str(&text[copied..found.start()]);
        expand(&captures, replacement, &mut out)?;
        copied = found.end();
        from = if found.is_empty() {
            match text[found.end()..].chars().next() {
                Some(c) => found.end() + c.len_utf8(),
                None => break,
            }
        } else {
            found.end()
        };
    }
    out.push_str(&text[copied..]);
    Ok(out)
}

/// Java's `Matcher.appendReplacement` expansion: `\x` is `x`, `$n` the longest group
/// number that exists (at least one digit), `${name}` a named group.
fn expand(
    captures: &Captures<'_>,
    replacement: &str,
    out: &mut String,
) -> Result<(), MappingError> {
    let invalid = || MappingError::Replacement(replacement.to_string());
    let groups = captures.len() - 1;
    let mut chars = replacement.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push(chars.next().ok_or_else(invalid)?),
            '$' => {
                let group = if chars.peek() == Some(&'{') {
                    chars.next();
                    let name: String = chars.by_ref().take_while(|c| *c != '}').collect();
                    captures.name(&name).ok_or_else(invalid)?.as_str()
                } else {
                    let first = chars
                        .next()
                        .and_then(|d| d.to_digit(10))
                        .ok_or_else(invalid)?;
                    let mut number = first as usize;
                    while let Some(digit) = chars.peek().and_then(|d| d.to_digit(10)) {
                        let longer = number * 10 + digit as usize;
                        if longer > groups {
                            break;
                        }
                        number = longer;
                        chars.next();
                    }
                    if number > groups {
                        return Err(invalid());
                    }
                    captures.get(number).map_or("", |m| m.as_str())
                };
                out.push_str(group);
            }
            _ => out.push(c),
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "principal_mapping_tests.rs"]
mod tests;
