//! Which browser origins may call the API (`CRM_CORS_ORIGINS`).
//!
//! `*` allows any origin; that is safe here because the API never uses
//! cookies (credentials are not allowed). Listed origins are normalised as
//! browsers send them (`https://app.example.com`: lower-case scheme and
//! host, no trailing slash, no path), and anything else is refused at
//! start with the offending value named, never silently ignored.
use axum::http::{header, HeaderName, HeaderValue, Method};
use std::time::Duration;
use tower_http::cors::{AllowOrigin, CorsLayer};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CorsOrigins {
    Any,
    List(Vec<String>),
}

/// Parses the comma-separated setting; empty allows no cross-origin caller.
pub fn parse_origins(raw: &str) -> Result<CorsOrigins, String> {
    let entries: Vec<&str> = raw
        .split(',')
        .map(str::trim)
        .filter(|o| !o.is_empty())
        .collect();
    if entries.contains(&"*") {
        return match entries.len() {
            1 => Ok(CorsOrigins::Any),
            _ => Err("`*` allows every origin and cannot be combined with others".into()),
        };
    }
    let mut origins = Vec::new();
    for entry in entries {
        let origin = normalise(entry)?;
        if !origins.contains(&origin) {
            origins.push(origin);
        }
    }
    Ok(CorsOrigins::List(origins))
}

/// `Scheme://host[:port]` as a browser's `Origin` header writes it.
fn normalise(entry: &str) -> Result<String, String> {
    let refuse = |why: &str| Err(format!("{entry:?} is not an origin ({why})"));
    let Some((scheme, rest)) = entry.split_once("://") else {
        return refuse("expected scheme://host[:port], e.g. http://localhost:5173");
    };
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return refuse("the scheme must be http or https");
    }
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.is_empty() {
        return refuse("no host");
    }
    if authority.contains(['/', '?', '#', '@', ' ']) {
        return refuse("an origin has no path, query, fragment or user");
    }
    let origin = format!("{scheme}://{}", authority.to_ascii_lowercase());
    match HeaderValue::from_str(&origin) {
        Ok(_) => Ok(origin),
        Err(_) => refuse("it holds characters a header cannot"),
    }
}

pub fn layer(origins: &CorsOrigins) -> CorsLayer {
    let allow = match origins {
        CorsOrigins::Any => AllowOrigin::any(),
        CorsOrigins::List(list) => AllowOrigin::list(
            list.iter()
                .filter_map(|o| HeaderValue::from_str(o).ok())
                .collect::<Vec<_>>(),
        ),
    };
    let name = |n: &'static str| HeaderName::from_static(n);
    CorsLayer::new()
        .allow_origin(allow)
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PATCH,
            Method::PUT,
            Method::DELETE,
        ])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::IF_MATCH,
            header::IF_NONE_MATCH,
            name("idempotency-key"),
            name("x-consistency-token"),
            name("x-request-id"),
        ])
        .expose_headers([
            header::ETAG,
            header::LOCATION,
            header::RETRY_AFTER,
            name("x-consistency-token"),
            name("x-consistency-stale"),
            name("x-request-id"),
            name("ratelimit"),
            name("ratelimit-policy"),
        ])
        .max_age(Duration::from_secs(600))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wildcard_alone_allows_any_origin() {
        assert_eq!(parse_origins(" * "), Ok(CorsOrigins::Any));
        assert!(parse_origins("*, https://a.example").is_err());
        assert_eq!(parse_origins(""), Ok(CorsOrigins::List(vec![])));
    }

    #[test]
    fn origins_are_normalised_as_browsers_send_them() {
        assert_eq!(
            parse_origins(
                "HTTPS://App.Example.com/, http://localhost:5173,https://app.example.com"
            ),
            Ok(CorsOrigins::List(vec![
                "https://app.example.com".into(),
                "http://localhost:5173".into()
            ]))
        );
    }

    #[test]
    fn what_is_not_an_origin_is_refused_by_name() {
        for bad in [
            "localhost:5173",
            "ftp://x.example",
            "https://",
            "https://a.example/app",
            "https://a.example?x",
            "https://u@a.example",
        ] {
            let error = parse_origins(bad).expect_err(bad);
            assert!(error.contains(bad), "{error}");
        }
    }
}
