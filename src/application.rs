//! The server as one value: [`Application::build`] turns a configuration
//! into a bound listener with its stores, feeds and background tasks
//! started; [`Application::run_until_stopped`] serves until shutdown. The
//! binary and the in-process tests start the system the same way.
use anyhow::Context;
use api::state::{AppState, BusProbe, Inner, Settings};
use commands::objects::ObjectStore;
use commands::Commands;
use futures::FutureExt;
use metrics_exporter_prometheus::PrometheusHandle;
use projections::feed::relay::RELAY_NAME;
use projections::lag::LagWatch;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::config::Config;
use crate::runtime::{connect_bus, console_url, jwt_secret, open_db, open_objects, spawn_feeds};

pub struct Serve {
    /// Also run the relay and the projections (embedded: the in-process feed).
    pub with_workers: bool,
}

/// A built server, listening but not yet answering.
pub struct Application {
    listener: TcpListener,
    app: axum::Router,
    tasks: JoinSet<()>,
    stop: watch::Sender<bool>,
    embedded: bool,
}

impl Application {
    pub async fn build(
        config: &Config,
        options: Serve,
        metrics: Option<PrometheusHandle>,
    ) -> anyhow::Result<Self> {
        let db = open_db(config).await?;
        let objects = open_objects(config).await?;
        let bus = connect_bus(config).await?;
        let commands = Commands::new(db);
        let (stop, shutdown) = watch::channel(false);
        let mut tasks = JoinSet::new();
        if options.with_workers {
            spawn_feeds(
                &mut tasks,
                &commands,
                bus.as_ref(),
                true,
                true,
                &shutdown,
                config,
            );
        }
        spawn_metrics_export(&mut tasks, &commands, shutdown.clone());
        let lag = LagWatch::default();
        tasks.spawn(projections::lag::run(
            commands.db().clone(),
            lag_source(config, bus.as_ref()),
            lag.clone(),
            Duration::from_millis(250),
            shutdown,
        ));
        let parts = Parts {
            commands,
            objects,
            bus_ready: bus_probe(bus),
            metrics,
            lag,
        };
        let state = app_state(config, parts)?;
        let http = api::HttpSettings {
            cors_origins: config.cors_origins()?,
            body_limit: 256 * 1024,
            upload_body_limit: config.max_upload_bytes * 4 + 64 * 1024,
            request_timeout: Duration::from_secs(30),
        };
        let listener = TcpListener::bind(config.addr)
            .await
            .with_context(|| format!("CRM_ADDR: cannot listen on {}", config.addr))?;
        Ok(Self {
            listener,
            app: api::app(state, &http),
            tasks,
            stop,
            embedded: config.database_url.is_none(),
        })
    }

    /// The address it listens on (the port chosen when `CRM_ADDR` asks for 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` completes, drains in-flight requests, then
    /// lets the feeds finish their batch.
    pub async fn run_until_stopped(
        mut self,
        shutdown: impl Future<Output = ()> + Send,
    ) -> anyhow::Result<()> {
        let local = self.local_addr()?;
        tracing::info!(addr = %local, embedded = self.embedded, "serving");
        tracing::info!("web console: {}", console_url(local));
        // axum::serve plus a header read timeout (slow clients), see api::serve.
        api::serve::serve(self.listener, self.app, shutdown).await?;
        let _ = self.stop.send(true);
        while self.tasks.join_next().await.is_some() {}
        Ok(())
    }
}

/// The running pieces the HTTP state holds.
struct Parts {
    commands: Commands,
    objects: Arc<dyn ObjectStore>,
    bus_ready: BusProbe,
    metrics: Option<PrometheusHandle>,
    lag: LagWatch,
}

fn app_state(config: &Config, parts: Parts) -> anyhow::Result<AppState> {
    let secret = jwt_secret(config)?;
    Ok(AppState(Arc::new(Inner {
        commands: parts.commands,
        objects: parts.objects,
        tokens: api::auth::TokenKeys::new(&secret),
        settings: Settings {
            signup_enabled: config.signup_enabled,
            token_ttl: Duration::from_secs(config.token_ttl_secs),
            refresh_ttl: Duration::from_secs(config.refresh_ttl_secs),
            max_upload_bytes: config.max_upload_bytes,
            consistency_wait: Duration::from_secs(5),
            cursor_key: [secret.as_slice(), b"/cursors"].concat(),
            photo_urls: api::photo_urls::PhotoUrls::new(
                [secret.as_slice(), b"/photo-urls"].concat(),
                3600,
            ),
            lag_bound: projections::lag::LagBound {
                events: config.lag_bound_events,
                seconds: config.lag_bound_secs,
            },
            webhook_targets: config.webhook_targets(),
        },
        bus_ready: parts.bus_ready,
        login_throttle: api::ratelimit::LoginThrottle::new(Duration::from_secs(900)),
        request_limiter: api::ratelimit::RequestLimiter::new(
            config.rate_limit_per_minute,
            Duration::from_secs(60),
        ),
        api_key_usage: api::api_keys::UsageRecorder::new(),
        metrics: parts.metrics,
        lag: parts.lag,
        imports: api::imports::Imports::new(config.data_dir.join("imports"))
            .context("CRM_DATA_DIR: imports directory")?,
    })))
}

/// The projection gauges, refreshed every 5 s.
fn spawn_metrics_export(
    tasks: &mut JoinSet<()>,
    commands: &Commands,
    mut shutdown: watch::Receiver<bool>,
) {
    let db = commands.db().clone();
    tasks.spawn(async move {
        loop {
            if let Err(error) = projections::status::export_metrics(&db).await {
                tracing::debug!(%error, "could not export projection metrics");
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                _ = shutdown.changed() => return,
            }
        }
    });
}

fn bus_probe(bus: Option<async_nats::Client>) -> BusProbe {
    match bus {
        Some(client) => Arc::new(move || {
            let client = client.clone();
            async move { projections::feed::relay::bus_ready(&client).await }.boxed()
        }),
        None => Arc::new(|| async { true }.boxed()),
    }
}

/// Where the lag watch reads how far the views are behind.
fn lag_source(config: &Config, bus: Option<&async_nats::Client>) -> projections::lag::Source {
    match bus {
        Some(client) => projections::lag::Source::JetStream {
            jetstream: Box::new(async_nats::jetstream::new(client.clone())),
            stream: config.nats_stream.clone(),
            relay: RELAY_NAME.to_owned(),
        },
        None => projections::lag::Source::Embedded,
    }
}
