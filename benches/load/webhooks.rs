//! Webhook delivery: a receiver on loopback (the bench's own axum server,
//! answering 204), one webhook of one company for `customer.created`, then
//! 1. creates at a steady rate, each timed from sending the create to the
//!    receiver getting its event;
//! 2. a burst of creates from 32 clients, and the receiver's rate while the
//!    deliveries drain (the deliveries/s to one endpoint).
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::stats::Sample;
use crate::workload::{Api, Tenant};

/// When each customer's `customer.created` reached the receiver.
#[derive(Clone, Default)]
pub struct Arrivals(Arc<Mutex<HashMap<String, Instant>>>);

impl Arrivals {
    fn record(&self, customer: String) {
        let mut seen = self.0.lock().unwrap_or_else(|e| e.into_inner());
        seen.entry(customer).or_insert_with(Instant::now);
    }

    pub fn count(&self) -> usize {
        self.0.lock().map(|seen| seen.len()).unwrap_or(0)
    }

    fn at(&self, customer: &str) -> Option<Instant> {
        self.0.lock().ok()?.get(customer).copied()
    }

    fn span(&self) -> Option<(Instant, Instant)> {
        let seen = self.0.lock().ok()?;
        Some((*seen.values().min()?, *seen.values().max()?))
    }

    /// Waits until `n` events have arrived, at most `within`.
    pub async fn wait_for(&self, n: usize, within: Duration) -> bool {
        let start = Instant::now();
        while self.count() < n {
            if start.elapsed() > within {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }
}

async fn receive(State(arrivals): State<Arrivals>, body: axum::body::Bytes) -> StatusCode {
    if let Ok(event) = serde_json::from_slice::<Value>(&body) {
        if let Some(id) = event["data"]["id"].as_str() {
            arrivals.record(id.to_owned());
        }
    }
    StatusCode::NO_CONTENT
}

/// Starts the receiver; returns its URL and what it records.
pub async fn receiver() -> (String, Arrivals) {
    let arrivals = Arrivals::default();
    let app = axum::Router::new()
        .route("/hook", post(receive))
        .with_state(arrivals.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a receiver port");
    let url = format!("http://{}/hook", listener.local_addr().expect("address"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, arrivals)
}

/// Registers a webhook of `tenant` for `customer.created` at `url`.
pub async fn register(api: &Api, tenant: &Tenant, url: &str) {
    let response = api
        .client
        .post(format!("{}/v1/webhooks", api.base))
        .bearer_auth(&tenant.token)
        .json(&json!({"url": url, "event_types": ["customer.created"]}))
        .send()
        .await
        .expect("POST /v1/webhooks");
    assert_eq!(response.status().as_u16(), 201, "register the webhook");
}

/// Creates at `rate` per second for `window`; each create's time from
/// sending it until the receiver had its event (errors: not delivered
/// within 30 s of the last create).
pub async fn send_to_received(
    api: &Api,
    tenant: &Tenant,
    arrivals: &Arrivals,
    rate: f64,
    window: Duration,
) -> Sample {
    let interval = Duration::from_secs_f64(1.0 / rate.max(0.1));
    let start = Instant::now();
    let mut tasks = Vec::new();
    let mut n = 0u32;
    while start.elapsed() < window {
        let (api, tenant) = (api.clone(), tenant.clone());
        let body = json!({"name": "Hook", "surname": format!("Steady{n}")});
        tasks.push(tokio::spawn(async move {
            let sent = Instant::now();
            let (id, _) = api.create_returning_id(&tenant, &body).await?;
            Some((id, sent))
        }));
        n += 1;
        tokio::time::sleep_until((start + interval * n).into()).await;
    }
    let mut sent = vec![];
    let mut sample = Sample {
        window,
        ..Sample::default()
    };
    for task in tasks {
        match task.await {
            Ok(Some(created)) => sent.push(created),
            _ => sample.errors += 1,
        }
    }
    let before = arrivals.count();
    arrivals
        .wait_for(before.max(sent.len()), Duration::from_secs(30))
        .await;
    for (id, at) in sent {
        match arrivals.at(&id) {
            Some(arrived) => sample.latencies.push(arrived - at),
            None => sample.errors += 1,
        }
    }
    sample
}

/// `count` creates from 32 clients at once; the receiver's deliveries per
/// second from its first to its last arrival of them (`None` if they did
/// not all arrive within a minute).
pub async fn burst(api: &Api, tenant: &Tenant, count: usize) -> Option<f64> {
    let (_, arrivals) = receiver_for_burst(api, tenant).await;
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut clients = vec![];
    for _ in 0..32 {
        let (api, tenant, next) = (api.clone(), tenant.clone(), next.clone());
        clients.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if n >= count {
                    return;
                }
                let body = json!({"name": "Hook", "surname": format!("Burst{n}")});
                let _ = api.create_returning_id(&tenant, &body).await;
            }
        }));
    }
    for client in clients {
        let _ = client.await;
    }
    if !arrivals.wait_for(count, Duration::from_secs(60)).await {
        return None;
    }
    let (first, last) = arrivals.span()?;
    Some(count as f64 / (last - first).as_secs_f64().max(1e-3))
}

/// The burst's own receiver and webhook (of the burst's company), so that
/// nothing else is delivered to it.
async fn receiver_for_burst(api: &Api, tenant: &Tenant) -> (String, Arrivals) {
    let (url, arrivals) = receiver().await;
    register(api, tenant, &url).await;
    (url, arrivals)
}
