//! List cursors: `api::cursor::decode` takes `?cursor=` from any client.
//! Never panics on any text; every cursor the server can issue (a scope with
//! a search of up to 200 characters, a key folded from a valid surname)
//! decodes back to what it encoded; a cursor is bound to its scope.
#![no_main]
use libfuzzer_sys::fuzz_target;
use projections::read::Keyset;

const SECRET: &[u8] = b"fuzz-cursor-secret";

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    // Arbitrary client text: refused or accepted, never a panic.
    let _ = api::cursor::decode(SECRET, "company/customers/-created_at/false/", &text);

    // Issued cursors: split the input into a search and a surname.
    let (q, surname) = text.split_once('\u{1}').unwrap_or((&text, "Doe"));
    let q: String = q.chars().take(200).collect();
    let Ok(surname) = domain::values::PersonName::parse(surname) else {
        return;
    };
    let scope = format!("{}/customers/surname/false/{q}", uuid::Uuid::nil());
    let keyset = Keyset {
        key: domain::values::fold_text(surname.as_str()),
        id: uuid::Uuid::nil().to_string(),
    };
    let cursor = api::cursor::encode(SECRET, &scope, &keyset);
    match api::cursor::decode(SECRET, &scope, &cursor) {
        Ok(decoded) => assert_eq!(decoded, keyset),
        Err(_) => panic!("the server refused its own cursor ({} bytes)", cursor.len()),
    }
    assert!(api::cursor::decode(SECRET, "another/scope", &cursor).is_err());
});
