//! Latency samples, closed-loop and open-loop runners, and the figures the
//! driver prints (`figure <name> = <value> <unit>`, `ratio <name> = <value>`).
use futures::future::BoxFuture;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What one timed run produced.
#[derive(Clone, Debug, Default)]
pub struct Sample {
    /// Latencies of the successful operations inside the measured window.
    pub latencies: Vec<Duration>,
    pub errors: u64,
    pub window: Duration,
}

impl Sample {
    pub fn ok(&self) -> usize {
        self.latencies.len()
    }

    /// Successful operations per second.
    pub fn throughput(&self) -> f64 {
        self.ok() as f64 / self.window.as_secs_f64().max(1e-9)
    }

    /// The `p`-th percentile (0..=100) in milliseconds (nearest rank).
    pub fn percentile_ms(&self, p: f64) -> f64 {
        if self.latencies.is_empty() {
            return f64::NAN;
        }
        let mut sorted = self.latencies.clone();
        sorted.sort_unstable();
        let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
        sorted[rank.clamp(1, sorted.len()) - 1].as_secs_f64() * 1e3
    }

    pub fn p50(&self) -> f64 {
        self.percentile_ms(50.0)
    }

    pub fn p99(&self) -> f64 {
        self.percentile_ms(99.0)
    }
}

/// One operation of a client: `(client, iteration)` → success.
pub type Op = Arc<dyn Fn(usize, u64) -> BoxFuture<'static, bool> + Send + Sync>;

/// `clients` loops, each running `op` back to back for `warmup + window`;
/// only operations that start inside the window are recorded.
pub async fn closed_loop(clients: usize, warmup: Duration, window: Duration, op: Op) -> Sample {
    let start = Instant::now();
    let measure_from = start + warmup;
    let end = measure_from + window;
    let mut tasks = Vec::with_capacity(clients);
    for client in 0..clients {
        let op = op.clone();
        tasks.push(tokio::spawn(async move {
            let mut sample = Sample::default();
            let mut iteration = 0u64;
            loop {
                let began = Instant::now();
                if began >= end {
                    break;
                }
                let ok = op(client, iteration).await;
                iteration += 1;
                if began >= measure_from {
                    if ok {
                        sample.latencies.push(began.elapsed());
                    } else {
                        sample.errors += 1;
                    }
                }
            }
            sample
        }));
    }
    let mut total = Sample {
        window,
        ..Sample::default()
    };
    for task in tasks {
        if let Ok(sample) = task.await {
            total.latencies.extend(sample.latencies);
            total.errors += sample.errors;
        }
    }
    total
}

/// How a figure compares with its target.
#[derive(Clone, Debug)]
pub enum Target {
    AtLeast(f64),
    AtMost(f64),
    Below(f64),
}

impl Target {
    pub fn met(&self, value: f64) -> bool {
        match self {
            Target::AtLeast(t) => value >= *t,
            Target::AtMost(t) => value <= *t,
            Target::Below(t) => value < *t,
        }
    }

    pub fn text(&self) -> String {
        match self {
            Target::AtLeast(t) => format!("≥ {t}"),
            Target::AtMost(t) => format!("≤ {t}"),
            Target::Below(t) => format!("< {t}"),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Line {
    pub kind: &'static str,
    pub name: String,
    pub value: f64,
    pub unit: String,
    pub target: Option<Target>,
}

/// Every figure and ratio of the run, printed as they come.
#[derive(Default)]
pub struct Figures {
    pub lines: Vec<Line>,
}

fn show(value: f64) -> String {
    if value.is_nan() {
        "n/a".to_owned()
    } else if value.abs() >= 100.0 {
        format!("{value:.0}")
    } else if value.abs() >= 1.0 {
        format!("{value:.2}")
    } else {
        format!("{value:.3}")
    }
}

impl Figures {
    pub fn figure(&mut self, name: &str, value: f64, unit: &str, target: Option<Target>) {
        println!("figure {name} = {} {unit}", show(value));
        self.lines.push(Line {
            kind: "figure",
            name: name.to_owned(),
            value,
            unit: unit.to_owned(),
            target,
        });
    }

    pub fn ratio(&mut self, name: &str, value: f64, target: Option<Target>) {
        println!("ratio {name} = {}", show(value));
        self.lines.push(Line {
            kind: "ratio",
            name: name.to_owned(),
            value,
            unit: String::new(),
            target,
        });
    }

    /// Records throughput, p50 and p99 of a sample under `prefix`.
    pub fn sample(&mut self, prefix: &str, sample: &Sample) {
        self.figure(
            &format!("{prefix}_throughput"),
            sample.throughput(),
            "ops/s",
            None,
        );
        self.figure(&format!("{prefix}_p50"), sample.p50(), "ms", None);
        self.figure(&format!("{prefix}_p99"), sample.p99(), "ms", None);
        if sample.errors > 0 {
            self.figure(
                &format!("{prefix}_errors"),
                sample.errors as f64,
                "ops",
                None,
            );
        }
    }
}

pub fn format_value(value: f64) -> String {
    show(value)
}
