//! Fault drills: the real `crm` processes (`serve --no-workers`, `relay`,
//! `project`) over private Postgres, NATS and S3 servers, a steady write
//! load over HTTP, one fault per drill, then every acknowledged write checked
//! against the event store and the read models. Drill 11 runs its own
//! 3-node NATS cluster (`cluster.rs`) instead of the single server.
//!
//! Run with `tests/drills/run.sh [--short]` (see RELIABILITY.md). Settings:
//! - `--short`: each fault once with a few seconds of load (CI);
//! - `--seconds N` / `DRILL_SECONDS`: seconds of load per drill;
//! - `--clients N` / `DRILL_CLIENTS`: concurrent clients (default 6);
//! - drill ids as arguments (or `DRILL_ONLY=1a,7`): run only those;
//! - `DRILL_REPORT=path`: also write the table there (markdown);
//! - `DRILL_KEEP=1`: keep the temporary directory (logs, data);
//! - `DRILL_LOG`: `RUST_LOG` of the crm processes (default `warn`);
//! - `DRILL_NATS_BIN`: the nats-server to run (run.sh sets the pinned one of
//!   scripts/nats-server.sh); `CRM_ALLOW_OLD_NATS=1` accepts one older than
//!   2.10, which then runs without `sync_interval: always`.
//!
//! Exit status 1 if any drill lost or duplicated an acknowledged write, saw
//! a 5xx other than 503, or failed one of its own checks.
mod check;
mod cluster;
mod drills_cluster;
mod drills_feed;
mod drills_processes;
mod drills_services;
mod load;
mod procs;
mod revocation;
mod services;

use check::{Expect, Report};
use load::{Outcome, Spec, Target};
use procs::{Stack, Topology};
use services::Services;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// The drills, in the order they run: (id, what).
pub const DRILLS: &[(&str, &str)] = &[
    ("1a", "kill -9 of an API process"),
    ("1b", "kill -9 of the relay"),
    ("1c", "kill -9 of a projection worker"),
    ("2", "NATS killed -9 and restarted"),
    ("3", "Postgres restarted (immediate stop)"),
    ("4", "S3 server stopped during uploads"),
    ("5", "transaction held open mid-insert (gap)"),
    ("6", "two APIs, relays and workers; session revocation"),
    ("7", "poison event"),
    ("8", "rebuild of every view under load"),
    ("9", "client retries every write after a timeout"),
    ("10", "session idle in transaction"),
    (
        "11",
        "3-node NATS cluster: a node, then the stream leader, killed -9",
    ),
];

#[derive(Clone, Debug)]
pub struct Settings {
    pub seconds: f64,
    pub clients: usize,
    pub short: bool,
}

impl Settings {
    /// Seconds of load of a drill.
    pub fn load(&self) -> Duration {
        Duration::from_secs_f64(self.seconds)
    }

    /// A point in the load, as a fraction of it.
    pub fn at(&self, fraction: f64) -> Duration {
        Duration::from_secs_f64(self.seconds * fraction)
    }

    /// How long a killed or stopped service stays down.
    pub fn outage(&self) -> Duration {
        if self.short {
            Duration::from_secs(2)
        } else {
            Duration::from_secs(5)
        }
    }

    pub fn spec(&self) -> Spec {
        let mut spec = Spec::new(self.load(), self.clients);
        spec.photo_share = 0.1;
        spec.option2_share = 0.5;
        spec.user_share = 0.03;
        spec
    }
}

/// One drill in progress: its stack, its tenant and its report.
pub struct Run {
    pub stack: Stack,
    pub target: Target,
    pub report: Report,
    pub started: Instant,
}

impl Run {
    pub async fn start(services: &Services, id: &str, topology: Topology) -> Result<Run, String> {
        Self::start_with(services, id, topology, &[]).await
    }

    /// [`Run::start`] with some variables of the crm processes replaced.
    pub async fn start_with(
        services: &Services,
        id: &str,
        topology: Topology,
        overrides: &[(&str, String)],
    ) -> Result<Run, String> {
        let stack = Stack::start_with(services, id, topology, overrides).await?;
        let mut target = load::signup(&stack.bases()[0]).await?;
        target.bases = stack.bases();
        Ok(Run {
            stack,
            target,
            report: Report::new(id),
            started: Instant::now(),
        })
    }

    /// Starts the load in the background.
    pub fn load(&mut self, spec: Spec) -> tokio::task::JoinHandle<Outcome> {
        self.started = Instant::now();
        tokio::spawn(load::run(spec, self.target.clone()))
    }

    /// Sleeps until `at` after the load started.
    pub async fn until(&self, at: Duration) {
        let elapsed = self.started.elapsed();
        if at > elapsed {
            tokio::time::sleep(at - elapsed).await;
        }
    }

    pub fn secs(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// Checks everything, stops the processes, and hands the report back.
    pub async fn finish(mut self, outcome: Outcome, expect: &Expect) -> Report {
        if let Some(detail) = &outcome.tally.first_503 {
            self.report.note(format!("503 said: {detail:?}"));
        }
        if let Err(e) = check::verify(
            &self.stack,
            &self.stack.nats_url,
            &self.target,
            &outcome,
            expect,
            &mut self.report,
        )
        .await
        {
            self.report.fail(format!("checker: {e}"));
        }
        self.stack.stop().await;
        if !self.report.passed() {
            self.report.note(format!("logs: {}", self.stack.logs()));
        }
        self.report
    }
}

/// A drill that could not even run is a failed row.
pub fn broken(id: &str, error: String) -> Report {
    let mut report = Report::new(id);
    report.fail(error);
    report
}

fn settings_and_selection() -> Result<(Settings, Vec<String>), String> {
    let mut args = std::env::args().skip(1);
    let env_number = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<f64>().ok());
    let mut short = false;
    let mut seconds = env_number("DRILL_SECONDS");
    let mut clients = env_number("DRILL_CLIENTS").map(|c| c as usize);
    let mut only: Vec<String> = std::env::var("DRILL_ONLY")
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--short" => short = true,
            "--seconds" => seconds = args.next().and_then(|v| v.parse().ok()),
            "--clients" => clients = args.next().and_then(|v| v.parse().ok()),
            // What cargo's test runner may pass along.
            "--nocapture" | "--test-threads" | "--quiet" | "-q" => {}
            id if DRILLS.iter().any(|(known, _)| *known == id) => only.push(id.to_owned()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    let settings = Settings {
        seconds: seconds.unwrap_or(if short { 4.0 } else { 20.0 }),
        clients: clients.unwrap_or(6).max(1),
        short,
    };
    Ok((settings, only))
}

fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

/// The markdown table of the run.
pub fn table(settings: &Settings, reports: &[Report]) -> String {
    let mut out = format!(
        "{} s of load per drill, {} clients\n\n| drill | acknowledged | lost | duplicated | 503 | other 5xx | longest stall | notes |\n|---|---:|---:|---:|---:|---:|---:|---|\n",
        settings.seconds, settings.clients
    );
    for report in reports {
        let what = DRILLS
            .iter()
            .find(|(id, _)| *id == report.drill)
            .map_or("", |(_, what)| what);
        let mut notes: Vec<String> = report
            .failures
            .iter()
            .map(|f| format!("FAILED: {f}"))
            .collect();
        notes.extend(report.notes.iter().cloned());
        out.push_str(&format!(
            "| {} {} | {} | {} | {} | {} | {} | {:.1} s | {} |\n",
            report.drill,
            what,
            report.acknowledged,
            report.lost,
            report.duplicated,
            report.s503,
            report.other_5xx,
            report.stall.as_secs_f64(),
            cell(&notes.join("; "))
        ));
    }
    out
}

async fn run_drill(id: &str, services: &mut Services, settings: &Settings) -> Report {
    match id {
        "1a" => drills_processes::kill_api(services, settings).await,
        "1b" => drills_processes::kill_relay(services, settings).await,
        "1c" => drills_processes::kill_worker(services, settings).await,
        "2" => drills_services::nats(services, settings).await,
        "3" => drills_services::postgres(services, settings).await,
        "4" => drills_services::s3(services, settings).await,
        "5" => drills_feed::gap(services, settings).await,
        "6" => drills_processes::two_of_each(services, settings).await,
        "7" => drills_feed::poison(services, settings).await,
        "8" => drills_feed::rebuild(services, settings).await,
        "9" => drills_feed::retries(services, settings).await,
        "10" => drills_services::idle_in_transaction(services, settings).await,
        "11" => drills_cluster::cluster(services, settings).await,
        other => broken(other, "no such drill".into()),
    }
}

fn main() -> ExitCode {
    let (settings, only) = match settings_and_selection() {
        Ok(parsed) => parsed,
        Err(e) => {
            eprintln!("drills: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async move {
        let root = std::env::temp_dir().join(format!("crm-drills-{}", uuid::Uuid::new_v4().simple()));
        eprintln!("drills: private Postgres, NATS and S3 under {}", root.display());
        let mut services = match Services::start(root.clone()).await {
            Ok(services) => services,
            Err(e) => {
                eprintln!(
                    "drills: cannot start the private services: {e} (logs kept in {})",
                    root.display()
                );
                return ExitCode::FAILURE;
            }
        };
        eprintln!(
            "drills: nats-server {} ({}); {} s of load per drill, {} clients",
            services.nats.version,
            if services.nats.sync_always {
                "sync_interval: always"
            } else {
                "too old for sync_interval: default fsync"
            },
            settings.seconds,
            settings.clients
        );
        let mut reports = vec![];
        for (id, what) in DRILLS {
            if !only.is_empty() && !only.iter().any(|o| o == id) {
                continue;
            }
            eprintln!("drills: {id} {what} ...");
            let started = Instant::now();
            let report = run_drill(id, &mut services, &settings).await;
            eprintln!(
                "drills: {id} {} in {:.0} s: acknowledged {}, lost {}, duplicated {}, 503 {}, other 5xx {}{}",
                if report.passed() { "passed" } else { "FAILED" },
                started.elapsed().as_secs_f64(),
                report.acknowledged,
                report.lost,
                report.duplicated,
                report.s503,
                report.other_5xx,
                report
                    .failures
                    .iter()
                    .map(|f| format!("\n    {f}"))
                    .collect::<String>()
            );
            reports.push(report);
        }
        let table = table(&settings, &reports);
        println!("\n{table}");
        if let Ok(path) = std::env::var("DRILL_REPORT") {
            if let Err(e) = std::fs::write(&path, &table) {
                eprintln!("drills: cannot write {path}: {e}");
            }
        }
        let failed = reports.iter().filter(|r| !r.passed()).count();
        let keep = std::env::var("DRILL_KEEP").is_ok_and(|v| v == "1") || failed > 0;
        drop(services);
        if keep {
            eprintln!("drills: logs and data kept in {}", root.display());
        } else {
            let _ = std::fs::remove_dir_all(&root);
        }
        if failed > 0 {
            eprintln!("drills: {failed} of {} drills FAILED", reports.len());
            ExitCode::FAILURE
        } else {
            eprintln!("drills: all {} drills passed", reports.len());
            ExitCode::SUCCESS
        }
    })
}
