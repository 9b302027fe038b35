//! Running a customer import: the uploaded file is spooled to disk, then
//! read row by row on a blocking thread and written in batches.
//!
//! Fairness: at most [`CONCURRENT_IMPORTS`] imports run in a process (the
//! others wait, `running` with no rows read), each writes one batch of
//! [`BATCH_ROWS`] rows per transaction, and after each batch it waits until
//! the customers view shows that batch. An import therefore never puts more
//! than one batch between other writers and the views, and other requests
//! are served between its batches.
use commands::external_ids::{self, DetailsChangeError};
use commands::imports::{self, Batch, Counts, Job, JobState, RowError};
use commands::{CommandContext, CommandError};
use domain::customer::{Customer, CustomerCommand, CustomerDetails, DetailsChange};
use domain::external_id_claim::ExternalIdClaim;
use domain::values::FieldChange;
use domain::CustomerId;
use projections::consistency::ConsistencyToken;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, Semaphore};

use crate::error::ApiError;
use crate::routes::customers::{customer_details, NewDetails};
use crate::state::AppState;
use parse::{Cells, Column, Row};

mod external;
pub mod parse;
mod upsert;

/// Rows per batch: per transaction, and per wait for the views.
pub const BATCH_ROWS: usize = 1_000;
/// Imports that run at once in one process.
pub const CONCURRENT_IMPORTS: usize = 2;
/// The largest file accepted (about 5 million typical rows).
pub const MAX_FILE_BYTES: u64 = 1 << 30;
/// How long a batch waits for the customers view before the next one.
const VIEW_WAIT: Duration = Duration::from_secs(60);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Csv,
    Ndjson,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Csv => "csv",
            Self::Ndjson => "ndjson",
        }
    }
}

/// Where uploads wait to be imported, and the slots imports run in.
pub struct Imports {
    dir: PathBuf,
    slots: Arc<Semaphore>,
}

impl Imports {
    /// Uses `dir` for uploads. Files a stopped process left there a day ago
    /// or more are removed: their jobs resume only when the file is sent again.
    pub fn new(dir: PathBuf) -> std::io::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        let day = Duration::from_secs(24 * 3600);
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|at| at.elapsed().ok())
                .is_some_and(|age| age > day);
            if old && entry.path().extension().is_some_and(|ext| ext == "upload") {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(Self {
            dir,
            slots: Arc::new(Semaphore::new(CONCURRENT_IMPORTS)),
        })
    }

    /// A fresh path to spool an upload to.
    pub fn spool_path(&self) -> PathBuf {
        self.dir.join(format!("{}.upload", uuid::Uuid::new_v4()))
    }

    /// Runs `job` over the spooled `file` in the background; the file is
    /// removed when the job ends.
    pub fn start(&self, state: AppState, job: Job, format: Format, file: PathBuf, api_key: bool) {
        let slots = self.slots.clone();
        tokio::spawn(async move {
            let Ok(_slot) = slots.acquire_owned().await else {
                return;
            };
            let pool = state.pool().clone();
            let id = job.id;
            let beat = tokio::spawn(async move {
                while let Ok(true) = imports::heartbeat(&pool, id).await {
                    tokio::time::sleep(imports::HEARTBEAT_EVERY).await;
                }
            });
            let ended = run(&state, &job, format, &file, api_key).await;
            beat.abort();
            let _ = tokio::fs::remove_file(&file).await;
            let (end, detail) = match ended {
                Ok(end) => (end, None),
                Err(error) => {
                    tracing::warn!(import = %id, %error, "import failed");
                    (JobState::Failed, Some(error.to_string()))
                }
            };
            if let Err(error) = imports::finish(state.pool(), id, end, detail.as_deref()).await {
                tracing::error!(import = %id, %error, "could not record the end of an import");
            }
        });
    }
}

/// Why a job stopped before its last row.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error(transparent)]
    File(#[from] parse::FileError),
    #[error("the store failed; send the same file with the same Idempotency-Key to resume")]
    Store(#[from] sqlx::Error),
    #[error("the store failed; send the same file with the same Idempotency-Key to resume")]
    Command,
}

/// Reads and writes every batch; the state the job ends in.
async fn run(
    state: &AppState,
    job: &Job,
    format: Format,
    file: &Path,
    api_key: bool,
) -> Result<JobState, ImportError> {
    let (batches, mut incoming) = mpsc::channel::<Vec<Row>>(2);
    let path = file.to_owned();
    let reader = tokio::task::spawn_blocking(move || read_batches(&path, format, batches));
    while let Some(rows) = incoming.recv().await {
        // Renewing the heartbeat also says whether it was cancelled meanwhile.
        if !imports::heartbeat(state.pool(), job.id).await? {
            return Ok(JobState::Cancelled);
        }
        let ctx = CommandContext::new(job.company_id, job.created_by, job.id).by_api_key(api_key);
        if let Some(token) = write_batch(state, job, &ctx, rows).await? {
            let caught_up = projections::consistency::wait_for_signalled(
                state.pool(),
                &job.company_id.to_string(),
                &token,
                VIEW_WAIT,
                Some(state.commands.applied()),
            )
            .await;
            if !caught_up {
                tracing::warn!(import = %job.id, "the customers view is behind an import");
            }
        }
    }
    match reader.await {
        Ok(result) => result?,
        Err(error) => return Err(parse::FileError::Read(error.to_string()).into()),
    }
    Ok(JobState::Succeeded)
}

fn read_batches(
    path: &Path,
    format: Format,
    batches: mpsc::Sender<Vec<Row>>,
) -> Result<(), parse::FileError> {
    let file = std::fs::File::open(path).map_err(|e| parse::FileError::Read(e.to_string()))?;
    let mut batch = Vec::with_capacity(BATCH_ROWS);
    let mut each = |row: Row| {
        batch.push(row);
        if batch.len() < BATCH_ROWS {
            return true;
        }
        let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH_ROWS));
        batches.blocking_send(full).is_ok()
    };
    match format {
        Format::Csv => parse::csv_rows(file, &mut each)?,
        Format::Ndjson => parse::ndjson_rows(file, &mut each)?,
    }
    if !batch.is_empty() {
        let _ = batches.blocking_send(batch);
    }
    Ok(())
}

/// A valid row: what it asks for.
pub(crate) struct Valid {
    line: i64,
    details: CustomerDetails,
    cells: Cells,
}

/// What a batch's valid rows do.
#[derive(Default)]
pub(crate) struct Plan {
    creates: Vec<(i64, CustomerDetails)>,
    updates: Vec<(i64, CustomerId, DetailsChange)>,
    /// Rows folded into a create of the same batch.
    merged: i64,
    errors: Vec<RowError>,
}

/// Writes one batch; the token that covers what it wrote.
async fn write_batch(
    state: &AppState,
    job: &Job,
    ctx: &CommandContext,
    rows: Vec<Row>,
) -> Result<Option<ConsistencyToken>, ImportError> {
    let mut counts = Counts {
        rows_read: rows.len() as i64,
        ..Counts::default()
    };
    let mut errors = Vec::new();
    let mut valid = Vec::with_capacity(rows.len());
    for row in rows {
        match row.cells.and_then(|cells| validate(row.line, cells)) {
            Ok(row) => valid.push(row),
            Err(reasons) => {
                counts.rejected += 1;
                errors.extend(reasons);
            }
        }
    }
    let mut plan = match job.upsert_on.as_deref() {
        Some("external_id") => external::plan_on_external_id(state, job, valid).await?,
        Some(_) => upsert::plan_on_email(state, job, valid).await?,
        None => Plan {
            creates: valid.into_iter().map(|v| (v.line, v.details)).collect(),
            ..Plan::default()
        },
    };
    let claims = external::claims(state, job, &mut plan).await?;
    counts.rejected += plan.errors.len() as i64;
    errors.extend(plan.errors);
    counts.updated += plan.merged;
    let mut token: Option<ConsistencyToken> = None;
    let mut cover = |written: ConsistencyToken| {
        token = Some(match token.take() {
            Some(token) => token.and(written),
            None => written,
        });
    };
    for (line, id, change) in plan.updates {
        let changed =
            external_ids::change_details(&state.commands, ctx, id, change, commands::Expect::Any);
        match changed.await {
            Ok(outcome) => {
                counts.updated += 1;
                cover(ConsistencyToken::applied::<Customer>(id, outcome.version));
            }
            Err(CommandError::Domain(DetailsChangeError::ExternalId(error))) => {
                counts.rejected += 1;
                errors.push(RowError {
                    line,
                    field: Some("external_id".into()),
                    message: error.to_string(),
                });
            }
            Err(error) => {
                let error = ApiError::from(error);
                if error.status().is_server_error() {
                    return Err(ImportError::Command);
                }
                counts.rejected += 1;
                errors.push(RowError {
                    line,
                    field: None,
                    message: error.problem().detail,
                });
            }
        }
    }
    counts.created = plan.creates.len() as i64;
    let events = new_customers(state, job, ctx, &plan.creates, &claims).await?;
    if let Some(last) = events.last() {
        if let Ok(id) = last.aggregate_id.parse::<CustomerId>() {
            cover(ConsistencyToken::applied::<Customer>(
                id,
                last.sequence as u64,
            ));
        }
    }
    errors.sort_by_key(|error| error.line);
    imports::commit(
        state.commands.db(),
        &Batch {
            job: job.id,
            events: &events,
            errors: &errors,
            counts,
        },
    )
    .await?;
    Ok(token)
}

/// The events of the customers `creates` registers, leaving out those an
/// earlier attempt of the job already wrote.
async fn new_customers(
    state: &AppState,
    job: &Job,
    ctx: &CommandContext,
    creates: &[(i64, CustomerDetails)],
    claims: &HashMap<i64, external::NewClaim>,
) -> Result<Vec<commands::append::NewEvent>, ImportError> {
    let ids: Vec<CustomerId> = creates
        .iter()
        .map(|(line, _)| imports::row_customer_id(job.id, *line))
        .collect();
    let written = imports::already_written(state.pool(), &ids).await?;
    let metadata = commands::append::metadata(&ctx.metadata()).map_err(|_| ImportError::Command)?;
    let mut events = Vec::with_capacity(creates.len());
    for (id, (line, details)) in ids.into_iter().zip(creates) {
        if written.contains(&id) {
            continue;
        }
        if let Some(claim) = claims.get(line) {
            events.push(
                commands::append::NewEvent::new::<ExternalIdClaim>(
                    claim.id.clone(),
                    claim.sequence,
                    &claim.event,
                    metadata.clone(),
                )
                .map_err(|_| ImportError::Command)?,
            );
        }
        let register = CustomerCommand::Register {
            customer_id: id,
            company_id: job.company_id,
            details: details.clone(),
            photo: None,
            by: ctx.user_id,
        };
        let decided = Customer::default()
            .decide(register)
            .map_err(|_| ImportError::Command)?;
        for (sequence, event) in (1..).zip(&decided) {
            events.push(
                commands::append::NewEvent::new::<Customer>(
                    id.to_string(),
                    sequence,
                    event,
                    metadata.clone(),
                )
                .map_err(|_| ImportError::Command)?,
            );
        }
    }
    Ok(events)
}

/// A row's details by the rules of a single create.
fn validate(line: i64, cells: Cells) -> Result<Valid, Vec<RowError>> {
    let raw = NewDetails {
        name: cells.text(Column::Name),
        surname: cells.text(Column::Surname),
        email: cells.text(Column::Email),
        phone: cells.text(Column::Phone),
        notes: cells.text(Column::Notes),
        external_id: cells.text(Column::ExternalId),
    };
    match customer_details(raw) {
        Ok(details) => Ok(Valid {
            line,
            details,
            cells,
        }),
        Err(error) => Err(error
            .field_errors()
            .iter()
            .map(|e| RowError {
                line,
                field: Some(e.field.clone()),
                message: e.message.clone(),
            })
            .collect()),
    }
}

/// The change a matched row makes: every column it gives, an empty
/// optional one clearing the field.
fn change_of(row: &Valid) -> DetailsChange {
    let given = |column| row.cells.get(column).is_some();
    DetailsChange {
        name: given(Column::Name).then(|| row.details.name.clone()),
        surname: given(Column::Surname).then(|| row.details.surname.clone()),
        email: optional_change(given(Column::Email), &row.details.email),
        phone: optional_change(given(Column::Phone), &row.details.phone),
        notes: optional_change(given(Column::Notes), &row.details.notes),
        external_id: optional_change(given(Column::ExternalId), &row.details.external_id),
    }
}

fn optional_change<T: Clone>(given: bool, value: &Option<T>) -> Option<FieldChange<T>> {
    given.then(|| match value {
        Some(value) => FieldChange::Set(value.clone()),
        None => FieldChange::Cleared,
    })
}

/// Rows of a batch by email (ASCII case ignored, as addresses compare).
fn email_key(details: &CustomerDetails) -> Option<String> {
    details
        .email
        .as_ref()
        .map(|email| email.as_str().to_ascii_lowercase())
}

type ByEmail = HashMap<String, (CustomerId, i64)>;
