//! What every harness of this repository needs, written once: the
//! integration tests (`tests/common`), the fault drills (`tests/drills`) and
//! the load bench (`benches/load`) each start servers, make scratch
//! databases and wait for health, and do it with these.
use std::net::TcpListener;
use std::time::{Duration, Instant};

/// A port nothing listens on now (the kernel's choice).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free loopback port")
}

pub fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

/// The URL of database `name` on the server of `admin_url`, with the same
/// options (`?sslmode=…`).
pub fn database_url(admin_url: &str, name: &str) -> String {
    let (server, database) = admin_url
        .rsplit_once('/')
        .expect("a Postgres URL ends in a database name");
    let options = database.find('?').map_or("", |at| &database[at..]);
    format!("{server}/{name}{options}")
}

/// Creates an empty database `name` through `admin_url`; returns its URL.
pub async fn create_database(admin_url: &str, name: &str) -> Result<String, String> {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(admin_url)
        .await
        .map_err(|e| format!("connect to Postgres at {admin_url}: {e}"))?;
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .map_err(|e| format!("create database {name}: {e}"))?;
    Ok(database_url(admin_url, name))
}

/// Drops database `name`, ending its sessions; errors are ignored (it is
/// clean-up).
pub async fn drop_database(admin_url: &str, name: &str) {
    use sqlx::Connection;
    if let Ok(mut conn) = sqlx::PgConnection::connect(admin_url).await {
        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&mut conn)
            .await;
    }
}

/// Polls `{base}/healthz` until it answers 2xx. Gives up after `timeout`,
/// or as soon as `alive` says the server's process is gone.
pub async fn wait_healthy(
    base: &str,
    timeout: Duration,
    mut alive: impl FnMut() -> bool,
) -> Result<(), String> {
    let client = reqwest::Client::new();
    let started = Instant::now();
    loop {
        let healthy = client
            .get(format!("{base}/healthz"))
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if healthy {
            return Ok(());
        }
        if !alive() {
            return Err(format!("{base}: the server exited"));
        }
        if started.elapsed() > timeout {
            return Err(format!("{base}: not healthy within {timeout:?}"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A company signed up through the API: its admin's credentials and ids.
#[derive(Clone, Debug)]
pub struct SignedUp {
    pub token: String,
    pub company_id: String,
    pub user_id: String,
    pub email: String,
    pub password: String,
}

/// Signs up company `company` at `base`, with a unique admin email.
pub async fn sign_up(
    client: &reqwest::Client,
    base: &str,
    company: &str,
) -> Result<SignedUp, String> {
    let email = format!("admin-{}@example.com", uuid::Uuid::new_v4().simple());
    let password = "correct horse battery".to_owned();
    let response = client
        .post(format!("{base}/v1/signup"))
        .timeout(Duration::from_secs(30))
        .json(&serde_json::json!({
            "company_name": company, "name": "Ada", "email": email, "password": password
        }))
        .send()
        .await
        .map_err(|e| format!("signup: {e}"))?;
    let status = response.status().as_u16();
    let body: serde_json::Value = response.json().await.map_err(|e| format!("signup: {e}"))?;
    let text = |value: &serde_json::Value| value.as_str().map(str::to_owned);
    match (
        status,
        text(&body["access_token"]),
        text(&body["company"]["id"]),
        text(&body["user"]["id"]),
    ) {
        (201, Some(token), Some(company_id), Some(user_id)) => Ok(SignedUp {
            token,
            company_id,
            user_id,
            email,
            password,
        }),
        _ => Err(format!("signup: {status} {body}")),
    }
}

/// A valid 1×1 PNG followed by `salt` (still a PNG to the server; a unique
/// salt makes it a photo of its own).
pub fn png_with(salt: &[u8]) -> Vec<u8> {
    let mut bytes = vec![
        0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x48, 0x44,
        0x52, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1F,
        0x15, 0xC4, 0x89, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9C, 0x63, 0xF8,
        0xCF, 0xC0, 0xF0, 0x1F, 0x00, 0x05, 0x00, 0x01, 0xFF, 0x89, 0x99, 0x3D, 0x1D, 0x00, 0x00,
        0x00, 0x00, 0x49, 0x45, 0x4E, 0x44, 0xAE, 0x42, 0x60, 0x82,
    ];
    bytes.extend_from_slice(salt);
    bytes
}

/// A memory figure of a process from `/proc/<pid>/status` in KiB, e.g.
/// `VmRSS` (now) or `VmHWM` (its peak); `None` where there is no `/proc`.
pub fn process_memory_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_url_keeps_the_server_and_options() {
        assert_eq!(
            database_url("postgres://u@h:5432/postgres?sslmode=disable", "crm_x"),
            "postgres://u@h:5432/crm_x?sslmode=disable"
        );
        assert_eq!(
            database_url("postgres://h/db", "other"),
            "postgres://h/other"
        );
    }

    #[test]
    fn this_process_has_a_resident_size() {
        let rss = process_memory_kib(std::process::id(), "VmRSS");
        assert!(rss.is_some_and(|kib| kib > 0), "{rss:?}");
        assert_eq!(process_memory_kib(std::process::id(), "NoSuchField"), None);
    }
}
