//! Photos, black-box: the real `crm` binary over HTTP, on both stacks.
//!
//! Upload flow option 1 (upload, then `PUT /v1/customers/{id}/photo` or
//! `photo_id` at creation), option 2 (upload with `customer_id`, attached by
//! the policy), type and size limits, the object store going away and coming
//! back, tenancy, and what ends up in the bucket. Every service a test needs
//! must be there: a missing one fails the test, nothing is skipped.
mod common;

use common::{spawn_app, spawn_app_with, Stack, Tenant, TestApp};
use reqwest::header::HeaderMap;
use reqwest::Method;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use test_support::free_port;
use uuid::Uuid;

const PNG_SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A];
const MIB: usize = 1024 * 1024;

// ---------------------------------------------------------------- helpers

/// A small "PNG": the signature (all the server sniffs), then every byte value
/// (so any text mangling of the body shows) and a unique tail (so every photo
/// has its own hash).
fn png() -> Vec<u8> {
    png_of_size(33 + 256 * 3 + 16)
}

/// A body of exactly `size` bytes with a PNG signature and header (a 1×1
/// image's IHDR chunk, which the server parses), unique per call.
fn png_of_size(size: usize) -> Vec<u8> {
    let mut bytes = PNG_SIGNATURE.to_vec();
    bytes.extend_from_slice(&[0, 0, 0, 13]);
    bytes.extend_from_slice(b"IHDR");
    bytes.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 1, 8, 2, 0, 0, 0]);
    bytes.extend_from_slice(&[0x90, 0x77, 0x53, 0xDE]);
    bytes.extend_from_slice(Uuid::new_v4().as_bytes());
    bytes.extend((0..=255u8).cycle().take(size.saturating_sub(bytes.len())));
    bytes.truncate(size);
    bytes
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn token_of(headers: &HeaderMap) -> String {
    header(headers, "x-consistency-token")
        .expect("a write response carries X-Consistency-Token")
        .to_owned()
}

fn assert_problem(status: u16, headers: &HeaderMap, body: &Value, expected: u16, what: &str) {
    assert_eq!(status, expected, "{what}: status (body {body})");
    assert_eq!(
        header(headers, "content-type"),
        Some("application/problem+json"),
        "{what}: a problem+json error"
    );
    assert_eq!(body["status"], expected, "{what}: problem status field");
    assert!(body["title"].is_string(), "{what}: problem title: {body}");
    assert!(body["type"].is_string(), "{what}: problem type: {body}");
}

/// `POST /v1/photos` as multipart: part `file` (with this file name and
/// declared type) and optionally part `customer_id`.
async fn upload_as(
    app: &TestApp,
    token: &str,
    bytes: Vec<u8>,
    file_name: &str,
    mime: &str,
    customer_id: Option<&str>,
) -> (u16, HeaderMap, Value) {
    let part = reqwest::multipart::Part::bytes(bytes)
        .file_name(file_name.to_owned())
        .mime_str(mime)
        .expect("mime");
    let mut form = reqwest::multipart::Form::new().part("file", part);
    if let Some(customer) = customer_id {
        form = form.text("customer_id", customer.to_owned());
    }
    let response = app
        .client
        .post(app.url("/v1/photos"))
        .bearer_auth(token)
        .multipart(form)
        .send()
        .await
        .expect("upload request");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let bytes = response.bytes().await.expect("upload response body");
    let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, headers, json)
}

async fn upload(
    app: &TestApp,
    token: &str,
    bytes: Vec<u8>,
    customer_id: Option<&str>,
) -> (u16, HeaderMap, Value) {
    upload_as(app, token, bytes, "photo.png", "image/png", customer_id).await
}

/// Uploads and insists on `201`; returns the body and the consistency token.
async fn upload_ok(
    app: &TestApp,
    token: &str,
    bytes: Vec<u8>,
    customer_id: Option<&str>,
) -> (Value, String) {
    let (status, headers, body) = upload(app, token, bytes, customer_id).await;
    assert_eq!(status, 201, "upload: {body}");
    (body, token_of(&headers))
}

/// `POST /v1/photos` over a raw socket, reading the response while the body
/// is still being sent (as curl does): the server answers an oversized upload
/// before it has read the whole body and then closes the connection, which
/// reqwest/hyper report as a broken pipe instead of the response.
async fn upload_early_response(
    app: &TestApp,
    token: &str,
    bytes: Vec<u8>,
    customer_id: Option<&str>,
) -> (u16, HeaderMap, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let boundary = format!("----crmtest{}", Uuid::new_v4().simple());
    let mut body = Vec::with_capacity(bytes.len() + 512);
    if let Some(customer) = customer_id {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"customer_id\"\r\n\r\n{customer}\r\n"
            )
            .as_bytes(),
        );
    }
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.png\"\r\n\
             Content-Type: image/png\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(&bytes);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let authority = app.base.trim_start_matches("http://").to_owned();
    let head = format!(
        "POST /v1/photos HTTP/1.1\r\nHost: {authority}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: multipart/form-data; boundary={boundary}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let stream = tokio::net::TcpStream::connect(&authority)
        .await
        .expect("connect to crm");
    let (mut reader, mut writer) = stream.into_split();
    let sending = tokio::spawn(async move {
        // The server may stop reading (and reset the connection) early.
        let _ = writer.write_all(head.as_bytes()).await;
        let _ = writer.write_all(&body).await;
        let _ = writer.flush().await;
        writer
    });
    let mut raw = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let read = async {
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => raw.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), read)
        .await
        .expect("a response to the oversized upload within 30 s");
    sending.abort();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| {
            panic!(
                "no HTTP response head received: {:?}",
                String::from_utf8_lossy(&raw)
            )
        });
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("bad status line in {head:?}"));
    let mut headers = HeaderMap::new();
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            headers.append(
                reqwest::header::HeaderName::from_bytes(name.trim().as_bytes()).expect("name"),
                reqwest::header::HeaderValue::from_str(value.trim()).expect("value"),
            );
        }
    }
    let mut content = raw[split + 4..].to_vec();
    if let Some(length) = header(&headers, "content-length").and_then(|l| l.parse().ok()) {
        assert!(
            content.len() >= length,
            "the response body was cut short: {head}"
        );
        content.truncate(length);
    }
    let json = serde_json::from_slice(&content).unwrap_or(Value::Null);
    (status, headers, json)
}

/// A request with extra headers; JSON body back (Null if none).
async fn call_with(
    app: &TestApp,
    method: Method,
    path: &str,
    token: &str,
    body: Option<Value>,
    extra: &[(&str, &str)],
) -> (u16, HeaderMap, Value) {
    let mut request = app.client.request(method, app.url(path)).bearer_auth(token);
    for (name, value) in extra {
        request = request.header(*name, *value);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let bytes = response.bytes().await.expect("body");
    (
        status,
        headers,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// A read that sends a consistency token back and must not come back stale.
async fn read_after(app: &TestApp, path: &str, token: &str, consistency: &str) -> Value {
    let (status, headers, body) = call_with(
        app,
        Method::GET,
        path,
        token,
        None,
        &[("X-Consistency-Token", consistency)],
    )
    .await;
    assert_eq!(status, 200, "GET {path}: {body}");
    assert_eq!(
        header(&headers, "x-consistency-stale"),
        None,
        "GET {path} with the write's token must see the write (within 5 s)"
    );
    body
}

/// `GET` of raw bytes; with `consistency`, the read must not come back stale.
async fn get_bytes(
    app: &TestApp,
    path: &str,
    token: Option<&str>,
    consistency: Option<&str>,
) -> (u16, HeaderMap, Vec<u8>) {
    let mut request = app.client.get(app.url(path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(consistency) = consistency {
        request = request.header("X-Consistency-Token", consistency);
    }
    let response = request.send().await.expect("GET bytes");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let bytes = response.bytes().await.expect("bytes").to_vec();
    if consistency.is_some() {
        assert_eq!(
            header(&headers, "x-consistency-stale"),
            None,
            "GET {path} with the write's token must see the write (within 5 s)"
        );
    }
    (status, headers, bytes)
}

async fn create_customer(app: &TestApp, tenant: &Tenant, extra: Value) -> Value {
    let mut body = json!({"name": "Grace", "surname": "Hopper"});
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    let (status, _, customer) = app
        .call(
            Method::POST,
            "/v1/customers",
            Some(&tenant.token),
            Some(body),
        )
        .await;
    assert_eq!(status, 201, "create customer: {customer}");
    customer
}

fn id_of(value: &Value) -> String {
    value["id"].as_str().expect("an id").to_owned()
}

/// How many photos were recorded as uploaded (the policy's later
/// attach/reject events are asynchronous and not counted).
async fn photo_event_count(app: &TestApp) -> i64 {
    use sqlx::Connection;
    const SQL: &str =
        "SELECT count(*) FROM events WHERE aggregate_type = 'photo' AND event_type = 'PhotoUploaded'";
    match app.stack {
        Stack::Full => {
            let url = app
                .database_url
                .as_deref()
                .expect("full stack database url");
            let mut conn = sqlx::PgConnection::connect(url)
                .await
                .expect("connect to the test database");
            let n: i64 = sqlx::query_scalar(SQL)
                .fetch_one(&mut conn)
                .await
                .expect("count photo events");
            let _ = conn.close().await;
            n
        }
        Stack::Embedded => {
            let url = format!("sqlite://{}?mode=ro", app.data_dir.join("crm.db").display());
            let mut conn = sqlx::SqliteConnection::connect(&url)
                .await
                .expect("open the embedded database");
            let n: i64 = sqlx::query_scalar(SQL)
                .fetch_one(&mut conn)
                .await
                .expect("count photo events");
            let _ = conn.close().await;
            n
        }
    }
}

fn env_of<'a>(app: &'a TestApp, name: &str) -> &'a str {
    app.env
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("{name} is not set for this app"))
}

fn s3_store_of(app: &TestApp) -> commands::objects::s3::S3Store {
    commands::objects::s3::S3Store::new(
        env_of(app, "S3_ENDPOINT"),
        env_of(app, "S3_ACCESS_KEY"),
        env_of(app, "S3_SECRET_KEY"),
        env_of(app, "S3_BUCKET"),
        "us-east-1",
    )
    .expect("S3 client for the test bucket")
}

fn walk_files(dir: &Path, root: &Path, out: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            walk_files(&path, root, out);
        } else if let Ok(relative) = path.strip_prefix(root) {
            out.push(relative.to_string_lossy().replace('\\', "/"));
        }
    }
}

/// Every object key the app has stored: the bucket on the full stack, the
/// files under `<data dir>/photos` when embedded (in-flight temp files aside).
async fn object_keys(app: &TestApp) -> Vec<String> {
    use commands::objects::ObjectStore;
    match app.stack {
        Stack::Full => s3_store_of(app)
            .list("")
            .await
            .expect("list the test bucket")
            .into_iter()
            .map(|o| o.key)
            .collect(),
        Stack::Embedded => {
            let root = app.data_dir.join("photos");
            let mut keys = vec![];
            walk_files(&root, &root, &mut keys);
            keys.retain(|k| !k.rsplit('/').next().unwrap_or("").starts_with(".tmp-"));
            keys
        }
    }
}

/// A canonical (hyphenated, lower-case) UUID, nothing else.
fn is_uuid(text: &str) -> bool {
    Uuid::parse_str(text).is_ok_and(|u| u.hyphenated().to_string() == text)
}

async fn customer_count(app: &TestApp, tenant: &Tenant) -> usize {
    let (status, _, page) = app
        .call(Method::GET, "/v1/customers", Some(&tenant.token), None)
        .await;
    assert_eq!(status, 200, "list customers: {page}");
    page["items"].as_array().expect("items").len()
}

async fn metadata(app: &TestApp, tenant: &Tenant, photo: &str, consistency: &str) -> Value {
    read_after(
        app,
        &format!("/v1/photos/{photo}/metadata"),
        &tenant.token,
        consistency,
    )
    .await
}

fn assert_photo_ref(photo: &Value, expected: &Value, what: &str) {
    assert_eq!(photo["id"], expected["id"], "{what}: photo id");
    assert_eq!(photo["url"], expected["url"], "{what}: photo url");
    assert_eq!(
        photo["content_type"], expected["content_type"],
        "{what}: photo content type"
    );
    assert_eq!(photo["size"], expected["size"], "{what}: photo size");
}

// ---------------------------------------------------------------- 1. option 1

async fn option_one_upload_then_attach(stack: Stack) {
    let app = spawn_app(stack).await;
    let tenant = app.signup("Photo Co").await;
    let bytes = png();

    // Upload without a customer.
    let (status, headers, photo) = upload(&app, &tenant.token, bytes.clone(), None).await;
    assert_eq!(status, 201, "upload: {photo}");
    let id = id_of(&photo);
    assert!(is_uuid(&id), "photo id is a UUID: {id}");
    // The server's own path, signed so that it works without a token.
    assert!(photo["url"]
        .as_str()
        .is_some_and(|url| url.starts_with(&format!("/v1/photos/{id}?company="))));
    assert_eq!(photo["content_type"], "image/png");
    assert_eq!(photo["size"], bytes.len());
    assert_eq!(photo["sha256"], sha256_hex(&bytes));
    assert_eq!(photo["customer_id"], Value::Null);
    let upload_token = token_of(&headers);

    // Its bytes, as uploaded, with the headers of a private immutable image.
    let url = photo["url"].as_str().expect("url").to_owned();
    let (status, headers, got) =
        get_bytes(&app, &url, Some(&tenant.token), Some(&upload_token)).await;
    assert_eq!(status, 200, "GET {url}");
    assert_eq!(got, bytes, "the stored bytes are the uploaded bytes");
    assert_eq!(header(&headers, "content-type"), Some("image/png"));
    assert_eq!(header(&headers, "x-content-type-options"), Some("nosniff"));
    let etag = header(&headers, "etag").expect("ETag on the photo bytes");
    assert!(
        etag.len() > 2 && etag.starts_with('"') && etag.ends_with('"'),
        "a quoted ETag: {etag}"
    );
    let cache = header(&headers, "cache-control").expect("Cache-Control on the photo bytes");
    assert!(
        cache.contains("private") && !cache.contains("public"),
        "tenant data must not be cached by shared caches: {cache}"
    );
    // The signed url works without a token; the bare route does not.
    let (status, _, got) = get_bytes(&app, &url, None, None).await;
    assert_eq!(status, 200, "the signed url without a token");
    assert_eq!(got, bytes);
    let bare = format!("/v1/photos/{id}");
    let (status, headers, _) = get_bytes(&app, &bare, None, None).await;
    assert_eq!(status, 401, "photo bytes need a token or a signed url");
    assert_eq!(header(&headers, "www-authenticate"), Some("Bearer"));

    let meta = metadata(&app, &tenant, &id, &upload_token).await;
    assert_eq!(meta["id"], id.as_str());
    assert_eq!(meta["status"], "uploaded", "{meta}");
    assert_eq!(meta["customer_id"], Value::Null);
    assert_eq!(meta["sha256"], sha256_hex(&bytes));
    assert_eq!(meta["size"], bytes.len());

    // Attach it to a customer.
    let customer = create_customer(&app, &tenant, json!({})).await;
    assert_eq!(customer["photo"], Value::Null);
    let customer_id = id_of(&customer);
    let path = format!("/v1/customers/{customer_id}/photo");
    let (status, headers, shown) = app
        .call(
            Method::PUT,
            &path,
            Some(&tenant.token),
            Some(json!({"photo_id": id})),
        )
        .await;
    assert_eq!(status, 200, "PUT photo: {shown}");
    assert_eq!(shown["id"], customer_id.as_str());
    assert_photo_ref(&shown["photo"], &photo, "PUT photo response");
    let put_token = token_of(&headers);
    let read = read_after(
        &app,
        &format!("/v1/customers/{customer_id}"),
        &tenant.token,
        &put_token,
    )
    .await;
    assert_photo_ref(&read["photo"], &photo, "GET customer after PUT photo");
    let meta = metadata(&app, &tenant, &id, &put_token).await;
    assert_eq!(meta["status"], "attached", "{meta}");
    assert_eq!(meta["customer_id"], customer_id.as_str());

    // A second photo replaces the first, which becomes detached.
    let (second, _) = upload_ok(&app, &tenant.token, png(), None).await;
    let second_id = id_of(&second);
    let (status, headers, shown) = app
        .call(
            Method::PUT,
            &path,
            Some(&tenant.token),
            Some(json!({"photo_id": second_id})),
        )
        .await;
    assert_eq!(status, 200, "PUT second photo: {shown}");
    assert_photo_ref(&shown["photo"], &second, "PUT second photo response");
    let put_token = token_of(&headers);
    let first_meta = metadata(&app, &tenant, &id, &put_token).await;
    assert_eq!(first_meta["status"], "detached", "{first_meta}");
    assert_eq!(first_meta["customer_id"], Value::Null);
    let second_meta = metadata(&app, &tenant, &second_id, &put_token).await;
    assert_eq!(second_meta["status"], "attached", "{second_meta}");
    assert_eq!(second_meta["customer_id"], customer_id.as_str());
    // The replaced photo's bytes are still served.
    let (status, _, got) = get_bytes(&app, &url, Some(&tenant.token), Some(&upload_token)).await;
    assert_eq!(status, 200);
    assert_eq!(got, bytes);

    // Removing the photo.
    let (status, headers, shown) = app
        .call(Method::DELETE, &path, Some(&tenant.token), None)
        .await;
    assert_eq!(status, 200, "DELETE photo: {shown}");
    assert_eq!(shown["photo"], Value::Null, "{shown}");
    let delete_token = token_of(&headers);
    let read = read_after(
        &app,
        &format!("/v1/customers/{customer_id}"),
        &tenant.token,
        &delete_token,
    )
    .await;
    assert_eq!(read["photo"], Value::Null);
    let second_meta = metadata(&app, &tenant, &second_id, &delete_token).await;
    assert_eq!(second_meta["status"], "detached", "{second_meta}");

    // `photo_id` at creation attaches it in the same step.
    let (third, _) = upload_ok(&app, &tenant.token, png(), None).await;
    let third_id = id_of(&third);
    let (status, headers, created) = app
        .call(
            Method::POST,
            "/v1/customers",
            Some(&tenant.token),
            Some(json!({"name": "Alan", "surname": "Turing", "photo_id": third_id})),
        )
        .await;
    assert_eq!(status, 201, "create with photo_id: {created}");
    assert_photo_ref(&created["photo"], &third, "POST customer with photo_id");
    let created_id = id_of(&created);
    let create_token = token_of(&headers);
    let read = read_after(
        &app,
        &format!("/v1/customers/{created_id}"),
        &tenant.token,
        &create_token,
    )
    .await;
    assert_photo_ref(&read["photo"], &third, "GET customer created with photo_id");
    let third_meta = metadata(&app, &tenant, &third_id, &create_token).await;
    assert_eq!(third_meta["status"], "attached", "{third_meta}");
    assert_eq!(third_meta["customer_id"], created_id.as_str());

    // A photo shown by one customer cannot be put on another.
    let (status, headers, body) = app
        .call(
            Method::PUT,
            &path,
            Some(&tenant.token),
            Some(json!({"photo_id": third_id})),
        )
        .await;
    assert_problem(
        status,
        &headers,
        &body,
        409,
        "PUT a photo attached to another customer",
    );
    // An unknown photo is 404.
    let (status, headers, body) = app
        .call(
            Method::PUT,
            &path,
            Some(&tenant.token),
            Some(json!({"photo_id": Uuid::new_v4()})),
        )
        .await;
    assert_problem(status, &headers, &body, 404, "PUT an unknown photo");
}

#[tokio::test]
async fn option_one_upload_then_attach_embedded() {
    option_one_upload_then_attach(Stack::Embedded).await;
}

#[tokio::test]
async fn option_one_upload_then_attach_full() {
    option_one_upload_then_attach(Stack::Full).await;
}

// ---------------------------------------------------------------- 2. option 2

async fn option_two_upload_for_customer(stack: Stack) {
    let app = spawn_app(stack).await;
    let tenant = app.signup("Photo Co").await;
    let customer = create_customer(&app, &tenant, json!({})).await;
    let customer_id = id_of(&customer);
    let bytes = png();

    let (photo, token) = upload_ok(&app, &tenant.token, bytes.clone(), Some(&customer_id)).await;
    let id = id_of(&photo);
    assert_eq!(photo["customer_id"], customer_id.as_str());
    assert_eq!(photo["content_type"], "image/png");
    assert_eq!(photo["size"], bytes.len());
    assert_eq!(photo["sha256"], sha256_hex(&bytes));

    // The upload's token covers the asynchronous attach.
    let read = read_after(
        &app,
        &format!("/v1/customers/{customer_id}"),
        &tenant.token,
        &token,
    )
    .await;
    assert_photo_ref(
        &read["photo"],
        &photo,
        "GET customer with the upload's token",
    );
    let meta = metadata(&app, &tenant, &id, &token).await;
    assert_eq!(meta["status"], "attached", "{meta}");
    assert_eq!(meta["customer_id"], customer_id.as_str());
    assert_eq!(meta["for_customer"], customer_id.as_str());
    assert_eq!(meta["rejected_reason"], Value::Null);

    // A second option-2 upload replaces the first, which becomes detached.
    let (second, token) = upload_ok(&app, &tenant.token, png(), Some(&customer_id)).await;
    let read = read_after(
        &app,
        &format!("/v1/customers/{customer_id}"),
        &tenant.token,
        &token,
    )
    .await;
    assert_photo_ref(
        &read["photo"],
        &second,
        "GET customer after a second upload",
    );
    let second_meta = metadata(&app, &tenant, &id_of(&second), &token).await;
    assert_eq!(second_meta["status"], "attached", "{second_meta}");
    // The policy detaches the replaced photo after attaching the new one; give
    // the projection the usual consistency window.
    let started = Instant::now();
    loop {
        let meta = metadata(&app, &tenant, &id, &token).await;
        if meta["status"] == "detached" {
            assert_eq!(meta["customer_id"], Value::Null);
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the replaced photo never became detached: {meta}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The customer's history records both attachments.
    let (status, _, history) = app
        .call(
            Method::GET,
            &format!("/v1/customers/{customer_id}/history"),
            Some(&tenant.token),
            None,
        )
        .await;
    assert_eq!(status, 200, "{history}");
    let attached = history["items"]
        .as_array()
        .expect("history items")
        .iter()
        .filter(|e| e["type"] == "CustomerPhotoAttached")
        .count();
    assert_eq!(attached, 2, "two attachments in the history: {history}");
}

#[tokio::test]
async fn option_two_upload_for_customer_embedded() {
    option_two_upload_for_customer(Stack::Embedded).await;
}

#[tokio::test]
async fn option_two_upload_for_customer_full() {
    option_two_upload_for_customer(Stack::Full).await;
}

// ---------------------------------------------------------------- 3. type and size

async fn rejects_non_images_and_oversized(stack: Stack) {
    let app = spawn_app(stack).await;
    let tenant = app.signup("Photo Co").await;
    let customer = create_customer(&app, &tenant, json!({})).await;
    let customers_before = customer_count(&app, &tenant).await;
    let events_before = photo_event_count(&app).await;
    let objects_before = object_keys(&app).await;

    // Text that claims to be a PNG: judged by its bytes.
    let text = b"just some text, not an image at all\n".repeat(10);
    let (status, headers, body) =
        upload_as(&app, &tenant.token, text, "x.png", "image/png", None).await;
    assert_problem(status, &headers, &body, 415, "text named x.png");
    // Even with a customer: nothing is attached.
    let (status, headers, body) = upload_as(
        &app,
        &tenant.token,
        b"GIF87 but not quite".to_vec(),
        "x.gif",
        "image/gif",
        Some(&id_of(&customer)),
    )
    .await;
    assert_problem(status, &headers, &body, 415, "not quite a GIF");

    // 6 MiB is over the 5 MiB default.
    let (status, headers, body) =
        upload_early_response(&app, &tenant.token, png_of_size(6 * MIB), None).await;
    assert_problem(status, &headers, &body, 413, "6 MiB upload");
    let (status, headers, body) = upload_early_response(
        &app,
        &tenant.token,
        png_of_size(5 * MIB + 1),
        Some(&id_of(&customer)),
    )
    .await;
    assert_problem(status, &headers, &body, 413, "5 MiB + 1 byte upload");

    // Nothing was stored or recorded.
    assert_eq!(
        photo_event_count(&app).await,
        events_before,
        "a refused upload writes no photo event"
    );
    assert_eq!(
        object_keys(&app).await,
        objects_before,
        "a refused upload stores no object"
    );
    assert_eq!(customer_count(&app, &tenant).await, customers_before);
    let (status, _, read) = app
        .call(
            Method::GET,
            &format!("/v1/customers/{}", id_of(&customer)),
            Some(&tenant.token),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(read["photo"], Value::Null, "{read}");
    assert_eq!(
        read["version"], customer["version"],
        "the customer is unchanged"
    );

    // Exactly 5 MiB is allowed.
    let bytes = png_of_size(5 * MIB);
    let (photo, token) = upload_ok(&app, &tenant.token, bytes.clone(), None).await;
    assert_eq!(photo["size"], 5 * MIB);
    assert_eq!(photo["sha256"], sha256_hex(&bytes));
    let (status, _, got) = get_bytes(
        &app,
        &format!("/v1/photos/{}", id_of(&photo)),
        Some(&tenant.token),
        Some(&token),
    )
    .await;
    assert_eq!(status, 200);
    assert!(got == bytes, "the 5 MiB photo comes back byte for byte");

    // The declared type does not matter either way: PNG bytes sent as JPEG are a PNG.
    let (status, _, photo) =
        upload_as(&app, &tenant.token, png(), "x.jpg", "image/jpeg", None).await;
    assert_eq!(status, 201, "{photo}");
    assert_eq!(photo["content_type"], "image/png");
    // And JPEG/GIF/WebP headers (1×1) sent as application/octet-stream are accepted.
    for (magic, mime) in [
        (
            b"\xFF\xD8\xFF\xC0\x00\x11\x08\x00\x01\x00\x01\x03\x01\x22\x00\x02\x11\x01\x03\x11\x01"
                .to_vec(),
            "image/jpeg",
        ),
        (b"GIF89a\x01\x00\x01\x00\x80\x00\x00".to_vec(), "image/gif"),
        (
            b"RIFF\x24\x00\x00\x00WEBPVP8X\x0a\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
                .to_vec(),
            "image/webp",
        ),
    ] {
        let mut bytes = magic;
        bytes.extend_from_slice(Uuid::new_v4().as_bytes());
        let (status, _, photo) = upload_as(
            &app,
            &tenant.token,
            bytes,
            "blob",
            "application/octet-stream",
            None,
        )
        .await;
        assert_eq!(status, 201, "{mime}: {photo}");
        assert_eq!(photo["content_type"], mime);
    }
    assert_eq!(photo_event_count(&app).await, events_before + 5);
}

#[tokio::test]
async fn rejects_non_images_and_oversized_embedded() {
    rejects_non_images_and_oversized(Stack::Embedded).await;
}

#[tokio::test]
async fn rejects_non_images_and_oversized_full() {
    rejects_non_images_and_oversized(Stack::Full).await;
}

// ---------------------------------------------------------------- 4. deleted customer

async fn upload_for_missing_or_deleted_customer(stack: Stack) {
    let app = spawn_app(stack).await;
    let tenant = app.signup("Photo Co").await;
    let customer = create_customer(&app, &tenant, json!({})).await;
    let customer_id = id_of(&customer);
    let (status, _, _) = app
        .call(
            Method::DELETE,
            &format!("/v1/customers/{customer_id}"),
            Some(&tenant.token),
            None,
        )
        .await;
    assert_eq!(status, 204);
    let events_before = photo_event_count(&app).await;
    let objects_before = object_keys(&app).await;

    let (status, headers, body) = upload(&app, &tenant.token, png(), Some(&customer_id)).await;
    assert_problem(
        status,
        &headers,
        &body,
        409,
        "upload for a deleted customer",
    );
    let missing = Uuid::new_v4().to_string();
    let (status, headers, body) = upload(&app, &tenant.token, png(), Some(&missing)).await;
    assert_problem(
        status,
        &headers,
        &body,
        404,
        "upload for an unknown customer",
    );
    let (status, headers, body) = upload(&app, &tenant.token, png(), Some("not-a-uuid")).await;
    assert_problem(
        status,
        &headers,
        &body,
        422,
        "upload with a malformed customer_id",
    );

    assert_eq!(photo_event_count(&app).await, events_before);
    assert_eq!(object_keys(&app).await, objects_before);

    // Restored, it takes photos again.
    let (status, _, _) = app
        .call(
            Method::POST,
            &format!("/v1/customers/{customer_id}/restore"),
            Some(&tenant.token),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let (photo, token) = upload_ok(&app, &tenant.token, png(), Some(&customer_id)).await;
    let read = read_after(
        &app,
        &format!("/v1/customers/{customer_id}"),
        &tenant.token,
        &token,
    )
    .await;
    assert_photo_ref(&read["photo"], &photo, "restored customer");
}

#[tokio::test]
async fn upload_for_missing_or_deleted_customer_embedded() {
    upload_for_missing_or_deleted_customer(Stack::Embedded).await;
}

#[tokio::test]
async fn upload_for_missing_or_deleted_customer_full() {
    upload_for_missing_or_deleted_customer(Stack::Full).await;
}

// ---------------------------------------------------------------- 5. S3 outage

fn s3s_fs_binary() -> PathBuf {
    let home = std::env::var("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|_| std::env::var("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .expect("HOME or CARGO_HOME");
    let binary = home.join("bin").join("s3s-fs");
    assert!(
        binary.exists(),
        "s3s-fs is required at {} (scripts/s3-server.sh installs it)",
        binary.display()
    );
    binary
}

/// A private s3s-fs server: killed (by its own pid) when dropped.
struct PrivateS3 {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl PrivateS3 {
    async fn start() -> Self {
        let dir = std::env::temp_dir().join(format!("crm-test-s3-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("S3 data dir");
        let mut s3 = Self {
            port: free_port(),
            dir,
            child: None,
        };
        s3.restart().await;
        s3
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    async fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let child = Command::new(s3s_fs_binary())
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .args([
                "--access-key",
                "crmtest",
                "--secret-key",
                "crmtest-secret-key",
            ])
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start s3s-fs");
        self.child = Some(child);
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(Ok(Some(exit))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("s3s-fs exited at start: {exit}");
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "s3s-fs did not listen on {}",
                self.endpoint()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateS3 {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn readyz(app: &TestApp) -> (u16, HeaderMap, Value) {
    let response = app
        .client
        .get(app.url("/readyz"))
        .send()
        .await
        .expect("readyz");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, headers, body)
}

#[tokio::test]
async fn object_store_outage_is_503_then_recovers_full() {
    let mut s3 = PrivateS3::start().await;
    let endpoint = s3.endpoint();
    let app = spawn_app_with(Stack::Full, &[("S3_ENDPOINT", endpoint.as_str())]).await;
    let tenant = app.signup("Photo Co").await;
    let (status, _, body) = readyz(&app).await;
    assert_eq!(status, 200, "ready with S3 up: {body}");
    let bytes = png();
    let (before, before_token) = upload_ok(&app, &tenant.token, bytes.clone(), None).await;
    let events_before = photo_event_count(&app).await;
    assert_eq!(events_before, 1);

    // S3 goes away.
    s3.stop();
    let customer = create_customer(&app, &tenant, json!({})).await;
    for customer_id in [None, Some(id_of(&customer))] {
        let (status, headers, body) =
            upload(&app, &tenant.token, png(), customer_id.as_deref()).await;
        assert_problem(status, &headers, &body, 503, "upload with S3 down");
        let retry = header(&headers, "retry-after").expect("Retry-After on 503");
        assert!(
            retry.parse::<u64>().is_ok_and(|s| s > 0),
            "Retry-After in seconds: {retry}"
        );
    }
    assert_eq!(
        photo_event_count(&app).await,
        events_before,
        "no photo event without its object"
    );
    let (status, headers, body) = readyz(&app).await;
    assert_problem(status, &headers, &body, 503, "readyz with S3 down");
    let detail = body["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("object store"),
        "readyz names the object store: {body}"
    );
    assert!(
        !detail.contains("event store") && !detail.contains("bus"),
        "only the object store is down: {body}"
    );
    let (status, headers, body) = get_bytes(
        &app,
        &id_url(&before),
        Some(&tenant.token),
        Some(&before_token),
    )
    .await;
    assert_eq!(
        status,
        503,
        "photo bytes with S3 down: {}",
        String::from_utf8_lossy(&body)
    );
    assert!(header(&headers, "retry-after").is_some());

    // S3 comes back (same port, same data).
    s3.restart().await;
    let started = Instant::now();
    loop {
        let (status, _, body) = readyz(&app).await;
        if status == 200 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "readyz never recovered: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (after, after_token) = upload_ok(&app, &tenant.token, png(), Some(&id_of(&customer))).await;
    assert_eq!(photo_event_count(&app).await, events_before + 1);
    let (status, _, got) = get_bytes(
        &app,
        &id_url(&before),
        Some(&tenant.token),
        Some(&before_token),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(got, bytes, "the photo stored before the outage is intact");
    let (status, _, _) = get_bytes(
        &app,
        &id_url(&after),
        Some(&tenant.token),
        Some(&after_token),
    )
    .await;
    assert_eq!(status, 200);
    // The option-2 upload made after the outage was attached as usual.
    let read = read_after(
        &app,
        &format!("/v1/customers/{}", id_of(&customer)),
        &tenant.token,
        &after_token,
    )
    .await;
    assert_photo_ref(&read["photo"], &after, "customer after the outage");
}

fn id_url(photo: &Value) -> String {
    format!("/v1/photos/{}", id_of(photo))
}

// ---------------------------------------------------------------- 6. tenancy

async fn photos_are_tenant_scoped(stack: Stack) {
    let app = spawn_app(stack).await;
    let a = app.signup("Company A").await;
    let b = app.signup("Company B").await;
    let a_customer = create_customer(&app, &a, json!({})).await;
    let a_customer_id = id_of(&a_customer);
    let b_customer = create_customer(&app, &b, json!({})).await;
    let b_customer_id = id_of(&b_customer);
    let a_bytes = png();
    let (a_photo, a_token) = upload_ok(&app, &a.token, a_bytes.clone(), None).await;
    let a_photo_id = id_of(&a_photo);
    let (b_photo, b_token) = upload_ok(&app, &b.token, png(), None).await;
    let b_photo_id = id_of(&b_photo);
    let events_before = photo_event_count(&app).await;
    // Both photos are in the read models (so a 404 below is tenancy, not lag).
    let (status, _, got) = get_bytes(&app, &id_url(&a_photo), Some(&a.token), Some(&a_token)).await;
    assert_eq!(status, 200, "A reads its own photo");
    assert_eq!(got, a_bytes);
    metadata(&app, &b, &b_photo_id, &b_token).await;

    // B cannot read A's photo, its bytes or its metadata.
    let (status, headers, body) = get_bytes(&app, &id_url(&a_photo), Some(&b.token), None).await;
    assert_eq!(status, 404, "B reads A's photo bytes");
    assert!(
        body.windows(PNG_SIGNATURE.len())
            .all(|w| w != PNG_SIGNATURE),
        "no image bytes in the 404"
    );
    assert_eq!(
        header(&headers, "content-type"),
        Some("application/problem+json")
    );
    let (status, headers, body) = app
        .call(
            Method::GET,
            &format!("/v1/photos/{a_photo_id}/metadata"),
            Some(&b.token),
            None,
        )
        .await;
    assert_problem(status, &headers, &body, 404, "B reads A's photo metadata");
    // Same answer as a photo that does not exist.
    let (status, _, _) = get_bytes(
        &app,
        &format!("/v1/photos/{}", Uuid::new_v4()),
        Some(&b.token),
        None,
    )
    .await;
    assert_eq!(status, 404);

    // B cannot upload for A's customer.
    let (status, headers, body) = upload(&app, &b.token, png(), Some(&a_customer_id)).await;
    assert_problem(status, &headers, &body, 404, "B uploads for A's customer");

    // B cannot put A's photo on its own customer, nor its photo on A's customer.
    let (status, headers, body) = app
        .call(
            Method::PUT,
            &format!("/v1/customers/{b_customer_id}/photo"),
            Some(&b.token),
            Some(json!({"photo_id": a_photo_id})),
        )
        .await;
    assert_problem(
        status,
        &headers,
        &body,
        404,
        "B puts A's photo on B's customer",
    );
    let (status, headers, body) = app
        .call(
            Method::PUT,
            &format!("/v1/customers/{a_customer_id}/photo"),
            Some(&b.token),
            Some(json!({"photo_id": b_photo_id})),
        )
        .await;
    assert_problem(
        status,
        &headers,
        &body,
        404,
        "B puts its photo on A's customer",
    );
    let (status, headers, body) = app
        .call(
            Method::DELETE,
            &format!("/v1/customers/{a_customer_id}/photo"),
            Some(&b.token),
            None,
        )
        .await;
    assert_problem(
        status,
        &headers,
        &body,
        404,
        "B removes A's customer's photo",
    );
    // Nor create a customer showing A's photo.
    let (status, headers, body) = app
        .call(
            Method::POST,
            "/v1/customers",
            Some(&b.token),
            Some(json!({"name": "Eve", "surname": "Spy", "photo_id": a_photo_id})),
        )
        .await;
    assert_problem(
        status,
        &headers,
        &body,
        404,
        "B creates a customer with A's photo",
    );

    assert_eq!(photo_event_count(&app).await, events_before);
    // A's photo is untouched and A still sees it.
    let (status, _, meta) = app
        .call(
            Method::GET,
            &format!("/v1/photos/{a_photo_id}/metadata"),
            Some(&a.token),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(meta["status"], "uploaded", "{meta}");
    assert_eq!(meta["customer_id"], Value::Null);
    let (status, _, customer) = app
        .call(
            Method::GET,
            &format!("/v1/customers/{a_customer_id}"),
            Some(&a.token),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(customer["photo"], Value::Null);
    assert_eq!(customer["version"], a_customer["version"]);
}

#[tokio::test]
async fn photos_are_tenant_scoped_embedded() {
    photos_are_tenant_scoped(Stack::Embedded).await;
}

#[tokio::test]
async fn photos_are_tenant_scoped_full() {
    photos_are_tenant_scoped(Stack::Full).await;
}

// ---------------------------------------------------------------- 7. object keys

async fn object_keys_are_ids_only(stack: Stack) {
    let app = spawn_app(stack).await;
    let tenant = app.signup("Photo Co").await;
    let customer = create_customer(&app, &tenant, json!({})).await;
    let mut uploaded = vec![];
    for (name, customer_id) in [
        ("../../etc/passwd.png", None),
        ("..\\..\\windows\\evil.png", None),
        ("/abs/olute/x.png", Some(id_of(&customer))),
        ("con\"evil\".png", None),
        ("%2e%2e%2fetc%2fpasswd.png", None),
        ("photo.png", None),
    ] {
        let (status, _, photo) = upload_as(
            &app,
            &tenant.token,
            png(),
            name,
            "image/png",
            customer_id.as_deref(),
        )
        .await;
        assert_eq!(status, 201, "upload named {name:?}: {photo}");
        uploaded.push(id_of(&photo));
    }
    let mut keys = object_keys(&app).await;
    keys.sort();
    let mut expected: Vec<String> = uploaded
        .iter()
        .map(|id| format!("{}/{id}", tenant.company_id))
        .collect();
    expected.sort();
    assert_eq!(
        keys, expected,
        "one object per photo, named <company>/<photo>"
    );
    for key in &keys {
        let parts: Vec<&str> = key.split('/').collect();
        assert!(
            parts.len() == 2 && parts.iter().all(|p| is_uuid(p)),
            "key is <uuid>/<uuid>: {key:?}"
        );
        for user_text in ["passwd", "etc", "..", "evil", "abs", "photo", ".png"] {
            assert!(
                !key.contains(user_text),
                "user text {user_text:?} in key {key:?}"
            );
        }
    }
    // Nothing escaped into the data directory either.
    let mut files = vec![];
    walk_files(&app.data_dir, &app.data_dir, &mut files);
    assert!(
        files
            .iter()
            .all(|f| !f.contains("passwd") && !f.contains("evil")),
        "no file named after user input: {files:?}"
    );
}

#[tokio::test]
async fn object_keys_are_ids_only_embedded() {
    object_keys_are_ids_only(Stack::Embedded).await;
}

#[tokio::test]
async fn object_keys_are_ids_only_full() {
    object_keys_are_ids_only(Stack::Full).await;
}
