//! Extractors whose rejections are problem+json: axum's own `Json`, `Path`
//! and `Query` rejections, turned into our error type, plus the headers the
//! contract defines (`If-Match`, `Idempotency-Key`, `X-Consistency-Token`).
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use commands::Expect;
use projections::consistency::ConsistencyToken;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// A JSON body; unknown fields, wrong types and bad syntax are problems.
/// Syntax is judged on the whole body first, so malformed JSON is always
/// `400` even when its first values already have the wrong type.
pub struct Json<T>(pub T);

/// `application/json` or `application/<something>+json`, as axum accepts.
fn is_json_content_type(headers: &axum::http::HeaderMap) -> bool {
    let Some(value) = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json_content_type(req.headers()) {
            return Err(ApiError::UnsupportedMediaType(
                "expected a body with Content-Type: application/json".to_owned(),
            ));
        }
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|rejection| {
                ApiError::unreadable_body(rejection.status(), rejection.body_text())
            })?;
        if let Err(error) = serde_json::from_slice::<serde::de::IgnoredAny>(&bytes) {
            return Err(ApiError::bad_request(format!(
                "the body is not valid JSON: {error}"
            )));
        }
        // Wrong types and missing or unknown fields are field problems, in the
        // same `errors[]` shape as the domain's own validation.
        let mut deserializer = serde_json::Deserializer::from_slice(&bytes);
        serde_path_to_error::deserialize::<_, T>(&mut deserializer)
            .map(Self)
            .map_err(|error| {
                let parent = error.path().to_string();
                let message = error.into_inner().to_string();
                let message = strip_position(&message);
                ApiError::field(&body_field(&parent, message), message)
            })
    }
}

/// The JSON path of a body problem as a field name (`name`, `items[0].id`).
/// A missing or unknown field is named by serde's message, under its parent;
/// `body` is the document itself (e.g. an array where an object belongs).
fn body_field(parent: &str, message: &str) -> String {
    let parent = if parent == "." { "" } else { parent };
    let named = ["missing field `", "unknown field `"]
        .iter()
        .find_map(|prefix| message.strip_prefix(prefix))
        .and_then(|rest| rest.split('`').next());
    match (parent, named) {
        // serde_path_to_error already names an unknown field in the path.
        (parent, Some(name)) if parent == name || parent.ends_with(&format!(".{name}")) => {
            parent.to_owned()
        }
        ("", Some(name)) => name.to_owned(),
        (parent, Some(name)) => format!("{parent}.{name}"),
        ("", None) => "body".to_owned(),
        (parent, None) => parent.to_owned(),
    }
}

/// serde_json ends its messages with "at line 1 column 9": noise to a form.
fn strip_position(message: &str) -> &str {
    message
        .rfind(" at line ")
        .map_or(message, |at| &message[..at])
}

/// Path parameters; a malformed id is `400`.
pub struct Path<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(value)| Self(value))
            .map_err(|rejection: PathRejection| ApiError::bad_request(rejection.body_text()))
    }
}

/// Query parameters; malformed ones are `400`.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(value)| Self(value))
            .map_err(|rejection: QueryRejection| ApiError::bad_request(rejection.body_text()))
    }
}

fn header<'a>(parts: &'a Parts, name: &str) -> Result<Option<&'a str>, ApiError> {
    match parts.headers.get(name) {
        None => Ok(None),
        Some(value) => value
            .to_str()
            .map(|v| Some(v.trim()))
            .map_err(|_| ApiError::bad_request(format!("the {name} header is not valid text"))),
    }
}

/// `If-Match: "<version>"`; `None` when absent or `*`.
pub struct IfMatch(pub Expect);

/// The `If-Match` syntax the OpenAPI document declares.
pub const IF_MATCH_PATTERN: &str = r#"^(\*|(W/)?"[0-9]+"|[0-9]+)$"#;

/// Parses an `If-Match` value: `*`, `"<digits>"` or `W/"<digits>"` (RFC 9110
/// entity tags; our ETags are versions), or bare digits (a common client
/// slip, accepted as before). Anything else is `400`. A version too large
/// for `u64` can never be current, so it reads as `u64::MAX` (always stale:
/// `412`).
pub fn parse_if_match(raw: &str) -> Result<Expect, ApiError> {
    let raw = raw.trim();
    if raw == "*" {
        return Ok(Expect::Any);
    }
    let tag = raw.strip_prefix("W/").unwrap_or(raw);
    let digits = match tag.strip_prefix('"') {
        Some(quoted) => quoted.strip_suffix('"'),
        None if tag.len() == raw.len() => Some(tag),
        None => None,
    }
    .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
    .ok_or_else(|| ApiError::bad_request("If-Match must be an ETag from this API, like \"3\""))?;
    Ok(Expect::Version(digits.parse().unwrap_or(u64::MAX)))
}

impl<S: Send + Sync> FromRequestParts<S> for IfMatch {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        match header(parts, "if-match")? {
            None => Ok(Self(Expect::Any)),
            Some(raw) => parse_if_match(raw).map(Self),
        }
    }
}

/// `Idempotency-Key`: 1 to 255 visible ASCII characters.
pub struct IdempotencyKey(pub Option<String>);

/// The longest `Idempotency-Key`.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

/// The `Idempotency-Key` syntax the OpenAPI document declares.
pub const IDEMPOTENCY_KEY_PATTERN: &str = r"^[\x21-\x7e]{1,255}$";

/// Parses an `Idempotency-Key` value: 1 to 255 visible ASCII characters.
pub fn parse_idempotency_key(raw: &str) -> Result<String, ApiError> {
    let key = raw.trim();
    if !key.is_empty()
        && key.len() <= MAX_IDEMPOTENCY_KEY_LEN
        && key.bytes().all(|b| b.is_ascii_graphic())
    {
        Ok(key.to_owned())
    } else {
        Err(ApiError::bad_request(
            "Idempotency-Key must be 1 to 255 visible ASCII characters",
        ))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        match header(parts, "idempotency-key")? {
            None => Ok(Self(None)),
            Some(raw) => parse_idempotency_key(raw).map(|key| Self(Some(key))),
        }
    }
}

/// `X-Consistency-Token` sent back by a read.
pub struct WaitFor(pub Option<ConsistencyToken>);

impl<S: Send + Sync> FromRequestParts<S> for WaitFor {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        match header(parts, "x-consistency-token")? {
            None => Ok(Self(None)),
            Some(raw) => ConsistencyToken::decode(raw)
                .map(|token| Self(Some(token)))
                .ok_or_else(|| {
                    ApiError::bad_request("X-Consistency-Token is not a token this API issued")
                }),
        }
    }
}

/// Deserializes a field that may be absent (`None`), `null` (`Some(None)`)
/// or a value (`Some(Some(v))`), for PATCH bodies.
pub fn nullable<'de, T, D>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    T: serde::Deserialize<'de>,
    D: serde::Deserializer<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

use serde::Deserialize;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_match_takes_entity_tags_and_bare_versions_only() {
        assert_eq!(parse_if_match("*").unwrap(), Expect::Any);
        assert_eq!(parse_if_match("\"3\"").unwrap(), Expect::Version(3));
        assert_eq!(parse_if_match("W/\"3\"").unwrap(), Expect::Version(3));
        assert_eq!(parse_if_match(" 3 ").unwrap(), Expect::Version(3));
        // Too large for any version: stale, never a crash or a wrap-around.
        assert_eq!(
            parse_if_match("\"99999999999999999999999\"").unwrap(),
            Expect::Version(u64::MAX)
        );
        // The old parser stripped any number of `W/` and quotes, so these
        // were versions; the spec's pattern says they are not.
        for bad in [
            "",
            "\"\"",
            "\"3",
            "3\"",
            "\"\"3\"\"",
            "W/W/\"3\"",
            "W/3",
            "\"+3\"",
            "\"-1\"",
            "\"3\", \"4\"",
            "\"0x10\"",
            "garbage",
        ] {
            assert!(parse_if_match(bad).is_err(), "{bad:?}");
        }
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        name: String,
        tags: Vec<u32>,
    }

    async fn problem_of(json: &str) -> ApiError {
        let request = axum::http::Request::builder()
            .header("content-type", "application/json")
            .body(axum::body::Body::from(json.to_owned()))
            .expect("request");
        match Json::<Body>::from_request(request, &()).await {
            Ok(body) => panic!("accepted {json}: {:?}", body.0),
            Err(error) => error,
        }
    }

    #[tokio::test]
    async fn every_body_problem_names_its_field() {
        for (json, field) in [
            (r#"{"name": 123, "tags": []}"#, "name"),
            (r#"{"name": "a", "tags": [1, "x"]}"#, "tags[1]"),
            (r#"{"tags": []}"#, "name"),
            (r#"{"name": "a", "tags": [], "extra": 1}"#, "extra"),
            (r#""just text""#, "body"),
        ] {
            let error = problem_of(json).await;
            let ApiError::Invalid(errors) = error else {
                panic!("{json}: {error:?}");
            };
            assert_eq!(errors.len(), 1, "{json}");
            assert_eq!(errors[0].field, field, "{json}");
            assert!(!errors[0].message.contains("line"), "{json}");
        }
        assert!(matches!(problem_of("{").await, ApiError::BadRequest(_)));
    }

    #[test]
    fn idempotency_keys_are_visible_ascii() {
        assert_eq!(parse_idempotency_key(" k-1 ").unwrap(), "k-1");
        assert!(parse_idempotency_key(&"k".repeat(255)).is_ok());
        for bad in ["", "  ", "a b", "ключ", "a\tb"] {
            assert!(parse_idempotency_key(bad).is_err(), "{bad:?}");
        }
        assert!(parse_idempotency_key(&"k".repeat(256)).is_err());
    }
}
