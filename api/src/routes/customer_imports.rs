//! `/v1/customers/imports`: bulk loads of customers from CSV or NDJSON, run
//! as jobs (see `crate::imports` for how a job runs).
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use commands::imports::{self, Job, JobState, NewJob};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use tokio::io::AsyncWriteExt;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::{timestamp, Reply};
use crate::caller::{Caller, CallerKind};
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{IdempotencyKey, Path, Query};
use crate::imports::{parse, Format, MAX_FILE_BYTES};
use crate::state::AppState;

#[derive(Clone, Copy, Debug, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum UpsertOn {
    Email,
    ExternalId,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ImportParams {
    /// Update the customer a row names instead of creating one: by `email`
    /// (one live customer of the company has it) or by `external_id` (the
    /// customer that has it); rows naming none create one.
    #[param(inline)]
    upsert_on: Option<UpsertOn>,
}

/// An import job.
#[derive(Serialize, ToSchema)]
pub struct ImportJob {
    #[schema(format = Uuid)]
    id: String,
    /// `running`, then `succeeded`, `failed` (see `detail`) or `cancelled`.
    #[schema(example = "running")]
    state: &'static str,
    /// `csv` or `ndjson`.
    format: String,
    upsert_on: Option<String>,
    /// Data rows read so far (a CSV's header row is not one).
    rows_read: i64,
    created: i64,
    updated: i64,
    rejected: i64,
    /// The rejected rows' reasons, as NDJSON.
    errors_url: String,
    /// Why it failed, and what to do.
    detail: Option<String>,
    created_at: String,
    finished_at: Option<String>,
}

/// What a client is told of a job whose process stopped mid-import.
const INTERRUPTED: &str = "interrupted: the server stopped during the import; send the same \
    file with the same Idempotency-Key to resume it (rows already written are not written again)";

impl From<Job> for ImportJob {
    fn from(job: Job) -> Self {
        let interrupted = job.heartbeat_stopped();
        Self {
            id: job.id.to_string(),
            state: if interrupted {
                JobState::Failed.as_str()
            } else {
                job.state.as_str()
            },
            format: job.format,
            upsert_on: job.upsert_on,
            rows_read: job.counts.rows_read,
            created: job.counts.created,
            updated: job.counts.updated,
            rejected: job.counts.rejected,
            errors_url: format!("/v1/customers/imports/{}/errors", job.id),
            detail: if interrupted {
                Some(INTERRUPTED.to_owned())
            } else {
                job.detail
            },
            created_at: timestamp(&job.created_at),
            finished_at: job.finished_at.as_deref().map(timestamp),
        }
    }
}

fn accepted(job: Job) -> Reply<ImportJob> {
    let location = format!("/v1/customers/imports/{}", job.id);
    Reply::ok(ImportJob::from(job))
        .status(StatusCode::ACCEPTED)
        .location(location)
}

/// Starts importing customers from a CSV or NDJSON file.
#[utoipa::path(post, path = "/v1/customers/imports", tag = "imports", security(("bearer" = [])),
    params(ImportParams, ("Idempotency-Key" = Option<String>, Header)),
    request_body(content = String, description = "CSV with a header row naming columns among name, surname, email, phone, notes and external_id (name and surname required; any order), or one JSON object per line with those fields", content_type = "text/csv"),
    responses((status = 202, body = ImportJob, description = "Uploaded; the import runs. A repeat of the Idempotency-Key with the same file answers with the same job, resuming it if it was interrupted"),
        (status = 403, body = Problem, description = "Not an admin"),
        (status = 413, body = Problem, description = "Larger than 1 GiB"),
        (status = 415, body = Problem, description = "Neither text/csv nor application/x-ndjson"),
        (status = 422, body = Problem, description = "An empty file, a header row with an unknown, repeated or missing column, or a key used for another file")))]
pub async fn start_import(
    State(state): State<AppState>,
    caller: Caller,
    IdempotencyKey(key): IdempotencyKey,
    Query(params): Query<ImportParams>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Reply<ImportJob>> {
    caller.require_admin()?;
    let format = format_of(&headers)?;
    let upsert_on = match params.upsert_on {
        None => None,
        Some(UpsertOn::Email) => Some("email"),
        Some(UpsertOn::ExternalId) => Some("external_id"),
    };
    let spool = Spool(state.imports.spool_path());
    let options = format!("{}/{}", format.as_str(), upsert_on.unwrap_or(""));
    let digest = spool.receive(body, &options).await?;
    if format == Format::Csv {
        let file = std::fs::File::open(&spool.0).map_err(ApiError::internal)?;
        parse::csv_header(file).map_err(|error| ApiError::field("file", error.to_string()))?;
    }
    let id = match &key {
        Some(key) => crate::idempotency::derived_uuid(caller.company_id, "customer_import", key),
        None => Uuid::now_v7(),
    };
    let new = NewJob {
        id,
        company_id: caller.company_id,
        created_by: caller.user_id,
        format: format.as_str(),
        upsert_on,
        digest: &digest,
    };
    let pool = state.pool();
    let fresh = imports::insert(pool, &new).await?;
    let job = imports::find(pool, caller.company_id, id)
        .await?
        .ok_or(ApiError::NotFound("no such import in your company"))?;
    if job.digest != digest {
        return Err(ApiError::field(
            "Idempotency-Key",
            "this key was already used for a different file or options; use a new key for a new import",
        ));
    }
    let resume = !fresh && job.heartbeat_stopped() && imports::restart(pool, &job).await?;
    if !(fresh || resume) {
        return Ok(accepted(job));
    }
    // A restart reset the counts: answer with the job as it now starts.
    let job = imports::find(pool, caller.company_id, id)
        .await?
        .unwrap_or(job);
    let api_key = caller.kind == CallerKind::ApiKey;
    state
        .imports
        .start(state.clone(), job.clone(), format, spool.keep(), api_key);
    Ok(accepted(job))
}

/// An upload on disk, removed when dropped unless kept for a job.
struct Spool(PathBuf);

impl Spool {
    /// Writes `body` to the file; the SHA-256 of `options` and the bytes.
    async fn receive(&self, body: Body, options: &str) -> ApiResult<String> {
        let mut file = tokio::fs::File::create(&self.0)
            .await
            .map_err(ApiError::internal)?;
        let mut hasher = Sha256::new();
        hasher.update(options.as_bytes());
        hasher.update([0]);
        let mut size = 0u64;
        let mut stream = body.into_data_stream();
        while let Some(chunk) = stream.next().await {
            let chunk: Bytes =
                chunk.map_err(|e| ApiError::BadRequest(format!("the upload failed: {e}")))?;
            size += chunk.len() as u64;
            if size > MAX_FILE_BYTES {
                return Err(ApiError::TooLarge(format!(
                    "an import file may have at most {MAX_FILE_BYTES} bytes; split it"
                )));
            }
            hasher.update(&chunk);
            file.write_all(&chunk).await.map_err(ApiError::internal)?;
        }
        file.flush().await.map_err(ApiError::internal)?;
        if size == 0 {
            return Err(ApiError::field("file", "the file is empty"));
        }
        Ok(hex::encode(hasher.finalize()))
    }

    fn keep(self) -> PathBuf {
        let path = self.0.clone();
        std::mem::forget(self);
        path
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn format_of(headers: &HeaderMap) -> ApiResult<Format> {
    let media = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase());
    match media.as_deref() {
        Some("text/csv") => Ok(Format::Csv),
        Some("application/x-ndjson") => Ok(Format::Ndjson),
        _ => Err(ApiError::UnsupportedMediaType(
            "an import is text/csv or application/x-ndjson".into(),
        )),
    }
}

async fn job_of(state: &AppState, caller: &Caller, id: Uuid) -> ApiResult<Job> {
    caller.require_admin()?;
    imports::find(state.pool(), caller.company_id, id)
        .await?
        .ok_or(ApiError::NotFound("no such import in your company"))
}

/// An import's state and counts.
#[utoipa::path(get, path = "/v1/customers/imports/{id}", tag = "imports", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, body = ImportJob), (status = 403, body = Problem, description = "Not an admin"),
        (status = 404, body = Problem, description = "No such import in the caller's company")))]
pub async fn get_import(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> ApiResult<Reply<ImportJob>> {
    Ok(Reply::ok(job_of(&state, &caller, id).await?.into()))
}

/// Stops a running import after the batch it is writing; rows written stay.
#[utoipa::path(post, path = "/v1/customers/imports/{id}/cancel", tag = "imports", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 202, body = ImportJob, description = "Cancelled (also when it already was)"),
        (status = 403, body = Problem, description = "Not an admin"),
        (status = 404, body = Problem, description = "No such import in the caller's company"),
        (status = 409, body = Problem, description = "It has already succeeded or failed")))]
pub async fn cancel_import(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> ApiResult<Reply<ImportJob>> {
    let job = job_of(&state, &caller, id).await?;
    if job.state == JobState::Running {
        imports::finish(state.pool(), id, JobState::Cancelled, None).await?;
    }
    let job = job_of(&state, &caller, id).await?;
    match job.state {
        JobState::Cancelled => Ok(accepted(job)),
        _ => Err(ApiError::conflict(format!(
            "the import has already {}",
            ImportJob::from(job).state
        ))),
    }
}

/// Reasons read per query of the error report.
const ERRORS_PAGE: i64 = 1_000;

#[derive(Serialize, ToSchema)]
pub struct ImportRowError {
    /// The 1-based line of the file the row starts on; a CSV's header row is line 1.
    line: i64,
    /// The invalid field; null when the row itself is malformed.
    field: Option<String>,
    message: String,
}

/// Every rejected row's reasons, in file order, one JSON object per line.
#[utoipa::path(get, path = "/v1/customers/imports/{id}/errors", tag = "imports", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, body = ImportRowError, content_type = "application/x-ndjson",
            description = "One ImportRowError per line"),
        (status = 403, body = Problem, description = "Not an admin"),
        (status = 404, body = Problem, description = "No such import in the caller's company")))]
pub async fn import_errors(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> ApiResult<Response> {
    let job = job_of(&state, &caller, id).await?;
    let pool = state.pool().clone();
    let pages = futures::stream::unfold(Some((0i64, -1i64)), move |after| {
        let pool = pool.clone();
        async move {
            let after = after?;
            match imports::errors_after(&pool, job.id, after, ERRORS_PAGE).await {
                Ok(rows) => {
                    let next = rows.last().map(|(line, position, _)| (*line, *position));
                    let more = rows.len() as i64 == ERRORS_PAGE;
                    let mut chunk = Vec::new();
                    for (_, _, error) in rows {
                        let line = ImportRowError {
                            line: error.line,
                            field: error.field,
                            message: error.message,
                        };
                        let _ = serde_json::to_writer(&mut chunk, &line);
                        chunk.push(b'\n');
                    }
                    Some((
                        Ok::<_, std::io::Error>(Bytes::from(chunk)),
                        next.filter(|_| more),
                    ))
                }
                Err(error) => {
                    tracing::error!(%error, "an import's error report failed after it started");
                    Some((Err(std::io::Error::other("the report failed")), None))
                }
            }
        }
    });
    let mut response = (StatusCode::OK, Body::from_stream(pages)).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    Ok(response)
}
