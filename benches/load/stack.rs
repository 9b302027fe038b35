//! The system under test: fresh Postgres databases, a NATS stream of its
//! own, and `crm` processes (server, seed, rebuild) started from the release
//! binary.
use sqlx::Connection;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// The `crm` binary built with this bench; `BENCH_CRM_BIN` names another
/// (e.g. a build of the previous commit, for a before/after in one session).
fn crm_binary() -> String {
    std::env::var("BENCH_CRM_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_crm").to_owned())
}

use test_support::env_or;

/// Every connection of the run, the baselines' and the system's alike, goes
/// without TLS to a Postgres on loopback (unless the URL says otherwise):
/// encrypting a loopback socket only measures the cipher.
fn without_loopback_tls(url: &str) -> String {
    let loopback = ["@127.0.0.1", "@localhost", "@[::1]"]
        .iter()
        .any(|host| url.contains(host));
    if !loopback || url.contains("sslmode=") {
        return url.to_owned();
    }
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}sslmode=disable")
}

/// Where the backing services are (the test suite's variables).
#[derive(Clone, Debug)]
pub struct Services {
    pub admin_database_url: String,
    pub nats_url: String,
    pub s3_endpoint: String,
    pub s3_access_key: String,
    pub s3_secret_key: String,
}

impl Services {
    pub fn from_env() -> Self {
        Self {
            admin_database_url: without_loopback_tls(&env_or(
                "TEST_DATABASE_URL",
                "postgres://postgres@127.0.0.1:5432/postgres",
            )),
            nats_url: env_or("TEST_NATS_URL", "nats://127.0.0.1:4223"),
            s3_endpoint: env_or("TEST_S3_ENDPOINT", "http://127.0.0.1:9100"),
            s3_access_key: env_or("TEST_S3_ACCESS_KEY", "crmtest"),
            s3_secret_key: env_or("TEST_S3_SECRET_KEY", "crmtest-secret-key"),
        }
    }

    /// Creates an empty database; returns its name and URL.
    pub async fn create_database(&self, label: &str) -> (String, String) {
        let name = format!(
            "crm_bench_{label}_{}",
            &Uuid::new_v4().simple().to_string()[..12]
        );
        let url = test_support::create_database(&self.admin_database_url, &name)
            .await
            .unwrap_or_else(|e| panic!("TEST_DATABASE_URL: Postgres must be running: {e}"));
        (name, url)
    }

    pub async fn drop_database(&self, name: &str) {
        test_support::drop_database(&self.admin_database_url, name).await;
    }

    pub async fn postgres_version(&self) -> String {
        let Ok(mut conn) = sqlx::PgConnection::connect(&self.admin_database_url).await else {
            return "unknown".into();
        };
        let mut lines = vec![];
        for setting in [
            "server_version",
            "shared_buffers",
            "synchronous_commit",
            "fsync",
            "wal_level",
        ] {
            if let Ok(value) = sqlx::query_scalar::<_, String>(&format!("SHOW {setting}"))
                .fetch_one(&mut conn)
                .await
            {
                lines.push(format!("{setting}={value}"));
            }
        }
        lines.join(", ")
    }

    /// Deletes a stream a run created (best effort).
    pub async fn delete_stream(&self, stream: &str) {
        if let Ok(client) = async_nats::connect(&self.nats_url).await {
            let js = async_nats::jetstream::new(client);
            let _ = js.delete_stream(stream).await;
        }
    }

    pub async fn nats_version(&self) -> String {
        match async_nats::connect(&self.nats_url).await {
            Ok(client) => client.server_info().version,
            Err(_) => "unknown".into(),
        }
    }
}

/// The environment of every `crm` process of one stack.
#[derive(Clone, Debug)]
pub struct Stack {
    pub env: Vec<(String, String)>,
    pub data_dir: PathBuf,
    pub stream: Option<String>,
}

impl Stack {
    /// Postgres + NATS + S3, with a stream, subject prefix and bucket of its own.
    pub fn full(services: &Services, database_url: &str) -> Self {
        let unique = Uuid::new_v4().simple().to_string();
        let stream = format!("CRM_BENCH_{unique}");
        let data_dir = std::env::temp_dir().join(format!("crm-bench-{unique}"));
        let env = vec![
            ("DATABASE_URL".into(), database_url.to_owned()),
            ("NATS_URL".into(), services.nats_url.clone()),
            ("CRM_NATS_STREAM".into(), stream.clone()),
            (
                "CRM_NATS_SUBJECT_PREFIX".into(),
                format!("crmbench.{unique}"),
            ),
            ("S3_ENDPOINT".into(), services.s3_endpoint.clone()),
            ("S3_ACCESS_KEY".into(), services.s3_access_key.clone()),
            ("S3_SECRET_KEY".into(), services.s3_secret_key.clone()),
            ("S3_BUCKET".into(), format!("crm-bench-{}", &unique[..12])),
            ("CRM_JWT_SECRET".into(), format!("bench-secret-{unique}")),
            ("CRM_DATA_DIR".into(), data_dir.display().to_string()),
        ];
        Self {
            env: common(env),
            data_dir,
            stream: Some(stream),
        }
    }

    /// SQLite, in-process bus, local photos, all in a fresh data directory.
    pub fn embedded() -> Self {
        let data_dir = std::env::temp_dir().join(format!("crm-bench-{}", Uuid::new_v4().simple()));
        let env = vec![("CRM_DATA_DIR".into(), data_dir.display().to_string())];
        Self {
            env: common(env),
            data_dir,
            stream: None,
        }
    }

    pub fn sqlite_url(&self) -> String {
        format!("sqlite://{}", self.data_dir.join("crm.db").display())
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(crm_binary());
        command
            .args(args)
            .env_clear()
            .env("PATH", env_or("PATH", "/usr/bin:/bin"))
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        command
    }

    /// Runs `crm <args>` to completion; returns its stdout and wall time.
    pub async fn run(&self, args: &[&str]) -> (String, Duration) {
        let mut command = self.command(args);
        let started = Instant::now();
        let output = tokio::task::spawn_blocking(move || command.stderr(Stdio::inherit()).output())
            .await
            .expect("join")
            .expect("run crm");
        let elapsed = started.elapsed();
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "crm {args:?} failed: {}\n{stdout}",
            output.status
        );
        (stdout, elapsed)
    }

    /// Starts `crm serve` on a free port and waits until it answers.
    pub async fn serve(&self) -> Server {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let child = self
            .command(&["serve"])
            .env("CRM_ADDR", format!("127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start crm serve");
        let base = format!("http://127.0.0.1:{port}");
        test_support::wait_healthy(&base, Duration::from_secs(60), || true)
            .await
            .unwrap_or_else(|e| panic!("crm serve did not start: {e}"));
        Server { child, base }
    }

    pub fn remove_data_dir(&self) {
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

fn common(mut env: Vec<(String, String)>) -> Vec<(String, String)> {
    env.extend([
        ("RUST_LOG".into(), env_or("BENCH_LOG", "warn")),
        ("CRM_TOKEN_TTL_SECS".into(), "86400".into()),
        ("CRM_SIGNUP_ENABLED".into(), "true".into()),
    ]);
    env
}

pub struct Server {
    child: Child,
    pub base: String,
}

impl Server {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident set size now, in MiB.
    pub fn rss_mib(&self) -> f64 {
        rss_mib(self.pid())
    }

    /// Stops the server (SIGTERM, then SIGKILL after 10 s).
    pub fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn rss_mib(pid: u32) -> f64 {
    test_support::process_memory_kib(pid, "VmRSS").map_or(f64::NAN, |kib| kib as f64 / 1024.0)
}

/// Samples a process's RSS every 100 ms until stopped; yields the maximum.
pub struct RssProbe {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<f64>,
}

impl RssProbe {
    pub fn start(pid: u32) -> Self {
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(async move {
            let mut max = rss_mib(pid);
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                    _ = stopped.changed() => return max,
                }
                let now = rss_mib(pid);
                if now > max || max.is_nan() {
                    max = now;
                }
            }
        });
        Self { stop, task }
    }

    pub async fn finish(self) -> f64 {
        let _ = self.stop.send(true);
        self.task.await.unwrap_or(f64::NAN)
    }
}
