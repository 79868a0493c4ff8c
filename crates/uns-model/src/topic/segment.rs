//! Validated topic segments: [`Segment`] for location levels, [`Id`] for ids in class paths, and [`slug`].

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest allowed [`Segment`] or [`Id`], in bytes.
pub const MAX_SEGMENT_LEN: usize = 64;

/// Why a single topic segment is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SegmentError {
    /// The segment is the empty string (e.g. `a//b` or a trailing `/`).
    #[error("segment is empty")]
    Empty,
    /// The segment is longer than [`MAX_SEGMENT_LEN`] bytes.
    #[error("segment is {len} bytes long, the limit is {MAX_SEGMENT_LEN}")]
    TooLong {
        /// Length of the segment in bytes.
        len: usize,
    },
    /// The segment contains a character outside its allowed set.
    #[error("invalid character {ch:?} at byte {offset} (allowed: {allowed})")]
    InvalidChar {
        /// The offending character.
        ch: char,
        /// Byte offset of the character inside the segment.
        offset: usize,
        /// Human-readable allowed set, e.g. `[a-z0-9-_]`.
        allowed: &'static str,
    },
    /// The segment starts with a character that is reserved at that place (`_` marks a class).
    #[error("segment may not start with {ch:?} ({why})")]
    BadStart {
        /// The offending first character.
        ch: char,
        /// Why the character is reserved there.
        why: &'static str,
    },
}

/// A location segment (enterprise, site, area, line, cell or unit name).
///
/// Invariant: 1..=64 bytes of `[a-z0-9-_]`, not starting with `_` (a leading `_` marks a class and ends the
/// location).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Segment(String);

/// An id inside a class path: a work order, lot, production order, period, metric path part, command verb,
/// schema or service name.
///
/// Invariant: 1..=64 bytes of `[a-z0-9-_.]`, starting with `[a-z0-9]`. The dot is allowed so that lot and
/// period ids such as `l-8891.2` or `2025-03-04.early` read naturally; the first character may not be `_`
/// (reserved for fixed names such as `_wo/_active`), `.`, or `-`. ERP keys that break these rules travel
/// unchanged in the payload's `erp_ref`; the topic carries [`slug`] of them.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Id(String);

const SEGMENT_CHARS: &str = "[a-z0-9-_]";
const ID_CHARS: &str = "[a-z0-9-_.]";

fn check_chars(text: &str, extra: &[u8], allowed: &'static str) -> Result<(), SegmentError> {
    if text.is_empty() {
        return Err(SegmentError::Empty);
    }
    if text.len() > MAX_SEGMENT_LEN {
        return Err(SegmentError::TooLong { len: text.len() });
    }
    for (offset, ch) in text.char_indices() {
        let ok = ch.is_ascii_lowercase()
            || ch.is_ascii_digit()
            || ch == '-'
            || ch == '_'
            || (ch.is_ascii() && extra.contains(&(ch as u8)));
        if !ok {
            return Err(SegmentError::InvalidChar {
                ch,
                offset,
                allowed,
            });
        }
    }
    Ok(())
}

impl Segment {
    /// Validates `text` as a location segment.
    pub fn new(text: &str) -> Result<Self, SegmentError> {
        check_chars(text, &[], SEGMENT_CHARS)?;
        if text.starts_with('_') {
            return Err(SegmentError::BadStart {
                ch: '_',
                why: "a leading `_` marks a class and ends the location",
            });
        }
        Ok(Self(text.to_owned()))
    }

    /// The segment text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Id {
    /// Validates `text` as an id segment.
    pub fn new(text: &str) -> Result<Self, SegmentError> {
        check_chars(text, b".", ID_CHARS)?;
        match text.chars().next() {
            Some(ch @ ('_' | '.' | '-')) => Err(SegmentError::BadStart {
                ch,
                why: "an id starts with [a-z0-9]",
            }),
            _ => Ok(Self(text.to_owned())),
        }
    }

    /// The id text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Turns any text (an ERP key, a Sparkplug metric name) into a valid [`Id`], deterministically.
///
/// Rules, in order:
/// 1. ASCII letters are lowercased; `[a-z0-9._]` are kept; `-` and every other character (space, `#`, `/`,
///    non-ASCII, ...) become `-`, and runs of `-` collapse to one.
/// 2. Leading characters that may not start an id (`-`, `_`, `.`) and trailing `-` are trimmed.
/// 3. An empty result becomes `x-{hash}`; a result over [`MAX_SEGMENT_LEN`] bytes is cut to 55 bytes (then
///    trailing `-` trimmed) and gets `-{hash}` appended, so long keys that share a prefix stay distinct.
///    `{hash}` is 8 lowercase hex digits of the 32-bit FNV-1a hash of the original input.
///
/// Examples: `WO#17` → `wo-17`, `PO 4711/2` → `po-4711-2`, `Mixed Case` → `mixed-case`,
/// `Inputs/Temp 1` → `inputs-temp-1`. Different inputs can share a slug (`WO 17` and `WO#17`): keep the
/// original in the payload's `erp_ref`.
pub fn slug(text: &str) -> Id {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        let mapped = match ch {
            'A'..='Z' => ch.to_ascii_lowercase(),
            'a'..='z' | '0'..='9' | '.' | '_' => ch,
            _ => '-',
        };
        if mapped == '-' && out.ends_with('-') {
            continue;
        }
        out.push(mapped);
    }
    let trimmed = out
        .trim_start_matches(['-', '_', '.'])
        .trim_end_matches('-');
    let hash = fnv1a(text);
    let result = if trimmed.is_empty() {
        format!("x-{hash:08x}")
    } else if trimmed.len() > MAX_SEGMENT_LEN {
        // The slug is ASCII, so any byte index is a char boundary.
        let head = trimmed[..55].trim_end_matches('-');
        format!("{head}-{hash:08x}")
    } else {
        trimmed.to_owned()
    };
    // By construction `result` satisfies the `Id` invariant; fall back to the hash form if a rule above
    // is ever changed without this function.
    Id::new(&result).unwrap_or(Id(format!("x-{hash:08x}")))
}

fn fnv1a(text: &str) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in text.bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash
}

macro_rules! string_newtype {
    ($ty:ident) => {
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl FromStr for $ty {
            type Err = SegmentError;
            fn from_str(text: &str) -> Result<Self, Self::Err> {
                Self::new(text)
            }
        }

        impl AsRef<str> for $ty {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = String::deserialize(deserializer)?;
                Self::new(&text).map_err(|err| {
                    serde::de::Error::custom(format_args!(
                        "invalid {} {text:?}: {err}",
                        stringify!($ty)
                    ))
                })
            }
        }
    };
}

string_newtype!(Segment);
string_newtype!(Id);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slug_table() {
        fn check(input: &str, expected: &str) {
            let id = slug(input);
            assert_eq!(id.as_str(), expected, "slug({input:?})");
            assert_eq!(slug(input), id, "slug is deterministic");
        }
        check("WO#17", "wo-17");
        check("PO 4711/2", "po-4711-2");
        check("Mixed Case", "mixed-case");
        check("Node Control/Rebirth", "node-control-rebirth");
        check("Inputs/Temp 1", "inputs-temp-1");
        check("already-ok_1.2", "already-ok_1.2");
        check("__hidden", "hidden");
        check("--a--b--", "a-b");
        check("Größe", "gr-e");
        check("###", &format!("x-{:08x}", fnv1a("###")));
        check("", &format!("x-{:08x}", fnv1a("")));
        let long = "A".repeat(100);
        check(&long, &format!("{}-{:08x}", "a".repeat(55), fnv1a(&long)));
    }

    #[test]
    fn segment_and_id_rules() {
        fn check_segment(input: &str, expected: Result<(), SegmentError>) {
            assert_eq!(
                Segment::new(input).map(|_| ()),
                expected,
                "Segment::new({input:?})"
            );
        }
        check_segment("line-1", Ok(()));
        check_segment("cell_2", Ok(()));
        check_segment("", Err(SegmentError::Empty));
        check_segment(&"a".repeat(65), Err(SegmentError::TooLong { len: 65 }));
        check_segment(
            "Line",
            Err(SegmentError::InvalidChar {
                ch: 'L',
                offset: 0,
                allowed: SEGMENT_CHARS,
            }),
        );
        check_segment(
            "a.b",
            Err(SegmentError::InvalidChar {
                ch: '.',
                offset: 1,
                allowed: SEGMENT_CHARS,
            }),
        );
        assert!(matches!(
            Segment::new("_state"),
            Err(SegmentError::BadStart { ch: '_', .. })
        ));
        assert!(Id::new("l-8891.2").is_ok());
        assert!(matches!(
            Id::new(".x"),
            Err(SegmentError::BadStart { ch: '.', .. })
        ));
        assert!(matches!(
            Id::new("_active"),
            Err(SegmentError::BadStart { ch: '_', .. })
        ));
        assert!(matches!(
            Id::new("wo#1"),
            Err(SegmentError::InvalidChar {
                ch: '#',
                offset: 2,
                ..
            })
        ));
    }
}
