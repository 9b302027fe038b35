//! A private 3-node NATS cluster on loopback (drill 11): three nats-server
//! processes with cluster routes to each other, JetStream on each with a
//! store directory of its own and `sync_interval: always`, and a monitoring
//! port each (`/healthz` says when a node's JetStream is current).
use async_nats::jetstream;
use futures::StreamExt;
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::procs::{free_port, port_open, wait_until, Process, Result};
use crate::services::Nats;

pub struct Node {
    /// Its `server_name`, as JetStream names a stream's leader.
    pub name: String,
    pub process: Process,
    pub port: u16,
    pub monitor: u16,
}

pub struct NatsCluster {
    pub nodes: Vec<Node>,
}

impl NatsCluster {
    /// Configures three nodes running the same nats-server as `single`.
    pub fn new(root: &Path, single: &Nats) -> Result<Self> {
        let dir = root.join("nats-cluster");
        fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let ports: Vec<(u16, u16, u16)> = (0..3)
            .map(|_| (free_port(), free_port(), free_port()))
            .collect();
        let routes: Vec<String> = ports
            .iter()
            .map(|(_, _, route)| format!("    nats-route://127.0.0.1:{route}"))
            .collect();
        let sync = if single.sync_always {
            "  sync_interval: always\n"
        } else {
            ""
        };
        let mut nodes = vec![];
        for (i, (port, monitor, route)) in ports.into_iter().enumerate() {
            let name = format!("n{}", i + 1);
            let conf = dir.join(format!("{name}.conf"));
            fs::write(
                &conf,
                format!(
                    "server_name: {name}\nlisten: 127.0.0.1:{port}\nhttp: 127.0.0.1:{monitor}\n\
                     jetstream {{\n  store_dir: \"{}\"\n{sync}}}\n\
                     cluster {{\n  name: crm-drill\n  listen: 127.0.0.1:{route}\n  routes: [\n{}\n  ]\n}}\n",
                    dir.join(format!("{name}-store")).display(),
                    routes.join("\n")
                ),
            )
            .map_err(|e| e.to_string())?;
            let process = Process::new(
                &format!("nats-{name}"),
                single.bin.clone(),
                vec!["-c".into(), conf.display().to_string()],
                dir.join(format!("{name}.log")),
            );
            nodes.push(Node {
                name,
                process,
                port,
                monitor,
            });
        }
        Ok(Self { nodes })
    }

    /// Starts every node and waits until each one's JetStream is current.
    pub async fn start(&mut self) -> Result<()> {
        for node in &mut self.nodes {
            node.process.start()?;
        }
        for i in 0..self.nodes.len() {
            self.wait_healthy(i, Duration::from_secs(60)).await?;
        }
        self.wait_meta_leader(Duration::from_secs(60)).await
    }

    /// Waits until every node names the same JetStream meta leader (its
    /// `/jsz`): before that, creating a replicated stream may time out.
    async fn wait_meta_leader(&self, timeout: Duration) -> Result<()> {
        let http = reqwest::Client::new();
        let started = Instant::now();
        loop {
            let mut leaders = vec![];
            for node in &self.nodes {
                let leader = async {
                    let jsz: serde_json::Value = http
                        .get(format!("http://127.0.0.1:{}/jsz", node.monitor))
                        .timeout(Duration::from_secs(2))
                        .send()
                        .await
                        .ok()?
                        .json()
                        .await
                        .ok()?;
                    jsz["meta_cluster"]["leader"].as_str().map(str::to_owned)
                }
                .await;
                leaders.push(leader.unwrap_or_default());
            }
            if !leaders[0].is_empty() && leaders.iter().all(|l| *l == leaders[0]) {
                return Ok(());
            }
            if started.elapsed() > timeout {
                return Err(format!(
                    "no JetStream meta leader agreed within {timeout:?}: {leaders:?}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Starts node `i` again (same store) and returns how long it took to
    /// be current again.
    pub async fn restart(&mut self, i: usize) -> Result<Duration> {
        let started = Instant::now();
        self.nodes[i].process.start()?;
        self.wait_healthy(i, Duration::from_secs(90)).await?;
        Ok(started.elapsed())
    }

    async fn wait_healthy(&mut self, i: usize, timeout: Duration) -> Result<()> {
        let port = self.nodes[i].port;
        let name = self.nodes[i].name.clone();
        wait_until(&format!("nats {name}"), Duration::from_secs(30), || {
            port_open(port)
        })
        .await?;
        // The monitor's /healthz answers 2xx once JetStream is current.
        let monitor = format!("http://127.0.0.1:{}", self.nodes[i].monitor);
        let process = &mut self.nodes[i].process;
        let current = test_support::wait_healthy(&monitor, timeout, || process.running()).await;
        current.map_err(|error| {
            format!(
                "nats {name}: JetStream not current: {error} (see {})",
                self.nodes[i].process.log().display()
            )
        })
    }

    /// `NATS_URL` for the crm processes: every node, comma-separated.
    pub fn url(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("nats://127.0.0.1:{}", n.port))
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == name)
    }
}

/// What JetStream says of a stream and its consumers.
pub struct Placement {
    pub leader: Option<String>,
    pub stream_replicas: usize,
    /// (consumer, configured replicas)
    pub consumers: Vec<(String, usize)>,
}

/// Asks the cluster about a stream over one connection that lists every
/// node (it reconnects to a survivor), with short request timeouts so that
/// a leader election is measured, not the client's patience.
pub struct Probe {
    js: jetstream::Context,
}

impl Probe {
    pub async fn connect(urls: &str) -> Result<Self> {
        let client = async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_secs(3))
            .connect(projections::feed::relay::server_urls(urls))
            .await
            .map_err(|e| format!("nats: {e}"))?;
        let mut js = jetstream::new(client);
        js.set_timeout(Duration::from_secs(1));
        Ok(Self { js })
    }

    /// The stream's leader, or `None` while it has none (or no answer).
    pub async fn leader(&self, stream: &str) -> Option<String> {
        let mut handle = self.js.get_stream(stream).await.ok()?;
        let info = handle.info().await.ok()?;
        info.cluster.as_ref().and_then(|c| c.leader.clone())
    }

    /// [`Probe::placement`], tried a few times: a request may time out
    /// while the cluster is busy.
    pub async fn placement_retried(&self, stream: &str) -> Result<Placement> {
        let mut last = String::new();
        for _ in 0..5 {
            match self.placement(stream).await {
                Ok(placement) => return Ok(placement),
                Err(e) => last = e,
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        Err(last)
    }

    /// The stream's leader and the replica counts of it and its consumers.
    pub async fn placement(&self, stream: &str) -> Result<Placement> {
        let mut handle = self
            .js
            .get_stream(stream)
            .await
            .map_err(|e| format!("stream {stream}: {e}"))?;
        let info = handle
            .info()
            .await
            .map_err(|e| format!("stream info: {e}"))?;
        let leader = info.cluster.as_ref().and_then(|c| c.leader.clone());
        let stream_replicas = info.config.num_replicas;
        let mut consumers = vec![];
        let mut listed = handle.consumers();
        while let Some(consumer) = listed.next().await {
            let consumer = consumer.map_err(|e| format!("consumers: {e}"))?;
            consumers.push((consumer.name.clone(), consumer.config.num_replicas));
        }
        Ok(Placement {
            leader,
            stream_replicas,
            consumers,
        })
    }
}
