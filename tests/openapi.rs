//! The served OpenAPI document describes exactly the routes of the contract,
//! and `/docs` works offline. On both stacks.
mod common;

use common::{spawn_app, Stack};
use reqwest::Method;
use std::collections::BTreeSet;

/// The routes of the HTTP contract (`docs/API.md`).
const EXPECTED: [(&str, &str); 48] = [
    ("post", "/v1/signup"),
    ("post", "/v1/auth/token"),
    ("post", "/v1/auth/refresh"),
    ("post", "/v1/auth/logout"),
    ("get", "/v1/me"),
    ("get", "/v1/api-keys"),
    ("post", "/v1/api-keys"),
    ("delete", "/v1/api-keys/{id}"),
    ("get", "/v1/company"),
    ("patch", "/v1/company"),
    ("get", "/v1/users"),
    ("post", "/v1/users"),
    ("get", "/v1/users/{id}"),
    ("patch", "/v1/users/{id}"),
    ("put", "/v1/users/{id}/role"),
    ("delete", "/v1/users/{id}"),
    ("get", "/v1/customers"),
    ("post", "/v1/customers"),
    ("get", "/v1/customers/{id}"),
    ("patch", "/v1/customers/{id}"),
    ("delete", "/v1/customers/{id}"),
    ("post", "/v1/customers/{id}/restore"),
    ("post", "/v1/customers/batch"),
    ("get", "/v1/customers/export"),
    ("post", "/v1/customers/imports"),
    ("get", "/v1/customers/imports/{id}"),
    ("post", "/v1/customers/imports/{id}/cancel"),
    ("get", "/v1/customers/imports/{id}/errors"),
    ("get", "/v1/customers/{id}/export"),
    ("put", "/v1/customers/{id}/photo"),
    ("delete", "/v1/customers/{id}/photo"),
    ("get", "/v1/customers/{id}/history"),
    ("post", "/v1/photos"),
    ("get", "/v1/photos/{id}"),
    ("get", "/v1/photos/{id}/metadata"),
    ("get", "/v1/events"),
    ("get", "/v1/webhooks"),
    ("post", "/v1/webhooks"),
    ("get", "/v1/webhooks/{id}"),
    ("patch", "/v1/webhooks/{id}"),
    ("delete", "/v1/webhooks/{id}"),
    ("post", "/v1/webhooks/{id}/rotate-secret"),
    ("get", "/v1/webhooks/{id}/deliveries"),
    ("post", "/v1/webhooks/{id}/deliveries/{delivery_id}/retry"),
    ("post", "/v1/webhooks/{id}/test"),
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
];

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

async fn openapi_document(stack: Stack) {
    let app = spawn_app(stack).await;
    let response = app.send(app.req(Method::GET, "/openapi.json", None)).await;
    response.expect(200, "GET /openapi.json");
    assert!(response
        .header("content-type")
        .is_some_and(|c| c.starts_with("application/json")));
    let spec = &response.json;
    // The copy in the repository, for client generators and reviews.
    let committed: serde_json::Value = serde_json::from_str(include_str!("../docs/openapi.json"))
        .expect("docs/openapi.json is JSON");
    assert!(
        *spec == committed,
        "docs/openapi.json differs from the served document: \
         run `cargo run -- openapi > docs/openapi.json`"
    );
    let version = spec["openapi"].as_str().expect("openapi version");
    assert!(
        version.starts_with("3.1."),
        "OpenAPI {version}, expected 3.1.x"
    );
    assert!(spec["info"]["title"]
        .as_str()
        .is_some_and(|t| !t.is_empty()));
    assert!(spec["info"]["version"]
        .as_str()
        .is_some_and(|t| !t.is_empty()));

    let paths = spec["paths"].as_object().expect("paths");
    let mut served = BTreeSet::new();
    for (path, item) in paths {
        for (key, operation) in item.as_object().expect("path item") {
            if METHODS.contains(&key.as_str()) {
                served.insert((key.clone(), path.clone()));
                assert!(
                    operation["responses"]
                        .as_object()
                        .is_some_and(|r| !r.is_empty()),
                    "{key} {path} documents no responses"
                );
            }
        }
    }
    let expected: BTreeSet<(String, String)> = EXPECTED
        .iter()
        .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    let missing: Vec<_> = expected.difference(&served).collect();
    let extra: Vec<_> = served.difference(&expected).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "spec differs from the contract: missing {missing:?}, extra {extra:?}"
    );

    // Every /v1 route but signup, token and refresh needs the bearer token; the
    // documented status codes include the contract's.
    let schemes = spec["components"]["securitySchemes"]
        .as_object()
        .expect("securitySchemes");
    let bearer = schemes
        .iter()
        .find(|(_, s)| {
            s["type"] == "http"
                && s["scheme"].as_str().map(str::to_lowercase) == Some("bearer".into())
        })
        .map(|(name, _)| name.clone())
        .expect("an http bearer security scheme");
    for (method, path) in &expected {
        let operation = &spec["paths"][path][method];
        let public = !path.starts_with("/v1")
            || ["/v1/signup", "/v1/auth/token", "/v1/auth/refresh"].contains(&path.as_str());
        let secured = operation["security"]
            .as_array()
            .or_else(|| spec["security"].as_array())
            .is_some_and(|s| s.iter().any(|r| r.get(&bearer).is_some()));
        assert_eq!(
            secured, !public,
            "{method} {path}: bearer security {secured}"
        );
        // Path parameters are declared.
        if path.contains("{id}") {
            let params = operation["parameters"]
                .as_array()
                .or_else(|| spec["paths"][path]["parameters"].as_array())
                .cloned()
                .unwrap_or_default();
            assert!(
                params
                    .iter()
                    .any(|p| p["name"] == "id" && p["in"] == "path"),
                "{method} {path}: no id path parameter"
            );
        }
    }
    let codes = |method: &str, path: &str| -> BTreeSet<String> {
        spec["paths"][path][method]["responses"]
            .as_object()
            .map(|r| r.keys().cloned().collect())
            .unwrap_or_default()
    };
    for (method, path, code) in [
        ("post", "/v1/signup", "201"),
        ("post", "/v1/signup", "409"),
        ("post", "/v1/signup", "422"),
        ("post", "/v1/auth/token", "200"),
        ("post", "/v1/auth/token", "401"),
        ("post", "/v1/auth/token", "429"),
        ("post", "/v1/users", "201"),
        ("post", "/v1/users", "409"),
        ("post", "/v1/users", "403"),
        ("put", "/v1/users/{id}/role", "409"),
        ("delete", "/v1/users/{id}", "204"),
        ("delete", "/v1/users/{id}", "409"),
        ("post", "/v1/customers", "201"),
        ("post", "/v1/customers", "409"),
        ("post", "/v1/customers", "422"),
        ("get", "/v1/customers", "400"),
        ("get", "/v1/customers/{id}", "404"),
        ("patch", "/v1/customers/{id}", "412"),
        ("patch", "/v1/customers/{id}", "422"),
        ("delete", "/v1/customers/{id}", "204"),
        ("post", "/v1/photos", "201"),
        ("post", "/v1/photos", "413"),
        ("post", "/v1/photos", "415"),
        ("get", "/readyz", "503"),
    ] {
        assert!(
            codes(method, path).contains(code),
            "{method} {path} does not document {code}: {:?}",
            codes(method, path)
        );
    }
    // The upload is documented as multipart.
    assert!(
        spec["paths"]["/v1/photos"]["post"]["requestBody"]["content"]
            .get("multipart/form-data")
            .is_some(),
        "POST /v1/photos is not documented as multipart/form-data"
    );
}
both_stacks!(
    openapi_document,
    openapi_document_embedded,
    openapi_document_full_stack
);

/// `src="..."` and `href="..."` values of an HTML page.
fn references(html: &str) -> Vec<String> {
    let mut found = vec![];
    for attribute in ["src=\"", "href=\""] {
        let mut rest = html;
        while let Some(start) = rest.find(attribute) {
            rest = &rest[start + attribute.len()..];
            if let Some(end) = rest.find('"') {
                found.push(rest[..end].to_owned());
                rest = &rest[end..];
            }
        }
    }
    found
}

async fn docs_page(stack: Stack) {
    let app = spawn_app(stack).await;
    let docs = app.send(app.req(Method::GET, "/docs", None)).await;
    docs.expect(200, "GET /docs");
    assert!(
        docs.header("content-type")
            .is_some_and(|c| c.starts_with("text/html")),
        "/docs content type {:?}",
        docs.header("content-type")
    );
    let html = docs.text();
    assert!(html.to_lowercase().contains("<html"), "{html}");
    let base = reqwest::Url::parse(&docs.url).expect("docs url");
    let local: Vec<reqwest::Url> = references(&html)
        .iter()
        .filter(|r| !r.starts_with('#') && !r.starts_with("data:"))
        .map(|r| base.join(r).expect("asset url"))
        .collect();
    assert!(!local.is_empty(), "/docs references no assets: {html}");
    for url in &local {
        assert_eq!(
            url.host_str(),
            Some("127.0.0.1"),
            "/docs loads {url} from another host: it must work offline"
        );
    }
    let mut fetched = 0;
    for url in local.iter().filter(|u| {
        let path = u.path();
        path.ends_with(".js") || path.ends_with(".css")
    }) {
        let asset = app.send(app.client.get(url.clone())).await;
        asset.expect(200, &format!("GET {url}"));
        assert!(!asset.bytes.is_empty(), "{url} is empty");
        fetched += 1;
    }
    assert!(fetched > 0, "/docs references no script or stylesheet");
    // The UI is pointed at the served spec.
    let mut initializer = html.clone();
    for url in local.iter().filter(|u| u.path().ends_with(".js")) {
        initializer.push_str(&app.send(app.client.get(url.clone())).await.text());
    }
    assert!(
        initializer.contains("/openapi.json"),
        "the docs page does not load /openapi.json"
    );
}
both_stacks!(docs_page, docs_page_embedded, docs_page_full_stack);
