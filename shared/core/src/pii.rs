//! PII scrubbing: the TraceKit "13 built-in patterns" (12 value regexes plus one
//! variable-name regex, wire-protocol reference §7.1), per-service custom patterns and
//! request-header redaction.
//!
//! The same [`Scrubber`] runs in our SDKs before data leaves the process and again on the
//! server for every snapshot from any SDK, so it must be idempotent: values the SDKs already
//! replaced (`"[REDACTED]"`, `"[REDACTED:email]"`, …) are left alone and are not flagged again.
//!
//! # What is scrubbed
//!
//! * **Names (rule 13)**: an object key whose name matches
//!   [`SENSITIVE_NAME_PATTERN`] (at any depth, not only top level like the official SDKs) gets
//!   its whole value (string, number, object, array, bool) replaced by
//!   `"[REDACTED:sensitive_name]"`, unless the value is `null` or already a marker.
//! * **String values**: a string containing PII *anywhere* becomes exactly the marker of the
//!   first built-in pattern that matches, in the reference's order (whole-string replacement,
//!   as the official SDKs do), then custom patterns in their given order.
//! * **Number values**: only the credit-card rule applies, see below.
//! * **Object keys** that themselves contain PII (e.g. a map keyed by e-mail address) are
//!   renamed to the marker (`"[REDACTED:email]"`, then `"[REDACTED:email#2]"`, … when several
//!   keys of one object collide), so no PII survives in key position either. The value under
//!   such a key is also treated as name-sensitive when the marker name itself matches rule 13
//!   (e.g. `[REDACTED:api_key]`), which keeps a second pass a no-op.
//! * **Request context** ([`Scrubber::scrub_request_context`]): the headers in
//!   [`SENSITIVE_HEADERS`] (case-insensitive, `_` read as `-`) of any object under a
//!   `headers` key become `"[REDACTED]"`; everything else is scrubbed like variables.
//!
//! # Deliberate departures from the official SDKs (false positives)
//!
//! * **JSON numbers** are only checked for card numbers, never for phone/SSN: the phone regex
//!   matches every 10-digit number (Unix timestamps such as `1732280000`, ids). A number is a
//!   card number when it is an integer of 13–19 digits whose first digit is 2–6 (the card
//!   networks' major-industry identifiers: Mastercard 2/5, Amex/Diners/JCB 3, Visa 4,
//!   Discover/UnionPay 6) and that passes the Luhn check. This catches every real card sent as
//!   a number (including 15-digit Amex, which the reference regex misses) while leaving
//!   millisecond/microsecond/nanosecond timestamps (which start with 1) and 90% of other ids
//!   alone. Custom patterns do run on a number's decimal text.
//! * **Phone in strings**: the reference regex is kept (`555-123-4567`, `555.123.4567`,
//!   `5551234567` are caught), plus the `(555) 123-4567` form, which the reference misses.
//!   A match made only of 10 bare digits (no separator) is *not* a phone when it starts with
//!   `1` (Unix seconds from 2001 to 2033 all do, and North-American area codes never start
//!   with 0 or 1) or when it is part of a decimal number (`1732280000.123`,
//!   `3.1415926535`). ISO timestamps (`2026-11-22T12:41:37.444557Z`) and longer digit runs
//!   (`20261122124137`) never match because of the word boundaries.
//! * **Private keys**: besides the reference's `RSA`/`EC`/plain PEM headers, any
//!   `-----BEGIN <WORDS> PRIVATE KEY-----` (OpenSSH, DSA, encrypted PKCS#8) and PGP
//!   `PRIVATE KEY BLOCK` headers are caught; the reference misses them.
//! * Word boundaries and `\d` are ASCII (`(?-u:\b)`, `[0-9]`), exactly like Go's RE2 and
//!   JavaScript, which the reference patterns come from.
//!
//! # Bounds
//!
//! Objects and arrays nested deeper than [`MAX_DEPTH`] are not descended into: the whole
//! too-deep subtree is replaced by the string [`DEPTH_MARKER`] (`"[TRUNCATED:depth]"`), so no
//! unscrubbed data can remain below the limit. Custom patterns are capped in number, source
//! length and compiled size. Nothing here panics on any input.
//!
//! # Speed
//!
//! Most strings never reach a regex. A string first goes through a branch-free pass that
//! sums per-class byte counts through one table lookup per byte (digits, `-`, `_`, `@`,
//! `:`/`=`, and the first letters of the keyword-led patterns); from the counts and the
//! length it derives, per built-in pattern, a necessary condition (an `@` for e-mail, at
//! least 9/10/16 digits for SSN/phone/card, `K` for `AKIA`, `J` for `eyJ`, ten `-` for a PEM
//! header, the regex's minimum length …). Strings that survive get a second, exact-position
//! pass (digit runs between word boundaries, the literal's first two bytes such as `AK`,
//! `yJ`, `k_`, `--`, or for the case-insensitive keywords two letters without non-ASCII case
//! folds: `aw`, `be`, `pa`/`pw`, `ap`). Up to two remaining candidates are confirmed with
//! their own regexes in the reference's order; more go through the compiled [`RegexSet`] in
//! one pass and the first matching index wins. Object keys get the same checks plus rule 13
//! from one 8-bytes-at-a-time scan. The soundness of every shortcut is tested against the
//! plain `RegexSet` on generated strings.

use std::collections::HashSet;
use std::sync::OnceLock;

use regex::{Regex, RegexBuilder, RegexSet, RegexSetBuilder};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Number, Value};

/// Objects/arrays at this depth (the value passed to `scrub_value` is depth 0) are replaced by
/// [`DEPTH_MARKER`] instead of being descended into.
pub const MAX_DEPTH: usize = 64;
/// Replacement for a subtree nested deeper than [`MAX_DEPTH`].
pub const DEPTH_MARKER: &str = "[TRUNCATED:depth]";
/// Untyped marker (request headers; also what several SDKs send).
pub const REDACTED: &str = "[REDACTED]";
/// Marker for values whose key name matches rule 13.
pub const SENSITIVE_NAME_MARKER: &str = "[REDACTED:sensitive_name]";
/// Request headers redacted by [`Scrubber::scrub_request_context`] (compared
/// case-insensitively, `_` equal to `-`).
pub const SENSITIVE_HEADERS: [&str; 5] = [
    "authorization",
    "cookie",
    "set-cookie",
    "x-api-key",
    "proxy-authorization",
];
/// At most this many custom patterns per scrubber.
pub const MAX_CUSTOM_PATTERNS: usize = 64;
/// Longest accepted custom pattern source, in bytes.
pub const MAX_CUSTOM_PATTERN_LEN: usize = 2048;
/// Longest accepted custom pattern name, in bytes.
pub const MAX_CUSTOM_NAME_LEN: usize = 64;
/// Compiled-size cap of one custom regex (bytes of compiled program).
const CUSTOM_REGEX_SIZE_LIMIT: usize = 512 * 1024;
/// Longest marker name accepted by [`is_marker`].
const MAX_MARKER_NAME_LEN: usize = 128;

/// One flag per redaction, reported with the snapshot (snake_case JSON).
///
/// Deserialization also accepts the PascalCase field names DOTNET sends and missing fields
/// (GO/NODE send only `type`, `severity`, `variable`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecurityFlag {
    /// `"sensitive_data"` (built-in value pattern), `"sensitive_variable_name"` (rule 13 or a
    /// redacted request header) or `"custom"` (custom pattern).
    #[serde(rename = "type", alias = "Type")]
    pub r#type: String,
    /// Pattern name (`"email"`, `"ssn"`, …), `"name"` for rule 13, `"header"` for a request
    /// header, or the custom pattern's name.
    #[serde(default, alias = "Category")]
    pub category: String,
    /// `"critical"`, `"high"` or `"medium"`.
    #[serde(default, alias = "Severity")]
    pub severity: String,
    /// JSON-path-ish location: `user.profile.email`, `items[2].card`. Keys are joined with
    /// `.` as they are (a key containing `.` is not quoted), so the path is for display.
    #[serde(default, alias = "Variable")]
    pub variable: String,
    /// Whether the value was replaced (always `true` for flags produced here).
    #[serde(default = "default_true", alias = "Redacted")]
    pub redacted: bool,
}

fn default_true() -> bool {
    true
}

/// A per-service custom pattern; matching values become `"[REDACTED:{name}]"`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CustomPattern {
    /// Marker name: 1–64 bytes, no `[`, `]` or control characters, and not itself PII.
    pub name: String,
    /// Regex (Rust `regex` syntax); must not match the empty string.
    pub pattern: String,
}

/// Why a set of custom patterns was rejected.
#[derive(Debug, thiserror::Error)]
pub enum PiiError {
    /// The pattern does not compile, is too long or too large, or matches the empty string.
    #[error("invalid PII pattern {name:?}: {message}")]
    InvalidPattern {
        /// The custom pattern's name.
        name: String,
        /// What is wrong with it.
        message: String,
    },
    /// The pattern's name cannot be used inside a marker.
    #[error("invalid PII pattern name {name:?}: {message}")]
    InvalidName {
        /// The rejected name.
        name: String,
        /// What is wrong with it.
        message: String,
    },
    /// More than [`MAX_CUSTOM_PATTERNS`] patterns.
    #[error("too many custom PII patterns: {count} (at most {max})")]
    TooManyPatterns {
        /// How many were given.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// The built-in patterns failed to compile (never expected; the built-in scrubber then
    /// fails closed and redacts every string and number).
    #[error("built-in PII patterns unavailable: {0}")]
    BuiltinUnavailable(String),
}

/// A built-in value pattern, in evaluation order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BuiltinPattern {
    /// Category reported in flags, e.g. `"email"`.
    pub name: &'static str,
    /// Replacement, e.g. `"[REDACTED:email]"`.
    pub marker: &'static str,
    /// Severity reported in flags.
    pub severity: &'static str,
    /// The regex as compiled (the reference's, with ASCII `\b`/`\d` spelled out).
    pub regex: &'static str,
}

const EMAIL: usize = 0;
const SSN: usize = 1;
const CREDIT_CARD: usize = 2;
const PHONE: usize = 3;
const AWS_KEY: usize = 4;
const AWS_SECRET: usize = 5;
const OAUTH_TOKEN: usize = 6;
const STRIPE_KEY: usize = 7;
const PASSWORD: usize = 8;
const JWT: usize = 9;
const PRIVATE_KEY: usize = 10;
const API_KEY: usize = 11;

/// The 12 built-in value patterns of the reference (§7.1), in its evaluation order.
pub const BUILTIN_PATTERNS: [BuiltinPattern; 12] = [
    BuiltinPattern {
        name: "email",
        marker: "[REDACTED:email]",
        severity: "medium",
        regex: r"(?-u:\b)[A-Za-z0-9._%+\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}(?-u:\b)",
    },
    BuiltinPattern {
        name: "ssn",
        marker: "[REDACTED:ssn]",
        severity: "critical",
        regex: r"(?-u:\b)[0-9]{3}-[0-9]{2}-[0-9]{4}(?-u:\b)",
    },
    BuiltinPattern {
        name: "credit_card",
        marker: "[REDACTED:credit_card]",
        severity: "critical",
        regex: r"(?-u:\b)[0-9]{4}[- ]?[0-9]{4}[- ]?[0-9]{4}[- ]?[0-9]{4}(?-u:\b)",
    },
    BuiltinPattern {
        name: "phone",
        marker: "[REDACTED:phone]",
        severity: "medium",
        regex: r"(?-u:\b)[0-9]{3}[-.]?[0-9]{3}[-.]?[0-9]{4}(?-u:\b)|\([0-9]{3}\) ?[0-9]{3}[-.][0-9]{4}(?-u:\b)",
    },
    BuiltinPattern {
        name: "aws_key",
        marker: "[REDACTED:aws_key]",
        severity: "critical",
        regex: r"AKIA[0-9A-Z]{16}",
    },
    BuiltinPattern {
        name: "aws_secret",
        marker: "[REDACTED:aws_secret]",
        severity: "critical",
        regex: r"(?i)aws.{0,20}secret.{0,20}[A-Za-z0-9/+=]{40}",
    },
    BuiltinPattern {
        name: "oauth_token",
        marker: "[REDACTED:oauth_token]",
        severity: "high",
        regex: r"(?i)(?:bearer\s+)[A-Za-z0-9._~+/=\-]{20,}",
    },
    BuiltinPattern {
        name: "stripe_key",
        marker: "[REDACTED:stripe_key]",
        severity: "critical",
        regex: r"sk_live_[0-9a-zA-Z]{10,}",
    },
    BuiltinPattern {
        name: "password",
        marker: "[REDACTED:password]",
        severity: "critical",
        regex: r#"(?i)(?:password|passwd|pwd)\s*[=:]\s*["']?[^\s"']{6,}"#,
    },
    BuiltinPattern {
        name: "jwt",
        marker: "[REDACTED:jwt]",
        severity: "high",
        regex: r"eyJ[A-Za-z0-9_\-]+\.eyJ[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+",
    },
    BuiltinPattern {
        name: "private_key",
        marker: "[REDACTED:private_key]",
        severity: "critical",
        regex: r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----",
    },
    BuiltinPattern {
        name: "api_key",
        marker: "[REDACTED:api_key]",
        severity: "critical",
        regex: r#"(?i)(?:api[_\-]?key|apikey)\s*[:=]\s*["']?[A-Za-z0-9_\-]{20,}"#,
    },
];

/// Rule 13, applied to object key names.
pub const SENSITIVE_NAME_PATTERN: &str = r"(?i)(?:^|[^a-zA-Z])(password|passwd|pwd|secret|token|key|credential|api_key|apikey)(?:[^a-zA-Z]|$)";

/// Rule 13 for ASCII names: some maximal run of ASCII letters equals one of these
/// (ignoring case). `api_key` is covered by `key`.
const SENSITIVE_NAME_WORDS: [&[u8]; 8] = [
    b"password",
    b"passwd",
    b"pwd",
    b"secret",
    b"token",
    b"key",
    b"credential",
    b"apikey",
];

/// True when `s` is already a redaction marker (`"[REDACTED]"` or `"[REDACTED:name]"`, the
/// name 1–128 bytes without brackets or control characters), so it is not re-flagged.
///
/// The scrubber additionally refuses to trust a "marker" whose name itself contains PII
/// (`"[REDACTED:bob@example.com]"` is scrubbed like any string).
pub fn is_marker(s: &str) -> bool {
    s == REDACTED || marker_name(s).is_some()
}

/// The `name` of a `"[REDACTED:name]"` marker.
fn marker_name(s: &str) -> Option<&str> {
    let name = s.strip_prefix("[REDACTED:")?.strip_suffix(']')?;
    let ok = !name.is_empty()
        && name.len() <= MAX_MARKER_NAME_LEN
        && !name.chars().any(|c| c == '[' || c == ']' || c.is_control());
    ok.then_some(name)
}

/// Which rule redacted a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hit {
    Builtin(usize),
    Custom(usize),
    /// Built-ins failed to compile: fail closed.
    Unavailable,
}

/// Up to this many candidate patterns (after the precheck) are confirmed one by one with
/// their own regexes; more go through the [`RegexSet`] in one pass.
const SEQUENTIAL_MAX: u32 = 2;

/// The compiled built-in patterns, shared by every scrubber of the process.
#[derive(Debug)]
struct Engine {
    set: RegexSet,
    each: Vec<Regex>,
    name: Regex,
}

impl Engine {
    fn compile() -> Result<Engine, regex::Error> {
        let sources = BUILTIN_PATTERNS.iter().map(|p| p.regex);
        let set = RegexSet::new(sources.clone())?;
        let each = sources.map(Regex::new).collect::<Result<Vec<_>, _>>()?;
        let name = Regex::new(SENSITIVE_NAME_PATTERN)?;
        Ok(Engine { set, each, name })
    }

    /// Index of the first built-in pattern (in reference order) that matches `s`.
    fn first_match(&self, s: &str) -> Option<usize> {
        let mask = precheck(s.as_bytes());
        if mask == 0 {
            return None;
        }
        if mask.count_ones() <= SEQUENTIAL_MAX {
            // Few candidates: their own regexes (with literal prefilters), in order.
            let mut rest = mask;
            while rest != 0 {
                let i = rest.trailing_zeros() as usize;
                if self.confirm(i, s) {
                    return Some(i);
                }
                rest &= rest - 1;
            }
            return None;
        }
        self.set
            .matches(s)
            .iter()
            .find(|&i| i != PHONE || self.plausible_phone_in(s))
    }

    fn confirm(&self, i: usize, s: &str) -> bool {
        if i == PHONE {
            return self.plausible_phone_in(s);
        }
        self.each.get(i).is_some_and(|re| re.is_match(s))
    }

    /// Whether some match of the phone regex in `s` survives [`plausible_phone`].
    fn plausible_phone_in(&self, s: &str) -> bool {
        let Some(re) = self.each.get(PHONE) else {
            return false;
        };
        let mut at = 0;
        while let Some(m) = re.find_at(s, at) {
            if plausible_phone(s.as_bytes(), m.start(), m.end()) {
                return true;
            }
            // Every phone match starts with an ASCII digit or '(', so +1 is a char boundary,
            // and m.start() < m.end() <= s.len().
            at = m.start() + 1;
        }
        false
    }

    fn is_sensitive_name(&self, name: &str) -> bool {
        if name.is_ascii() {
            ascii_sensitive_name(name.as_bytes())
        } else {
            self.name.is_match(name)
        }
    }
}

/// A phone-regex match at `bytes[start..end]` is rejected when it is 10 bare digits that
/// start with `1` (Unix seconds; no North-American area code starts with 1) or that are part
/// of a decimal number (`1732280000.5`, `3.1415926535`). Formatted numbers are always kept.
fn plausible_phone(bytes: &[u8], start: usize, end: usize) -> bool {
    let Some(m) = bytes.get(start..end) else {
        return true;
    };
    if !m.iter().all(u8::is_ascii_digit) {
        return true;
    }
    if m.first() == Some(&b'1') {
        return false;
    }
    let decimal_before = start >= 2
        && bytes.get(start - 1) == Some(&b'.')
        && bytes.get(start - 2).is_some_and(u8::is_ascii_digit);
    let decimal_after =
        bytes.get(end) == Some(&b'.') && bytes.get(end + 1).is_some_and(u8::is_ascii_digit);
    !(decimal_before || decimal_after)
}

fn ascii_sensitive_name(name: &[u8]) -> bool {
    // Maximal runs of ASCII letters; only runs of a word's length are compared.
    let mut run = 0usize;
    for (i, &b) in name.iter().enumerate() {
        if b.is_ascii_alphabetic() {
            run += 1;
        } else {
            if ends_sensitive_word(name, i, run) {
                return true;
            }
            run = 0;
        }
    }
    ends_sensitive_word(name, name.len(), run)
}

/// Whether the `run` letters before `end` are one of [`SENSITIVE_NAME_WORDS`].
#[inline]
fn ends_sensitive_word(name: &[u8], end: usize, run: usize) -> bool {
    matches!(run, 3 | 5 | 6 | 8 | 10)
        && name.get(end.saturating_sub(run)..end).is_some_and(|w| {
            SENSITIVE_NAME_WORDS
                .iter()
                .any(|s| w.eq_ignore_ascii_case(s))
        })
}

/// For an ASCII string of at most 64 bytes: a bitmask of its ASCII letters (bit `i` for
/// byte `i`) and whether it contains an `@`, computed 8 bytes at a time. `None` for longer
/// or non-ASCII strings.
fn short_ascii_scan(bytes: &[u8]) -> Option<(u64, bool)> {
    const HI: u64 = 0x8080_8080_8080_8080;
    const ONES: u64 = 0x0101_0101_0101_0101;
    if bytes.len() > 64 {
        return None;
    }
    let (mut letters, mut at) = (0u64, false);
    for (c, chunk) in bytes.chunks(8).enumerate() {
        // little-endian; a short last chunk is zero-padded (zero is neither a letter nor '@')
        let x = match <[u8; 8]>::try_from(chunk) {
            Ok(full) => u64::from_le_bytes(full),
            Err(_) => chunk
                .iter()
                .rev()
                .fold(0u64, |acc, &b| acc << 8 | u64::from(b)),
        };
        if x & HI != 0 {
            return None;
        }
        // Every byte is < 0x80, so these per-byte additions never carry into the next byte.
        let lower = x | (0x20 * ONES); // ASCII letters become 'a'..='z'
        let ge_a = lower + (0x80 - u64::from(b'a')) * ONES;
        let gt_z = lower + (0x80 - u64::from(b'z') - 1) * ONES;
        let is_letter = ge_a & !gt_z & HI;
        // gather each byte's flag (bit 7) into one bit per byte
        let bits = ((is_letter >> 7).wrapping_mul(0x0102_0408_1020_4080)) >> 56;
        letters |= bits << (8 * c);
        let v = x ^ (u64::from(b'@') * ONES); // zero byte where x has '@'
        at |= v.wrapping_sub(ONES) & !v & HI != 0;
    }
    Some((letters, at))
}

/// Rule 13 on an ASCII name given its letter bitmask from [`short_ascii_scan`].
fn sensitive_name_in(name: &[u8], mut letters: u64) -> bool {
    while letters != 0 {
        let start = letters.trailing_zeros() as usize;
        let run = (!(letters >> start)).trailing_zeros() as usize;
        let end = start + run;
        if ends_sensitive_word(name, end, run) {
            return true;
        }
        letters = if end >= 64 { 0 } else { letters >> end << end };
    }
    false
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// A bit per built-in pattern that *may* match `s` (bit `i` clear ⇒ pattern `i` certainly
/// does not match): [`quick_mask`] first, then [`digit_mask`] or [`precheck_detail`] on the
/// strings that survive it. Each condition is necessary for its regex:
///
/// * email: an `@`;
/// * ssn / phone / credit_card: every match lies inside one run of `[0-9 .()-]`, starts at a
///   digit (or `(`) preceded by a non-word byte and ends at a digit followed by a non-word
///   byte; so the digits between the first such start and the last such end of some run
///   must be at least 9 (plus a `-` somewhere) / 10 / 16;
/// * the literal-led patterns: their first two literal bytes (`AK`, `yJ` of `eyJ`, `k_` of
///   `sk_live_`, `--`), or for the case-insensitive ones the first two letters of a keyword
///   that have no non-ASCII case folds (`aw`, `be`, `pa`/`pw`, `ap`), a `:`/`=` where the
///   regex needs one, and the regex's minimum length in bytes.
fn precheck(s: &[u8]) -> u16 {
    if s.len() < 6 {
        return 0; // the shortest possible match, "a@b.cd", has 6 bytes
    }
    let quick = quick_mask(s);
    if quick == 0 {
        return 0;
    }
    if quick & !(DIGIT_PATTERNS | 1 << EMAIL) == 0 {
        // Only the digit patterns (and e-mail, decided by the '@') remain: the cheaper,
        // branch-free digit-run pass is enough.
        return quick & (digit_mask(s) | 1 << EMAIL);
    }
    quick & precheck_detail(s)
}

const DIGIT_PATTERNS: u16 = 1 << SSN | 1 << CREDIT_CARD | 1 << PHONE;

/// The digit-run part of [`precheck_detail`], without branches: SSN/card/phone bits.
fn digit_mask(s: &[u8]) -> u16 {
    let (mut started, mut count, mut end_count, mut best) = (0u32, 0u32, 0u32, 0u32);
    let mut prev = 0u8; // the start of input behaves like a non-word byte
    for &c in s {
        let cls = DIGIT_CLASS[usize::from(c)];
        let digit = u32::from(cls & DC_DIGIT != 0);
        let in_run = u32::from(cls & (DC_DIGIT | DC_SEP) != 0);
        let word = u32::from(cls & DC_WORD != 0);
        let prev_digit = u32::from(prev & DC_DIGIT != 0);
        let prev_word = u32::from(prev & DC_WORD != 0);
        started |= digit & (prev_word ^ 1);
        count += digit & started;
        // a digit followed by a non-word byte may end a match
        if prev_digit & (word ^ 1) & started != 0 {
            end_count = count;
        }
        best = best.max(end_count);
        started &= in_run;
        count *= in_run;
        end_count *= in_run;
        prev = cls;
    }
    if prev & DC_DIGIT != 0 && started != 0 {
        best = best.max(count); // a trailing digit ends a match
    }
    let mut mask = 0u16;
    if best >= 9 {
        mask |= 1 << SSN;
    }
    if best >= 10 {
        mask |= 1 << PHONE;
    }
    if best >= 16 {
        mask |= 1 << CREDIT_CARD;
    }
    mask
}

const DC_DIGIT: u8 = 1;
const DC_SEP: u8 = 2;
const DC_WORD: u8 = 4;
const DIGIT_CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut c = 0usize;
    while c < 256 {
        let b = c as u8;
        t[c] = match b {
            b'0'..=b'9' => DC_DIGIT | DC_WORD,
            b'a'..=b'z' | b'A'..=b'Z' | b'_' => DC_WORD,
            b' ' | b'.' | b'-' | b'(' | b')' => DC_SEP,
            _ => 0,
        };
        c += 1;
    }
    t
};

/// A weaker but branch-free version of [`precheck_detail`]: per-class byte counts, summed
/// through one table lookup and one add per byte. Most strings stop here.
fn quick_mask(s: &[u8]) -> u16 {
    let len = s.len();
    if len < 10 {
        // Only an e-mail address fits in fewer than 10 bytes.
        return if s.contains(&b'@') { 1 << EMAIL } else { 0 };
    }
    if len > QUICK_MAX_LEN {
        return u16::MAX; // the packed counters could overflow
    }
    let counts = s
        .iter()
        .fold(0u128, |acc, &c| acc + QUICK_TABLE[usize::from(c)]);
    quick_from_counts(counts, len)
}

/// [`quick_mask`] from the packed per-class counts of a string of `len` (10 to
/// [`QUICK_MAX_LEN`]) bytes; for shorter strings only the e-mail bit can be set.
fn quick_from_counts(counts: u128, len: usize) -> u16 {
    let field = |f: u32| (counts >> (f * QUICK_FIELD_BITS)) & QUICK_FIELD_MASK;
    let has = |f: u32| field(f) != 0;
    if len < 10 {
        return if has(Q_AT) { 1 << EMAIL } else { 0 };
    }
    let (digits, dashes) = (field(Q_DIGIT), field(Q_DASH));
    // Fast exit for the common case: nothing that any pattern starts from.
    let mut triggers = (1 << (Q_AT * QUICK_FIELD_BITS))
        | (1 << (Q_COLON_EQ * QUICK_FIELD_BITS))
        | (1 << (Q_UPPER_K * QUICK_FIELD_BITS))
        | (1 << (Q_UPPER_J * QUICK_FIELD_BITS));
    if len >= 18 {
        triggers |= 1 << (Q_LOWER_K * QUICK_FIELD_BITS);
    }
    if len >= 27 {
        triggers |= 1 << (Q_B * QUICK_FIELD_BITS);
    }
    if len >= 49 {
        triggers |= 1 << (Q_W * QUICK_FIELD_BITS);
    }
    let any_trigger = counts & (triggers * QUICK_FIELD_MASK) != 0;
    if !any_trigger && digits < 9 && dashes < 10 {
        return 0;
    }
    let mut mask = 0u16;
    let mut set = |cond: bool, i: usize| {
        if cond {
            mask |= 1 << i;
        }
    };
    set(has(Q_AT), EMAIL);
    set(digits >= 9 && dashes >= 2, SSN);
    set(digits >= 16, CREDIT_CARD);
    set(digits >= 10, PHONE);
    set(has(Q_UPPER_K) && len >= 20, AWS_KEY);
    set(has(Q_W) && len >= 49, AWS_SECRET);
    set(has(Q_B) && len >= 27, OAUTH_TOKEN);
    set(
        has(Q_LOWER_K) && field(Q_UNDERSCORE) >= 2 && len >= 18,
        STRIPE_KEY,
    );
    set(has(Q_P) && has(Q_COLON_EQ), PASSWORD);
    set(has(Q_UPPER_J), JWT);
    set(dashes >= 10 && len >= 27, PRIVATE_KEY);
    set(has(Q_P) && has(Q_COLON_EQ) && len >= 27, API_KEY);
    mask
}

/// [`quick_mask`] packs one counter per byte class into a `u128`, 11 bits each.
const QUICK_FIELD_BITS: u32 = 11;
const QUICK_FIELD_MASK: u128 = (1 << QUICK_FIELD_BITS) - 1;
const QUICK_MAX_LEN: usize = (1 << QUICK_FIELD_BITS) - 1;
const Q_DIGIT: u32 = 0;
const Q_DASH: u32 = 1;
const Q_UNDERSCORE: u32 = 2;
const Q_AT: u32 = 3;
const Q_COLON_EQ: u32 = 4;
const Q_W: u32 = 5; // w W
const Q_B: u32 = 6; // b B
const Q_P: u32 = 7; // p P
const Q_UPPER_K: u32 = 8;
const Q_UPPER_J: u32 = 9;
const Q_LOWER_K: u32 = 10;

const QUICK_TABLE: [u128; 256] = {
    let mut t = [0u128; 256];
    let mut c = 0usize;
    while c < 256 {
        let b = c as u8;
        let field = match b {
            b'0'..=b'9' => Some(Q_DIGIT),
            b'-' => Some(Q_DASH),
            b'_' => Some(Q_UNDERSCORE),
            b'@' => Some(Q_AT),
            b':' | b'=' => Some(Q_COLON_EQ),
            b'w' | b'W' => Some(Q_W),
            b'b' | b'B' => Some(Q_B),
            b'p' | b'P' => Some(Q_P),
            b'K' => Some(Q_UPPER_K),
            b'J' => Some(Q_UPPER_J),
            b'k' => Some(Q_LOWER_K),
            _ => None,
        };
        if let Some(f) = field {
            t[c] = 1 << (f * QUICK_FIELD_BITS);
        }
        c += 1;
    }
    t
};

/// The single pass that computes the conditions documented on [`precheck`].
fn precheck_detail(s: &[u8]) -> u16 {
    let len = s.len();
    let (mut at, mut colon_eq, mut dash, mut dashdash) = (false, false, false, false);
    let (mut aw, mut be, mut pa, mut ap, mut ak, mut yj, mut k_) =
        (false, false, false, false, false, false, false);
    // Digit-run state.
    let (mut started, mut count, mut end_count, mut best) = (false, 0usize, 0usize, 0usize);
    let mut prev = 0u8; // the start of input behaves like a non-word byte
    for &c in s {
        match c {
            b'0'..=b'9' => {
                if !started && !is_word_byte(prev) {
                    started = true;
                }
                count += usize::from(started);
            }
            b'-' | b'.' | b' ' | b'(' | b')' => {
                if started && prev.is_ascii_digit() {
                    end_count = count;
                }
                if c == b'-' {
                    dash = true;
                    dashdash |= prev == b'-';
                }
            }
            _ => {
                if started {
                    if prev.is_ascii_digit() && !is_word_byte(c) {
                        end_count = count;
                    }
                    best = best.max(end_count);
                    started = false;
                    count = 0;
                    end_count = 0;
                }
                let p = prev | 0x20;
                match c {
                    b'@' => at = true,
                    b':' | b'=' => colon_eq = true,
                    b'w' | b'W' => {
                        aw |= p == b'a';
                        pa |= p == b'p';
                    }
                    b'a' | b'A' => pa |= p == b'p',
                    b'e' | b'E' => be |= p == b'b',
                    b'p' | b'P' => ap |= p == b'a',
                    b'K' => ak |= prev == b'A',
                    b'J' => yj |= prev == b'y',
                    b'_' => k_ |= prev == b'k',
                    _ => {}
                }
            }
        }
        prev = c;
    }
    if started && prev.is_ascii_digit() {
        end_count = count;
    }
    best = best.max(end_count);

    let mut mask = 0u16;
    let mut set = |cond: bool, i: usize| {
        if cond {
            mask |= 1 << i;
        }
    };
    set(at, EMAIL);
    set(best >= 9 && dash, SSN);
    set(best >= 16, CREDIT_CARD);
    set(best >= 10, PHONE);
    set(ak && len >= 20, AWS_KEY);
    set(aw && len >= 49, AWS_SECRET);
    set(be && len >= 27, OAUTH_TOKEN);
    set(k_ && len >= 18, STRIPE_KEY);
    set(pa && colon_eq && len >= 10, PASSWORD);
    set(yj && len >= 11, JWT);
    set(dashdash && len >= 27, PRIVATE_KEY);
    set(ap && colon_eq && len >= 27, API_KEY);
    mask
}

/// A JSON number is a card number when it is an integer of 13–19 digits, starting with 2–6,
/// that passes the Luhn check.
fn is_card_number(n: &Number) -> bool {
    let v = if let Some(u) = n.as_u64() {
        u
    } else if let Some(i) = n.as_i64() {
        i.unsigned_abs()
    } else if let Some(f) = n.as_f64() {
        if f.is_finite() && f.fract() == 0.0 && f.abs() < 1e19 {
            // Exact for the integral values in range; `as` saturates, never panics.
            f.abs() as u64
        } else {
            return false;
        }
    } else {
        return false;
    };
    luhn_card(v)
}

fn luhn_card(v: u64) -> bool {
    if !(1_000_000_000_000..10_000_000_000_000_000_000).contains(&v) {
        return false; // not 13-19 digits
    }
    let mut digits = [0u8; 20];
    let mut n = 0usize;
    let mut rest = v;
    while rest > 0 && n < digits.len() {
        if let Some(d) = digits.get_mut(n) {
            *d = (rest % 10) as u8;
        }
        rest /= 10;
        n += 1;
    }
    if !(13..=19).contains(&n) {
        return false;
    }
    // digits[0] is the least significant; the leading digit is digits[n-1].
    if !digits.get(n - 1).is_some_and(|d| (2..=6).contains(d)) {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .take(n)
        .enumerate()
        .map(|(i, &d)| {
            let d = u32::from(d);
            if i % 2 == 1 {
                let x = d * 2;
                if x > 9 {
                    x - 9
                } else {
                    x
                }
            } else {
                d
            }
        })
        .sum();
    sum % 10 == 0
}

fn is_sensitive_header(name: &str) -> bool {
    SENSITIVE_HEADERS.iter().any(|h| {
        h.len() == name.len()
            && h.bytes().zip(name.bytes()).all(|(a, b)| {
                let b = if b == b'_' {
                    b'-'
                } else {
                    b.to_ascii_lowercase()
                };
                a == b
            })
    })
}

/// Compiled custom patterns of one scrubber.
#[derive(Debug, Clone)]
struct Custom {
    set: RegexSet,
    names: Vec<String>,
    markers: Vec<String>,
}

impl Custom {
    fn first_match(&self, s: &str) -> Option<usize> {
        // `is_match` stops early and skips the overlapping search most strings don't need.
        if !self.set.is_match(s) {
            return None;
        }
        self.set.matches(s).iter().next()
    }
}

static ENGINE: OnceLock<Result<Engine, String>> = OnceLock::new();
static BUILTIN: OnceLock<Scrubber> = OnceLock::new();

fn engine() -> Result<&'static Engine, &'static str> {
    ENGINE
        .get_or_init(|| Engine::compile().map_err(|e| e.to_string()))
        .as_ref()
        .map_err(String::as_str)
}

/// The PII scrubber: built-in patterns (compiled once per process) plus optional custom
/// patterns. Cheap to share (`Send + Sync`); build one per custom-pattern set and reuse it.
#[derive(Debug, Clone)]
pub struct Scrubber {
    /// `None` only if the built-ins failed to compile; the scrubber then fails closed.
    engine: Option<&'static Engine>,
    custom: Option<Custom>,
}

impl Scrubber {
    /// The 13 built-in patterns, compiled once per process.
    pub fn builtin() -> &'static Scrubber {
        BUILTIN.get_or_init(|| Scrubber {
            engine: engine().ok(),
            custom: None,
        })
    }

    /// Built-ins plus `custom` patterns, which are tried after the built-ins in the given
    /// order. Rejects more than [`MAX_CUSTOM_PATTERNS`] patterns, names that cannot be used in
    /// a marker, and patterns that are longer than [`MAX_CUSTOM_PATTERN_LEN`], do not compile,
    /// compile too large, or match the empty string.
    pub fn with_custom(custom: &[CustomPattern]) -> Result<Scrubber, PiiError> {
        let engine = engine().map_err(|m| PiiError::BuiltinUnavailable(m.to_owned()))?;
        if custom.len() > MAX_CUSTOM_PATTERNS {
            return Err(PiiError::TooManyPatterns {
                count: custom.len(),
                max: MAX_CUSTOM_PATTERNS,
            });
        }
        for p in custom {
            validate_custom(engine, p)?;
        }
        let compiled = if custom.is_empty() {
            None
        } else {
            let set = RegexSetBuilder::new(custom.iter().map(|p| p.pattern.as_str()))
                .size_limit(CUSTOM_REGEX_SIZE_LIMIT.saturating_mul(custom.len()))
                .build()
                .map_err(|e| PiiError::InvalidPattern {
                    name: custom
                        .iter()
                        .map(|p| p.name.as_str())
                        .collect::<Vec<_>>()
                        .join(","),
                    message: e.to_string(),
                })?;
            Some(Custom {
                set,
                names: custom.iter().map(|p| p.name.clone()).collect(),
                markers: custom
                    .iter()
                    .map(|p| format!("[REDACTED:{}]", p.name))
                    .collect(),
            })
        };
        Ok(Scrubber {
            engine: Some(engine),
            custom: compiled,
        })
    }

    /// Scrubs `value` in place, recursively (see the module docs for the rules) and returns
    /// one flag per redaction, in document order. `path` names the root in the flags'
    /// `variable` (`""` for none: then a root object's keys start the paths).
    pub fn scrub_value(&self, value: &mut Value, path: &str) -> Vec<SecurityFlag> {
        let mut walk = Walk::new(self, path, false);
        walk.value(value, 0, false);
        walk.flags
    }

    /// Scrubs a snapshot's `variables` object: each top-level key is the root of its path.
    pub fn scrub_variables(&self, vars: &mut Value) -> Vec<SecurityFlag> {
        self.scrub_value(vars, "")
    }

    /// Scrubs a snapshot's `request_context`: the [`SENSITIVE_HEADERS`] of any object under a
    /// `headers` key (case-insensitive, at any depth) become `"[REDACTED]"` (flag type
    /// `sensitive_variable_name`, category `header`), and everything else (query parameters,
    /// URL, nested headers' other values …) is scrubbed like [`Scrubber::scrub_value`]. Flag
    /// paths start with `request_context`, e.g. `request_context.headers.Authorization`.
    pub fn scrub_request_context(&self, ctx: &mut Value) -> Vec<SecurityFlag> {
        let mut walk = Walk::new(self, "request_context", true);
        walk.value(ctx, 0, false);
        walk.flags
    }

    /// The rule that redacts the string `s`, if any.
    fn string_hit(&self, s: &str) -> Option<Hit> {
        if self.is_settled_str(s) {
            return None;
        }
        let Some(engine) = self.engine else {
            return Some(Hit::Unavailable);
        };
        if let Some(i) = engine.first_match(s) {
            return Some(Hit::Builtin(i));
        }
        self.custom
            .as_ref()
            .and_then(|c| c.first_match(s))
            .map(Hit::Custom)
    }

    /// For an object key, in one pass over its bytes: the rule that redacts the key itself
    /// (as [`Scrubber::string_hit`]) and whether its name matches rule 13.
    fn key_scan(&self, key: &str) -> (Option<Hit>, bool) {
        let Some(engine) = self.engine else {
            return (self.string_hit(key), ascii_sensitive_name(key.as_bytes()));
        };
        let bytes = key.as_bytes();
        let (sensitive, maybe_hit) = match short_ascii_scan(bytes) {
            Some((letters, has_at)) => {
                let maybe_hit = match bytes.len() {
                    0..=5 => false,
                    6..=9 => has_at, // only an e-mail address fits
                    _ => quick_mask(bytes) != 0,
                };
                (sensitive_name_in(bytes, letters), maybe_hit)
            }
            None => (engine.is_sensitive_name(key), precheck(bytes) != 0),
        };
        let hit = if maybe_hit || self.custom.is_some() {
            self.string_hit(key)
        } else {
            None
        };
        (hit, sensitive)
    }

    /// The rule that redacts the number `n`, if any.
    fn number_hit(&self, n: &Number) -> Option<Hit> {
        if self.engine.is_none() {
            return Some(Hit::Unavailable);
        }
        if is_card_number(n) {
            return Some(Hit::Builtin(CREDIT_CARD));
        }
        let custom = self.custom.as_ref()?;
        custom.first_match(&n.to_string()).map(Hit::Custom)
    }

    /// A marker we trust (its name carries no PII) or the depth marker.
    fn is_settled_str(&self, s: &str) -> bool {
        if s.as_bytes().first() != Some(&b'[') {
            return false;
        }
        if s == REDACTED || s == DEPTH_MARKER {
            return true;
        }
        match (marker_name(s), self.engine) {
            (Some(name), Some(engine)) => engine.first_match(name).is_none(),
            _ => false,
        }
    }

    /// Null or a trusted marker: nothing to redact.
    fn is_settled(&self, v: &Value) -> bool {
        match v {
            Value::Null => true,
            Value::String(s) => self.is_settled_str(s),
            _ => false,
        }
    }

    fn is_sensitive_name(&self, name: &str) -> bool {
        match self.engine {
            Some(engine) => engine.is_sensitive_name(name),
            None => ascii_sensitive_name(name.as_bytes()),
        }
    }

    fn marker(&self, hit: Hit) -> &str {
        match hit {
            Hit::Builtin(i) => BUILTIN_PATTERNS.get(i).map_or(REDACTED, |p| p.marker),
            Hit::Custom(i) => self
                .custom
                .as_ref()
                .and_then(|c| c.markers.get(i))
                .map_or(REDACTED, String::as_str),
            Hit::Unavailable => REDACTED,
        }
    }
}

fn validate_custom(engine: &Engine, p: &CustomPattern) -> Result<(), PiiError> {
    let bad_name = |message: &str| PiiError::InvalidName {
        name: p.name.clone(),
        message: message.to_owned(),
    };
    if p.name.is_empty() {
        return Err(bad_name("empty"));
    }
    if p.name.len() > MAX_CUSTOM_NAME_LEN {
        return Err(bad_name("longer than 64 bytes"));
    }
    if p.name
        .chars()
        .any(|c| c == '[' || c == ']' || c.is_control())
    {
        return Err(bad_name("contains '[', ']' or a control character"));
    }
    if engine.first_match(&p.name).is_some() {
        return Err(bad_name("matches a built-in PII pattern"));
    }
    let bad_pattern = |message: String| PiiError::InvalidPattern {
        name: p.name.clone(),
        message,
    };
    if p.pattern.len() > MAX_CUSTOM_PATTERN_LEN {
        return Err(bad_pattern(format!(
            "longer than {MAX_CUSTOM_PATTERN_LEN} bytes"
        )));
    }
    let re = RegexBuilder::new(&p.pattern)
        .size_limit(CUSTOM_REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| bad_pattern(e.to_string()))?;
    if re.is_match("") {
        return Err(bad_pattern(
            "matches the empty string (it would redact everything)".to_owned(),
        ));
    }
    Ok(())
}

/// The key of an object member as the walk sees it.
struct MemberKey<'k> {
    /// The key in the output (a marker when the key itself carried PII).
    out: &'k str,
    /// The key as it arrived.
    orig: &'k str,
    /// Why the key was renamed.
    hit: Option<Hit>,
    /// Whether rule 13 applies to the member's value.
    sensitive: bool,
}

impl<'k> MemberKey<'k> {
    fn plain(key: &'k str, sensitive: bool) -> Self {
        MemberKey {
            out: key,
            orig: key,
            hit: None,
            sensitive,
        }
    }
}

/// One scrubbing traversal.
struct Walk<'s> {
    sc: &'s Scrubber,
    /// Current location; segments are pushed and truncated as the walk descends.
    path: String,
    /// Redact sensitive headers under `headers` objects.
    request: bool,
    flags: Vec<SecurityFlag>,
}

impl<'s> Walk<'s> {
    fn new(sc: &'s Scrubber, root: &str, request: bool) -> Self {
        let mut path = String::with_capacity(64);
        path.push_str(root);
        Walk {
            sc,
            path,
            request,
            flags: Vec::new(),
        }
    }

    fn flag(&mut self, r#type: &str, category: &str, severity: &str) {
        self.flags.push(SecurityFlag {
            r#type: r#type.to_owned(),
            category: category.to_owned(),
            severity: severity.to_owned(),
            variable: self.path.clone(),
            redacted: true,
        });
    }

    fn flag_hit(&mut self, hit: Hit) {
        match hit {
            Hit::Builtin(i) => {
                let (name, severity) = BUILTIN_PATTERNS
                    .get(i)
                    .map_or(("unknown", "high"), |p| (p.name, p.severity));
                self.flag("sensitive_data", name, severity);
            }
            Hit::Custom(i) => {
                let sc = self.sc;
                let name = sc
                    .custom
                    .as_ref()
                    .and_then(|c| c.names.get(i))
                    .map_or("custom", String::as_str);
                self.flag("custom", name, "high");
            }
            Hit::Unavailable => self.flag("sensitive_data", "unknown", "high"),
        }
    }

    fn push_key(&mut self, key: &str) {
        if !self.path.is_empty() {
            self.path.push('.');
        }
        self.path.push_str(key);
    }

    fn push_index(&mut self, i: usize) {
        let mut buf = [0u8; 20];
        let mut pos = buf.len();
        let mut n = i;
        loop {
            pos -= 1;
            if let Some(d) = buf.get_mut(pos) {
                *d = b'0' + (n % 10) as u8;
            }
            n /= 10;
            if n == 0 || pos == 0 {
                break;
            }
        }
        self.path.push('[');
        for &d in buf.get(pos..).unwrap_or(&[]) {
            self.path.push(char::from(d));
        }
        self.path.push(']');
    }

    fn value(&mut self, v: &mut Value, depth: usize, in_headers: bool) {
        let sc = self.sc;
        match v {
            Value::String(s) => {
                if let Some(hit) = sc.string_hit(s) {
                    let marker = sc.marker(hit);
                    if s.capacity() <= 256 {
                        s.clear(); // reuse the buffer
                        s.push_str(marker);
                    } else {
                        *s = marker.to_owned();
                    }
                    self.flag_hit(hit);
                }
            }
            Value::Number(n) => {
                if let Some(hit) = sc.number_hit(n) {
                    *v = Value::String(sc.marker(hit).to_owned());
                    self.flag_hit(hit);
                }
            }
            Value::Array(items) => {
                if depth >= MAX_DEPTH {
                    *v = Value::String(DEPTH_MARKER.to_owned());
                    return;
                }
                for (i, item) in items.iter_mut().enumerate() {
                    let mark = self.path.len();
                    self.push_index(i);
                    self.value(item, depth + 1, in_headers);
                    self.path.truncate(mark);
                }
            }
            Value::Object(map) => {
                if depth >= MAX_DEPTH {
                    *v = Value::String(DEPTH_MARKER.to_owned());
                    return;
                }
                self.object(map, depth, in_headers);
            }
            Value::Null | Value::Bool(_) => {}
        }
    }

    fn object(&mut self, map: &mut Map<String, Value>, depth: usize, in_headers: bool) {
        let sc = self.sc;
        // Common case: entries are scrubbed in place until a key that itself carries PII
        // shows up (usually never).
        let mut renamed_from = None;
        for (i, (key, child)) in map.iter_mut().enumerate() {
            let (hit, sensitive) = sc.key_scan(key);
            if hit.is_some() {
                renamed_from = Some(i);
                break;
            }
            self.entry(MemberKey::plain(key, sensitive), child, depth, in_headers);
        }
        let Some(start) = renamed_from else {
            return;
        };
        // Rare: rebuild the map from `start` on with those keys renamed to unique markers,
        // keeping the order. Entries before `start` are already done.
        let entries: Vec<(String, Value)> = std::mem::take(map).into_iter().collect();
        let scans: Vec<(Option<Hit>, bool)> = entries
            .iter()
            .enumerate()
            .map(|(i, (k, _))| {
                if i < start {
                    (None, false)
                } else {
                    sc.key_scan(k)
                }
            })
            .collect();
        let kept: HashSet<String> = entries
            .iter()
            .zip(&scans)
            .filter(|(_, (h, _))| h.is_none())
            .map(|((k, _), _)| k.clone())
            .collect();
        for (i, ((key, mut child), (hit, sensitive))) in entries.into_iter().zip(scans).enumerate()
        {
            if i < start {
                map.insert(key, child);
                continue;
            }
            let Some(h) = hit else {
                self.entry(
                    MemberKey::plain(&key, sensitive),
                    &mut child,
                    depth,
                    in_headers,
                );
                map.insert(key, child);
                continue;
            };
            let marker = sc.marker(h);
            let base = marker.strip_suffix(']').unwrap_or(marker);
            let mut out_key = marker.to_owned();
            let mut n = 2usize;
            while kept.contains(&out_key) || map.contains_key(&out_key) {
                out_key = format!("{base}#{n}]");
                n += 1;
            }
            // Also name-sensitive when the marker's name is (e.g. `[REDACTED:api_key]`),
            // so that a second pass over the output has nothing left to do.
            let sensitive = sensitive || sc.is_sensitive_name(&out_key);
            let member = MemberKey {
                out: &out_key,
                orig: &key,
                hit,
                sensitive,
            };
            self.entry(member, &mut child, depth, in_headers);
            map.insert(out_key, child);
        }
    }

    /// One object member, `child` being the value under `key`.
    fn entry(&mut self, key: MemberKey<'_>, child: &mut Value, depth: usize, in_headers: bool) {
        let MemberKey {
            out: out_key,
            orig: orig_key,
            hit: key_hit,
            sensitive: sensitive_name,
        } = key;
        let sc = self.sc;
        let mark = self.path.len();
        self.push_key(out_key);
        if let Some(h) = key_hit {
            self.flag_hit(h);
        }
        if in_headers && is_sensitive_header(orig_key) {
            if !sc.is_settled(child) {
                *child = Value::String(REDACTED.to_owned());
                self.flag("sensitive_variable_name", "header", "high");
            }
        } else if sensitive_name {
            if !sc.is_settled(child) {
                *child = Value::String(SENSITIVE_NAME_MARKER.to_owned());
                self.flag("sensitive_variable_name", "name", "medium");
            }
        } else {
            let under_headers =
                in_headers || (self.request && orig_key.eq_ignore_ascii_case("headers"));
            self.value(child, depth + 1, under_headers);
        }
        self.path.truncate(mark);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    /// Deterministic pseudo-random strings built from pieces rich in pattern characters.
    fn strings_from(alphabet: &[&str], count: usize, max_len: u64, seed: u64) -> Vec<String> {
        let mut seed = seed;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        (0..count)
            .map(|_| {
                let len = (next() % max_len) as usize;
                (0..len)
                    .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                    .collect()
            })
            .collect()
    }

    fn strings(count: usize) -> Vec<String> {
        const MIXED: &[&str] = &[
            "0",
            "1",
            "5",
            "9",
            "4",
            "-",
            ".",
            " ",
            "(",
            ")",
            "@",
            "a",
            "Z",
            "_",
            ":",
            "=",
            "k",
            "K",
            "A",
            "y",
            "J",
            "e",
            "b",
            "p",
            "w",
            "s",
            "\"",
            "é",
            "\n",
            "AKIA",
            "eyJ",
            "sk_live_",
            "-----BEGIN ",
            "PRIVATE KEY-----",
            "bearer ",
            "password",
            "pwd",
            "api_key",
            "aws",
            "secret",
            ".com",
            "x@y",
            "555",
            "1234",
            "4111",
            "2026-",
            "AbCdEfGhIj",
            "eyJhbGciOi.",
            "/",
            "+",
            "ſ",
            "\u{212a}",
            "Bearer\t",
        ];
        const DIGITS: &[&str] = &[
            "0", "1", "2", "5", "9", "12", "123", "45", "4567", "6789", "-", "-", ".", " ", "(",
            ")", "a", "_", "T", ":", "é", "+",
        ];
        let mut all = strings_from(MIXED, count, 40, 0x2545_f491_4f6c_dd1d);
        all.extend(strings_from(DIGITS, count, 30, 0x9e37_79b9_7f4a_7c15));
        all
    }

    #[test]
    fn builtins_compile() {
        assert!(engine().is_ok());
    }

    /// The precheck must never hide a match: with it, the first match equals the plain
    /// RegexSet's first match (phone filter applied to both).
    #[test]
    fn precheck_is_sound() {
        let e = engine().unwrap();
        let mut seen = [0usize; 12];
        for s in strings(150_000) {
            let fast = e.first_match(&s);
            let slow = e
                .set
                .matches(&s)
                .iter()
                .find(|&i| i != PHONE || e.plausible_phone_in(&s));
            assert_eq!(fast, slow, "{s:?}");
            for i in e.set.matches(&s).iter() {
                seen[i] += 1;
            }
        }
        assert!(seen.iter().all(|&n| n > 0), "{seen:?}");
    }

    #[test]
    fn ascii_name_rule_equals_regex() {
        let e = engine().unwrap();
        let mut names: Vec<String> = strings(50_000);
        names.extend(
            [
                "user_token",
                "api_key",
                "apiKey",
                "password",
                "db.password",
                "monkey",
                "keyboard",
                "userToken",
                "tokens",
                "KEY",
                "x-api-key",
                "credential1",
                "pwd",
                "passwd",
                "secretary",
                "my-secret",
                "API_KEY",
                "apikeys",
                "",
            ]
            .map(String::from),
        );
        for n in names.iter().filter(|n| n.is_ascii()) {
            assert_eq!(
                ascii_sensitive_name(n.as_bytes()),
                e.name.is_match(n),
                "{n:?}"
            );
        }
    }

    #[test]
    fn short_ascii_scan_matches_byte_loop() {
        let mut all = strings(20_000);
        all.extend(
            [
                "",
                "a",
                "@",
                "abcdefgh",
                "abcdefghi",
                "AZaz@[`{",
                &"k".repeat(64),
                &"k".repeat(65),
            ]
            .map(String::from),
        );
        for s in all {
            let b = s.as_bytes();
            match short_ascii_scan(b) {
                Some((letters, at)) => {
                    assert!(s.is_ascii() && b.len() <= 64, "{s:?}");
                    for (i, c) in b.iter().enumerate() {
                        assert_eq!(letters >> i & 1 == 1, c.is_ascii_alphabetic(), "{s:?} {i}");
                    }
                    assert_eq!(letters >> b.len().min(63) >> 1, 0);
                    assert_eq!(at, b.contains(&b'@'), "{s:?}");
                    assert_eq!(
                        sensitive_name_in(b, letters),
                        ascii_sensitive_name(b),
                        "{s:?}"
                    );
                }
                None => assert!(!s.is_ascii() || b.len() > 64, "{s:?}"),
            }
        }
    }

    #[test]
    fn luhn() {
        assert!(luhn_card(4_111_111_111_111_111));
        assert!(luhn_card(378_282_246_310_005));
        assert!(!luhn_card(4_111_111_111_111_112));
        assert!(!luhn_card(1_732_280_000_000_000));
        assert!(!luhn_card(0));
        assert!(!luhn_card(u64::MAX));
    }
}
