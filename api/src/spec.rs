//! The parts of the OpenAPI document that every route shares, applied in one
//! place so that no handler annotation can forget them, and the schemas of
//! the validated text fields, built from the same constants the parsers use.
//!
//! [`complete`] runs over the document the handler annotations produce:
//! - every error response is `application/problem+json` with [`Problem`];
//! - the errors the shared extractors and middleware produce are declared on
//!   every operation they can reach: `400` (malformed path, query, header or
//!   body), `401` (bearer routes, with `WWW-Authenticate`), `413`/`415`/`422`
//!   (routes with a body) and `503` (`/v1` and `/readyz`: store unavailable
//!   or request timeout, with `Retry-After`);
//! - the headers the contract defines (`If-Match`, `Idempotency-Key`,
//!   `X-Consistency-Token`) and the list parameters get the exact syntax the
//!   server accepts, and the headers their one description;
//! - the success headers [`Reply`](crate::routes::Reply) sets are declared by
//!   the rules it follows (see [`success_headers`]), described once here.
//!
//! `tests/schemathesis.sh` checks the result against the running server.
use utoipa::openapi::path::{Operation, Parameter, ParameterIn};
use utoipa::openapi::request_body::RequestBody;
use utoipa::openapi::schema::{Object, ObjectBuilder, Schema, SchemaType, Type};
use utoipa::openapi::{Content, Header, OpenApi, Ref, RefOr, Response};

use domain::values::{CompanyName, Email, ExternalId, Notes, PersonName, Phone, Title};

const PROBLEM_JSON: &str = "application/problem+json";

fn string(nullable: bool) -> ObjectBuilder {
    let kind = if nullable {
        SchemaType::from_iter([Type::String, Type::Null])
    } else {
        SchemaType::new(Type::String)
    };
    ObjectBuilder::new().schema_type(kind)
}

fn text(max: usize, nullable: bool) -> Object {
    text_with(max, nullable, PersonName::PATTERN, "no control characters")
}

fn text_with(max: usize, nullable: bool, pattern: &str, characters: &str) -> Object {
    string(nullable)
        .min_length(Some(1))
        .max_length(Some(max))
        .pattern(Some(pattern))
        .description(Some(format!(
            "Not blank; at most {max} characters as sent; trimmed; {characters}."
        )))
        .build()
}

/// `name`, `surname` of people: required text.
pub fn person_name() -> Object {
    text(PersonName::MAX_CHARS, false)
}

/// An optional person name (`null` is none).
pub fn person_name_nullable() -> Object {
    text(PersonName::MAX_CHARS, true)
}

pub fn company_name() -> Object {
    text(CompanyName::MAX_CHARS, false)
}

/// A webhook's target: an absolute http(s) URL (the server checks more).
pub fn webhook_url() -> Object {
    string(false)
        .min_length(Some(8))
        .max_length(Some(2000))
        .pattern(Some(r"^[Hh][Tt][Tt][Pp][Ss]?://[^\s/?#@]+([/?#]\S*)?$"))
        .description(Some(
            "`https://…` (`http` only where the operator allows it), at most 2000 characters; \
             not resolving to a loopback, private or link-local address.",
        ))
        .build()
}

/// An optional job title (`null` is none).
pub fn title_nullable() -> Object {
    text(Title::MAX_CHARS, true)
}

/// A customer's optional key in another system (`null` is none), unique
/// in the company.
pub fn external_id_nullable() -> Object {
    text_with(
        ExternalId::MAX_CHARS,
        true,
        ExternalId::PATTERN,
        "no control characters; unique in the company (`409` if another customer has it), compared exactly",
    )
}

/// Optional notes (`null` is none).
pub fn notes_nullable() -> Object {
    text_with(
        Notes::MAX_CHARS,
        true,
        Notes::PATTERN,
        "may hold line breaks and tabs, no other control characters",
    )
}

fn email_schema(nullable: bool) -> Object {
    string(nullable)
        .max_length(Some(Email::MAX_CHARS))
        .pattern(Some(Email::PATTERN))
        .description(Some(
            "An email address: a local part of 1 to 64 characters, `@`, a dotted ASCII \
             domain; at most 254 characters; trimmed; unique case-insensitively for users.",
        ))
        .build()
}

pub fn email() -> Object {
    email_schema(false)
}

/// An optional email (`null` is none).
pub fn email_nullable() -> Object {
    email_schema(true)
}

/// An optional phone number (`null` is none).
pub fn phone_nullable() -> Object {
    string(true)
        .max_length(Some(Phone::MAX_CHARS))
        .pattern(Some(Phone::PATTERN))
        .description(Some(
            "At least 3 digits, with spaces and + - ( ) . only; at most 32 characters.",
        ))
        .build()
}

pub fn password() -> Object {
    use commands::passwords::{MAX_PASSWORD_CHARS, MIN_PASSWORD_CHARS};
    string(false)
        .min_length(Some(MIN_PASSWORD_CHARS))
        .max_length(Some(MAX_PASSWORD_CHARS))
        .description(Some(format!(
            "{MIN_PASSWORD_CHARS} to {MAX_PASSWORD_CHARS} characters; stored only as an argon2id hash."
        )))
        .build()
}

pub fn role() -> Object {
    string(false).enum_values(Some(["admin", "user"])).build()
}

/// The public event types (`projections::public::EventType`).
pub fn public_event_type() -> Object {
    string(false)
        .enum_values(Some(
            projections::public::EventType::ALL.map(|t| t.as_str()),
        ))
        .build()
}

fn header_schema(pattern: &str, max: Option<usize>) -> RefOr<Schema> {
    string(false)
        .min_length(Some(1))
        .max_length(max)
        .pattern(Some(pattern))
        .build()
        .into()
}

/// What a header parameter of the contract means, by name; the same on
/// every route.
fn parameter_description(location: &ParameterIn, name: &str) -> Option<&'static str> {
    match (location, name.to_ascii_lowercase().as_str()) {
        (ParameterIn::Header, "if-match") => {
            Some("An ETag of this API: the change applies only to that version")
        }
        (ParameterIn::Header, "idempotency-key") => Some(
            "Repeats with the same key (same company) return the first result and create \
             nothing new; the same key with a different request is 422",
        ),
        (ParameterIn::Header, "x-consistency-token") => {
            Some("A write's token: wait (at most 5 s) until the read includes it")
        }
        _ => None,
    }
}

/// The exact schema of the parameters whose syntax lives in code, by name.
fn parameter_schema(location: &ParameterIn, name: &str) -> Option<RefOr<Schema>> {
    use crate::extract::{IDEMPOTENCY_KEY_PATTERN, IF_MATCH_PATTERN};
    match (location, name.to_ascii_lowercase().as_str()) {
        (ParameterIn::Header, "if-match") => Some(header_schema(IF_MATCH_PATTERN, None)),
        (ParameterIn::Header, "idempotency-key") => Some(header_schema(
            IDEMPOTENCY_KEY_PATTERN,
            Some(crate::extract::MAX_IDEMPOTENCY_KEY_LEN),
        )),
        (ParameterIn::Header, "x-consistency-token") => Some(header_schema(
            "^[A-Za-z0-9_-]+$",
            Some(projections::consistency::MAX_TOKEN_LEN),
        )),
        (ParameterIn::Query, "cursor") => Some(header_schema(
            "^[A-Za-z0-9_-]+\\.[A-Za-z0-9_-]+$",
            Some(crate::cursor::MAX_CURSOR_LEN),
        )),
        (ParameterIn::Query, "q") => Some(
            string(false)
                .max_length(Some(crate::validate::MAX_QUERY_CHARS))
                .build()
                .into(),
        ),
        _ => None,
    }
}

fn problem(description: &str) -> Response {
    let mut response = Response::new(description);
    response.content.insert(
        PROBLEM_JSON.to_owned(),
        Content::new(Some(Ref::from_schema_name("Problem"))),
    );
    response
}

fn header(description: &str) -> Header {
    let mut header = Header::new(string(false).build());
    header.description = Some(description.to_owned());
    header
}

fn is_secured(operation: &Operation) -> bool {
    operation
        .security
        .as_ref()
        .is_some_and(|requirements| !requirements.is_empty())
}

fn body_types(body: Option<&RequestBody>) -> Vec<String> {
    body.map(|b| b.content.keys().cloned().collect())
        .unwrap_or_default()
}

fn complete_operation(path: &str, method: &str, operation: &mut Operation) {
    let parameters: &mut Vec<Parameter> = operation.parameters.get_or_insert_with(Vec::new);
    for parameter in parameters.iter_mut() {
        if let Some(schema) = parameter_schema(&parameter.parameter_in, &parameter.name) {
            parameter.schema = Some(schema);
        }
        if parameter.description.is_none() {
            parameter.description =
                parameter_description(&parameter.parameter_in, &parameter.name).map(str::to_owned);
        }
    }
    let waits_for_token = parameters.iter().any(|p| {
        matches!(p.parameter_in, ParameterIn::Header)
            && p.name.eq_ignore_ascii_case("x-consistency-token")
    });
    let has_parameters = !parameters.is_empty();
    let has_query = parameters
        .iter()
        .any(|p| matches!(p.parameter_in, ParameterIn::Query));
    if !has_parameters {
        operation.parameters = None;
    }
    let has_body = !body_types(operation.request_body.as_ref()).is_empty();
    let secured = is_secured(operation);
    let reply = ReplyFacts {
        path,
        write: method != "get",
        event_sourced: operation
            .tags
            .iter()
            .flatten()
            .any(|tag| EVENT_SOURCED_TAGS.contains(&tag.as_str())),
        waits_for_token,
    };
    let responses = &mut operation.responses.responses;
    if has_query {
        let response = Response::new(
            "The request line is longer than 64 KiB (answered by the HTTP layer, without a body).",
        );
        responses
            .entry("414".to_owned())
            .or_insert(RefOr::T(response));
    }
    let mut add = |status: &str, description: &str| {
        responses
            .entry(status.to_owned())
            .or_insert_with(|| RefOr::T(problem(description)));
    };
    if has_parameters || has_body {
        add(
            "400",
            "Malformed request: a path, query or header value, or a body that is not valid JSON or multipart.",
        );
    }
    if secured {
        add(
            "401",
            "The Bearer access token is missing, invalid, expired or revoked.",
        );
    }
    if has_body {
        add("413", "The body is larger than the limit.");
        add("415", "The body's Content-Type is not the one documented.");
        add(
            "422",
            "The body is well-formed but invalid: unknown fields, wrong types or values (`errors` lists them).",
        );
    }
    if method != "get" && path.starts_with("/v1/") && path != "/v1/auth/token" {
        add(
            "409",
            "Conflict: the resource changed concurrently (retry), or the change contradicts its state.",
        );
    }
    if path.starts_with("/v1/") || path == "/readyz" {
        add(
            "503",
            "A store the request needs is unavailable, the request timed out, or (a write) a read model lags past the configured bound (the detail names it); retry after `Retry-After` seconds.",
        );
    }
    for (status, response) in responses.iter_mut() {
        let RefOr::T(response) = response else {
            continue;
        };
        if response.description.is_empty() {
            response.description = status
                .parse::<u16>()
                .ok()
                .and_then(|s| axum::http::StatusCode::from_u16(s).ok())
                .and_then(|s| s.canonical_reason())
                .unwrap_or("")
                .to_owned();
        }
        // Error bodies are problem documents; a bodiless one (414 from the
        // HTTP layer) stays bodiless.
        if (status.starts_with('4') || status.starts_with('5')) && !response.content.is_empty() {
            let schema = response
                .content
                .values()
                .next()
                .and_then(|c| c.schema.clone())
                .unwrap_or_else(|| Ref::from_schema_name("Problem").into());

            response.content.clear();
            response
                .content
                .insert(PROBLEM_JSON.to_owned(), Content::new(Some(schema)));
        }
        if status.starts_with('2') {
            let body = body_schema_name(response);
            for (name, description) in success_headers(&reply, status, body) {
                response
                    .headers
                    .entry(name.to_owned())
                    .or_insert_with(|| header(description));
            }
        }
        match status.as_str() {
            "401" => {
                response.headers.insert(
                    "WWW-Authenticate".to_owned(),
                    header("`Bearer`: the scheme the route expects."),
                );
            }
            "429" | "503" => {
                response.headers.insert(
                    "Retry-After".to_owned(),
                    header("Seconds to wait before retrying."),
                );
            }
            _ => {}
        }
    }
}

/// The tags whose writes go to the event store and so answer with a token.
const EVENT_SOURCED_TAGS: [&str; 4] = ["customers", "users", "company", "photos"];
/// The bodies that are one versioned resource (they carry its `ETag`).
const VERSIONED_BODIES: [&str; 4] = ["CustomerDto", "UserDto", "CompanyDto", "PhotoMetadata"];
/// Writes whose replies wait for the views, so that sessions change at once.
const WAITING_WRITE_BODIES: [&str; 2] = ["UserDto", "SignupResponse"];
const SIGNUP: &str = "/v1/signup";
/// Bodies of a `202` that started a job, whose URL it names.
const ACCEPTED_JOBS: [&str; 1] = ["ImportJob"];

/// What decides an operation's success headers.
struct ReplyFacts<'a> {
    path: &'a str,
    write: bool,
    event_sourced: bool,
    waits_for_token: bool,
}

/// The name of the schema a response's body refers to, if any.
fn body_schema_name(response: &Response) -> Option<String> {
    match response.content.values().next()?.schema.as_ref()? {
        RefOr::Ref(reference) => reference.ref_location.rsplit('/').next().map(str::to_owned),
        RefOr::T(_) => None,
    }
}

/// The success headers of the contract, by the rules `Reply` follows:
/// a versioned resource carries its `ETag`; a write to the event store its
/// `X-Consistency-Token`; a created resource (and a customer or user
/// written, or a job started) its `Location`; a reply that may wait for the views
/// `X-Consistency-Stale`.
fn success_headers(
    reply: &ReplyFacts,
    status: &str,
    body: Option<String>,
) -> Vec<(&'static str, &'static str)> {
    let body = body.as_deref().unwrap_or("");
    let mut headers = vec![];
    if VERSIONED_BODIES.contains(&body) {
        headers.push((
            "ETag",
            "The resource's version, quoted: send it back in If-Match",
        ));
    }
    if reply.write && (reply.event_sourced || reply.path == SIGNUP) {
        headers.push((
            "X-Consistency-Token",
            "Send it back on a read to see this request's writes",
        ));
    }
    let written_person = reply.write && ["CustomerDto", "UserDto"].contains(&body);
    let accepted_job = status == "202" && ACCEPTED_JOBS.contains(&body);
    if (status == "201" && reply.path != SIGNUP) || written_person || accepted_job {
        headers.push(("Location", "The resource's URL"));
    }
    if reply.waits_for_token || (reply.write && WAITING_WRITE_BODIES.contains(&body)) {
        headers.push((
            "X-Consistency-Stale",
            "`true` when the answer gave up waiting for the views (a read's X-Consistency-Token, or a user write's own)",
        ));
    }
    headers
}

/// Completes the document the handler annotations produce (see the module docs).
pub fn complete(spec: &mut OpenApi) {
    for (path, item) in spec.paths.paths.iter_mut() {
        for (method, operation) in [
            ("get", &mut item.get),
            ("put", &mut item.put),
            ("post", &mut item.post),
            ("delete", &mut item.delete),
            ("patch", &mut item.patch),
            ("head", &mut item.head),
            ("options", &mut item.options),
            ("trace", &mut item.trace),
        ] {
            if let Some(operation) = operation {
                complete_operation(path, method, operation);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    fn spec() -> Value {
        serde_json::to_value(crate::openapi()).expect("the spec serializes")
    }

    #[test]
    fn every_error_is_a_problem_document_and_every_route_says_which() {
        let spec = spec();
        for (path, item) in spec["paths"].as_object().expect("paths") {
            for (method, operation) in item.as_object().expect("item") {
                let responses = operation["responses"].as_object().expect("responses");
                for (status, response) in responses {
                    if status.starts_with('4') || status.starts_with('5') {
                        let content = response["content"].as_object();
                        if status != "414" {
                            assert_eq!(
                                content.map(|c| c.keys().cloned().collect::<Vec<_>>()),
                                Some(vec!["application/problem+json".to_owned()]),
                                "{method} {path} {status}"
                            );
                        }
                    }
                    assert!(
                        response["description"]
                            .as_str()
                            .is_some_and(|d| !d.is_empty()),
                        "{method} {path} {status} has no description"
                    );
                }
                let secured = operation["security"]
                    .as_array()
                    .is_some_and(|s| !s.is_empty());
                if secured {
                    assert!(responses.contains_key("401"), "{method} {path} 401");
                }
                if path.starts_with("/v1/") {
                    assert!(responses.contains_key("400"), "{method} {path} 400");
                    assert!(responses.contains_key("503"), "{method} {path} 503");
                }
                if operation.get("requestBody").is_some() {
                    for status in ["413", "415", "422"] {
                        assert!(responses.contains_key(status), "{method} {path} {status}");
                    }
                }
                for parameter in operation["parameters"].as_array().into_iter().flatten() {
                    if parameter["in"] == "header" {
                        assert!(
                            parameter["schema"]["pattern"].is_string(),
                            "{method} {path}: header {} has no syntax",
                            parameter["name"]
                        );
                        assert_eq!(parameter["schema"]["type"], "string");
                    }
                }
            }
        }
    }

    #[test]
    fn text_fields_carry_the_parsers_rules() {
        let spec = spec();
        let schemas = &spec["components"]["schemas"];
        let name = &schemas["CreateCustomer"]["properties"]["name"];
        assert_eq!(name["pattern"], domain::values::PersonName::PATTERN);
        assert_eq!(name["maxLength"], 200);
        let required = schemas["CreateCustomer"]["required"]
            .as_array()
            .expect("required");
        assert!(required.contains(&"name".into()) && required.contains(&"surname".into()));
        assert_eq!(
            schemas["UpdateCustomer"]["properties"]["email"]["pattern"],
            domain::values::Email::PATTERN
        );
        assert_eq!(schemas["CreateCustomer"]["additionalProperties"], false);
        assert_eq!(schemas["UploadForm"]["additionalProperties"], false);
    }
}
