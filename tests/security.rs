//! Hostile clients, black-box: the OWASP API Security Top 10 (2023) items
//! the other test files do not already cover (RELIABILITY.md, "Hostile input",
//! has the whole map), and the regressions of what fuzzing and review found.
mod common;

use common::{spawn_app, spawn_app_with, spawn_process, Stack, TestApp};
use reqwest::Method;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// Text that must never reach a client: internals of the server.
const LEAKS: [&str; 12] = [
    "sqlx",
    "sqlite",
    "postgres",
    "panicked",
    "backtrace",
    "src/",
    ".rs:",
    "/.cargo/",
    "select ",
    "insert into",
    "argon2",
    "cqrs",
];

#[track_caller]
fn assert_no_leak(body: &str, what: &str) {
    let lower = body.to_lowercase();
    for leak in LEAKS {
        assert!(
            !lower.contains(leak),
            "{what}: the response shows {leak:?}: {body}"
        );
    }
}

/// Unique bytes per call, so every upload is its own photo.
fn png() -> Vec<u8> {
    test_support::png_with(Uuid::new_v4().as_bytes())
}

// ---------------------------------------------------------------------------
// API8 security misconfiguration: headers on every kind of response
// ---------------------------------------------------------------------------

#[tokio::test]
async fn security_headers_on_every_response() {
    let app = spawn_app(Stack::Embedded).await;
    let admin = app.signup("Headers").await;
    let photo = app.upload_photo(&admin.token, png(), None).await;
    photo.expect(201, "upload");
    let photo_path = format!("/v1/photos/{}", photo.json["id"].as_str().unwrap());
    let responses = [
        ("JSON", app.get("/v1/me", &admin.token).await),
        ("list", app.get("/v1/customers", &admin.token).await),
        (
            "problem",
            app.get("/v1/customers/not-a-uuid", &admin.token).await,
        ),
        ("401", app.send(app.req(Method::GET, "/v1/me", None)).await),
        (
            "404 route",
            app.send(app.req(Method::GET, "/nope", None)).await,
        ),
        (
            "405",
            app.send(app.req(Method::DELETE, "/v1/company", Some(&admin.token)))
                .await,
        ),
        (
            "openapi",
            app.send(app.req(Method::GET, "/openapi.json", None)).await,
        ),
        ("photo", app.get(&photo_path, &admin.token).await),
        (
            "health",
            app.send(app.req(Method::GET, "/healthz", None)).await,
        ),
    ];
    for (what, response) in &responses {
        assert_eq!(
            response.header("x-content-type-options").as_deref(),
            Some("nosniff"),
            "{what}: X-Content-Type-Options"
        );
        assert_eq!(
            response.header("x-frame-options").as_deref(),
            Some("DENY"),
            "{what}"
        );
        assert_eq!(
            response.header("referrer-policy").as_deref(),
            Some("no-referrer"),
            "{what}"
        );
        assert!(
            response
                .header("content-security-policy")
                .is_some_and(|csp| csp.contains("default-src 'none'")),
            "{what}: Content-Security-Policy {:?}",
            response.header("content-security-policy")
        );
        assert!(response.header("x-request-id").is_some(), "{what}");
        // Nothing advertises the software behind the API.
        assert!(response.header("server").is_none(), "{what}: Server header");
        assert!(response.header("x-powered-by").is_none(), "{what}");
    }
    for (what, response) in &responses[..7] {
        assert_eq!(
            response.header("cache-control").as_deref(),
            Some("no-store"),
            "{what}: Cache-Control"
        );
    }
    // Photo bytes: cacheable by the caller only, never by shared caches.
    let photo = &responses[7].1;
    photo.expect(200, "photo bytes");
    assert_eq!(
        photo.header("cache-control").as_deref(),
        Some("private, max-age=86400, immutable")
    );
    // The docs page needs its scripts: it is not under the API's CSP.
    let docs = app.send(app.req(Method::GET, "/docs/", None)).await;
    docs.expect(200, "docs");
    assert_eq!(
        docs.header("x-content-type-options").as_deref(),
        Some("nosniff")
    );
}

// ---------------------------------------------------------------------------
// API8: CORS answers only the configured origins
// ---------------------------------------------------------------------------

#[tokio::test]
async fn cors_allows_only_configured_origins() {
    let allowed = "https://app.example.com";
    let app = spawn_app_with(
        Stack::Embedded,
        &[(
            "CRM_CORS_ORIGINS",
            "https://app.example.com, https://admin.example.com",
        )],
    )
    .await;
    let admin = app.signup("Cors").await;

    // Preflight from an allowed origin: the methods and headers the API uses.
    let preflight = app
        .send(
            app.req(Method::OPTIONS, "/v1/customers/x", None)
                .header("origin", allowed)
                .header("access-control-request-method", "PATCH")
                .header(
                    "access-control-request-headers",
                    "authorization, content-type, if-match",
                ),
        )
        .await;
    assert!(preflight.status < 300, "preflight: {}", preflight.status);
    assert_eq!(
        preflight.header("access-control-allow-origin").as_deref(),
        Some(allowed)
    );
    let methods = preflight
        .header("access-control-allow-methods")
        .unwrap_or_default()
        .to_uppercase();
    assert!(methods.contains("PATCH"), "allow-methods {methods}");
    let headers = preflight
        .header("access-control-allow-headers")
        .unwrap_or_default()
        .to_lowercase();
    for header in [
        "authorization",
        "content-type",
        "if-match",
        "idempotency-key",
        "x-consistency-token",
    ] {
        assert!(headers.contains(header), "allow-headers {headers}");
    }
    // Credentials are a bearer token, not cookies: no credentialed CORS.
    assert!(preflight
        .header("access-control-allow-credentials")
        .is_none());

    // A real request from an allowed origin sees the origin echoed and the
    // contract's headers exposed.
    let ok = app
        .send(
            app.req(Method::GET, "/v1/me", Some(&admin.token))
                .header("origin", allowed),
        )
        .await;
    ok.expect(200, "GET from an allowed origin");
    assert_eq!(
        ok.header("access-control-allow-origin").as_deref(),
        Some(allowed)
    );
    let exposed = ok
        .header("access-control-expose-headers")
        .unwrap_or_default()
        .to_lowercase();
    for header in ["etag", "location", "x-consistency-token", "retry-after"] {
        assert!(exposed.contains(header), "expose-headers {exposed}");
    }

    // Any other origin (or a look-alike) gets no CORS grant, never `*`.
    for origin in [
        "https://evil.example.com",
        "https://app.example.com.evil.com",
        "http://app.example.com",
        "null",
    ] {
        for request in [
            app.req(Method::GET, "/v1/me", Some(&admin.token))
                .header("origin", origin),
            app.req(Method::OPTIONS, "/v1/me", None)
                .header("origin", origin)
                .header("access-control-request-method", "GET"),
        ] {
            let response = app.send(request).await;
            assert_eq!(
                response.header("access-control-allow-origin"),
                None,
                "origin {origin} got a CORS grant"
            );
        }
    }

    // Without CRM_CORS_ORIGINS no origin is allowed.
    let closed = spawn_app(Stack::Embedded).await;
    let response = closed
        .send(
            closed
                .req(Method::GET, "/healthz", None)
                .header("origin", allowed),
        )
        .await;
    assert_eq!(response.header("access-control-allow-origin"), None);
}

// ---------------------------------------------------------------------------
// API8: errors never show internals
// ---------------------------------------------------------------------------

#[tokio::test]
async fn errors_never_leak_internals() {
    let app = spawn_app(Stack::Embedded).await;
    let admin = app.signup("Leaks").await;
    let customer = app
        .create_customer(&admin.token, json!({"name": "Ada", "surname": "L"}))
        .await;
    let path = format!("/v1/customers/{}", customer["id"].as_str().unwrap());
    let raw = |method: Method, path: &str, content_type: &str, body: &str| {
        app.req(method, path, Some(&admin.token))
            .header("content-type", content_type)
            .body(body.to_owned())
    };
    let requests = vec![
        raw(
            Method::POST,
            "/v1/customers",
            "application/json",
            "{\"name\":",
        ),
        raw(Method::POST, "/v1/customers", "application/json", "[1,2]"),
        raw(
            Method::POST,
            "/v1/customers",
            "application/json",
            "{\"name\": 1, \"surname\": {}}",
        ),
        raw(
            Method::POST,
            "/v1/customers",
            "application/json",
            "{\"name\": \"\\ud800\", \"surname\": \"x\"}",
        ),
        raw(Method::PATCH, &path, "text/plain", "x"),
        raw(
            Method::POST,
            "/v1/photos",
            "multipart/form-data; boundary=x",
            "--x\r\nbroken",
        ),
        raw(
            Method::POST,
            "/v1/photos",
            "multipart/form-data",
            "no boundary",
        ),
        app.req(Method::GET, "/v1/customers/%FF%FE", Some(&admin.token)),
        app.req(
            Method::GET,
            "/v1/customers?limit=1&limit=2&sort[]=x",
            Some(&admin.token),
        ),
        app.req(
            Method::GET,
            "/v1/customers?cursor=eyJ9.eyJ9",
            Some(&admin.token),
        ),
        app.req(Method::GET, &path, Some(&admin.token))
            .header("x-consistency-token", "W3siayI6ImEifV0"),
        app.req(Method::PATCH, &path, Some(&admin.token))
            .header("if-match", "W/W/\"1\"")
            .json(&json!({"notes": "x"})),
        app.req(Method::GET, "/v1/me", None)
            .header("authorization", "Bearer eyJhbGciOiJub25lIn0.e30."),
        app.req(
            Method::GET,
            "/v1/users/00000000-0000-0000-0000-000000000000",
            Some(&admin.token),
        ),
        app.req(Method::PUT, "/v1/me", Some(&admin.token)),
    ];
    for request in requests {
        let response = app.send(request).await;
        let what = format!("{} {}", response.status, response.url);
        assert!(
            (400..500).contains(&response.status),
            "{what}: {}",
            response.text()
        );
        response.problem(response.status, &what);
        assert_no_leak(&response.text(), &what);
    }
}

// ---------------------------------------------------------------------------
// API4 unrestricted resource consumption
// ---------------------------------------------------------------------------

#[tokio::test]
async fn page_size_is_clamped() {
    let app = spawn_app(Stack::Embedded).await;
    let admin = app.signup("Pages").await;
    use futures::StreamExt;
    let creates = futures::stream::iter(0..205)
        .map(|i| {
            app.post(
                "/v1/customers",
                &admin.token,
                json!({"name": format!("N{i}"), "surname": "Many"}),
            )
        })
        .buffer_unordered(8)
        .collect::<Vec<_>>()
        .await;
    for response in creates {
        response.expect(201, "create");
    }
    for limit in ["201", "1000", "9223372036854775807"] {
        let page = app
            .get(&format!("/v1/customers?limit={limit}"), &admin.token)
            .await;
        page.expect(200, &format!("limit={limit}"));
        assert_eq!(
            page.json["items"].as_array().map(Vec::len),
            Some(200),
            "limit={limit} is clamped to 200"
        );
        assert!(page.json["next_cursor"].is_string());
    }
    let page = app.get("/v1/customers", &admin.token).await;
    assert_eq!(page.json["items"].as_array().map(Vec::len), Some(50));
    app.get("/v1/customers?limit=0", &admin.token)
        .await
        .problem(400, "limit=0");
}

#[tokio::test]
async fn request_bodies_are_bounded() {
    let app = spawn_app(Stack::Embedded).await;
    let admin = app.signup("Bodies").await;
    let authorization = format!("Bearer {}", admin.token);
    // JSON routes take 256 KiB at most: just over is 413, before any parsing.
    let body = json!({"name": "X", "surname": "Y", "notes": "n".repeat(300 * 1024)});
    app.send_early(
        "POST",
        "/v1/customers",
        &[
            ("Authorization", authorization.as_str()),
            ("Content-Type", "application/json"),
        ],
        body.to_string().into_bytes(),
    )
    .await
    .problem(413, "a 300 KiB JSON body");
    // Text fields have their own limits, counted on what is sent.
    let padded = format!(" {} ", "x".repeat(199));
    app.post(
        "/v1/customers",
        &admin.token,
        json!({"name": padded, "surname": "Y"}),
    )
    .await
    .invalid_field("name", "a 201-character name, 199 of them not blank");
    app.post(
        "/v1/customers",
        &admin.token,
        json!({"name": "X", "surname": "Y", "notes": "n".repeat(10_001)}),
    )
    .await
    .invalid_field("notes", "10,001 characters of notes");
    // A search is at most 200 characters.
    app.get(
        &format!("/v1/customers?q={}", "a".repeat(201)),
        &admin.token,
    )
    .await
    .problem(400, "a 201-character search");
    // Header values have limits too.
    app.send(
        app.req(Method::GET, "/v1/me", Some(&admin.token))
            .header("x-consistency-token", "A".repeat(5000)),
    )
    .await
    .problem(400, "a 5,000-byte X-Consistency-Token");
    // The photo upload: unknown or repeated parts are refused like unknown
    // JSON fields, and nothing is stored for them.
    let part = || {
        reqwest::multipart::Part::bytes(png())
            .file_name("a.png")
            .mime_str("image/png")
            .expect("mime")
    };
    for (form, field) in [
        (
            reqwest::multipart::Form::new()
                .part("file", part())
                .part("file", part()),
            "file",
        ),
        (
            reqwest::multipart::Form::new()
                .part("file", part())
                .text("owner", "someone"),
            "owner",
        ),
        (
            reqwest::multipart::Form::new()
                .text("customer_id", Uuid::new_v4().to_string())
                .text("customer_id", Uuid::new_v4().to_string())
                .part("file", part()),
            "customer_id",
        ),
    ] {
        app.send(
            app.req(Method::POST, "/v1/photos", Some(&admin.token))
                .multipart(form),
        )
        .await
        .invalid_field(field, &format!("a form with a bad {field} part"));
    }
}

#[tokio::test]
async fn many_uploads_at_once_all_succeed() {
    let app = spawn_app(Stack::Embedded).await;
    let admin = app.signup("Uploads").await;
    // More than MAX_CONCURRENT_UPLOADS (16): the rest wait their turn.
    let uploads = (0..40).map(|_| app.upload_photo(&admin.token, png(), None));
    let responses = futures::future::join_all(uploads).await;
    for response in &responses {
        response.expect(201, "a concurrent upload");
    }
    let ids: std::collections::BTreeSet<_> = responses
        .iter()
        .map(|r| r.json["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 40);
}

/// Peak resident memory of a process, in bytes.
fn peak_rss(pid: u32) -> u64 {
    test_support::process_memory_kib(pid, "VmHWM").expect("VmHWM") * 1024
}

#[tokio::test]
async fn password_hashing_is_bounded_under_a_login_burst() {
    // Regression: every login (and signup) ran argon2id (19 MiB) on the
    // blocking pool with no bound, so a burst of wrong passwords (all past
    // the rate limiter before the first failure is counted) took ~19 MiB
    // each at once. Now at most 2 x CPUs (max 16) hash at a time.
    let app = spawn_process(Stack::Embedded, &[]).await;
    let permits = std::thread::available_parallelism()
        .map(|n| n.get() * 2)
        .unwrap_or(4)
        .clamp(2, 16) as u64;
    let burst = (permits * 4).max(40);
    let before = peak_rss(app.pid());
    let logins = (0..burst).map(|i| {
        app.json(
            Method::POST,
            "/v1/auth/token",
            None,
            Some(json!({"email": format!("nobody-{i}@example.com"), "password": "wrong password"})),
        )
    });
    for response in futures::future::join_all(logins).await {
        assert!(
            response.status == 401 || response.status == 429,
            "a failed login: {}",
            response.status
        );
    }
    let grown = peak_rss(app.pid()).saturating_sub(before);
    let bound = (permits + 4) * 20 * 1024 * 1024;
    assert!(
        grown < bound,
        "{burst} concurrent logins grew the server by {} MiB (bound {} MiB)",
        grown / 1024 / 1024,
        bound / 1024 / 1024
    );
    // And the server is still fine.
    app.signup("Still Up").await;
}

#[tokio::test]
async fn slow_clients_are_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = spawn_app(Stack::Embedded).await;
    let admin = app.signup("Slow").await;
    let authority = app.base.trim_start_matches("http://").to_owned();

    // Regression (slowloris): a head that never ends held its connection
    // forever; now the server closes it after 30 s.
    let head = async {
        let mut stream = tokio::net::TcpStream::connect(&authority)
            .await
            .expect("connect");
        stream
            .write_all(b"GET /v1/me HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            .await
            .expect("write");
        let started = Instant::now();
        let mut buf = [0u8; 256];
        let read = tokio::time::timeout(Duration::from_secs(60), stream.read(&mut buf)).await;
        assert!(
            matches!(read, Ok(Ok(0)) | Ok(Err(_))),
            "the connection stayed open or answered: {read:?}"
        );
        started.elapsed()
    };
    // A body that never comes: the request time limit answers 503 problem+json.
    let body = async {
        let mut stream = tokio::net::TcpStream::connect(&authority)
            .await
            .expect("connect");
        let request = format!(
            "POST /v1/customers HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
             Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"name\":",
            admin.token
        );
        stream.write_all(request.as_bytes()).await.expect("write");
        let started = Instant::now();
        let mut raw = Vec::new();
        let mut buf = [0u8; 4096];
        let _ = tokio::time::timeout(Duration::from_secs(60), async {
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        raw.extend_from_slice(&buf[..n]);
                        if raw.windows(4).any(|w| w == b"\r\n\r\n") && raw.ends_with(b"}") {
                            break;
                        }
                    }
                }
            }
        })
        .await;
        (
            started.elapsed(),
            String::from_utf8_lossy(&raw).into_owned(),
        )
    };
    let (head_after, (body_after, response)) = tokio::join!(head, body);
    assert!(
        head_after >= Duration::from_secs(25) && head_after < Duration::from_secs(50),
        "the slow head was cut after {head_after:?}"
    );
    assert!(
        body_after >= Duration::from_secs(25) && body_after < Duration::from_secs(50),
        "the slow body was answered after {body_after:?}"
    );
    assert!(response.starts_with("HTTP/1.1 503"), "{response}");
    let lower = response.to_lowercase();
    assert!(
        lower.contains("content-type: application/problem+json"),
        "{response}"
    );
    assert!(lower.contains("retry-after:"), "{response}");
    // Nothing was created from half a body.
    let list = app.get("/v1/customers", &admin.token).await;
    assert_eq!(list.json["items"].as_array().map(Vec::len), Some(0));
}

// ---------------------------------------------------------------------------
// API7 server-side request forgery: no input is ever fetched
// ---------------------------------------------------------------------------

/// The one input the server fetches by design: a webhook's URL, refused when
/// it is not https or reaches an internal address (checked below and in
/// `webhooks.rs`).
const WEBHOOK_ROUTES: &str = "/v1/webhooks";

/// Every property name and format of the request schemas of the document,
/// but the webhook routes'.
fn request_properties(spec: &Value) -> Vec<(String, Value)> {
    let schemas = &spec["components"]["schemas"];
    let mut names = vec![];
    let mut queue: Vec<Value> = vec![];
    for (path, item) in spec["paths"].as_object().expect("paths") {
        if path.starts_with(WEBHOOK_ROUTES) {
            continue;
        }
        for operation in item.as_object().expect("path item").values() {
            for parameter in operation["parameters"].as_array().into_iter().flatten() {
                names.push((
                    parameter["name"].as_str().unwrap_or("").to_owned(),
                    parameter["schema"].clone(),
                ));
            }
            for content in operation["requestBody"]["content"]
                .as_object()
                .into_iter()
                .flat_map(|c| c.values())
            {
                queue.push(content["schema"].clone());
            }
        }
    }
    while let Some(schema) = queue.pop() {
        if let Some(reference) = schema["$ref"].as_str() {
            let name = reference.rsplit('/').next().unwrap_or("");
            queue.push(schemas[name].clone());
            continue;
        }
        for (name, property) in schema["properties"].as_object().into_iter().flatten() {
            names.push((name.clone(), property.clone()));
            queue.push(property.clone());
        }
    }
    names
}

#[tokio::test]
async fn no_input_is_a_url_the_server_fetches() {
    let app = spawn_app(Stack::Embedded).await;
    let spec = app.send(app.req(Method::GET, "/openapi.json", None)).await;
    spec.expect(200, "openapi.json");
    let inputs = request_properties(&spec.json);
    assert!(inputs.len() > 20, "request inputs found: {}", inputs.len());
    for (name, schema) in &inputs {
        let lower = name.to_lowercase();
        for word in [
            "url", "uri", "link", "callback", "webhook", "href", "endpoint",
        ] {
            assert!(
                !lower.contains(word),
                "request input {name:?} looks like a URL"
            );
        }
        let format = schema["format"].as_str().unwrap_or("");
        assert!(
            !matches!(
                format,
                "uri" | "url" | "uri-reference" | "hostname" | "ipv4" | "ipv6"
            ),
            "request input {name:?} has format {format}"
        );
    }
    // The photo URLs the API returns are its own paths, never an object
    // store's: a client cannot make the server (or itself) fetch elsewhere.
    let admin = app.signup("Urls").await;
    // A webhook cannot point the server at itself, its network or the cloud
    // metadata service.
    for url in [
        "https://169.254.169.254/latest/meta-data/",
        "https://127.0.0.1:8080/v1/company",
        "http://example.com/hook",
    ] {
        app.post(WEBHOOK_ROUTES, &admin.token, json!({ "url": url }))
            .await
            .problem(422, url);
    }
    let photo = app.upload_photo(&admin.token, png(), None).await;
    photo.expect(201, "upload");
    let id = photo.json["id"].as_str().unwrap();
    assert!(photo.json["url"]
        .as_str()
        .is_some_and(|url| url.starts_with(&format!("/v1/photos/{id}?"))));
    assert_eq!(
        photo.header("location").as_deref(),
        Some(format!("/v1/photos/{id}").as_str())
    );
    // A URL where an id belongs is just a bad id.
    let form = reqwest::multipart::Form::new()
        .part(
            "file",
            reqwest::multipart::Part::bytes(png())
                .file_name("a.png")
                .mime_str("image/png")
                .expect("mime"),
        )
        .text("customer_id", "http://169.254.169.254/latest/meta-data/");
    app.send(
        app.req(Method::POST, "/v1/photos", Some(&admin.token))
            .multipart(form),
    )
    .await
    .invalid_field("customer_id", "a URL as customer_id");
    app.put(
        "/v1/customers/00000000-0000-0000-0000-000000000000/photo",
        &admin.token,
        json!({"photo_id": "http://127.0.0.1:9000/bucket/key"}),
    )
    .await
    .problem(422, "a URL as photo_id");
}

// ---------------------------------------------------------------------------
// Regressions on both stacks
// ---------------------------------------------------------------------------

async fn assert_stale(app: &TestApp, token: &str, consistency: &str, what: &str) {
    let response = app
        .send(
            app.req(Method::GET, "/v1/company", Some(token))
                .header("x-consistency-token", consistency),
        )
        .await;
    response.expect(200, what);
    assert_eq!(
        response.header("x-consistency-stale").as_deref(),
        Some("true"),
        "{what}: the read did not give up waiting"
    );
}

async fn regressions(stack: Stack) {
    let app = spawn_app(stack).await;
    let a = app.signup("Tenant A").await;
    let b = app.signup("Tenant B").await;

    // 1. Cursors the server issues are accepted, however long: with a
    // 2,048-byte limit, a page sorted by surname that ended on a long Hangul
    // surname (each syllable folds to three 3-byte jamo) got a next_cursor
    // the next request refused with 400.
    let surname = "각".repeat(200);
    for name in ["First", "Second", "Third"] {
        app.create_customer(&a.token, json!({"name": name, "surname": surname}))
            .await;
    }
    let mut seen = vec![];
    let mut path = "/v1/customers?sort=surname&limit=1".to_owned();
    for _ in 0..3 {
        let page = app.get(&path, &a.token).await;
        page.expect(200, &format!("GET {}", &path[..path.len().min(80)]));
        let items = page.json["items"].as_array().cloned().unwrap_or_default();
        assert_eq!(items.len(), 1);
        seen.push(items[0]["id"].as_str().unwrap().to_owned());
        match page.json["next_cursor"].as_str() {
            Some(cursor) => {
                assert!(cursor.len() > 2048, "cursor of {} bytes", cursor.len());
                path = format!("/v1/customers?sort=surname&limit=1&cursor={cursor}");
            }
            None => break,
        }
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 3, "the walk saw every customer once");
    // With a long search too.
    let q = "각".repeat(200);
    let page = app
        .get(
            &format!("/v1/customers?sort=surname&limit=1&q={q}"),
            &a.token,
        )
        .await;
    page.expect(200, "a 200-character search");
    let cursor = page.json["next_cursor"]
        .as_str()
        .expect("a next page")
        .to_owned();
    app.get(
        &format!("/v1/customers?sort=surname&limit=1&q={q}&cursor={cursor}"),
        &a.token,
    )
    .await
    .expect(200, "the next page of a long search");

    // 2. Search folding: "İ" lower-cases to "i" + U+0307, and the old fold
    // kept that mark, which then split the word: "ist" found nothing.
    let istanbul = app
        .create_customer(&a.token, json!({"name": "Ayşe", "surname": "İstanbul"}))
        .await;
    for q in ["ist", "istanbul", "İST", "İstanbul"] {
        let found = app.get(&format!("/v1/customers?q={q}"), &a.token).await;
        found.expect(200, q);
        let ids: Vec<&str> = found.json["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["id"].as_str())
            .collect();
        assert_eq!(ids, vec![istanbul["id"].as_str().unwrap()], "q={q}");
    }

    // 3. X-Consistency-Token only ever looks at the caller's company: a
    // token naming another company's customer is never satisfied, exactly
    // like a token naming nothing. It was satisfied at once, so the reply's
    // X-Consistency-Stale (and its timing) told whether another company's id
    // existed and how far it had been changed.
    let created = app
        .post(
            "/v1/customers",
            &a.token,
            json!({"name": "Secret", "surname": "Customer"}),
        )
        .await;
    created.expect(201, "A's customer");
    let token = created.consistency_token("A's create");
    // A's own reads are fresh.
    let own = app.get_after("/v1/company", &a.token, &token).await;
    own.expect(200, "A reads with its token");
    // B with A's token, and with a token naming nothing, concurrently.
    let nothing = {
        use base64::Engine;
        let json = json!([{"k": "a", "t": "customer", "id": Uuid::new_v4().to_string(), "s": 1}]);
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json.to_string())
    };
    tokio::join!(
        assert_stale(&app, &b.token, &token, "B with A's token"),
        assert_stale(&app, &b.token, &nothing, "B with a token of nothing"),
    );
}
both_stacks!(regressions, regressions_embedded, regressions_full_stack);
