//! `spawn_app()`: starts the application (`crm::application::Application`,
//! what `crm serve` runs) in this process on a free port and talks HTTP to
//! it; `spawn_process()` starts the real `crm` binary instead, for tests that
//! kill it, restart it or measure it. `Stack::Embedded` uses a fresh data
//! directory (SQLite, local photos, in-process bus); `Stack::Full` a fresh
//! Postgres database, its own JetStream stream and an S3 bucket of the test
//! S3 server. A test that needs a service that is not there fails; nothing
//! is skipped.
#![allow(dead_code)]

use std::process::{Child, Command, Stdio};
use std::time::Duration;
use test_support::{env_or, free_port};
use uuid::Uuid;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stack {
    Embedded,
    Full,
}

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub stack: Stack,
    pub data_dir: std::path::PathBuf,
    pub database_url: Option<String>,
    pub env: Vec<(String, String)>,
    /// Whether [`TestApp::send`] waits for each write's views (see there).
    pub settle_writes: bool,
    running: Running,
    /// The relay, workers and policies, when [`spawn_api_only`] left them
    /// out and [`TestApp::start_feeds`] started them apart.
    feeds: Running,
}

/// How the server under test runs.
enum Running {
    Process(Child),
    InProcess(tokio::task::JoinHandle<()>),
    Stopped,
}

impl Running {
    fn stop(&mut self) {
        match std::mem::replace(self, Running::Stopped) {
            Running::Process(mut child) => {
                let _ = child.kill();
                let _ = child.wait();
            }
            Running::InProcess(server) => server.abort(),
            Running::Stopped => {}
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.feeds.stop();
        self.running.stop();
        let _ = std::fs::remove_dir_all(&self.data_dir);
        if let Some(url) = self.database_url.take() {
            drop_database(url);
        }
    }
}

/// Drops a test's database once its server is gone, so repeated runs do not
/// pile databases up. `Drop` cannot await, and the test's runtime may be
/// shutting down: a thread with a runtime of its own does it.
fn drop_database(url: String) {
    let Some((_, name)) = url.rsplit_once('/') else {
        return;
    };
    let name = name.split('?').next().unwrap_or_default().to_owned();
    let dropped = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .ok()?;
        runtime.block_on(test_support::drop_database(&admin_database_url(), &name));
        Some(())
    });
    let _ = dropped.join();
}

pub fn admin_database_url() -> String {
    env_or(
        "TEST_DATABASE_URL",
        "postgres://postgres@127.0.0.1:5432/postgres",
    )
}

/// Creates an empty database and returns its URL.
pub async fn fresh_database() -> String {
    let name = format!("crm_test_{}", Uuid::new_v4().simple());
    test_support::create_database(&admin_database_url(), &name)
        .await
        .unwrap_or_else(|e| panic!("TEST_DATABASE_URL: Postgres must be running: {e}"))
}

pub async fn spawn_app(stack: Stack) -> TestApp {
    spawn_app_with(stack, &[]).await
}

/// Starts the application in this process with extra settings (named as
/// their environment variables).
pub async fn spawn_app_with(stack: Stack, extra: &[(&str, &str)]) -> TestApp {
    start(stack, extra, Launch::InProcess { workers: true }).await
}

/// Starts only the API (`crm serve --no-workers`) in this process: writes
/// are committed, but no view, policy or webhook moves until
/// [`TestApp::start_feeds`]. Writes do not wait for the views.
pub async fn spawn_api_only(stack: Stack, extra: &[(&str, &str)]) -> TestApp {
    let mut app = start(stack, extra, Launch::InProcess { workers: false }).await;
    app.settle_writes = false;
    app
}

/// Starts the `crm` binary as a process of its own.
pub async fn spawn_process(stack: Stack, extra: &[(&str, &str)]) -> TestApp {
    start(stack, extra, Launch::Process).await
}

#[derive(Clone, Copy, PartialEq)]
enum Launch {
    InProcess { workers: bool },
    Process,
}

/// `crm serve` with these settings, the test's log level included.
fn serve_process(env: &[(String, String)]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_crm"))
        .arg("serve")
        .env_clear()
        .env("PATH", env_or("PATH", "/usr/bin:/bin"))
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start crm")
}

/// The application on this test's runtime, as `crm serve` would run it.
async fn serve_in_process(
    env: &[(String, String)],
    with_workers: bool,
) -> tokio::task::JoinHandle<()> {
    use crm::application::{Application, Serve};
    let settings = env
        .iter()
        .filter(|(k, _)| k != "RUST_LOG")
        .map(|(k, v)| (k.as_str(), v.as_str()));
    let config = crm::config::Config::from_vars(settings).expect("test settings");
    config.validate().expect("valid test settings");
    let app = Application::build(&config, Serve { with_workers }, None)
        .await
        .expect("the application starts");
    tokio::spawn(async move {
        if let Err(error) = app.run_until_stopped(std::future::pending()).await {
            panic!("the application stopped: {error:#}");
        }
    })
}

async fn start(stack: Stack, extra: &[(&str, &str)], launch: Launch) -> TestApp {
    let port = free_port();
    let data_dir = std::env::temp_dir().join(format!("crm-test-{}", Uuid::new_v4().simple()));
    let mut env: Vec<(String, String)> = vec![
        ("CRM_ADDR".into(), format!("127.0.0.1:{port}")),
        ("CRM_DATA_DIR".into(), data_dir.display().to_string()),
        ("RUST_LOG".into(), env_or("TEST_LOG", "warn")),
    ];
    let mut database_url = None;
    if stack == Stack::Full {
        let url = fresh_database().await;
        database_url = Some(url.clone());
        let unique = Uuid::new_v4().simple().to_string();
        env.extend([
            ("DATABASE_URL".into(), url),
            (
                "NATS_URL".into(),
                env_or("TEST_NATS_URL", "nats://127.0.0.1:4223"),
            ),
            ("CRM_NATS_STREAM".into(), format!("CRM_TEST_{unique}")),
            (
                "CRM_NATS_SUBJECT_PREFIX".into(),
                format!("crmtest.{unique}"),
            ),
            (
                "S3_ENDPOINT".into(),
                env_or("TEST_S3_ENDPOINT", "http://127.0.0.1:9100"),
            ),
            (
                "S3_ACCESS_KEY".into(),
                env_or("TEST_S3_ACCESS_KEY", "crmtest"),
            ),
            (
                "S3_SECRET_KEY".into(),
                env_or("TEST_S3_SECRET_KEY", "crmtest-secret-key"),
            ),
            ("S3_BUCKET".into(), format!("crm-test-{}", &unique[..12])),
            ("CRM_JWT_SECRET".into(), format!("test-secret-{unique}")),
        ]);
    }
    for (k, v) in extra {
        env.retain(|(key, _)| key != k);
        env.push(((*k).to_owned(), (*v).to_owned()));
    }
    let running = match launch {
        Launch::Process => Running::Process(serve_process(&env)),
        Launch::InProcess { workers } => Running::InProcess(serve_in_process(&env, workers).await),
    };
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("http client");
    test_support::wait_healthy(&base, Duration::from_secs(30), || true)
        .await
        .unwrap_or_else(|e| panic!("crm did not start: {e}"));
    TestApp {
        base,
        client,
        stack,
        data_dir,
        database_url,
        env,
        settle_writes: true,
        running,
        feeds: Running::Stopped,
    }
}

/// A signed-up company: its admin's token and ids.
pub use test_support::SignedUp as Tenant;

impl TestApp {
    /// Kills the server with SIGKILL (no shutdown of any kind) and starts it
    /// again on the same data directory, database and settings.
    pub async fn kill_and_restart(&mut self) {
        self.kill();
        self.start_again().await;
    }

    /// Kills the server with SIGKILL; [`TestApp::start_again`] starts it anew.
    pub fn kill(&mut self) {
        assert!(
            matches!(self.running, Running::Process(_)),
            "kill needs a server started with spawn_process"
        );
        self.running.stop();
    }

    /// Runs `crm <args>` to completion with the server's settings.
    pub fn run_crm(&self, args: &[&str]) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_crm"))
            .args(args)
            .env_clear()
            .env("PATH", env_or("PATH", "/usr/bin:/bin"))
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
            .expect("run crm")
    }

    /// Starts the server again on the same data directory, database and settings.
    pub async fn start_again(&mut self) {
        self.running = Running::Process(serve_process(&self.env));
        test_support::wait_healthy(&self.base, Duration::from_secs(30), || true)
            .await
            .unwrap_or_else(|e| panic!("crm did not restart: {e}"));
    }

    /// Starts the relay, workers and policies of an app from
    /// [`spawn_api_only`]: a second server on the same stores, in process.
    pub async fn start_feeds(&mut self) {
        let mut env = self.env.clone();
        env.retain(|(key, _)| key != "CRM_ADDR");
        env.push(("CRM_ADDR".into(), format!("127.0.0.1:{}", free_port())));
        self.feeds = Running::InProcess(serve_in_process(&env, true).await);
    }

    /// The server process's id (for /proc measurements).
    pub fn pid(&self) -> u32 {
        match &self.running {
            Running::Process(child) => child.id(),
            _ => panic!("pid needs a server started with spawn_process"),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn signup(&self, company: &str) -> Tenant {
        test_support::sign_up(&self.client, &self.base, company)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Sends a request with `token`; returns status, headers and JSON body (Null if none).
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<serde_json::Value>,
    ) -> (u16, reqwest::header::HeaderMap, serde_json::Value) {
        let response = self.json(method, path, token, body).await;
        (response.status, response.headers, response.json)
    }
}

// ---------------------------------------------------------------------------
// Helpers shared by the black-box API tests (api_*.rs, openapi.rs).
// ---------------------------------------------------------------------------

/// Runs `async fn $scenario(stack: Stack)` on both stacks as two tests.
#[macro_export]
macro_rules! both_stacks {
    ($scenario:ident, $embedded:ident, $full:ident) => {
        // Two threads: the server under test and the client run side by side.
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $embedded() {
            $scenario($crate::common::Stack::Embedded).await
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $full() {
            $scenario($crate::common::Stack::Full).await
        }
    };
}

/// A response read to the end: status, headers, raw bytes and JSON (Null if none).
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub bytes: Vec<u8>,
    pub json: serde_json::Value,
    /// The URL that answered (after redirects).
    pub url: String,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }

    /// Panics unless the status is `expected`, printing the body.
    #[track_caller]
    pub fn expect(&self, expected: u16, what: &str) -> &Self {
        assert_eq!(
            self.status,
            expected,
            "{what}: expected {expected}, got {} with body {}",
            self.status,
            self.text()
        );
        self
    }

    /// Asserts an RFC 9457 problem with `status`.
    #[track_caller]
    pub fn problem(&self, status: u16, what: &str) -> &Self {
        self.expect(status, what);
        let content_type = self.header("content-type").unwrap_or_default();
        assert!(
            content_type.starts_with("application/problem+json"),
            "{what}: Content-Type {content_type:?} is not application/problem+json"
        );
        let body = &self.json;
        assert!(
            body["type"].as_str().is_some_and(|t| !t.is_empty()),
            "{what}: problem without type: {body}"
        );
        assert!(
            body["title"].as_str().is_some_and(|t| !t.is_empty()),
            "{what}: problem without title: {body}"
        );
        assert_eq!(body["status"], status, "{what}: problem status: {body}");
        assert!(
            body["detail"].is_string(),
            "{what}: problem without detail: {body}"
        );
        self
    }

    /// Asserts a `422` naming `field` in `errors`.
    #[track_caller]
    pub fn invalid_field(&self, field: &str, what: &str) -> &Self {
        self.problem(422, what);
        let errors = self.json["errors"].as_array().cloned().unwrap_or_default();
        assert!(
            errors.iter().any(
                |e| e["field"] == field && e["message"].as_str().is_some_and(|m| !m.is_empty())
            ),
            "{what}: no error for field {field:?} in {}",
            self.json
        );
        self
    }

    /// The `X-Consistency-Token` a write must carry.
    #[track_caller]
    pub fn consistency_token(&self, what: &str) -> String {
        let token = self.header("x-consistency-token");
        assert!(
            token.as_deref().is_some_and(|t| !t.is_empty()),
            "{what}: write without X-Consistency-Token"
        );
        token.unwrap_or_default()
    }

    /// The version in `ETag: "<version>"`.
    #[track_caller]
    pub fn etag_version(&self, what: &str) -> i64 {
        let etag = self
            .header("etag")
            .unwrap_or_else(|| panic!("{what}: no ETag header"));
        let inner = etag
            .strip_prefix('"')
            .and_then(|e| e.strip_suffix('"'))
            .unwrap_or_else(|| panic!("{what}: ETag {etag:?} is not quoted"));
        inner
            .parse()
            .unwrap_or_else(|_| panic!("{what}: ETag {etag:?} is not a version"))
    }
}

/// A valid 1x1 PNG.
pub fn png_bytes() -> Vec<u8> {
    test_support::png_with(&[])
}

/// A minimal GIF.
pub fn gif_bytes() -> Vec<u8> {
    let mut bytes = b"GIF89a\x01\x00\x01\x00\x80\x00\x00".to_vec();
    bytes.extend_from_slice(&[0, 0, 0, 0xFF, 0xFF, 0xFF]);
    bytes.extend_from_slice(
        b"!\xF9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;",
    );
    bytes
}

/// Whether `text` is an RFC 3339 UTC timestamp like `2026-11-24T19:06:16.123Z`.
pub fn is_rfc3339_utc(text: &str) -> bool {
    let b = text.as_bytes();
    text.len() >= 20
        && text.ends_with('Z')
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && [0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18]
            .iter()
            .all(|&i| b[i].is_ascii_digit())
}

impl TestApp {
    /// A request builder with an optional bearer token.
    pub fn req(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
    ) -> reqwest::RequestBuilder {
        let request = self.client.request(method, self.url(path));
        match token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// Sends a request and reads the whole response. A successful write is
    /// then awaited as a careful client would (its consistency token sent
    /// back on a read), unless `settle_writes` is off: write replies do not
    /// wait for the views, and the scenarios read their own writes.
    pub async fn send(&self, request: reqwest::RequestBuilder) -> Resp {
        let request = request.build().expect("request");
        let write = !matches!(
            *request.method(),
            reqwest::Method::GET | reqwest::Method::HEAD | reqwest::Method::OPTIONS
        );
        let auth = request
            .headers()
            .get(reqwest::header::AUTHORIZATION)
            .cloned();
        let response = self.client.execute(request).await.expect("request");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        if let (true, true, Some(auth), Some(token)) = (
            self.settle_writes,
            write && status < 300,
            auth,
            headers.get("x-consistency-token"),
        ) {
            let _ = self
                .client
                .get(self.url("/v1/company"))
                .header(reqwest::header::AUTHORIZATION, auth)
                .header("x-consistency-token", token)
                .send()
                .await;
        }
        let url = response.url().to_string();
        let bytes = response.bytes().await.expect("body").to_vec();
        let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        Resp {
            status,
            headers,
            bytes,
            json,
            url,
        }
    }

    /// `method path` with a token and an optional JSON body.
    pub async fn json(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<serde_json::Value>,
    ) -> Resp {
        let mut request = self.req(method, path, token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        self.send(request).await
    }

    pub async fn get(&self, path: &str, token: &str) -> Resp {
        self.json(reqwest::Method::GET, path, Some(token), None)
            .await
    }

    /// A GET that sends back a consistency token.
    pub async fn get_after(&self, path: &str, token: &str, consistency: &str) -> Resp {
        let response = self
            .send(
                self.req(reqwest::Method::GET, path, Some(token))
                    .header("x-consistency-token", consistency),
            )
            .await;
        assert!(
            response.header("x-consistency-stale").is_none(),
            "GET {path} with a consistency token answered stale"
        );
        response
    }

    pub async fn post(&self, path: &str, token: &str, body: serde_json::Value) -> Resp {
        self.json(reqwest::Method::POST, path, Some(token), Some(body))
            .await
    }

    pub async fn patch(&self, path: &str, token: &str, body: serde_json::Value) -> Resp {
        self.json(reqwest::Method::PATCH, path, Some(token), Some(body))
            .await
    }

    pub async fn put(&self, path: &str, token: &str, body: serde_json::Value) -> Resp {
        self.json(reqwest::Method::PUT, path, Some(token), Some(body))
            .await
    }

    pub async fn delete(&self, path: &str, token: &str) -> Resp {
        self.json(reqwest::Method::DELETE, path, Some(token), None)
            .await
    }

    /// Logs in; panics unless `200`.
    pub async fn login(&self, email: &str, password: &str) -> String {
        let response = self
            .json(
                reqwest::Method::POST,
                "/v1/auth/token",
                None,
                Some(serde_json::json!({"email": email, "password": password})),
            )
            .await;
        response.expect(200, "login");
        response.json["access_token"]
            .as_str()
            .expect("access_token")
            .to_owned()
    }

    /// Creates a user of `admin`'s company with `role` and logs it in.
    pub async fn add_user(&self, admin: &Tenant, role: &str) -> Tenant {
        let email = format!("{role}-{}@example.com", Uuid::new_v4().simple());
        let password = "another secret phrase".to_owned();
        let response = self
            .post(
                "/v1/users",
                &admin.token,
                serde_json::json!({
                    "email": email, "name": "Bob", "surname": "Builder",
                    "password": password, "role": role
                }),
            )
            .await;
        response.expect(201, "create user");
        let user_id = response.json["id"].as_str().expect("user id").to_owned();
        let token = self.login(&email, &password).await;
        Tenant {
            token,
            company_id: admin.company_id.clone(),
            user_id,
            email,
            password,
        }
    }

    /// Creates a customer; panics unless `201`. Returns its JSON.
    pub async fn create_customer(&self, token: &str, body: serde_json::Value) -> serde_json::Value {
        let response = self.post("/v1/customers", token, body).await;
        response.expect(201, "create customer");
        response.json.clone()
    }

    /// Uploads `bytes` as a photo (with an optional `customer_id` part).
    pub async fn upload_photo(&self, token: &str, bytes: Vec<u8>, customer: Option<&str>) -> Resp {
        let part = reqwest::multipart::Part::bytes(bytes)
            .file_name("photo.png")
            .mime_str("application/octet-stream")
            .expect("mime");
        let mut form = reqwest::multipart::Form::new().part("file", part);
        if let Some(customer) = customer {
            form = form.text("customer_id", customer.to_owned());
        }
        self.send(
            self.req(reqwest::Method::POST, "/v1/photos", Some(token))
                .multipart(form),
        )
        .await
    }

    /// The secret the server signs access tokens with.
    pub fn jwt_secret(&self) -> Vec<u8> {
        if let Some((_, secret)) = self.env.iter().find(|(k, _)| k == "CRM_JWT_SECRET") {
            return secret.as_bytes().to_vec();
        }
        let hex = std::fs::read_to_string(self.data_dir.join("jwt.key")).expect("jwt.key");
        let hex = hex.trim();
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
            .collect()
    }
}

impl TestApp {
    /// Sends a request over a raw socket, reading the response while the
    /// body is still being written (as curl does). For oversized bodies: the
    /// server answers `413` before reading everything and closes, which
    /// reqwest/hyper may report as a broken pipe instead of the response.
    pub async fn send_early(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Resp {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let authority = self.base.trim_start_matches("http://").to_owned();
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {authority}\r\nContent-Length: {}\r\nConnection: close\r\n",
            body.len()
        );
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        let stream = tokio::net::TcpStream::connect(&authority)
            .await
            .expect("connect to crm");
        let (mut reader, mut writer) = stream.into_split();
        let sending = tokio::spawn(async move {
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
            .expect("a response within 30 s");
        sending.abort();
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or_else(|| {
                panic!("no HTTP response head: {:?}", String::from_utf8_lossy(&raw))
            });
        let head = String::from_utf8_lossy(&raw[..split]).to_string();
        let mut lines = head.split("\r\n");
        let status: u16 = lines
            .next()
            .and_then(|line| line.split(' ').nth(1))
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("bad status line in {head:?}"));
        let mut header_map = reqwest::header::HeaderMap::new();
        for line in lines {
            if let Some((name, value)) = line.split_once(':') {
                if let (Ok(name), Ok(value)) = (
                    reqwest::header::HeaderName::from_bytes(name.trim().as_bytes()),
                    reqwest::header::HeaderValue::from_str(value.trim()),
                ) {
                    header_map.append(name, value);
                }
            }
        }
        let mut bytes = raw[split + 4..].to_vec();
        let chunked = header_map
            .get("transfer-encoding")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
        if chunked {
            bytes = dechunk(&bytes);
        }
        let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        Resp {
            status,
            headers: header_map,
            bytes,
            json,
            url: self.url(path),
        }
    }

    /// Uploads `bytes` as the `file` part over a raw socket ([`Self::send_early`]).
    pub async fn upload_photo_early(&self, token: &str, bytes: Vec<u8>) -> Resp {
        let boundary = format!("----crmtest{}", Uuid::new_v4().simple());
        let mut body = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.png\"\r\n\
             Content-Type: image/png\r\n\r\n"
        )
        .into_bytes();
        body.extend_from_slice(&bytes);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let authorization = format!("Bearer {token}");
        let content_type = format!("multipart/form-data; boundary={boundary}");
        self.send_early(
            "POST",
            "/v1/photos",
            &[
                ("Authorization", authorization.as_str()),
                ("Content-Type", content_type.as_str()),
            ],
            body,
        )
        .await
    }
}

/// Decodes a `Transfer-Encoding: chunked` body.
fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = vec![];
    while let Some(end) = raw.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&raw[..end])
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next().unwrap_or("").trim(), 16).ok())
            .unwrap_or(0);
        raw = &raw[end + 2..];
        if size == 0 || raw.len() < size {
            break;
        }
        out.extend_from_slice(&raw[..size]);
        raw = &raw[(size + 2).min(raw.len())..];
    }
    out
}
