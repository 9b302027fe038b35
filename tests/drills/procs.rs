//! The processes a drill runs and breaks: [`Process`] (any background
//! process we may kill -9 and start again) and [`Stack`], the `crm`
//! processes of one drill (API, relays, workers) over a database, stream and
//! bucket of their own on the private servers of `services.rs`.
use std::fs::{self, File, OpenOptions};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub type Result<T> = std::result::Result<T, String>;

use crate::services::Services;

pub const S3_ACCESS_KEY: &str = "crmtest";
pub const S3_SECRET_KEY: &str = "crmtest-secret-key";

pub use test_support::free_port;

pub fn port_open(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

/// Polls `check` until it holds or `timeout` passes.
pub async fn wait_until(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> bool,
) -> Result<()> {
    let started = Instant::now();
    while !check() {
        if started.elapsed() > timeout {
            return Err(format!("{what}: not ready within {timeout:?}"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

fn append(path: &Path) -> Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))
}

pub(crate) fn run(command: &mut Command, what: &str) -> Result<String> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{what}: cannot start: {e}"))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(format!(
            "{what}: {}\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

pub(crate) fn is_root() -> bool {
    fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

/// `name` on PATH, or the first of `fallbacks` that exists.
pub(crate) fn find_program(name: &str, fallbacks: &[PathBuf]) -> Result<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|dir| dir.join(name));
    on_path
        .chain(fallbacks.iter().cloned())
        .find(|p| p.is_file())
        .ok_or_else(|| format!("{name} not found on PATH or in {fallbacks:?}"))
}

/// Sends a signal by number (`kill -<n> <pid>`).
fn signal(child: &Child, number: i32) {
    let _ = Command::new("kill")
        .arg(format!("-{number}"))
        .arg(child.id().to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// A background process we may kill -9 and start again.
pub struct Process {
    pub name: String,
    program: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    log: PathBuf,
    child: Option<Child>,
}

impl Process {
    pub fn new(name: &str, program: PathBuf, args: Vec<String>, log: PathBuf) -> Self {
        Self {
            name: name.to_owned(),
            program,
            args,
            env: vec![],
            log,
            child: None,
        }
    }

    /// Starts with exactly these variables (plus PATH and HOME).
    pub fn with_env(mut self, env: Vec<(String, String)>) -> Self {
        self.env = env;
        self
    }

    pub fn start(&mut self) -> Result<()> {
        if self.running() {
            return Ok(());
        }
        let out = append(&self.log)?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        let mut command = Command::new(&self.program);
        command
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        if !self.env.is_empty() {
            command.env_clear();
            for keep in ["PATH", "HOME"] {
                if let Ok(value) = std::env::var(keep) {
                    command.env(keep, value);
                }
            }
            command.envs(self.env.iter().map(|(k, v)| (k, v)));
        }
        let child = command.spawn().map_err(|e| {
            format!(
                "{}: cannot start {}: {e}",
                self.name,
                self.program.display()
            )
        })?;
        self.child = Some(child);
        Ok(())
    }

    pub fn running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// `kill -9`: no chance to finish anything.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then SIGKILL after `grace`.
    pub async fn terminate(&mut self, grace: Duration) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        signal(&child, 15);
        let started = Instant::now();
        while started.elapsed() < grace {
            if !matches!(child.try_wait(), Ok(None)) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    pub fn log(&self) -> &Path {
        &self.log
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill9();
    }
}

// ---------------------------------------------------------------------------
// crm processes
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Api,
    Relay,
    Worker,
}

pub struct Crm {
    pub role: Role,
    pub process: Process,
    /// `http://127.0.0.1:<port>` of an API process.
    pub base: Option<String>,
}

pub fn crm_binary() -> PathBuf {
    std::env::var("DRILL_CRM_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_BIN_EXE_crm")))
}

impl Crm {
    pub fn start(&mut self) -> Result<()> {
        self.process.start()
    }

    /// Waits until an API answers `/healthz` (relays and workers: until
    /// they have been up for a moment).
    pub async fn wait_ready(&mut self) -> Result<()> {
        let Some(base) = self.base.clone() else {
            tokio::time::sleep(Duration::from_millis(300)).await;
            return if self.process.running() {
                Ok(())
            } else {
                Err(format!(
                    "{} exited at start (see {})",
                    self.process.name,
                    self.process.log().display()
                ))
            };
        };
        let process = &mut self.process;
        let healthy =
            test_support::wait_healthy(&base, Duration::from_secs(60), || process.running()).await;
        healthy.map_err(|error| {
            format!(
                "{} did not become healthy: {error} (see {})",
                self.process.name,
                self.process.log().display()
            )
        })
    }

    pub async fn restart(&mut self) -> Result<()> {
        self.process.start()?;
        self.wait_ready().await
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Topology {
    pub apis: usize,
    pub relays: usize,
    pub workers: usize,
}

impl Topology {
    pub const ONE_EACH: Topology = Topology {
        apis: 1,
        relays: 1,
        workers: 1,
    };
}

/// One drill's system: its database, stream, bucket and crm processes.
pub struct Stack {
    pub name: String,
    pub dir: PathBuf,
    pub db_url: String,
    /// The `NATS_URL` of its processes (one server, or a cluster's list).
    pub nats_url: String,
    pub stream: String,
    pub env: Vec<(String, String)>,
    pub apis: Vec<Crm>,
    pub relays: Vec<Crm>,
    pub workers: Vec<Crm>,
}

impl Stack {
    pub async fn start(services: &Services, name: &str, topology: Topology) -> Result<Self> {
        Self::start_with(services, name, topology, &[]).await
    }

    /// [`Stack::start`] with some variables of the crm processes replaced
    /// (e.g. `NATS_URL` of a cluster) or added.
    pub async fn start_with(
        services: &Services,
        name: &str,
        topology: Topology,
        overrides: &[(&str, String)],
    ) -> Result<Self> {
        let unique = uuid::Uuid::new_v4().simple().to_string();
        let slug: String = name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        let dir = services.root.join(format!("drill-{slug}"));
        fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let db_name = format!("drill_{}_{}", slug.to_lowercase(), &unique[..8]);
        let db_url = services.create_database(&db_name).await?;
        let stream = format!("DRILL_{}", &unique[..12]);
        let env: Vec<(String, String)> = [
            ("DATABASE_URL", db_url.clone()),
            ("NATS_URL", services.nats.url()),
            ("CRM_NATS_STREAM", stream.clone()),
            (
                "CRM_NATS_SUBJECT_PREFIX",
                format!("drill.{}", &unique[..12]),
            ),
            ("S3_ENDPOINT", services.s3.endpoint()),
            ("S3_ACCESS_KEY", S3_ACCESS_KEY.to_owned()),
            ("S3_SECRET_KEY", S3_SECRET_KEY.to_owned()),
            ("S3_BUCKET", format!("drill-{}", &unique[..12])),
            ("CRM_JWT_SECRET", format!("drill-secret-{unique}")),
            ("CRM_DATA_DIR", dir.join("data").display().to_string()),
            (
                "RUST_LOG",
                std::env::var("DRILL_LOG").unwrap_or_else(|_| "warn".to_owned()),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let mut env = env;
        for (key, value) in overrides {
            env.retain(|(k, _)| k != key);
            env.push(((*key).to_owned(), value.clone()));
        }
        let nats_url = env
            .iter()
            .find(|(k, _)| k == "NATS_URL")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        let mut stack = Self {
            name: name.to_owned(),
            dir,
            db_url,
            nats_url,
            stream,
            env,
            apis: vec![],
            relays: vec![],
            workers: vec![],
        };
        // The first API applies the migrations before anyone else starts.
        for i in 0..topology.apis {
            let mut api = stack.crm(Role::Api, i + 1);
            api.start()?;
            api.wait_ready().await?;
            stack.apis.push(api);
        }
        for i in 0..topology.relays {
            let mut relay = stack.crm(Role::Relay, i + 1);
            relay.start()?;
            stack.relays.push(relay);
        }
        for i in 0..topology.workers {
            let mut worker = stack.crm(Role::Worker, i + 1);
            worker.start()?;
            stack.workers.push(worker);
        }
        for crm in stack.relays.iter_mut().chain(stack.workers.iter_mut()) {
            crm.wait_ready().await?;
        }
        Ok(stack)
    }

    fn crm(&self, role: Role, n: usize) -> Crm {
        let (label, args) = match role {
            Role::Api => ("api", vec!["serve", "--no-workers"]),
            Role::Relay => ("relay", vec!["relay"]),
            Role::Worker => ("worker", vec!["project"]),
        };
        let mut env = self.env.clone();
        let mut base = None;
        if role == Role::Api {
            let port = free_port();
            env.push(("CRM_ADDR".into(), format!("127.0.0.1:{port}")));
            base = Some(format!("http://127.0.0.1:{port}"));
        } else {
            env.push(("CRM_DB_POOL_SIZE".into(), "8".into()));
        }
        if role == Role::Relay {
            // "holding the relay lease" tells which relay leads.
            for (key, value) in env.iter_mut() {
                if key == "RUST_LOG" {
                    value.push_str(",projections::feed::relay=info");
                }
            }
        }
        let name = format!("{label}-{n}");
        let process = Process::new(
            &name,
            crm_binary(),
            args.into_iter().map(str::to_owned).collect(),
            self.dir.join(format!("{name}.log")),
        )
        .with_env(env);
        Crm {
            role,
            process,
            base,
        }
    }

    pub fn bases(&self) -> Vec<String> {
        self.apis.iter().filter_map(|a| a.base.clone()).collect()
    }

    /// Runs `crm <args>` against this stack to the end; its stdout, or its
    /// output as the error when it fails.
    pub async fn crm_command(&self, args: &[&str]) -> Result<String> {
        let mut command = Command::new(crm_binary());
        command.args(args).env_clear();
        for keep in ["PATH", "HOME"] {
            if let Ok(value) = std::env::var(keep) {
                command.env(keep, value);
            }
        }
        command.envs(self.env.iter().map(|(k, v)| (k, v)));
        let what = format!("crm {}", args.join(" "));
        tokio::task::spawn_blocking(move || run(&mut command, &what))
            .await
            .map_err(|e| e.to_string())?
    }

    /// An admin connection pool to this drill's database.
    pub async fn pool(&self) -> Result<sqlx::PgPool> {
        sqlx::postgres::PgPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(10))
            .connect(&self.db_url)
            .await
            .map_err(|e| format!("connect to {}: {e}", self.db_url))
    }

    pub fn logs(&self) -> String {
        self.dir.display().to_string()
    }

    pub async fn stop(&mut self) {
        for crm in self
            .workers
            .iter_mut()
            .chain(self.relays.iter_mut())
            .chain(self.apis.iter_mut())
        {
            crm.process.terminate(Duration::from_secs(5)).await;
        }
    }
}
