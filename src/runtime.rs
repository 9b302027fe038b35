//! Wiring: turns the configuration into the running pieces (database, object
//! store, bus, feeds) for each process kind; `application.rs` assembles the
//! HTTP server from them.
use anyhow::Context;
use commands::objects::{local::LocalStore, s3::S3Store, ObjectStore};
use commands::{Commands, Db};
use projections::feed::embedded::EmbeddedFeed;
use projections::feed::relay::{Relay, RELAY_NAME};
use projections::feed::worker::Worker;
use std::sync::Arc;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::config::Config;

pub async fn open_db(config: &Config) -> anyhow::Result<Db> {
    let db = match &config.database_url {
        Some(url) => Db::connect_postgres(url, config.db_pool_size)
            .await
            .context("DATABASE_URL: cannot connect to Postgres")?,
        None => Db::connect_sqlite(&config.data_dir)
            .await
            .with_context(|| format!("CRM_DATA_DIR: cannot open {}", config.data_dir.display()))?,
    };
    db.migrate().await.context("applying migrations")?;
    Ok(db)
}

pub async fn open_objects(config: &Config) -> anyhow::Result<Arc<dyn ObjectStore>> {
    Ok(match config.s3()? {
        Some(s3) => {
            let store = S3Store::new(
                &s3.endpoint,
                &s3.access_key,
                &s3.secret_key,
                &config.s3_bucket,
                &config.s3_region,
            )
            .context("S3_ENDPOINT")?;
            // Created at start if missing; if S3 is down now, /readyz says so.
            if let Err(error) = store.ensure_bucket().await {
                tracing::warn!(%error, bucket = %config.s3_bucket, "could not check or create the bucket");
            }
            Arc::new(store)
        }
        None => Arc::new(
            LocalStore::new(config.data_dir.join("photos"))
                .context("CRM_DATA_DIR: photos directory")?,
        ),
    })
}

pub async fn connect_bus(config: &Config) -> anyhow::Result<Option<async_nats::Client>> {
    match &config.nats_url {
        None => Ok(None),
        Some(url) => Ok(Some(
            projections::feed::relay::connect_bus(url)
                .await
                .context("NATS_URL: cannot connect")?,
        )),
    }
}

/// The signing secret: configured, or a random key kept in the data directory.
pub(crate) fn jwt_secret(config: &Config) -> anyhow::Result<Vec<u8>> {
    if let Some(secret) = &config.jwt_secret {
        return Ok(secret.as_bytes().to_vec());
    }
    let path = config.data_dir.join("jwt.key");
    if let Ok(existing) = std::fs::read_to_string(&path) {
        return hex::decode(existing.trim()).context("CRM_DATA_DIR/jwt.key is not hex");
    }
    std::fs::create_dir_all(&config.data_dir)?;
    let key: [u8; 32] = rand::random();
    write_secret(&path, hex::encode(key).as_bytes()).context("writing CRM_DATA_DIR/jwt.key")?;
    Ok(key.to_vec())
}

/// Writes a secret readable by its owner only (0600 where permissions exist),
/// created with that mode so it is never briefly readable by others.
fn write_secret(path: &std::path::Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(contents)
}

/// Starts the feeds that keep the views current: relay + workers on the
/// full stack, the in-process feed when embedded.
pub fn spawn_feeds(
    tasks: &mut JoinSet<()>,
    commands: &Commands,
    bus: Option<&async_nats::Client>,
    relay: bool,
    workers: bool,
    shutdown: &watch::Receiver<bool>,
    config: &Config,
) {
    let (stream, prefix) = (&config.nats_stream, &config.nats_subject_prefix);
    let handlers = projections::feed::all_handlers(commands);
    if workers {
        spawn_webhooks(tasks, commands, shutdown, config);
    }
    match bus {
        None => {
            tasks.spawn(EmbeddedFeed::new(commands.clone(), handlers).run(shutdown.clone()));
        }
        Some(client) => {
            let jetstream = async_nats::jetstream::new(client.clone());
            if relay {
                let relay = Relay::new(commands.db().clone(), jetstream.clone(), RELAY_NAME)
                    .with_stream(stream.clone(), prefix.clone())
                    .with_replicas(config.nats_replicas)
                    .with_commit_signal(commands.commit_signal());
                tasks.spawn(relay.run(shutdown.clone()));
            }
            if workers {
                for handler in handlers {
                    let worker = Worker::new(jetstream.clone(), commands.db().any.clone(), handler)
                        .with_stream(stream.clone(), prefix.clone())
                        .with_replicas(config.nats_replicas);
                    tasks.spawn(worker.run(shutdown.clone()));
                }
            }
        }
    }
}

/// Starts webhook delivery: the dispatcher (events → delivery rows) and the
/// sender. They read the event store directly, in both modes, with their
/// own checkpoint, so they never slow the views.
fn spawn_webhooks(
    tasks: &mut JoinSet<()>,
    commands: &Commands,
    shutdown: &watch::Receiver<bool>,
    config: &Config,
) {
    use projections::webhooks::{dispatch::Dispatcher, send};
    let due = Arc::new(tokio::sync::Notify::new());
    let dispatcher = Dispatcher::new(commands.db().clone(), due.clone())
        .with_commit_signal(commands.commit_signal());
    tasks.spawn(dispatcher.run(shutdown.clone()));
    let settings = send::SendSettings {
        targets: config.webhook_targets(),
        retry_scale: config.webhooks_retry_scale,
    };
    match send::Sender::new(commands.db().clone(), settings, due) {
        Ok(sender) => {
            tasks.spawn(sender.run(shutdown.clone()));
        }
        Err(error) => {
            tracing::error!(%error, "cannot build the webhook HTTP client; no deliveries")
        }
    }
}

/// The console's address as a browser on this machine opens it (a wildcard
/// listen address is reached through loopback).
pub(crate) fn console_url(local: std::net::SocketAddr) -> String {
    let mut shown = local;
    if local.ip().is_unspecified() {
        shown.set_ip(match local {
            std::net::SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            std::net::SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    format!("http://{shown}{}", api::console::PATH)
}

/// Runs the relay and/or workers alone until a signal.
pub async fn run_feeds(config: Config, relay: bool, workers: bool) -> anyhow::Result<()> {
    let db = open_db(&config).await?;
    let bus = connect_bus(&config).await?;
    if bus.is_none() {
        anyhow::bail!("NATS_URL: required for `crm relay` and `crm project`");
    }
    let commands = Commands::new(db);
    let (stop, shutdown) = watch::channel(false);
    let mut tasks = JoinSet::new();
    spawn_feeds(
        &mut tasks,
        &commands,
        bus.as_ref(),
        relay,
        workers,
        &shutdown,
        &config,
    );
    shutdown_signal().await;
    let _ = stop.send(true);
    while tasks.join_next().await.is_some() {}
    Ok(())
}

pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
    tracing::info!("shutting down");
}
