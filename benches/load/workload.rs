//! What the clients do: sign up or log in, create customers, watch for them
//! in the list, read pages. HTTP/1.1 keep-alive, authenticated.
use domain::CompanyId;
use futures::FutureExt;
use projections::read::customers::{CustomerSort, ListQuery};
use projections::read::Keyset;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use uuid::Uuid;

use crate::stats::{Op, Sample};

#[derive(Clone)]
pub struct Api {
    pub client: reqwest::Client,
    pub base: String,
}

/// A logged-in admin of one company.
#[derive(Clone, Debug)]
pub struct Tenant {
    pub token: String,
    pub company_id: Uuid,
}

impl Api {
    pub fn new(base: &str) -> Self {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(256)
            .timeout(Duration::from_secs(30))
            .build()
            .expect("http client");
        Self {
            client,
            base: base.to_owned(),
        }
    }

    async fn company_of(&self, token: String) -> Tenant {
        let company: Value = self
            .client
            .get(format!("{}/v1/company", self.base))
            .bearer_auth(&token)
            .send()
            .await
            .expect("GET /v1/company")
            .json()
            .await
            .expect("company json");
        let company_id = company["id"]
            .as_str()
            .and_then(|id| Uuid::parse_str(id).ok())
            .expect("company id");
        Tenant { token, company_id }
    }

    pub async fn signup(&self, label: &str) -> Tenant {
        let admin = test_support::sign_up(&self.client, &self.base, &format!("Bench {label}"))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let company_id = Uuid::parse_str(&admin.company_id).expect("company id");
        Tenant {
            token: admin.token,
            company_id,
        }
    }

    pub async fn login(&self, email: &str, password: &str) -> Tenant {
        let response = self
            .client
            .post(format!("{}/v1/auth/token", self.base))
            .json(&json!({"email": email, "password": password}))
            .send()
            .await
            .expect("POST /v1/auth/token");
        assert_eq!(response.status().as_u16(), 200, "login of {email} failed");
        let body: Value = response.json().await.expect("token json");
        let token = body["access_token"].as_str().expect("token").to_owned();
        self.company_of(token).await
    }

    /// `POST /v1/customers`; the response when it is a `201`.
    async fn post_customer(&self, tenant: &Tenant, body: &Value) -> Option<reqwest::Response> {
        let response = self
            .client
            .post(format!("{}/v1/customers", self.base))
            .bearer_auth(&tenant.token)
            .json(body)
            .send()
            .await
            .ok()?;
        (response.status().as_u16() == 201).then_some(response)
    }

    async fn create(&self, tenant: &Tenant, body: &Value) -> bool {
        match self.post_customer(tenant, body).await {
            Some(response) => response.bytes().await.is_ok(),
            None => false,
        }
    }

    /// `POST /v1/customers`; the new customer's id and consistency token
    /// once it is acknowledged.
    pub async fn create_returning_id(
        &self,
        tenant: &Tenant,
        body: &Value,
    ) -> Option<(String, String)> {
        let response = self.post_customer(tenant, body).await?;
        let token = response
            .headers()
            .get("x-consistency-token")?
            .to_str()
            .ok()?
            .to_owned();
        let created: Value = response.json().await.ok()?;
        Some((created["id"].as_str()?.to_owned(), token))
    }

    /// Waits until no view lags (`crm_view_lag_events` all zero on
    /// `/metrics`), at most `within`; returns how long that took, `None` if
    /// they had not caught up by then.
    pub async fn wait_views_caught_up(&self, within: Duration) -> Option<Duration> {
        let start = Instant::now();
        while start.elapsed() < within {
            let metrics = match self
                .client
                .get(format!("{}/metrics", self.base))
                .send()
                .await
            {
                Ok(response) => response.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            let lags: Vec<&str> = metrics
                .lines()
                .filter(|line| line.starts_with("crm_view_lag_events{"))
                .collect();
            if !lags.is_empty() && lags.iter().all(|line| line.ends_with(" 0")) {
                return Some(start.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }

    /// The p50 and p99 of the server's `*_event_age_seconds` summaries, in
    /// ms, named `age_<relay|handler>_<p50|p99>`.
    pub async fn event_age_quantiles(&self) -> Vec<(String, f64)> {
        let Ok(response) = self
            .client
            .get(format!("{}/metrics", self.base))
            .send()
            .await
        else {
            return vec![];
        };
        let text = response.text().await.unwrap_or_default();
        let mut out = vec![];
        for line in text.lines().filter(|l| l.contains("_event_age_seconds{")) {
            let Some((labels, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let quantile = if labels.contains("quantile=\"0.5\"") {
                "p50"
            } else if labels.contains("quantile=\"0.99\"") {
                "p99"
            } else {
                continue;
            };
            let source = match labels.split("handler=\"").nth(1) {
                Some(rest) => rest.split('"').next().unwrap_or("?").to_owned(),
                None => "relay".to_owned(),
            };
            if let Ok(seconds) = value.parse::<f64>() {
                out.push((format!("age_{source}_{quantile}"), seconds * 1000.0));
            }
        }
        out
    }

    /// GET `path` (with query); success is a 200 whose body was read.
    pub async fn get_ok(&self, tenant: &Tenant, path_and_query: &str) -> bool {
        match self
            .client
            .get(format!("{}{path_and_query}", self.base))
            .bearer_auth(&tenant.token)
            .send()
            .await
        {
            Ok(response) => {
                let ok = response.status().as_u16() == 200;
                ok && response.bytes().await.is_ok()
            }
            Err(_) => false,
        }
    }

    async fn get_json(&self, tenant: &Tenant, path_and_query: &str) -> Option<Value> {
        let response = self
            .client
            .get(format!("{}{path_and_query}", self.base))
            .bearer_auth(&tenant.token)
            .send()
            .await
            .ok()?;
        if response.status().as_u16() != 200 {
            return None;
        }
        response.json().await.ok()
    }

    /// GET `path` with a consistency token: whether it answered 200 with
    /// the token honoured (no `X-Consistency-Stale`).
    async fn get_consistent(&self, tenant: &Tenant, path_and_query: &str, token: &str) -> bool {
        let Ok(response) = self
            .client
            .get(format!("{}{path_and_query}", self.base))
            .bearer_auth(&tenant.token)
            .header("x-consistency-token", token)
            .send()
            .await
        else {
            return false;
        };
        let fresh = response.status().as_u16() == 200
            && !response.headers().contains_key("x-consistency-stale");
        fresh && response.bytes().await.is_ok()
    }
}

fn customer_body(client: usize, n: u64, run: &str) -> Value {
    json!({
        "name": "Bench",
        "surname": format!("Client{client}x{n}"),
        "email": format!("c{client}.{n}.{run}@bench.example.com"),
        "phone": "+34 600 000 000",
    })
}

/// `POST /v1/customers`, spread over the tenants.
pub fn create_customers(api: &Api, tenants: &[Tenant]) -> Op {
    let api = api.clone();
    let tenants = Arc::new(tenants.to_vec());
    let run = Uuid::new_v4().simple().to_string()[..8].to_owned();
    Arc::new(move |client, n| {
        let api = api.clone();
        let tenants = tenants.clone();
        let body = customer_body(client, n, &run);
        async move {
            let tenant = &tenants[client % tenants.len()];
            api.create(tenant, &body).await
        }
        .boxed()
    })
}

/// Projection lag: writes at `rate` per second (open loop: a fixed rate,
/// whatever the latency); for one write in [`PROBE_EVERY`], the time from
/// its acknowledgement (and from sending it) until the list shows it: one
/// `GET /v1/customers?limit=1` carrying the write's `X-Consistency-Token`,
/// which the server answers as soon as the customers view has applied the
/// write. That is the moment a polling client could first see it, without
/// the polls (which at a few ms each cost more than the writes they
/// measure). A write counts as an error when it is refused, or its read
/// gives up waiting (`X-Consistency-Stale`) and a poll every 25 ms does not
/// see it within 10 s either.
pub const PROBE_EVERY: u64 = 10;

pub async fn projection_lag(
    api: &Api,
    tenants: &[Tenant],
    rate: f64,
    window: Duration,
) -> (Sample, Sample) {
    let interval = Duration::from_secs_f64(1.0 / rate.max(0.1));
    let start = Instant::now();
    let mut tasks = Vec::new();
    let mut n = 0u64;
    while start.elapsed() < window {
        let api = api.clone();
        let tenant = tenants[n as usize % tenants.len()].clone();
        let body = json!({"name": "Lag", "surname": format!("Probe{n}")});
        let probed = n.is_multiple_of(PROBE_EVERY);
        tasks.push(tokio::spawn(async move {
            let sent = Instant::now();
            let (_, token) = api.create_returning_id(&tenant, &body).await.ok_or(())?;
            let acked = Instant::now();
            if !probed {
                return Ok(None);
            }
            let list = "/v1/customers?limit=1";
            while acked.elapsed() < Duration::from_secs(10) {
                if api.get_consistent(&tenant, list, &token).await {
                    let visible = Instant::now();
                    return Ok(Some((visible - acked, visible - sent)));
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            Err(())
        }));
        n += 1;
        tokio::time::sleep_until((start + interval * n as u32).into()).await;
    }
    let mut after_ack = Sample {
        window,
        ..Sample::default()
    };
    let mut after_send = after_ack.clone();
    for task in tasks {
        match task.await {
            Ok(Ok(Some((from_ack, from_send)))) => {
                after_ack.latencies.push(from_ack);
                after_send.latencies.push(from_send);
            }
            Ok(Ok(None)) => {}
            _ => {
                after_ack.errors += 1;
                after_send.errors += 1;
            }
        }
    }
    (after_ack, after_send)
}

/// One read scenario: a list request, the same for every tenant but its cursor.
#[derive(Clone, Debug)]
pub struct Scenario {
    pub name: String,
    pub sort: &'static str,
    pub search: Option<&'static str>,
    /// Read the page after this many pages (0 = the first page).
    pub depth: usize,
}

pub fn scenarios(deep_pages: usize) -> Vec<Scenario> {
    let mut all = vec![];
    for (label, sort) in [
        ("created_desc", "-created_at"),
        ("created_asc", "created_at"),
        ("surname_asc", "surname"),
        ("surname_desc", "-surname"),
    ] {
        all.push(Scenario {
            name: format!("first_{label}"),
            sort,
            search: None,
            depth: 0,
        });
        all.push(Scenario {
            name: format!("deep_{label}"),
            sort,
            search: None,
            depth: deep_pages,
        });
    }
    all.push(Scenario {
        name: "search_prefix".into(),
        sort: "-created_at",
        search: Some("mar"),
        depth: 0,
    });
    all.push(Scenario {
        name: "search_two_words".into(),
        sort: "surname",
        search: Some("mar gar"),
        depth: 0,
    });
    all
}

const PAGE: i64 = 50;

fn list_query(scenario: &Scenario, after: Option<Keyset>) -> ListQuery {
    ListQuery {
        sort: CustomerSort::parse(scenario.sort).expect("known sort"),
        filters: Default::default(),
        search: scenario.search.map(str::to_owned),
        after,
        limit: PAGE,
    }
}

/// Per tenant, the request path of `scenario` (walking the cursors for a deep page).
pub async fn http_paths(api: &Api, tenants: &[Tenant], scenario: &Scenario) -> Vec<String> {
    let mut paths = vec![];
    for tenant in tenants {
        let mut path = format!("/v1/customers?limit={PAGE}&sort={}", scenario.sort);
        if let Some(q) = scenario.search {
            path.push_str(&format!("&q={}", q.replace(' ', "+")));
        }
        let base = path.clone();
        for _ in 0..scenario.depth {
            let page = api.get_json(tenant, &path).await.expect("a page");
            let cursor = page["next_cursor"]
                .as_str()
                .expect("a next page")
                .to_owned();
            path = format!("{base}&cursor={cursor}");
        }
        paths.push(path);
    }
    paths
}

/// Per tenant, the keyset of the same deep page read directly.
pub async fn direct_keysets(
    pool: &sqlx::AnyPool,
    tenants: &[Tenant],
    scenario: &Scenario,
) -> Vec<Option<Keyset>> {
    let mut keysets = vec![];
    for tenant in tenants {
        let mut after = None;
        for _ in 0..scenario.depth {
            let (_, next) = projections::read::customers::list(
                pool,
                CompanyId(tenant.company_id),
                &list_query(scenario, after.clone()),
            )
            .await
            .expect("direct page");
            after = Some(next.expect("a next page"));
        }
        keysets.push(after);
    }
    keysets
}

pub fn http_read(api: &Api, tenants: &[Tenant], paths: Vec<String>) -> Op {
    let api = api.clone();
    let tenants = Arc::new(tenants.to_vec());
    let paths = Arc::new(paths);
    let turn = Arc::new(AtomicU64::new(0));
    Arc::new(move |_, _| {
        let api = api.clone();
        let tenants = tenants.clone();
        let paths = paths.clone();
        let i = turn.fetch_add(1, Ordering::Relaxed) as usize % tenants.len();
        async move { api.get_ok(&tenants[i], &paths[i]).await }.boxed()
    })
}

/// The same query the server runs for the scenario, straight on the database.
pub fn direct_read(
    pool: &sqlx::AnyPool,
    tenants: &[Tenant],
    scenario: &Scenario,
    keysets: Vec<Option<Keyset>>,
) -> Op {
    let pool = pool.clone();
    let tenants = Arc::new(tenants.to_vec());
    let keysets = Arc::new(keysets);
    let scenario = scenario.clone();
    let turn = Arc::new(AtomicU64::new(0));
    Arc::new(move |_, _| {
        let pool = pool.clone();
        let i = turn.fetch_add(1, Ordering::Relaxed) as usize % tenants.len();
        let company = CompanyId(tenants[i].company_id);
        let query = list_query(&scenario, keysets[i].clone());
        async move {
            projections::read::customers::list(&pool, company, &query)
                .await
                .is_ok()
        }
        .boxed()
    })
}
