//! `crm`: the one binary. With no arguments it serves the whole system in
//! embedded mode; subcommands run the pieces apart for the full stack.
use clap::{Parser, Subcommand};

use crm::application::{Application, Serve};
use crm::config::{Config, LogFormat};
use crm::{client, ops, runtime, seed};

#[derive(Parser)]
#[command(
    name = "crm",
    version,
    about = "Multi-tenant CRM backend (event-sourced, CQRS)"
)]
struct Cli {
    #[command(flatten)]
    config: Config,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the HTTP API (and, unless --no-workers, the relay and projections).
    Serve {
        /// Only the API: run `crm relay` and `crm project` as separate processes.
        #[arg(long)]
        no_workers: bool,
    },
    /// Publish committed events to NATS JetStream (one active relay holds the lease).
    Relay,
    /// Run the projection workers and policies (durable JetStream consumers).
    Project,
    /// Apply the database migrations and exit.
    Migrate,
    /// Rebuild views from the event store, or show how far they are.
    Projections {
        #[command(subcommand)]
        action: ProjectionsAction,
    },
    /// Bulk-load companies (one admin each) and customers as real events, then project them.
    Seed {
        #[arg(long, default_value_t = 10)]
        companies: u32,
        #[arg(long, default_value_t = 100)]
        customers_per_company: u32,
    },
    /// Print the OpenAPI document the server serves (docs/openapi.json is its copy).
    Openapi,
    /// Photo storage maintenance.
    Photos {
        #[command(subcommand)]
        action: PhotosAction,
    },
    /// Import or export a company's customers through a running server.
    Customers {
        #[command(flatten)]
        remote: client::Remote,
        #[command(subcommand)]
        action: CustomersAction,
    },
}

#[derive(Subcommand)]
enum CustomersAction {
    /// Upload a .csv, .ndjson or .jsonl file as an import job and follow it.
    Import {
        file: std::path::PathBuf,
        /// Update the customer a row's email names instead of creating one.
        #[arg(long, value_parser = ["email"])]
        upsert_on: Option<String>,
        /// Sent as Idempotency-Key: the same file with the same key again
        /// creates nothing twice, and resumes an interrupted import.
        #[arg(long)]
        idempotency_key: Option<String>,
        /// Write the rejected rows' reasons (NDJSON) to this file.
        #[arg(long)]
        errors: Option<std::path::PathBuf>,
    },
    /// Download every customer (or those the list query selects).
    Export {
        #[arg(long, default_value = "csv", value_parser = ["csv", "ndjson"])]
        format: String,
        /// The list's query parameters, e.g. `q=ada&has_photo=true`.
        #[arg(long)]
        query: Option<String>,
        /// The file to write; stdout when absent.
        #[arg(long, short)]
        output: Option<std::path::PathBuf>,
    },
}

#[derive(Subcommand)]
enum ProjectionsAction {
    /// Replay the event store into a shadow copy of a view and swap it in.
    Rebuild {
        /// companies, users, customers, photos, or all.
        name: String,
    },
    /// Each feed's position and lag, and the parked poison events.
    Status,
}

#[derive(Subcommand)]
enum PhotosAction {
    /// Delete stored objects that no event references (after a grace period).
    Gc {
        /// Only print what would be deleted.
        #[arg(long)]
        dry_run: bool,
        /// Objects younger than this many seconds are kept.
        #[arg(long, default_value_t = 3600)]
        grace_secs: u64,
    },
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(Command::Openapi) = cli.command {
        println!("{}", serde_json::to_string_pretty(&api::openapi())?);
        return Ok(());
    }
    if let Err(error) = cli.config.validate() {
        eprintln!("crm: configuration error: {error}");
        std::process::exit(2);
    }
    init_logging(cli.config.log_format);
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .ok();
    let config = cli.config;
    match cli.command.unwrap_or(Command::Serve { no_workers: false }) {
        Command::Serve { no_workers } => {
            let with_workers = !no_workers;
            Application::build(&config, Serve { with_workers }, metrics)
                .await?
                .run_until_stopped(runtime::shutdown_signal())
                .await
        }
        Command::Relay => runtime::run_feeds(config, true, false).await,
        Command::Project => runtime::run_feeds(config, false, true).await,
        Command::Projections { action } => match action {
            ProjectionsAction::Rebuild { name } => ops::rebuild(config, &name).await,
            ProjectionsAction::Status => ops::status(config).await,
        },
        Command::Photos {
            action:
                PhotosAction::Gc {
                    dry_run,
                    grace_secs,
                },
        } => ops::photos_gc(config, dry_run, grace_secs).await,
        Command::Seed {
            companies,
            customers_per_company,
        } => seed::run(config, companies, customers_per_company).await,
        Command::Customers { remote, action } => match action {
            CustomersAction::Import {
                file,
                upsert_on,
                idempotency_key,
                errors,
            } => {
                let request = client::ImportFile {
                    file,
                    upsert_on,
                    idempotency_key,
                    errors_to: errors,
                };
                client::import(&remote, request).await
            }
            CustomersAction::Export {
                format,
                query,
                output,
            } => client::export(&remote, &format, query.as_deref(), output.as_deref()).await,
        },
        // Answered above, before the configuration is read.
        Command::Openapi => Ok(()),
        Command::Migrate => {
            runtime::open_db(&config).await?;
            println!("migrations applied");
            Ok(())
        }
    }
}
