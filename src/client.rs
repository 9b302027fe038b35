//! `crm customers import|export`: a client of a running server's public API
//! (any run mode), authenticated by an API key or an access token, so the
//! company is the token's, as for every other client.
use anyhow::{bail, Context};
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where the server is and who calls it.
#[derive(clap::Args, Clone, Debug)]
pub struct Remote {
    /// The running server's base URL.
    #[arg(long, env = "CRM_SERVER", default_value = "http://127.0.0.1:8080")]
    pub server: String,
    /// An API key (`crm_…`) or an access token of an admin of the company.
    #[arg(long, env = "CRM_TOKEN", hide_env_values = true)]
    pub token: String,
}

impl Remote {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server.trim_end_matches('/'))
    }

    fn request(
        &self,
        http: &reqwest::Client,
        method: reqwest::Method,
        path: &str,
    ) -> reqwest::RequestBuilder {
        http.request(method, self.url(path))
            .bearer_auth(&self.token)
    }
}

/// A problem document's detail (and its field errors), or the status.
async fn refusal(response: reqwest::Response) -> anyhow::Error {
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    let mut text = body["detail"].as_str().unwrap_or("").to_owned();
    for error in body["errors"].as_array().into_iter().flatten() {
        text.push_str(&format!(
            "\n  {}: {}",
            error["field"].as_str().unwrap_or("?"),
            error["message"].as_str().unwrap_or("")
        ));
    }
    anyhow::anyhow!("the server answered {status}: {text}")
}

/// What `crm customers import` is asked to do.
pub struct ImportFile {
    pub file: PathBuf,
    pub upsert_on: Option<String>,
    pub idempotency_key: Option<String>,
    pub errors_to: Option<PathBuf>,
}

fn content_type(file: &Path) -> anyhow::Result<&'static str> {
    match file
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("csv") => Ok("text/csv"),
        Some("ndjson" | "jsonl") => Ok("application/x-ndjson"),
        _ => bail!("{}: name a .csv, .ndjson or .jsonl file", file.display()),
    }
}

/// Data rows, roughly (lines; less a CSV's header), for the progress bar.
fn rows_in(file: &Path, csv: bool) -> anyhow::Result<u64> {
    let reader = std::io::BufReader::new(std::fs::File::open(file)?);
    let lines = reader.split(b'\n').count() as u64;
    Ok(if csv { lines.saturating_sub(1) } else { lines })
}

/// Uploads the file, follows the job with a progress bar, and prints a summary.
pub async fn import(remote: &Remote, request: ImportFile) -> anyhow::Result<()> {
    let kind = content_type(&request.file)?;
    let total = rows_in(&request.file, kind == "text/csv")
        .with_context(|| format!("reading {}", request.file.display()))?;
    let http = reqwest::Client::new();
    let mut path = "/v1/customers/imports".to_owned();
    if let Some(on) = &request.upsert_on {
        path.push_str(&format!("?upsert_on={on}"));
    }
    let file = tokio::fs::File::open(&request.file).await?;
    let mut upload = remote
        .request(&http, reqwest::Method::POST, &path)
        .header("content-type", kind)
        .body(reqwest::Body::from(file));
    if let Some(key) = &request.idempotency_key {
        upload = upload.header("idempotency-key", key);
    }
    let response = upload.send().await.context("cannot reach the server")?;
    if response.status() != reqwest::StatusCode::ACCEPTED {
        return Err(refusal(response).await);
    }
    let mut job: Value = response.json().await?;
    let id = job["id"].as_str().unwrap_or_default().to_owned();
    let bar = ProgressBar::new(total).with_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} rows {per_sec} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    while job["state"] == "running" {
        bar.set_position(job["rows_read"].as_u64().unwrap_or(0));
        bar.set_message(counts(&job));
        tokio::time::sleep(Duration::from_millis(500)).await;
        let response = remote
            .request(
                &http,
                reqwest::Method::GET,
                &format!("/v1/customers/imports/{id}"),
            )
            .send()
            .await?;
        if !response.status().is_success() {
            return Err(refusal(response).await);
        }
        job = response.json().await?;
    }
    bar.set_position(job["rows_read"].as_u64().unwrap_or(0));
    bar.finish_and_clear();
    println!(
        "import {id} {}: {} rows read, {}",
        job["state"].as_str().unwrap_or("?"),
        job["rows_read"],
        counts(&job)
    );
    if let Some(detail) = job["detail"].as_str() {
        println!("{detail}");
    }
    if job["rejected"].as_u64().unwrap_or(0) > 0 {
        let errors = job["errors_url"].as_str().unwrap_or_default().to_owned();
        match &request.errors_to {
            Some(to) => {
                download(remote, &http, &errors, Some(to), None).await?;
                println!("the rejected rows' reasons are in {}", to.display());
            }
            None => println!("the rejected rows' reasons: {}", remote.url(&errors)),
        }
    }
    if job["state"] != "succeeded" {
        bail!("the import did not succeed");
    }
    Ok(())
}

fn counts(job: &Value) -> String {
    format!(
        "{} created, {} updated, {} rejected",
        job["created"], job["updated"], job["rejected"]
    )
}

/// Streams `GET /v1/customers/export` to `output` (or stdout).
pub async fn export(
    remote: &Remote,
    format: &str,
    query: Option<&str>,
    output: Option<&Path>,
) -> anyhow::Result<()> {
    let mut path = format!("/v1/customers/export?format={format}");
    if let Some(query) = query {
        path.push('&');
        path.push_str(query.trim_start_matches(['?', '&']));
    }
    let http = reqwest::Client::new();
    let bar = ProgressBar::new_spinner().with_style(
        ProgressStyle::with_template("{spinner} {bytes} {binary_bytes_per_sec} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    let lines = download(remote, &http, &path, output, Some(&bar)).await?;
    bar.finish_and_clear();
    if format == "csv" {
        // Quoted notes may hold line breaks: lines, not customers.
        eprintln!("exported {lines} CSV lines (a header and the customers)");
    } else {
        eprintln!("exported {lines} customers");
    }
    Ok(())
}

/// Streams a download to `to` (or stdout); the number of line ends it held.
async fn download(
    remote: &Remote,
    http: &reqwest::Client,
    path: &str,
    to: Option<&Path>,
    bar: Option<&ProgressBar>,
) -> anyhow::Result<u64> {
    let response = remote
        .request(http, reqwest::Method::GET, path)
        .send()
        .await
        .context("cannot reach the server")?;
    if !response.status().is_success() {
        return Err(refusal(response).await);
    }
    let mut out: Box<dyn Write> = match to {
        Some(to) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(to).with_context(|| format!("creating {}", to.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let mut lines = 0u64;
    let mut body = response.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.context("the download was cut off")?;
        lines += chunk.iter().filter(|&&b| b == b'\n').count() as u64;
        if let Some(bar) = bar {
            bar.inc(chunk.len() as u64);
            bar.set_message(format!("{lines} lines"));
        }
        out.write_all(&chunk)?;
    }
    out.flush()?;
    Ok(lines)
}
