//! The load driver: `cargo bench --bench load -- [--quick] [--out FILE] [--only PART]`.
//!
//! Starts the release `crm` binary against fresh databases and measures, each
//! time beside a baseline taken right before on the same Postgres:
//! 1. `POST /v1/customers` at 1, 8 and 32 clients against raw single-row
//!    INSERTs of an event row;
//! 2. projection lag at 80% of the best command throughput;
//! 3. list reads (first page, deep cursor page, every sort, prefix search) on
//!    a seeded store (`crm seed`), against the same SQL run directly;
//! 4. `crm projections rebuild all` on that store;
//! 5. the server's RSS under load and at rest;
//! 6. the embedded mode (SQLite, in-process bus) at a smaller scale;
//! 7. webhook delivery to a receiver on loopback: from a create to its
//!    event's arrival at a steady rate, and deliveries/s after a burst;
//! 8. a customer import of 100k and 1M CSV rows against a raw `COPY` of the
//!    same rows as events, and the export of them all.
//!
//! Prints `figure <name> = <value> <unit>` and `ratio <name> = <value>` lines,
//! then writes the report (BENCHMARKS.md, or BENCHMARKS-quick.md with
//! `--quick`) and its plot. Each run uses fresh databases and its own NATS
//! stream, and drops them at the end. Services are found like the tests find
//! them (`TEST_DATABASE_URL`, `TEST_NATS_URL`, `TEST_S3_*`).
#[path = "load/baseline.rs"]
mod baseline;
#[path = "load/bulk.rs"]
mod bulk;
#[path = "load/report.rs"]
mod report;
#[path = "load/stack.rs"]
mod stack;
#[path = "load/stats.rs"]
mod stats;
#[path = "load/webhooks.rs"]
mod webhooks;
#[path = "load/workload.rs"]
mod workload;

use std::path::PathBuf;
use std::time::Duration;

use report::{Machine, Series};
use stack::{RssProbe, Services, Stack};
use stats::{closed_loop, Figures, Sample, Target};
use workload::{Api, Tenant};

const CONCURRENCY: [usize; 3] = [1, 8, 32];
const SEED_PASSWORD: &str = "seed-password-1";

struct Plan {
    quick: bool,
    companies: u32,
    per_company: u32,
    embedded_companies: u32,
    warmup: Duration,
    window: Duration,
    read_window: Duration,
    lag_window: Duration,
    read_clients: usize,
    read_tenants: u32,
}

impl Plan {
    fn new(quick: bool) -> Self {
        if quick {
            Self {
                quick,
                companies: 20,
                per_company: 1_000,
                embedded_companies: 5,
                warmup: Duration::from_millis(500),
                window: Duration::from_secs(2),
                read_window: Duration::from_millis(1_200),
                lag_window: Duration::from_secs(3),
                read_clients: 8,
                read_tenants: 8,
            }
        } else {
            Self {
                quick,
                companies: 1_000,
                per_company: 1_000,
                embedded_companies: 50,
                warmup: Duration::from_secs(2),
                window: Duration::from_secs(10),
                read_window: Duration::from_secs(5),
                lag_window: Duration::from_secs(15),
                read_clients: 8,
                read_tenants: 16,
            }
        }
    }

    /// The deep page: about four fifths into a company's customers.
    fn deep_pages(&self) -> usize {
        (self.per_company as usize * 4 / 5) / 50
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let out = args
        .windows(2)
        .find(|w| w[0] == "--out")
        .map(|w| PathBuf::from(&w[1]))
        .unwrap_or_else(|| {
            root.join(if quick {
                "BENCHMARKS-quick.md"
            } else {
                "BENCHMARKS.md"
            })
        });
    let plan = Plan::new(quick);
    let services = Services::from_env();
    let machine = Machine::describe(
        services.postgres_version().await,
        services.nats_version().await,
    )
    .await;
    let started = std::time::Instant::now();
    let mut figures = Figures::default();
    let mut series = vec![];

    // `--only commands|reads|embedded|webhooks|bulk` runs one part (for profiling).
    let only = args
        .windows(2)
        .find(|w| w[0] == "--only")
        .map(|w| w[1].clone());
    let runs = |part: &str| only.as_deref().is_none_or(|o| o == part);
    if runs("commands") {
        full_stack_commands(&plan, &services, &mut figures, &mut series).await;
    }
    if runs("reads") {
        full_stack_reads(&plan, &services, &mut figures).await;
    }
    if runs("embedded") {
        embedded(&plan, &mut figures, &mut series).await;
    }
    if runs("webhooks") {
        full_stack_webhooks(&plan, &services, &mut figures).await;
    }
    if runs("bulk") {
        full_stack_bulk(&plan, &services, &mut figures).await;
    }
    figures.figure(
        "suite_wall_time",
        started.elapsed().as_secs_f64(),
        "s",
        None,
    );

    let plot_file = out.with_extension("png");
    if let Err(error) = report::plot(&plot_file, "POST /v1/customers", &series) {
        eprintln!("load: could not draw the plot: {error}");
    }
    let command = if quick {
        "cargo bench --bench load -- --quick"
    } else {
        "cargo bench --bench load"
    };
    let log = std::fs::read_to_string(root.join("benches/load/optimizations.md")).ok();
    let doc = report::Document {
        title: if quick {
            "Benchmarks (quick run)".into()
        } else {
            "Benchmarks".into()
        },
        quick,
        command: command.to_string(),
        machine: &machine,
        scale: format!(
            "full stack: {} companies × {} customers seeded ({} customers); embedded: {} × {}; \
             command windows {:?} after {:?} warm-up; read windows {:?} at {} clients over {} companies",
            plan.companies,
            plan.per_company,
            plan.companies * plan.per_company,
            plan.embedded_companies,
            plan.per_company,
            plan.window,
            plan.warmup,
            plan.read_window,
            plan.read_clients,
            plan.read_tenants,
        ),
        figures: &figures,
        plot_file: plot_file
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default(),
        notes: notes(),
        log: if quick { None } else { log },
    };
    std::fs::write(&out, report::markdown(&doc)).expect("write the report");
    println!("wrote {} and {}", out.display(), plot_file.display());
}

fn notes() -> Vec<String> {
    [
        "Every ratio is against a baseline measured in the same run, right before, on the same \
         machine and Postgres: other work on this 2-core machine moves absolute numbers, much \
         less the ratios.",
        "`pg_raw_insert_c*`: one autocommit INSERT of an event-shaped JSONB row (same columns, \
         keys and defaults as `events`) per transaction through sqlx; `full_create_c*`: \
         `POST /v1/customers` through HTTP, auth, the aggregate load, the event commit, the relay \
         to JetStream, the projection worker and the customer read the response carries.",
        "`POST /v1/customers` answers from its own events without waiting for the views \
         (read-your-writes goes through the consistency token), so `lag_ack_to_visible` is how \
         long after the reply one in ten writes became visible in the list (a `GET \
         /v1/customers?limit=1` with the write's token, answered once the view has applied \
         it), and `lag_send_to_visible` the whole way from sending the write. The writes are \
         open-loop: a fixed rate, whatever the latency.",
        "Durability is as configured: Postgres `synchronous_commit=on`, `fsync=on`; JetStream \
         publishes wait for their acks, and the NATS server (`scripts/nats-server.sh`) runs \
         JetStream with `sync_interval: always`, as docker-compose.yml does.",
        "`read_*_direct`: the very query the server runs (`projections::read::customers::list`) \
         on a pool of its own; `read_*_http`: the same page through HTTP with a bearer token \
         (token check, users-view lookup, query, JSON).",
        "`rebuild_all_events_per_s`: events in the store ÷ wall time of `crm projections \
         rebuild all` (process start to exit, all four views).",
        "`rss_*`: VmRSS of the `crm serve` process (API, relay and workers in one process).",
        "`webhook_send_to_received_*`: from sending `POST /v1/customers` to the arrival of its \
         `customer.created` at a receiver on loopback (the driver's own HTTP server, answering \
         204), creates at `webhook_steady_rate`; `webhook_deliveries_per_s`: a burst of creates \
         from 32 clients to another company, whose one webhook's deliveries are counted from \
         the first arrival to the last (one endpoint; the sender keeps 4 attempts in flight \
         per endpoint).",
        "`pg_raw_copy_*`: one `COPY … FROM STDIN (FORMAT csv)` of the book's rows as \
         `CustomerRegistered` event rows (the system's payload and metadata shape) into a copy \
         of `events`, in one transaction; `import_*`: `POST /v1/customers/imports` of the same \
         book as CSV, from sending the upload until its job has succeeded, which it does only \
         once the customers view shows its last batch (so `import_*_to_visible` is also the \
         time until the list shows every row); `export_*`: `GET /v1/customers/export?format=\
         ndjson` of that company, streamed to the end; `rss_import_*_max`: the server's peak \
         VmRSS during the import.",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect()
}

/// Imports and an export on the full stack (see `load/bulk.rs`).
async fn full_stack_bulk(plan: &Plan, services: &Services, figures: &mut Figures) {
    let (name, url) = services.create_database("bulk").await;
    let stack = Stack::full(services, &url);
    stack.run(&["migrate"]).await;
    let server = stack.serve().await;
    let api = Api::new(&server.base);
    let sizes: &[usize] = if plan.quick {
        &[20_000]
    } else {
        &[100_000, 1_000_000]
    };
    for &rows in sizes {
        let label = if rows >= 1_000_000 {
            format!("{}m", rows / 1_000_000)
        } else {
            format!("{}k", rows / 1_000)
        };
        let book = stack.data_dir.join(format!("book-{label}.csv"));
        bulk::write_book(&book, rows);
        let copy = bulk::raw_copy(&url, rows).await;
        let copy_rate = rows as f64 / copy.as_secs_f64();
        figures.figure(&format!("pg_raw_copy_{label}"), copy_rate, "rows/s", None);

        let tenant = api.signup(&format!("bulk {label}")).await;
        let rss = RssProbe::start(server.pid());
        let imported = bulk::import(&api, &tenant, &book).await;
        let peak = rss.finish().await;
        assert_eq!(
            (imported.created, imported.rejected),
            (rows as u64, 0),
            "every row of the book is created"
        );
        let rate = rows as f64 / imported.to_visible.as_secs_f64();
        figures.figure(&format!("import_{label}"), rate, "rows/s", None);
        figures.ratio(
            &format!("import_{label}_vs_raw_copy"),
            rate / copy_rate,
            None,
        );
        figures.figure(
            &format!("import_{label}_to_visible"),
            imported.to_visible.as_secs_f64(),
            "s",
            None,
        );
        figures.figure(
            &format!("rss_import_{label}_max"),
            peak,
            "MiB",
            Some(Target::Below(150.0)),
        );
        let (exported, took) = bulk::export(&api, &tenant).await;
        assert_eq!(exported, rows as u64, "the export has every row");
        figures.figure(
            &format!("export_{label}"),
            exported as f64 / took.as_secs_f64(),
            "rows/s",
            None,
        );
        let _ = std::fs::remove_file(&book);
    }
    server.stop();
    services.drop_database(&name).await;
    if let Some(stream) = &stack.stream {
        services.delete_stream(stream).await;
    }
    stack.remove_data_dir();
}

/// Webhook delivery on the full stack (see `load/webhooks.rs`).
async fn full_stack_webhooks(plan: &Plan, services: &Services, figures: &mut Figures) {
    let (name, url) = services.create_database("webhooks").await;
    let mut stack = Stack::full(services, &url);
    // The receiver is on loopback, over http.
    stack
        .env
        .push(("CRM_WEBHOOKS_ALLOW_PRIVATE".into(), "true".into()));
    stack.run(&["migrate"]).await;
    let server = stack.serve().await;
    let api = Api::new(&server.base);
    let (rate, window, burst) = if plan.quick {
        (50.0, Duration::from_secs(3), 500)
    } else {
        (200.0, Duration::from_secs(15), 5_000)
    };
    let steady = api.signup("webhooks steady").await;
    let (hook, arrivals) = webhooks::receiver().await;
    webhooks::register(&api, &steady, &hook).await;
    let sample = webhooks::send_to_received(&api, &steady, &arrivals, rate, window).await;
    figures.figure("webhook_steady_rate", rate, "creates/s", None);
    figures.figure("webhook_send_to_received_p50", sample.p50(), "ms", None);
    figures.figure("webhook_send_to_received_p99", sample.p99(), "ms", None);
    figures.figure(
        "webhook_send_to_received_errors",
        sample.errors as f64,
        "creates",
        None,
    );
    let bursting = api.signup("webhooks burst").await;
    let drained = webhooks::burst(&api, &bursting, burst).await;
    figures.figure(
        "webhook_deliveries_per_s",
        drained.unwrap_or(f64::NAN),
        "deliveries/s",
        None,
    );
    server.stop();
    services.drop_database(&name).await;
    if let Some(stream) = &stack.stream {
        services.delete_stream(stream).await;
    }
    stack.remove_data_dir();
}

fn target_for_commands(clients: usize) -> Option<Target> {
    (clients >= 8).then_some(Target::AtLeast(0.5))
}

async fn full_stack_commands(
    plan: &Plan,
    services: &Services,
    figures: &mut Figures,
    series: &mut Vec<Series>,
) {
    let (name, url) = services.create_database("commands").await;
    let stack = Stack::full(services, &url);
    stack.run(&["migrate"]).await;

    let mut raw = vec![];
    for clients in CONCURRENCY {
        let sample = baseline::postgres_inserts(&url, clients, plan.warmup, plan.window).await;
        figures.sample(&format!("pg_raw_insert_c{clients}"), &sample);
        raw.push(sample);
    }
    series.push(points("raw INSERT (Postgres)", &raw));

    let server = stack.serve().await;
    let api = Api::new(&server.base);
    let mut tenants = vec![];
    for i in 0..4 {
        tenants.push(api.signup(&format!("commands {i}")).await);
    }
    // BENCH_HOLD_SECS=n: first hold a 32-client load for n seconds, to
    // attach a profiler to the printed pid.
    if let Some(hold) = std::env::var("BENCH_HOLD_SECS")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
    {
        println!(
            "holding a 32-client load on pid {} for {hold}s",
            server.pid()
        );
        let op = workload::create_customers(&api, &tenants);
        let sample = closed_loop(32, Duration::ZERO, Duration::from_secs(hold), op).await;
        println!("held: {:.0} ops/s", sample.throughput());
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    figures.figure("rss_idle_start", server.rss_mib(), "MiB", None);
    let mut crm = vec![];
    let mut rss_load: f64 = 0.0;
    // BENCH_LAG_ONLY=1 (with BENCH_LAG_RATE): only the lag run, so that the
    // server's event-age figures describe that rate alone (for profiling).
    let closed_runs = if std::env::var_os("BENCH_LAG_ONLY").is_some() {
        0
    } else {
        CONCURRENCY.len()
    };
    for (clients, raw) in CONCURRENCY.into_iter().zip(&raw).take(closed_runs) {
        let probe = RssProbe::start(server.pid());
        let op = workload::create_customers(&api, &tenants);
        let sample = closed_loop(clients, plan.warmup, plan.window, op).await;
        rss_load = rss_load.max(probe.finish().await);
        let prefix = format!("full_create_c{clients}");
        figures.sample(&prefix, &sample);
        figures.ratio(
            &format!("full_create_vs_raw_insert_c{clients}"),
            sample.throughput() / raw.throughput(),
            target_for_commands(clients),
        );
        crm.push(sample);
    }
    series.push(points("POST /v1/customers (full stack)", &crm));

    let best = crm.iter().map(Sample::throughput).fold(0.0, f64::max);
    let rate = std::env::var("BENCH_LAG_RATE")
        .ok()
        .and_then(|r| r.parse::<f64>().ok())
        .unwrap_or(best * 0.8);
    // The closed-loop runs above may leave the views a backlog: the lag is
    // measured from a caught-up start, and the drain time is a figure too.
    match api.wait_views_caught_up(Duration::from_secs(120)).await {
        Some(took) => figures.figure("views_drain_after_commands", took.as_secs_f64(), "s", None),
        None => eprintln!("load: the views had not caught up 120 s after the command runs"),
    }
    figures.figure("lag_write_rate", rate, "writes/s", None);
    let lag_window = std::env::var("BENCH_LAG_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .map(Duration::from_secs)
        .unwrap_or(plan.lag_window);
    let probe = RssProbe::start(server.pid());
    let (after_ack, after_send) = workload::projection_lag(&api, &tenants, rate, lag_window).await;
    rss_load = rss_load.max(probe.finish().await);
    // Where the lag comes from: the server's own event-age summaries (from
    // the command to the relay's publish, and to each handler).
    for (name, ms) in api.event_age_quantiles().await {
        figures.figure(&name, ms, "ms", None);
    }
    figures.figure("lag_ack_to_visible_p50", after_ack.p50(), "ms", None);
    figures.figure("lag_ack_to_visible_p99", after_ack.p99(), "ms", None);
    figures.figure("lag_send_to_visible_p50", after_send.p50(), "ms", None);
    figures.figure(
        "lag_send_to_visible_p99",
        after_send.p99(),
        "ms",
        Some(Target::Below(100.0)),
    );
    if after_ack.errors > 0 {
        figures.figure("lag_errors", after_ack.errors as f64, "writes", None);
    }

    figures.figure(
        "rss_under_load_max",
        rss_load,
        "MiB",
        Some(Target::Below(100.0)),
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    figures.figure(
        "rss_at_rest",
        server.rss_mib(),
        "MiB",
        Some(Target::Below(100.0)),
    );
    server.stop();
    services.drop_database(&name).await;
    if let Some(stream) = &stack.stream {
        services.delete_stream(stream).await;
    }
    stack.remove_data_dir();
}

fn points(label: &str, samples: &[Sample]) -> Series {
    Series {
        label: label.to_owned(),
        points: CONCURRENCY
            .into_iter()
            .zip(samples)
            .map(|(c, s)| (c, s.throughput(), s.p99()))
            .collect(),
    }
}

/// Logs in the admins of `count` seeded companies spread over `companies`.
async fn seeded_tenants(api: &Api, companies: u32, count: u32) -> Vec<Tenant> {
    let mut tenants = vec![];
    let count = count.min(companies).max(1);
    for i in 0..count {
        let n = i * companies / count;
        tenants.push(
            api.login(&format!("admin{n}@seed.example.com"), SEED_PASSWORD)
                .await,
        );
    }
    tenants
}

async fn any_pool(url: &str, connections: usize) -> sqlx::AnyPool {
    sqlx::any::install_default_drivers();
    sqlx::any::AnyPoolOptions::new()
        .max_connections(connections as u32)
        .connect(url)
        .await
        .expect("direct pool")
}

/// Every read scenario, directly and through HTTP; `prefix` names the stack.
async fn reads(
    plan: &Plan,
    prefix: &str,
    api: &Api,
    pool: &sqlx::AnyPool,
    tenants: &[Tenant],
    figures: &mut Figures,
    target: bool,
) {
    for scenario in workload::scenarios(plan.deep_pages()) {
        let keysets = workload::direct_keysets(pool, tenants, &scenario).await;
        let paths = workload::http_paths(api, tenants, &scenario).await;
        let direct = closed_loop(
            plan.read_clients,
            plan.warmup.min(Duration::from_secs(1)),
            plan.read_window,
            workload::direct_read(pool, tenants, &scenario, keysets),
        )
        .await;
        let http = closed_loop(
            plan.read_clients,
            plan.warmup.min(Duration::from_secs(1)),
            plan.read_window,
            workload::http_read(api, tenants, paths),
        )
        .await;
        figures.sample(&format!("{prefix}_read_{}_direct", scenario.name), &direct);
        figures.sample(&format!("{prefix}_read_{}_http", scenario.name), &http);
        figures.ratio(
            &format!("{prefix}_read_{}_p99_vs_direct", scenario.name),
            http.p99() / direct.p99(),
            target.then_some(Target::AtMost(2.0)),
        );
    }
}

async fn full_stack_reads(plan: &Plan, services: &Services, figures: &mut Figures) {
    let (name, url) = services.create_database("reads").await;
    let stack = Stack::full(services, &url);
    let companies = plan.companies.to_string();
    let per_company = plan.per_company.to_string();
    let (output, seed_time) = stack
        .run(&[
            "seed",
            "--companies",
            &companies,
            "--customers-per-company",
            &per_company,
        ])
        .await;
    print!("{output}");
    let pool = any_pool(&url, plan.read_clients).await;
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&pool)
        .await
        .expect("count events");
    figures.figure("seed_events", events as f64, "events", None);
    figures.figure("seed_wall_time", seed_time.as_secs_f64(), "s", None);
    figures.figure(
        "seed_events_per_s",
        events as f64 / seed_time.as_secs_f64(),
        "events/s",
        None,
    );

    let server = stack.serve().await;
    let api = Api::new(&server.base);
    let tenants = seeded_tenants(&api, plan.companies, plan.read_tenants).await;
    reads(plan, "full", &api, &pool, &tenants, figures, true).await;
    server.stop();

    let (output, rebuild_time) = stack.run(&["projections", "rebuild", "all"]).await;
    print!("{output}");
    figures.figure(
        "rebuild_all_wall_time",
        rebuild_time.as_secs_f64(),
        "s",
        None,
    );
    figures.figure(
        "rebuild_all_events_per_s",
        events as f64 / rebuild_time.as_secs_f64(),
        "events/s",
        Some(Target::AtLeast(50_000.0)),
    );
    for line in output.lines() {
        // "rebuilt customers: N events in Xs (Y events/s)"
        if let Some(rest) = line.strip_prefix("rebuilt customers: ") {
            if let Some(rate) = rest
                .split('(')
                .nth(1)
                .and_then(|r| r.split_whitespace().next())
                .and_then(|r| r.parse::<f64>().ok())
            {
                figures.figure("rebuild_customers_events_per_s", rate, "events/s", None);
            }
        }
    }
    pool.close().await;
    services.drop_database(&name).await;
    if let Some(stream) = &stack.stream {
        services.delete_stream(stream).await;
    }
    stack.remove_data_dir();
}

async fn embedded(plan: &Plan, figures: &mut Figures, series: &mut Vec<Series>) {
    let stack = Stack::embedded();
    let companies = plan.embedded_companies.to_string();
    let per_company = plan.per_company.to_string();
    let (output, seed_time) = stack
        .run(&[
            "seed",
            "--companies",
            &companies,
            "--customers-per-company",
            &per_company,
        ])
        .await;
    print!("{output}");
    figures.figure(
        "embedded_seed_wall_time",
        seed_time.as_secs_f64(),
        "s",
        None,
    );

    let mut raw = vec![];
    for clients in CONCURRENCY {
        let sample =
            baseline::sqlite_inserts(&stack.sqlite_url(), clients, plan.warmup, plan.window).await;
        figures.sample(&format!("sqlite_raw_insert_c{clients}"), &sample);
        raw.push(sample);
    }
    series.push(points("raw INSERT (SQLite)", &raw));

    let server = stack.serve().await;
    let api = Api::new(&server.base);
    let tenants = seeded_tenants(&api, plan.embedded_companies, plan.read_tenants).await;
    let pool = any_pool(&stack.sqlite_url(), plan.read_clients).await;
    reads(plan, "embedded", &api, &pool, &tenants, figures, false).await;

    let mut crm = vec![];
    for (clients, raw) in CONCURRENCY.into_iter().zip(&raw) {
        let op = workload::create_customers(&api, &tenants);
        let sample = closed_loop(clients, plan.warmup, plan.window, op).await;
        figures.sample(&format!("embedded_create_c{clients}"), &sample);
        figures.ratio(
            &format!("embedded_create_vs_raw_insert_c{clients}"),
            sample.throughput() / raw.throughput(),
            None,
        );
        crm.push(sample);
    }
    series.push(points("POST /v1/customers (embedded)", &crm));
    figures.figure("embedded_rss_after_load", server.rss_mib(), "MiB", None);
    pool.close().await;
    server.stop();
    stack.remove_data_dir();
    let _ = plan.quick;
}
