//! The private servers of a drill run: a Postgres cluster, a NATS server
//! (JetStream) and an S3 server (s3s-fs), started once per run on free
//! loopback ports under a temporary directory, so that killing them disturbs
//! nothing else on the machine.
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::procs::{
    find_program, free_port, is_root, port_open, run, wait_until, Process, Result, S3_ACCESS_KEY,
    S3_SECRET_KEY,
};

// ---------------------------------------------------------------------------
// Postgres
// ---------------------------------------------------------------------------

/// A private cluster made with initdb; trust auth for `postgres` on loopback.
pub struct Postgres {
    bin: PathBuf,
    pub port: u16,
    data: PathBuf,
    sockets: PathBuf,
    log: PathBuf,
    /// initdb and postgres refuse to run as root: run them as `postgres`.
    as_postgres: bool,
}

fn postgres_bin_dir() -> Result<PathBuf> {
    if let Ok(dir) = std::env::var("DRILL_PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let mut found: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .map_err(|e| format!("/usr/lib/postgresql: {e} (apt-get install postgresql)"))?
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| {
            let version = entry.file_name().to_string_lossy().parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    found.sort();
    found
        .pop()
        .map(|(_, bin)| bin)
        .ok_or_else(|| "no /usr/lib/postgresql/<version>/bin/initdb".to_owned())
}

impl Postgres {
    fn command(&self, program: &str) -> Command {
        let exe = self.bin.join(program);
        if self.as_postgres {
            let mut command = Command::new("setpriv");
            command
                .args([
                    "--reuid=postgres",
                    "--regid=postgres",
                    "--init-groups",
                    "--",
                ])
                .arg(exe);
            command
        } else {
            Command::new(exe)
        }
    }

    pub fn init(root: &Path) -> Result<Self> {
        let dir = root.join("postgres");
        fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let pg = Self {
            bin: postgres_bin_dir()?,
            port: free_port(),
            data: dir.join("data"),
            sockets: dir.clone(),
            log: dir.join("postgres.log"),
            as_postgres: is_root(),
        };
        if pg.as_postgres {
            run(
                Command::new("chown")
                    .args(["-R", "postgres:postgres"])
                    .arg(&dir),
                "chown the Postgres directory",
            )?;
        }
        run(
            pg.command("initdb")
                .arg("-D")
                .arg(&pg.data)
                .args(["-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C"])
                .arg("--no-sync"),
            "initdb",
        )?;
        Ok(pg)
    }

    pub fn start(&self) -> Result<()> {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=400 \
             -c shared_buffers=64MB -c fsync=on -c synchronous_commit=on",
            self.port,
            self.sockets.display()
        );
        run(
            self.command("pg_ctl")
                .args(["start", "-w", "-t", "60", "-D"])
                .arg(&self.data)
                .arg("-l")
                .arg(&self.log)
                .arg("-o")
                .arg(options),
            "pg_ctl start",
        )
        .map(drop)
    }

    /// `immediate` is a crash as far as the data is concerned (recovery at
    /// the next start); `fast` is a clean shutdown.
    pub fn stop(&self, mode: &str) -> Result<()> {
        run(
            self.command("pg_ctl")
                .args(["stop", "-w", "-t", "60", "-m", mode, "-D"])
                .arg(&self.data),
            "pg_ctl stop",
        )
        .map(drop)
    }

    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self.stop("immediate");
    }
}

// ---------------------------------------------------------------------------
// NATS
// ---------------------------------------------------------------------------

pub struct Nats {
    pub process: Process,
    /// The nats-server binary (the cluster drill runs three more).
    pub bin: PathBuf,
    pub port: u16,
    /// Whether this nats-server knows `sync_interval` (2.10+) and runs with
    /// `sync_interval: always`, as production does.
    pub sync_always: bool,
    pub version: String,
}

impl Nats {
    /// The binary is `DRILL_NATS_BIN` (run.sh sets it to the pinned current
    /// nats-server of scripts/nats-server.sh), else `nats-server` on PATH or
    /// Debian's. One older than 2.10 cannot take `sync_interval: always`, so
    /// it is refused unless `CRM_ALLOW_OLD_NATS=1`, and then runs without it.
    pub fn new(root: &Path) -> Result<Self> {
        let bin = match std::env::var_os("DRILL_NATS_BIN").filter(|b| !b.is_empty()) {
            Some(bin) => {
                let bin = PathBuf::from(bin);
                if !bin.is_file() {
                    return Err(format!("DRILL_NATS_BIN={}: no such file", bin.display()));
                }
                bin
            }
            None => find_program("nats-server", &[PathBuf::from("/usr/sbin/nats-server")])?,
        };
        let version = run(Command::new(&bin).arg("--version"), "nats-server --version")?
            .trim()
            .trim_start_matches("nats-server:")
            .trim()
            .trim_start_matches('v')
            .to_owned();
        let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
        let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
        let sync_always = (major, minor) >= (2, 10);
        if !sync_always {
            if std::env::var("CRM_ALLOW_OLD_NATS").is_ok_and(|v| v == "1") {
                eprintln!(
                    "drills: WARNING: {} is nats-server {version}, which predates \
                     sync_interval: JetStream runs WITHOUT `sync_interval: always` \
                     (acks are not fsynced; not how production runs)",
                    bin.display()
                );
            } else {
                return Err(format!(
                    "{} is nats-server {version}, too old for `sync_interval: always` \
                     (2.10+); run the drills with tests/drills/run.sh, which installs the \
                     pinned one, or set DRILL_NATS_BIN=$(scripts/nats-server.sh path); \
                     CRM_ALLOW_OLD_NATS=1 runs them on it without that setting",
                    bin.display()
                ));
            }
        }
        let dir = root.join("nats");
        fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let port = free_port();
        let sync = if sync_always {
            "  sync_interval: always\n"
        } else {
            ""
        };
        let conf = dir.join("nats.conf");
        fs::write(
            &conf,
            format!(
                "listen: 127.0.0.1:{port}\njetstream {{\n  store_dir: \"{}\"\n{sync}}}\n",
                dir.join("store").display()
            ),
        )
        .map_err(|e| e.to_string())?;
        let process = Process::new(
            "nats",
            bin.clone(),
            vec!["-c".into(), conf.display().to_string()],
            dir.join("nats.log"),
        );
        Ok(Self {
            process,
            bin,
            port,
            sync_always,
            version,
        })
    }

    pub async fn start(&mut self) -> Result<()> {
        self.process.start()?;
        let port = self.port;
        wait_until("nats-server", Duration::from_secs(30), || port_open(port)).await
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

// ---------------------------------------------------------------------------
// S3 (s3s-fs)
// ---------------------------------------------------------------------------

pub struct S3 {
    pub process: Process,
    pub port: u16,
}

impl S3 {
    pub fn new(root: &Path) -> Result<Self> {
        // Where `cargo install` put it, if not on PATH.
        let cargo_home = std::env::var("CARGO_HOME")
            .map(PathBuf::from)
            .or_else(|_| std::env::var("HOME").map(|h| PathBuf::from(h).join(".cargo")));
        let installed: Vec<PathBuf> = cargo_home
            .map(|h| h.join("bin/s3s-fs"))
            .into_iter()
            .collect();
        let bin = find_program("s3s-fs", &installed)?;
        let dir = root.join("s3");
        let data = dir.join("data");
        fs::create_dir_all(&data).map_err(|e| e.to_string())?;
        let port = free_port();
        let process = Process::new(
            "s3",
            bin,
            [
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--access-key",
                S3_ACCESS_KEY,
                "--secret-key",
                S3_SECRET_KEY,
                &data.display().to_string(),
            ]
            .map(str::to_owned)
            .to_vec(),
            dir.join("s3.log"),
        );
        Ok(Self { process, port })
    }

    pub async fn start(&mut self) -> Result<()> {
        self.process.start()?;
        let port = self.port;
        wait_until("s3s-fs", Duration::from_secs(30), || port_open(port)).await
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

/// The private servers of one drill run.
pub struct Services {
    pub root: PathBuf,
    pub pg: Postgres,
    pub nats: Nats,
    pub s3: S3,
}

impl Services {
    pub async fn start(root: PathBuf) -> Result<Self> {
        fs::create_dir_all(&root).map_err(|e| e.to_string())?;
        // Postgres (as its own user when we are root) must be able to reach
        // its directory under ours.
        let _ = run(
            Command::new("chmod").arg("755").arg(&root),
            "chmod the drill directory",
        );
        // NATS first: it refuses a server too old for `sync_interval: always`
        // before anything else is set up.
        let mut nats = Nats::new(&root)?;
        let pg = Postgres::init(&root)?;
        pg.start()?;
        nats.start().await?;
        let mut s3 = S3::new(&root)?;
        s3.start().await?;
        Ok(Self { root, pg, nats, s3 })
    }

    /// Creates an empty database.
    pub async fn create_database(&self, name: &str) -> Result<String> {
        test_support::create_database(&self.pg.url("postgres"), name).await?;
        Ok(self.pg.url(name))
    }
}
