//! Bulk on the full stack: a customer import of N rows (a CSV streamed over
//! HTTP, its job polled to the end) beside a raw `COPY` of the same rows, as
//! event rows, into a copy of `events`; then an export of every row.
use futures::StreamExt;
use serde_json::{json, Value};
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};
use uuid::Uuid;

use crate::workload::{Api, Tenant};

/// The i-th customer of a generated book, as its CSV fields.
fn row(i: usize) -> [String; 5] {
    [
        format!("Given{i}"),
        format!("Family{}", i % 9_973),
        format!("bulk.{i}@bulk.example.com"),
        format!("+34 6{:08}", i % 100_000_000),
        if i.is_multiple_of(3) {
            format!("Imported, row {i}")
        } else {
            String::new()
        },
    ]
}

/// Writes a book of `rows` good customers as CSV with a header.
pub fn write_book(path: &Path, rows: usize) {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).expect("book file"));
    writeln!(out, "name,surname,email,phone,notes").expect("write the book");
    for i in 0..rows {
        let [name, surname, email, phone, notes] = row(i);
        // No field needs quoting: commas only in notes, which are quoted.
        writeln!(out, "{name},{surname},{email},{phone},\"{notes}\"").expect("write the book");
    }
    out.flush().expect("write the book");
}

fn csv_cell(value: &str) -> String {
    format!("\"{}\"", value.replace('"', "\"\""))
}

/// `COPY … FROM STDIN` of one `CustomerRegistered` row per customer of the
/// book (same payload and metadata shape as the system writes) into a fresh
/// copy of `events`, one transaction; the rows are built as they are sent.
pub async fn raw_copy(database_url: &str, rows: usize) -> Duration {
    use sqlx::Connection;
    let mut db = sqlx::PgConnection::connect(database_url)
        .await
        .expect("baseline connection");
    sqlx::query("DROP TABLE IF EXISTS bench_copy_events")
        .execute(&mut db)
        .await
        .expect("drop bench_copy_events");
    sqlx::query("CREATE TABLE bench_copy_events (LIKE events INCLUDING ALL)")
        .execute(&mut db)
        .await
        .expect("bench_copy_events");
    let company = Uuid::now_v7().to_string();
    let user = Uuid::now_v7().to_string();
    let started = Instant::now();
    let mut copy = db
        .copy_in_raw(
            "COPY bench_copy_events (aggregate_type, aggregate_id, sequence, event_type, \
             event_version, payload, metadata) FROM STDIN (FORMAT csv)",
        )
        .await
        .expect("COPY");
    let mut chunk = String::with_capacity(1 << 20);
    for i in 0..rows {
        let [name, surname, email, phone, notes] = row(i);
        let payload = json!({"CustomerRegistered": {
            "company_id": company, "name": name, "surname": surname, "email": email,
            "phone": phone, "notes": (!notes.is_empty()).then_some(notes), "by": user,
        }});
        let metadata = json!({
            "company_id": company, "user_id": user,
            "correlation_id": Uuid::now_v7().to_string(),
            "occurred_at": chrono::Utc::now().to_rfc3339(),
        });
        chunk.push_str(&format!(
            "customer,{},1,CustomerRegistered,2.0,{},{}\n",
            Uuid::now_v7(),
            csv_cell(&payload.to_string()),
            csv_cell(&metadata.to_string())
        ));
        if chunk.len() >= 1 << 20 {
            copy.send(chunk.as_bytes()).await.expect("COPY data");
            chunk.clear();
        }
    }
    copy.send(chunk.as_bytes()).await.expect("COPY data");
    copy.finish().await.expect("COPY end");
    started.elapsed()
}

/// What one import took and did.
pub struct Imported {
    /// From sending the upload to the job's end. A job ends only after the
    /// customers view has applied its last batch, so this is also the time
    /// until the list shows every row.
    pub to_visible: Duration,
    pub created: u64,
    pub rejected: u64,
}

/// Uploads the book (streamed from the file) and polls its job to the end.
pub async fn import(api: &Api, tenant: &Tenant, book: &Path) -> Imported {
    let started = Instant::now();
    let file = tokio::fs::File::open(book).await.expect("open the book");
    let response = api
        .client
        .post(format!("{}/v1/customers/imports", api.base))
        .bearer_auth(&tenant.token)
        .header("content-type", "text/csv")
        .timeout(Duration::from_secs(600))
        .body(reqwest::Body::from(file))
        .send()
        .await
        .expect("POST /v1/customers/imports");
    assert_eq!(response.status().as_u16(), 202, "the import is accepted");
    let job: Value = response.json().await.expect("import job");
    let id = job["id"].as_str().expect("job id").to_owned();
    loop {
        let job: Value = api
            .client
            .get(format!("{}/v1/customers/imports/{id}", api.base))
            .bearer_auth(&tenant.token)
            .send()
            .await
            .expect("GET the import")
            .json()
            .await
            .expect("import job");
        match job["state"].as_str() {
            Some("succeeded") => {
                return Imported {
                    to_visible: started.elapsed(),
                    created: job["created"].as_u64().unwrap_or(0),
                    rejected: job["rejected"].as_u64().unwrap_or(0),
                }
            }
            Some("queued" | "running") => tokio::time::sleep(Duration::from_millis(200)).await,
            _ => panic!("the import ended as {job}"),
        }
    }
}

/// Streams `GET /v1/customers/export?format=ndjson` to its end: rows, time.
pub async fn export(api: &Api, tenant: &Tenant) -> (u64, Duration) {
    let started = Instant::now();
    let response = api
        .client
        .get(format!("{}/v1/customers/export?format=ndjson", api.base))
        .bearer_auth(&tenant.token)
        .timeout(Duration::from_secs(600))
        .send()
        .await
        .expect("GET /v1/customers/export");
    assert_eq!(response.status().as_u16(), 200, "the export is served");
    let mut rows = 0;
    let mut body = response.bytes_stream();
    while let Some(chunk) = body.next().await {
        rows += bytecount(&chunk.expect("export body"));
    }
    (rows, started.elapsed())
}

fn bytecount(chunk: &[u8]) -> u64 {
    chunk.iter().filter(|b| **b == b'\n').count() as u64
}
