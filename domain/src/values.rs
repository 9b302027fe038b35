//! Value types that cannot be built invalid: parse, don't validate.
use serde::{Deserialize, Serialize};
use std::fmt;

use crate::{CompanyId, PhotoId};

/// Why a raw value was refused; the message is written for an API client.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidValue(pub String);

fn invalid(message: impl Into<String>) -> InvalidValue {
    InvalidValue(message.into())
}

// Each parser below publishes the syntax it accepts as a `PATTERN` (an
// ECMA-262 regular expression, which is also valid for Rust's `regex` and
// Python's `re`) plus a length limit on the raw text, so the OpenAPI document
// states exactly what the server accepts. Unit tests and the `values` fuzz
// target check that pattern and parser agree.

/// What `str::trim` removes (Unicode `White_Space`).
macro_rules! ws {
    () => {
        r"\t\n\u000b\u000c\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
    };
}
/// What `char::is_control` refuses (Unicode `Cc`).
macro_rules! cc {
    () => {
        r"\u0000-\u001f\u007f-\u009f"
    };
}

/// What notes may hold beyond [`TEXT_PATTERN`]: tabs and line breaks.
macro_rules! cc_but_lines {
    () => {
        r"\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f"
    };
}

/// Not blank; once trimmed, no control characters at either end and none of
/// `$inner` within.
macro_rules! text_pattern {
    ($($inner:tt)*) => {
        concat!(
            "^[", ws!(), "]*[^", ws!(), cc!(), "]([^", $($inner)*, "]*[^", ws!(), cc!(), "])?[",
            ws!(), "]*$"
        )
    };
}

/// Text that is not blank and, once trimmed, holds no control characters.
pub const TEXT_PATTERN: &str = text_pattern!(cc!());

/// [`TEXT_PATTERN`] that also lets tabs and line breaks (LF, CR) through
/// inside the text, for multi-line notes.
pub const MULTILINE_TEXT_PATTERN: &str = text_pattern!(cc_but_lines!());

/// Trims, refuses blank text, control characters and text over `max`
/// characters. The limit applies to the text as sent, before trimming.
fn bounded_text(raw: &str, max: usize) -> Result<String, InvalidValue> {
    bounded(raw, max, |c| c.is_control())
}

/// [`bounded_text`] that keeps tabs and line breaks.
fn bounded_multiline_text(raw: &str, max: usize) -> Result<String, InvalidValue> {
    bounded(raw, max, |c| {
        c.is_control() && !matches!(c, '\t' | '\n' | '\r')
    })
}

fn bounded(raw: &str, max: usize, refused: fn(char) -> bool) -> Result<String, InvalidValue> {
    if raw.chars().count() > max {
        return Err(invalid(format!("must be at most {max} characters")));
    }
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Err(invalid("must not be empty"));
    }
    if trimmed.chars().any(refused) {
        return Err(invalid("must not contain control characters"));
    }
    Ok(trimmed.to_owned())
}

macro_rules! text_value {
    ($(#[$doc:meta])* $name:ident, $max:expr) => {
        text_value!($(#[$doc])* $name, $max, TEXT_PATTERN, bounded_text);
    };
    ($(#[$doc:meta])* $name:ident, $max:expr, $pattern:expr, $parser:expr) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub const MAX_CHARS: usize = $max;
            /// The syntax [`Self::parse`] accepts (with at most `MAX_CHARS` characters).
            pub const PATTERN: &str = $pattern;

            pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
                $parser(raw, $max).map(Self)
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

text_value!(
    /// A first name or a surname: non-blank, at most 200 characters.
    PersonName,
    200
);
text_value!(
    /// A company's name: non-blank, at most 200 characters.
    CompanyName,
    200
);
text_value!(
    /// A job title: non-blank, at most 200 characters.
    Title,
    200
);
text_value!(
    /// A customer's key in another system (an ERP's or an old CRM's id):
    /// non-blank, at most 200 characters, compared exactly.
    ExternalId,
    200
);
text_value!(
    /// Free text about a customer, lines and tabs included: at most
    /// 10,000 characters.
    Notes,
    10_000,
    MULTILINE_TEXT_PATTERN,
    bounded_multiline_text
);

/// An email address as its owner wrote it; compared by [`Email::normalized`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Email(String);

impl Email {
    /// The most characters an address may have, as sent.
    pub const MAX_CHARS: usize = 254;
    /// The syntax [`Self::parse`] accepts (with at most `MAX_CHARS` characters):
    /// a local part of 1 to 64 characters without `@`, whitespace or control
    /// characters, and a dotted ASCII domain (internationalized domains in
    /// their punycode form).
    pub const PATTERN: &str = concat!(
        "^[",
        ws!(),
        "]*[^@",
        ws!(),
        cc!(),
        "]{1,64}@[A-Za-z0-9-]+(\\.[A-Za-z0-9-]+)+[",
        ws!(),
        "]*$"
    );

    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        if raw.chars().count() > Self::MAX_CHARS {
            return Err(invalid("must be at most 254 characters"));
        }
        let email = raw.trim();
        if email.is_empty() {
            return Err(invalid("must not be empty"));
        }
        let (local, domain) = email
            .rsplit_once('@')
            .ok_or_else(|| invalid("must be an email address like name@example.com"))?;
        let domain_ok = !domain.is_empty()
            && domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !domain.contains("..")
            && domain
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
        let local_ok = !local.is_empty()
            && local.chars().count() <= 64
            && !local.contains('@')
            && !local.chars().any(|c| c.is_whitespace() || c.is_control());
        if !domain_ok || !local_ok {
            return Err(invalid("must be an email address like name@example.com"));
        }
        Ok(Self(email.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key that makes emails unique, case-insensitively.
    pub fn normalized(&self) -> String {
        self.0.to_lowercase()
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A phone number: digits with the usual separators, 3 to 32 characters.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Phone(String);

impl Phone {
    /// The most characters a number may have, as sent.
    pub const MAX_CHARS: usize = 32;
    /// The syntax [`Self::parse`] accepts (with at most `MAX_CHARS` characters).
    pub const PATTERN: &str = concat!(
        "^[",
        ws!(),
        "]*([0-9 +().-]*[0-9]){3}[0-9 +().-]*[",
        ws!(),
        "]*$"
    );

    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let phone = raw.trim();
        let allowed = |c: char| c.is_ascii_digit() || " +-().".contains(c);
        let digits = phone.chars().filter(char::is_ascii_digit).count();
        if raw.chars().count() > Self::MAX_CHARS || digits < 3 || !phone.chars().all(allowed) {
            return Err(invalid(
                "must be a phone number: digits, spaces and + - ( ) . only",
            ));
        }
        Ok(Self(phone.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What a user may do in its company.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    User,
}

impl Role {
    pub fn as_str(&self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::User => "user",
        }
    }

    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        match raw {
            "admin" => Ok(Role::Admin),
            "user" => Ok(Role::User),
            _ => Err(invalid("must be \"admin\" or \"user\"")),
        }
    }
}

/// A slow salted password hash (PHC string). The domain never sees a password.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PasswordHash(String);

impl PasswordHash {
    pub fn from_phc(phc: String) -> Result<Self, InvalidValue> {
        if phc.starts_with('$') && phc.len() > 20 {
            Ok(Self(phc))
        } else {
            Err(invalid("is not a password hash"))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PasswordHash(..)")
    }
}

/// The image formats we accept, judged from their first bytes only.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ImageType {
    #[serde(rename = "image/jpeg")]
    Jpeg,
    #[serde(rename = "image/png")]
    Png,
    #[serde(rename = "image/webp")]
    Webp,
    #[serde(rename = "image/gif")]
    Gif,
}

impl ImageType {
    /// How many leading bytes [`ImageType::sniff`] needs.
    pub const SNIFF_LEN: usize = 12;

    /// Recognizes the image type from its magic bytes; the file name and the
    /// declared type are never trusted.
    pub fn sniff(head: &[u8]) -> Option<Self> {
        match head {
            [0xFF, 0xD8, 0xFF, ..] => Some(Self::Jpeg),
            [0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, ..] => Some(Self::Png),
            [b'G', b'I', b'F', b'8', b'7' | b'9', b'a', ..] => Some(Self::Gif),
            [b'R', b'I', b'F', b'F', _, _, _, _, b'W', b'E', b'B', b'P', ..] => Some(Self::Webp),
            _ => None,
        }
    }

    pub fn mime(&self) -> &'static str {
        match self {
            Self::Jpeg => "image/jpeg",
            Self::Png => "image/png",
            Self::Webp => "image/webp",
            Self::Gif => "image/gif",
        }
    }
}

/// Hex sha256 of a photo's bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Sha256Hex(String);

impl Sha256Hex {
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        if raw.len() == 64 && raw.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ok(Self(raw.to_ascii_lowercase()))
        } else {
            Err(invalid("must be 64 hex digits"))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Where a photo's bytes live in the object store: built from ids only, so no
/// user-supplied text ever reaches a key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ObjectKey(String);

impl ObjectKey {
    pub fn for_photo(company: CompanyId, photo: PhotoId) -> Self {
        Self(format!("{company}/{photo}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A change to an optional field: set it to a value, or clear it (`null`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldChange<T> {
    Set(T),
    Cleared,
}

impl<T> FieldChange<T> {
    pub fn into_option(self) -> Option<T> {
        match self {
            FieldChange::Set(value) => Some(value),
            FieldChange::Cleared => None,
        }
    }
}

/// Lower-cases, strips accents and splits into words: the search key the read
/// side stores, computed here so that both SQL dialects compare plain text.
pub fn search_words(text: &str) -> Vec<String> {
    fold_text(text)
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Folds one piece of text the way [`search_words`] does, keeping punctuation
/// (used for whole-email prefixes and sort keys). Lower-cases first, then
/// decomposes and drops the marks, so that marks a lower-case mapping adds
/// (`İ` lower-cases to `i` + U+0307) go too: folding folded text changes
/// nothing, and a folded word is found by itself.
pub fn fold_text(text: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    // ASCII has no marks and decomposes to itself: only the case goes.
    if text.is_ascii() {
        return text.to_ascii_lowercase();
    }
    text.chars()
        .flat_map(char::to_lowercase)
        .nfd()
        .filter(|c| !unicode_normalization::char::is_combining_mark(*c))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn person_name_is_trimmed_and_bounded() {
        assert_eq!(PersonName::parse("  Ada ").unwrap().as_str(), "Ada");
        assert!(PersonName::parse("   ").is_err());
        assert!(PersonName::parse(&"x".repeat(201)).is_err());
        assert!(PersonName::parse(&"é".repeat(200)).is_ok());
    }

    #[test]
    fn email_compares_case_insensitively() {
        let a = Email::parse("Ada@Example.com").unwrap();
        let b = Email::parse("ada@example.COM").unwrap();
        assert_eq!(a.normalized(), b.normalized());
        assert!(Email::parse("not-an-email").is_err());
        assert!(Email::parse("a@b").is_err());
        assert!(Email::parse("a b@c.com").is_err());
    }

    #[test]
    fn phone_accepts_separators_only() {
        assert!(Phone::parse("+34 (91) 123-45.67").is_ok());
        assert!(Phone::parse("call me").is_err());
        assert!(Phone::parse("12").is_err());
    }

    #[test]
    fn images_are_judged_by_their_bytes() {
        assert_eq!(
            ImageType::sniff(&[0xFF, 0xD8, 0xFF, 0xE0]),
            Some(ImageType::Jpeg)
        );
        assert_eq!(
            ImageType::sniff(b"\x89PNG\r\n\x1a\n...."),
            Some(ImageType::Png)
        );
        assert_eq!(ImageType::sniff(b"GIF89a"), Some(ImageType::Gif));
        assert_eq!(
            ImageType::sniff(b"RIFF\0\0\0\0WEBPVP8 "),
            Some(ImageType::Webp)
        );
        assert_eq!(ImageType::sniff(b"hello, I am text"), None);
        assert_eq!(ImageType::sniff(b""), None);
    }

    #[test]
    fn search_words_fold_case_and_accents() {
        assert_eq!(
            search_words("José Álvarez-Núñez jose.alvarez@Example.com"),
            vec!["jose", "alvarez", "nunez", "jose", "alvarez", "example", "com"]
        );
    }

    /// Tricky inputs for the pattern/parser agreement checks.
    const SAMPLES: &[&str] = &[
        "",
        " ",
        "\t",
        "\u{3000}",
        "\u{feff}",
        "Ada",
        "  Ada ",
        "\u{3000}Ada\u{a0}",
        "\nAda\n",
        "\tAda",
        "Ada\u{0}",
        "A\u{85}da",
        "\u{85}Ada\u{85}",
        "A\u{7f}",
        "a b",
        "line one\nline two",
        "a\r\nb\tc",
        "a\u{b}b",
        "a\u{1b}b",
        "a\u{2028}b",
        "\u{2028}",
        "x@y.z",
        " ada@example.com\t",
        "ada@example",
        "ada@.example.com",
        "ada@example..com",
        "ada@example.com.",
        "ada@exämple.com",
        "a@b@example.com",
        "a b@example.com",
        "a\u{a0}b@example.com",
        "@example.com",
        "josé@example.com",
        "a@-.-",
        "+34 (91) 123-45.67",
        " 123 ",
        "12",
        "1 2 3",
        "123\u{3000}",
        "\u{3000}123",
        "12\t3",
        "(((123)))",
    ];

    fn agrees(pattern: &str, max: usize, parse: impl Fn(&str) -> bool, what: &str) {
        let regex = regex::Regex::new(pattern).expect("the pattern compiles");
        let long = [
            "x".repeat(max),
            "x".repeat(max + 1),
            format!(" {}", "x".repeat(max)),
        ];
        let samples = SAMPLES.iter().map(|s| s.to_string()).chain(long);
        for sample in samples {
            let by_pattern = regex.is_match(&sample) && sample.chars().count() <= max;
            assert_eq!(
                by_pattern,
                parse(&sample),
                "{what}: pattern and parser disagree on {sample:?}"
            );
        }
    }

    #[test]
    fn published_patterns_match_the_parsers() {
        agrees(
            PersonName::PATTERN,
            PersonName::MAX_CHARS,
            |s| PersonName::parse(s).is_ok(),
            "name",
        );
        agrees(
            Notes::PATTERN,
            Notes::MAX_CHARS,
            |s| Notes::parse(s).is_ok(),
            "notes",
        );
        agrees(
            Email::PATTERN,
            Email::MAX_CHARS,
            |s| Email::parse(s).is_ok(),
            "email",
        );
        agrees(
            Phone::PATTERN,
            Phone::MAX_CHARS,
            |s| Phone::parse(s).is_ok(),
            "phone",
        );
    }

    #[test]
    fn length_limits_apply_to_the_text_as_sent() {
        // The OpenAPI `maxLength` counts what the client sends; the parser
        // counts the same, so schema and server agree on padded text.
        assert!(PersonName::parse(&format!(" {} ", "x".repeat(199))).is_err());
        assert!(PersonName::parse(&format!(" {}", "x".repeat(199))).is_ok());
        assert!(Phone::parse(&format!("{}123", " ".repeat(30))).is_err());
        let local = "é".repeat(64);
        assert!(Email::parse(&format!("{local}@example.com")).is_ok());
        assert!(Email::parse(&format!("{local}é@example.com")).is_err());
    }

    #[test]
    fn folding_is_idempotent() {
        // Regression (the `values` fuzz target's idempotence property): `İ`
        // lower-cases to `i` + U+0307, a mark that survived the old fold and
        // then split the word in two, so "ist" did not find "İstanbul".
        assert_eq!(fold_text("İstanbul"), "istanbul");
        assert_eq!(search_words("İstanbul"), vec!["istanbul"]);
        for text in ["İ", "ẞ", "ǅ", "Åström", "Ωμέγα", "ﬃ", "각"] {
            let once = fold_text(text);
            assert_eq!(fold_text(&once), once, "fold of {text:?}");
            for word in search_words(text) {
                assert_eq!(search_words(&word), vec![word.clone()], "word of {text:?}");
            }
        }
    }

    #[test]
    fn ascii_folds_as_the_unicode_path_does() {
        use unicode_normalization::UnicodeNormalization;
        let printable: String = (0x20u8..0x7f).map(char::from).collect();
        for text in [
            printable.as_str(),
            "Ada.Lovelace@Example.COM",
            "O'Brien-Smith 42",
            "",
        ] {
            let general: String = text
                .chars()
                .flat_map(char::to_lowercase)
                .nfd()
                .filter(|c| !unicode_normalization::char::is_combining_mark(*c))
                .collect();
            assert_eq!(fold_text(text), general, "fold of {text:?}");
        }
    }
}
