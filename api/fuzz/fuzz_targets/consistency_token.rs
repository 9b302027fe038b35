//! `X-Consistency-Token` comes back from clients
//! (`projections::consistency::ConsistencyToken::decode`). Never panics;
//! bounded (length and requirement count); what decodes re-encodes to a
//! token that decodes to the same thing.
#![no_main]
use libfuzzer_sys::fuzz_target;
use projections::consistency::{ConsistencyToken, MAX_REQUIREMENTS, MAX_TOKEN_LEN};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Some(token) = ConsistencyToken::decode(&text) {
        assert!(text.len() <= MAX_TOKEN_LEN);
        assert!(token.0.len() <= MAX_REQUIREMENTS);
        let again = token.encode();
        if again.len() <= MAX_TOKEN_LEN {
            assert_eq!(ConsistencyToken::decode(&again), Some(token));
        }
    }
});
