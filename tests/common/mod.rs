//! `spawn_app()`: starts the real `crm` binary on a free port and talks HTTP
//! to it. `Stack::Embedded` uses a fresh data directory (SQLite, local
//! photos, in-process bus); `Stack::Full` a fresh Postgres database, its own
//! JetStream stream and an S3 bucket of the test S3 server. A test that needs
//! a service that is not there fails; nothing is skipped.
#![allow(dead_code)]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
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
    child: Child,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

pub fn admin_database_url() -> String {
    env_or("TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")
}

/// Creates an empty database and returns its URL.
pub async fn fresh_database() -> String {
    use sqlx::Connection;
    let admin = admin_database_url();
    let name = format!("crm_test_{}", Uuid::new_v4().simple());
    let mut conn = sqlx::PgConnection::connect(&admin)
        .await
        .expect("TEST_DATABASE_URL: Postgres must be running for the full-stack tests");
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .expect("create test database");
    match admin.rsplit_once('/') {
        Some((server, _)) => format!("{server}/{name}"),
        None => panic!("TEST_DATABASE_URL has no database name"),
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

pub async fn spawn_app(stack: Stack) -> TestApp {
    spawn_app_with(stack, &[]).await
}

/// Starts the server with extra environment variables.
pub async fn spawn_app_with(stack: Stack, extra: &[(&str, &str)]) -> TestApp {
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
            ("NATS_URL".into(), env_or("TEST_NATS_URL", "nats://127.0.0.1:4222")),
            ("CRM_NATS_STREAM".into(), format!("CRM_TEST_{unique}")),
            ("CRM_NATS_SUBJECT_PREFIX".into(), format!("crmtest.{unique}")),
            ("S3_ENDPOINT".into(), env_or("TEST_S3_ENDPOINT", "http://127.0.0.1:9100")),
            ("S3_ACCESS_KEY".into(), env_or("TEST_S3_ACCESS_KEY", "crmtest")),
            ("S3_SECRET_KEY".into(), env_or("TEST_S3_SECRET_KEY", "crmtest-secret-key")),
            ("S3_BUCKET".into(), format!("crm-test-{}", &unique[..12])),
            ("CRM_JWT_SECRET".into(), format!("test-secret-{unique}")),
        ]);
    }
    for (k, v) in extra {
        env.retain(|(key, _)| key != k);
        env.push(((*k).to_owned(), (*v).to_owned()));
    }
    let child = Command::new(env!("CARGO_BIN_EXE_crm"))
        .arg("serve")
        .env_clear()
        .env("PATH", env_or("PATH", "/usr/bin:/bin"))
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start crm");
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("http client");
    let started = Instant::now();
    loop {
        if let Ok(response) = client.get(format!("{base}/healthz")).send().await {
            if response.status().is_success() {
                break;
            }
        }
        assert!(started.elapsed() < Duration::from_secs(30), "crm did not start on {base}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    TestApp {
        base,
        client,
        stack,
        data_dir,
        database_url,
        env,
        child,
    }
}

/// A signed-up company: its admin's token and ids.
pub struct Tenant {
    pub token: String,
    pub company_id: String,
    pub user_id: String,
    pub email: String,
    pub password: String,
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn signup(&self, company: &str) -> Tenant {
        let email = format!("admin-{}@example.com", Uuid::new_v4().simple());
        let password = "correct horse battery".to_owned();
        let response = self
            .client
            .post(self.url("/v1/signup"))
            .json(&serde_json::json!({
                "company_name": company, "name": "Ada", "email": email, "password": password
            }))
            .send()
            .await
            .expect("signup request");
        assert_eq!(response.status(), 201, "signup failed");
        let body: serde_json::Value = response.json().await.expect("signup json");
        Tenant {
            token: body["access_token"].as_str().expect("token").to_owned(),
            company_id: body["company"]["id"].as_str().expect("company id").to_owned(),
            user_id: body["user"]["id"].as_str().expect("user id").to_owned(),
            email,
            password,
        }
    }

    /// Sends a request with `token`; returns status, headers and JSON body (Null if none).
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<serde_json::Value>,
    ) -> (u16, reqwest::header::HeaderMap, serde_json::Value) {
        let mut request = self.client.request(method, self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.expect("body");
        let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        (status, headers, json)
    }
}
