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
