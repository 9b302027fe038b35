//! The value parsers of every text field a client sends
//! (`domain::values::*::parse`), the search folding, and the OpenAPI
//! patterns that describe them. Properties: no panics; a parsed value
//! re-parses to itself; the published pattern + length limit accept exactly
//! what the parser accepts; folding is idempotent and a folded word finds
//! itself.
#![no_main]
use domain::values::{
    fold_text, search_words, CompanyName, Email, Notes, PersonName, Phone, Role, Sha256Hex, Title,
};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn regex(pattern: &str) -> regex::Regex {
    regex::Regex::new(pattern).expect("a valid pattern")
}

struct Patterns {
    text: regex::Regex,
    email: regex::Regex,
    phone: regex::Regex,
}

fn patterns() -> &'static Patterns {
    static PATTERNS: OnceLock<Patterns> = OnceLock::new();
    PATTERNS.get_or_init(|| Patterns {
        text: regex(PersonName::PATTERN),
        email: regex(Email::PATTERN),
        phone: regex(Phone::PATTERN),
    })
}

fn agrees(pattern: &regex::Regex, max: usize, text: &str, parsed: bool, what: &str) {
    let by_pattern = pattern.is_match(text) && text.chars().count() <= max;
    assert_eq!(
        by_pattern, parsed,
        "{what}: the OpenAPI pattern and the parser disagree on {text:?}"
    );
}

macro_rules! stable {
    ($ty:ty, $text:expr) => {
        if let Ok(value) = <$ty>::parse($text) {
            assert_eq!(<$ty>::parse(value.as_str()).as_ref(), Ok(&value));
        }
    };
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let p = patterns();
    stable!(PersonName, text);
    stable!(CompanyName, text);
    stable!(Title, text);
    stable!(Notes, text);
    stable!(Email, text);
    stable!(Phone, text);
    stable!(Sha256Hex, text);
    if let Ok(role) = Role::parse(text) {
        assert_eq!(role.as_str(), text);
    }
    agrees(
        &p.text,
        PersonName::MAX_CHARS,
        text,
        PersonName::parse(text).is_ok(),
        "name",
    );
    agrees(
        &p.text,
        Notes::MAX_CHARS,
        text,
        Notes::parse(text).is_ok(),
        "notes",
    );
    agrees(
        &p.email,
        Email::MAX_CHARS,
        text,
        Email::parse(text).is_ok(),
        "email",
    );
    agrees(
        &p.phone,
        Phone::MAX_CHARS,
        text,
        Phone::parse(text).is_ok(),
        "phone",
    );

    let folded = fold_text(text);
    assert_eq!(
        fold_text(&folded),
        folded,
        "folding {text:?} twice changed it"
    );
    for word in search_words(text) {
        assert!(word.chars().all(char::is_alphanumeric));
        assert_eq!(
            search_words(&word),
            vec![word.clone()],
            "the word {word:?} of {text:?} does not find itself"
        );
    }
});
