//! The write load: `clients` concurrent clients over HTTP for a bounded time,
//! each with its own customers. Every write that the server acknowledged
//! (2xx) is recorded with what the checker needs to find it again:
//! - create: `POST /v1/customers` with an `Idempotency-Key`; the key is also
//!   the customer's surname, so two customers made for one key are visible
//!   in the event store. A create that failed (timeout, connection reset,
//!   5xx) is retried with the same key, as a careful client would;
//! - update: `PATCH /v1/customers/{id}` setting `notes` to a fresh marker;
//! - photo: `POST /v1/photos` (unique bytes, so its sha256 names it), some
//!   with `customer_id` (upload flow option 2), with an `Idempotency-Key`.
//!
//! With [`Spec::retry_all`] (drill 9) the clients use short timeouts and
//! retry *every* write after one: creates and uploads with the same key,
//! updates with the same `If-Match`.
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::header::HeaderMap;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Clone, Debug)]
pub struct Spec {
    pub duration: Duration,
    pub clients: usize,
    /// Shares of the operations (the rest are creates).
    pub update_share: f64,
    pub photo_share: f64,
    /// Users created by the admin (the account saga: email claim + user).
    pub user_share: f64,
    /// Of the photo uploads, those with `customer_id` (flow option 2).
    pub option2_share: f64,
    /// Client timeout of a request (the first one, with `retry_all`).
    pub timeout: Duration,
    /// Retry every write after a timeout (creates and uploads with their
    /// key, updates with `If-Match`).
    pub retry_all: bool,
    /// How long after the load a pending create may still be retried.
    pub grace: Duration,
    /// Pause between a client's operations.
    pub pace: Duration,
}

impl Spec {
    pub fn new(duration: Duration, clients: usize) -> Self {
        Self {
            duration,
            clients,
            update_share: 0.4,
            photo_share: 0.0,
            user_share: 0.0,
            option2_share: 0.0,
            timeout: Duration::from_secs(35),
            retry_all: false,
            grace: Duration::from_secs(40),
            pace: Duration::from_millis(5),
        }
    }
}

/// Who the clients are: the API processes and a token of the drill's tenant.
#[derive(Clone, Debug)]
pub struct Target {
    pub bases: Vec<String>,
    pub token: String,
    pub company_id: String,
    pub user_id: String,
}

#[derive(Clone, Debug)]
pub enum Ack {
    Create {
        key: String,
        id: String,
        version: i64,
        token: String,
    },
    Update {
        id: String,
        marker: String,
        version: i64,
        token: Option<String>,
        /// Acknowledged by a `412` after an attempt that timed out: the
        /// earlier attempt was applied (this client is the only writer).
        inferred: bool,
    },
    Photo {
        key: String,
        id: String,
        sha256: String,
        for_customer: Option<String>,
        token: String,
    },
    User {
        key: String,
        id: String,
        email: String,
        version: i64,
        token: String,
    },
}

#[derive(Default, Debug)]
pub struct Tally {
    pub requests: u64,
    pub s503: u64,
    pub other_5xx: u64,
    pub unexpected: u64,
    /// A few examples of other 5xx and unexpected answers.
    pub samples: Vec<String>,
    pub timeouts: u64,
    pub transport_errors: u64,
    pub retries: u64,
    /// Write replies sent before the views showed the write.
    pub stale_replies: u64,
    /// Creates and uploads never acknowledged (retries ran out).
    pub unresolved: u64,
    /// Updates whose outcome the client never learned.
    pub indeterminate: u64,
    pub max_latency: Duration,
    pub statuses: BTreeMap<u16, u64>,
    /// The body of the first 503, to show what clients were told.
    pub first_503: Option<String>,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.requests += other.requests;
        self.s503 += other.s503;
        self.other_5xx += other.other_5xx;
        self.unexpected += other.unexpected;
        for sample in other.samples {
            if self.samples.len() < 12 {
                self.samples.push(sample);
            }
        }
        self.timeouts += other.timeouts;
        self.transport_errors += other.transport_errors;
        self.retries += other.retries;
        self.stale_replies += other.stale_replies;
        self.unresolved += other.unresolved;
        self.indeterminate += other.indeterminate;
        self.max_latency = self.max_latency.max(other.max_latency);
        for (status, n) in other.statuses {
            *self.statuses.entry(status).or_default() += n;
        }
        if self.first_503.is_none() {
            self.first_503 = other.first_503;
        }
    }

    fn sample(&mut self, text: String) {
        if self.samples.len() < 12 {
            self.samples.push(text);
        }
    }
}

#[derive(Debug)]
pub struct Outcome {
    pub acks: Vec<Ack>,
    pub tally: Tally,
    /// When each write was acknowledged, in order.
    pub acked_at: Vec<Instant>,
    /// The load's window (retries of its last writes may end later).
    pub started: Instant,
    pub stopped: Instant,
}

impl Outcome {
    /// The longest time within the load during which no write at all was
    /// acknowledged, and when it began (seconds into the load).
    pub fn longest_stall(&self) -> (Duration, Duration) {
        let mut previous = self.started;
        let mut longest = (Duration::ZERO, Duration::ZERO);
        let within = self.acked_at.iter().copied().filter(|t| *t <= self.stopped);
        for at in within.chain(std::iter::once(self.stopped)) {
            let gap = at.saturating_duration_since(previous);
            if gap > longest.0 {
                longest = (gap, previous.saturating_duration_since(self.started));
            }
            previous = previous.max(at);
        }
        longest
    }

    pub fn count(&self, f: impl Fn(&Ack) -> bool) -> usize {
        self.acks.iter().filter(|a| f(a)).count()
    }
}

pub use test_support::png_with;

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// What one attempt came to.
enum Sent {
    Answer {
        status: u16,
        headers: HeaderMap,
        body: Value,
    },
    Timeout,
    /// Never reached a server (connection refused): safe to send again.
    Refused,
    Transport,
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

fn etag_version(headers: &HeaderMap) -> Option<i64> {
    header(headers, "etag")?.trim_matches('"').parse().ok()
}

struct Client {
    n: usize,
    spec: Arc<Spec>,
    target: Arc<Target>,
    http: reqwest::Client,
    rng: StdRng,
    tally: Tally,
    acks: Vec<Ack>,
    /// This client's customers and the version it last saw.
    customers: Vec<(String, i64)>,
    seq: u64,
    /// Operations begun (alternates the API process).
    ops: usize,
    /// When each write was acknowledged (for the longest stall).
    acked_at: Vec<Instant>,
    stop_at: Instant,
    give_up_at: Instant,
}

impl Client {
    /// The API process of this attempt: with several, a client alternates
    /// between them from one operation to the next, and a retry goes to
    /// the next one.
    fn base(&self, attempt: usize) -> &str {
        let bases = &self.target.bases;
        &bases[(self.n + self.ops + attempt) % bases.len()]
    }

    fn acked(&mut self, ack: Ack) {
        self.acks.push(ack);
        self.acked_at.push(Instant::now());
    }

    fn timeout(&mut self, attempt: usize) -> Duration {
        if !self.spec.retry_all {
            return self.spec.timeout;
        }
        // Short and jittered, growing after repeated timeouts so that every
        // write gets an answer in the end.
        let base = self.spec.timeout.as_millis() as u64;
        let grown = base << (attempt / 2).min(6);
        let jitter = self.rng.random_range(0..=base / 2);
        Duration::from_millis((grown + jitter).min(20_000))
    }

    async fn send(&mut self, request: reqwest::RequestBuilder, attempt: usize) -> Sent {
        let timeout = self.timeout(attempt);
        self.tally.requests += 1;
        if attempt > 0 {
            self.tally.retries += 1;
        }
        let started = Instant::now();
        let result = async {
            let response = request.timeout(timeout).send().await?;
            let status = response.status().as_u16();
            let headers = response.headers().clone();
            let bytes = response.bytes().await?;
            Ok::<_, reqwest::Error>((status, headers, bytes))
        }
        .await;
        self.tally.max_latency = self.tally.max_latency.max(started.elapsed());
        match result {
            Ok((status, headers, bytes)) => {
                *self.tally.statuses.entry(status).or_default() += 1;
                if header(&headers, "x-consistency-stale").is_some() {
                    self.tally.stale_replies += 1;
                }
                Sent::Answer {
                    status,
                    headers,
                    body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
                }
            }
            Err(e) if e.is_timeout() => {
                self.tally.timeouts += 1;
                Sent::Timeout
            }
            Err(e) => {
                self.tally.transport_errors += 1;
                if e.is_connect() {
                    Sent::Refused
                } else {
                    Sent::Transport
                }
            }
        }
    }

    /// Counts a non-2xx answer; `true` when retrying may help.
    fn failed(&mut self, what: &str, status: u16, body: &Value) -> bool {
        if status == 503 {
            self.tally.s503 += 1;
            if self.tally.first_503.is_none() {
                self.tally.first_503 = body["detail"].as_str().map(str::to_owned);
            }
            true
        } else if status >= 500 {
            self.tally.other_5xx += 1;
            self.tally.sample(format!("{what} -> {status} {body}"));
            true
        } else {
            self.tally.unexpected += 1;
            self.tally.sample(format!("{what} -> {status} {body}"));
            false
        }
    }

    async fn pause_before_retry(&mut self) {
        let ms = self.rng.random_range(50..250);
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }

    fn key(&mut self, kind: &str) -> String {
        self.seq += 1;
        let salt: u32 = self.rng.random();
        format!("{kind}{}-{}-{salt:08x}", self.n, self.seq)
    }

    async fn create(&mut self) {
        let key = self.key("c");
        let body = json!({
            "name": "Drill",
            "surname": key,
            "email": format!("{key}@drill.example"),
            "notes": "created by the drill load",
        });
        let mut attempt = 0;
        loop {
            if attempt > 0 && Instant::now() > self.give_up_at {
                self.tally.unresolved += 1;
                return;
            }
            let request = self
                .http
                .post(format!("{}/v1/customers", self.base(attempt)))
                .bearer_auth(&self.target.token)
                .header("idempotency-key", &key)
                .json(&body);
            match self.send(request, attempt).await {
                Sent::Answer {
                    status: 201,
                    headers,
                    body,
                } => {
                    let id = body["id"].as_str().unwrap_or_default().to_owned();
                    let version = etag_version(&headers).unwrap_or(0);
                    let token = header(&headers, "x-consistency-token").unwrap_or_default();
                    if id.is_empty() || version < 1 || token.is_empty() {
                        self.tally.unexpected += 1;
                        self.tally
                            .sample(format!("create {key}: 201 without id/ETag/token: {body}"));
                    }
                    self.customers.push((id.clone(), version));
                    self.acked(Ack::Create {
                        key,
                        id,
                        version,
                        token,
                    });
                    return;
                }
                Sent::Answer { status, body, .. } => {
                    if !self.failed(&format!("create {key}"), status, &body) {
                        return;
                    }
                    self.pause_before_retry().await;
                }
                Sent::Timeout => {}
                Sent::Refused | Sent::Transport => self.pause_before_retry().await,
            }
            attempt += 1;
        }
    }

    async fn update(&mut self) {
        let index = self.rng.random_range(0..self.customers.len());
        let (id, known) = self.customers[index].clone();
        let marker = format!("u-{}", uuid::Uuid::new_v4().simple());
        let body = json!({ "notes": marker });
        let mut attempt = 0;
        let mut uncertain = false;
        loop {
            let may_retry = self.spec.retry_all || !uncertain;
            if attempt > 0 && (!may_retry || Instant::now() > self.give_up_at) {
                self.tally.indeterminate += 1;
                return;
            }
            let mut request = self
                .http
                .patch(format!("{}/v1/customers/{id}", self.base(attempt)))
                .bearer_auth(&self.target.token)
                .json(&body);
            if self.spec.retry_all {
                request = request.header("if-match", format!("\"{known}\""));
            }
            match self.send(request, attempt).await {
                Sent::Answer {
                    status: 200,
                    headers,
                    ..
                } => {
                    let version = etag_version(&headers).unwrap_or(0);
                    self.customers[index].1 = version;
                    self.acked(Ack::Update {
                        id,
                        marker,
                        version,
                        token: header(&headers, "x-consistency-token"),
                        inferred: false,
                    });
                    return;
                }
                Sent::Answer { status: 412, .. } if uncertain => {
                    // Our timed-out attempt went through: we are this
                    // customer's only writer.
                    self.customers[index].1 = known + 1;
                    self.acked(Ack::Update {
                        id,
                        marker,
                        version: known + 1,
                        token: None,
                        inferred: true,
                    });
                    return;
                }
                Sent::Answer { status, body, .. } => {
                    let retry = self.failed(&format!("update {id}"), status, &body);
                    if !retry {
                        if status == 412 {
                            // Lost track of the version: leave this customer alone.
                            self.customers.swap_remove(index);
                        }
                        return;
                    }
                    // A 503 may come from the request timeout after the
                    // command was committed: as uncertain as a timeout.
                    uncertain = true;
                    self.pause_before_retry().await;
                }
                Sent::Timeout => uncertain = true,
                // Never sent: the other API process may take it.
                Sent::Refused => self.pause_before_retry().await,
                Sent::Transport => {
                    uncertain = true;
                    self.pause_before_retry().await;
                }
            }
            attempt += 1;
        }
    }

    async fn upload(&mut self) {
        let key = self.key("p");
        let salt: [u8; 16] = self.rng.random();
        let bytes = png_with(&salt);
        let sha256 = sha256_hex(&bytes);
        let for_customer = (!self.customers.is_empty()
            && self.rng.random_bool(self.spec.option2_share))
        .then(|| {
            self.customers[self.rng.random_range(0..self.customers.len())]
                .0
                .clone()
        });
        let mut attempt = 0;
        loop {
            if attempt > 0 && Instant::now() > self.give_up_at {
                self.tally.unresolved += 1;
                return;
            }
            let part = reqwest::multipart::Part::bytes(bytes.clone())
                .file_name("drill.png")
                .mime_str("image/png")
                .expect("mime");
            let mut form = reqwest::multipart::Form::new().part("file", part);
            if let Some(customer) = &for_customer {
                form = form.text("customer_id", customer.clone());
            }
            let request = self
                .http
                .post(format!("{}/v1/photos", self.base(attempt)))
                .bearer_auth(&self.target.token)
                .header("idempotency-key", &key)
                .multipart(form);
            match self.send(request, attempt).await {
                Sent::Answer {
                    status: 201,
                    headers,
                    body,
                } => {
                    if body["sha256"].as_str() != Some(sha256.as_str()) {
                        self.tally.unexpected += 1;
                        self.tally
                            .sample(format!("upload {key}: sha256 mismatch in {body}"));
                    }
                    self.acked(Ack::Photo {
                        key,
                        id: body["id"].as_str().unwrap_or_default().to_owned(),
                        sha256,
                        for_customer,
                        token: header(&headers, "x-consistency-token").unwrap_or_default(),
                    });
                    return;
                }
                Sent::Answer { status, body, .. } => {
                    if !self.failed(&format!("upload {key}"), status, &body) {
                        return;
                    }
                    self.pause_before_retry().await;
                }
                Sent::Timeout => {}
                Sent::Refused | Sent::Transport => self.pause_before_retry().await,
            }
            attempt += 1;
        }
    }

    async fn create_user(&mut self) {
        let key = self.key("u");
        let email = format!("{key}@users.drill.example");
        let body = json!({
            "email": email, "name": "Drill", "surname": key,
            "password": "drill user password", "role": "user",
        });
        let mut attempt = 0;
        loop {
            if attempt > 0 && Instant::now() > self.give_up_at {
                self.tally.unresolved += 1;
                return;
            }
            let request = self
                .http
                .post(format!("{}/v1/users", self.base(attempt)))
                .bearer_auth(&self.target.token)
                .header("idempotency-key", &key)
                .json(&body);
            match self.send(request, attempt).await {
                Sent::Answer {
                    status: 201,
                    headers,
                    body,
                } => {
                    self.acked(Ack::User {
                        key,
                        id: body["id"].as_str().unwrap_or_default().to_owned(),
                        email,
                        version: etag_version(&headers).unwrap_or(0),
                        token: header(&headers, "x-consistency-token").unwrap_or_default(),
                    });
                    return;
                }
                Sent::Answer { status, body, .. } => {
                    if !self.failed(&format!("create user {key}"), status, &body) {
                        return;
                    }
                    self.pause_before_retry().await;
                }
                Sent::Timeout => {}
                Sent::Refused | Sent::Transport => self.pause_before_retry().await,
            }
            attempt += 1;
        }
    }

    async fn run(mut self) -> (Vec<Ack>, Vec<Instant>, Tally) {
        while Instant::now() < self.stop_at {
            let spec = self.spec.clone();
            let roll: f64 = self.rng.random();
            if roll < spec.user_share {
                self.create_user().await;
            } else if self.customers.is_empty()
                || roll >= spec.user_share + spec.update_share + spec.photo_share
            {
                self.create().await;
            } else if roll < spec.user_share + spec.update_share {
                self.update().await;
            } else {
                self.upload().await;
            }
            self.ops += 1;
            if !self.spec.pace.is_zero() {
                tokio::time::sleep(self.spec.pace).await;
            }
        }
        (self.acks, self.acked_at, self.tally)
    }
}

/// Runs the load to its end (including the retries of its last writes).
pub async fn run(spec: Spec, target: Target) -> Outcome {
    let spec = Arc::new(spec);
    let target = Arc::new(target);
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()
        .expect("http client");
    let stop_at = Instant::now() + spec.duration;
    let give_up_at = stop_at + spec.grace;
    let clients = (0..spec.clients).map(|n| {
        let client = Client {
            n,
            spec: spec.clone(),
            target: target.clone(),
            http: http.clone(),
            rng: StdRng::from_os_rng(),
            tally: Tally::default(),
            acks: vec![],
            customers: vec![],
            seq: 0,
            ops: 0,
            acked_at: vec![],
            stop_at,
            give_up_at,
        };
        tokio::spawn(client.run())
    });
    let mut outcome = Outcome {
        acks: vec![],
        tally: Tally::default(),
        acked_at: vec![],
        started: stop_at - spec.duration,
        stopped: stop_at,
    };
    for finished in futures::future::join_all(clients).await {
        let (acks, acked_at, tally) = finished.expect("a load client panicked");
        outcome.acks.extend(acks);
        outcome.acked_at.extend(acked_at);
        outcome.tally.merge(tally);
    }
    outcome.acked_at.sort();
    outcome
}

/// Signs up the drill's company; its admin is the load's user.
pub async fn signup(base: &str) -> Result<Target, String> {
    let admin = test_support::sign_up(&reqwest::Client::new(), base, "Drill Co").await?;
    Ok(Target {
        bases: vec![base.to_owned()],
        token: admin.token,
        company_id: admin.company_id,
        user_id: admin.user_id,
    })
}
