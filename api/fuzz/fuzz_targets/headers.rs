//! The request headers the contract defines: `If-Match`
//! (`api::extract::parse_if_match`) and `Idempotency-Key`
//! (`api::extract::parse_idempotency_key`). Never panics; agrees with the
//! patterns the OpenAPI document declares; a version round-trips.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn patterns() -> &'static (regex::Regex, regex::Regex) {
    static PATTERNS: OnceLock<(regex::Regex, regex::Regex)> = OnceLock::new();
    PATTERNS.get_or_init(|| {
        (
            regex::Regex::new(api::extract::IF_MATCH_PATTERN).expect("pattern"),
            regex::Regex::new(api::extract::IDEMPOTENCY_KEY_PATTERN).expect("pattern"),
        )
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // What an HTTP header value can carry, trimmed as the extractor does.
    if !text
        .bytes()
        .all(|b| b == b'\t' || (b' '..=b'~').contains(&b))
    {
        return;
    }
    let value = text.trim_matches(|c| c == ' ' || c == '\t');
    let (if_match, key) = patterns();
    let parsed = api::extract::parse_if_match(value);
    assert_eq!(
        parsed.is_ok(),
        if_match.is_match(value),
        "If-Match {value:?}"
    );
    if let Ok(Some(version)) = parsed {
        if version < u64::MAX {
            let etag = format!("\"{version}\"");
            assert_eq!(
                api::extract::parse_if_match(&etag).ok(),
                Some(Some(version))
            );
        }
    }
    let parsed = api::extract::parse_idempotency_key(value);
    assert_eq!(
        parsed.is_ok(),
        key.is_match(value),
        "Idempotency-Key {value:?}"
    );
    if let Ok(parsed) = parsed {
        assert_eq!(parsed, value);
    }
});
