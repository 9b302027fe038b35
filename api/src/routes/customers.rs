//! Customers: CRUD, soft delete and restore, photo attach/detach (upload
//! flow option 1), and the audit history read from the event stream.
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use commands::external_ids;
use commands::photos::{self, PhotoChange, PhotoChangeError};
use commands::CommandError;
use domain::customer::{Customer, CustomerCommand, CustomerDetails, CustomerError, DetailsChange};
use domain::photo::Photo;
use domain::values::{Email, ExternalId, Notes, PersonName, Phone};
use domain::{CompanyId, CustomerId, PhotoId};
use projections::consistency::ConsistencyToken;
use projections::read::customers::CustomerRow;
use projections::views::customers::Customers;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{found, no_content, timestamp, Reply};
use crate::caller::Caller;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{nullable, IdempotencyKey, IfMatch, Json, Path, WaitFor};
use crate::photo_urls::PhotoUrls;
use crate::state::AppState;
use crate::validate::Fields;

#[derive(Clone, Serialize, ToSchema)]
pub struct PhotoRef {
    #[schema(format = Uuid)]
    pub id: String,
    pub url: String,
    pub content_type: String,
    pub size: i64,
}

#[derive(Clone, Serialize, ToSchema)]
pub struct CustomerDto {
    #[schema(format = Uuid)]
    pub id: String,
    #[schema(format = Uuid)]
    pub company_id: String,
    pub name: String,
    pub surname: String,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub notes: Option<String>,
    /// The customer's key in another system, unique in the company.
    pub external_id: Option<String>,
    pub photo: Option<PhotoRef>,
    #[schema(format = Uuid)]
    pub created_by: String,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = Uuid)]
    pub updated_by: String,
    #[schema(format = DateTime)]
    pub updated_at: String,
    #[schema(format = DateTime)]
    pub deleted_at: Option<String>,
    pub version: i64,
}

impl CustomerDto {
    /// The customer of `row`; its photo's `url` is signed, usable without a token.
    pub fn new(row: CustomerRow, urls: &PhotoUrls) -> Self {
        let photo_id = row.photo_id.as_deref().and_then(|id| id.parse().ok());
        let photo = match (photo_id, row.photo_content_type, row.photo_size) {
            (Some(id), Some(content_type), Some(size)) => Some(PhotoRef {
                url: urls.url(row.company_id, id),
                id: id.to_string(),
                content_type,
                size,
            }),
            _ => None,
        };
        Self {
            id: row.id.to_string(),
            company_id: row.company_id.to_string(),
            name: row.name,
            surname: row.surname,
            email: row.email,
            phone: row.phone,
            notes: row.notes,
            external_id: row.external_id,
            photo,
            created_by: row.created_by.to_string(),
            created_at: timestamp(&row.created_at),
            updated_by: row.updated_by.to_string(),
            updated_at: timestamp(&row.updated_at),
            deleted_at: row.deleted_at.as_deref().map(timestamp),
            version: row.last_seq,
        }
    }
}

#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCustomer {
    /// A UUID the client chose; taken ids are `409`.
    id: Option<Uuid>,
    #[schema(schema_with = crate::spec::person_name, required = true)]
    name: Option<String>,
    #[schema(schema_with = crate::spec::person_name, required = true)]
    surname: Option<String>,
    #[schema(schema_with = crate::spec::email_nullable)]
    email: Option<String>,
    #[schema(schema_with = crate::spec::phone_nullable)]
    phone: Option<String>,
    #[schema(schema_with = crate::spec::notes_nullable)]
    notes: Option<String>,
    #[schema(schema_with = crate::spec::external_id_nullable)]
    external_id: Option<String>,
    /// An uploaded photo of the caller's company to show (`404` if there is none).
    photo_id: Option<Uuid>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateCustomer {
    /// Omit to keep it; it cannot be cleared (`null` is `422`).
    #[serde(default, deserialize_with = "nullable")]
    #[schema(schema_with = crate::spec::person_name, required = false)]
    name: Option<Option<String>>,
    /// Omit to keep it; it cannot be cleared (`null` is `422`).
    #[serde(default, deserialize_with = "nullable")]
    #[schema(schema_with = crate::spec::person_name, required = false)]
    surname: Option<Option<String>>,
    /// Omit to keep it; `null` clears it.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(schema_with = crate::spec::email_nullable, required = false)]
    email: Option<Option<String>>,
    /// Omit to keep it; `null` clears it.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(schema_with = crate::spec::phone_nullable, required = false)]
    phone: Option<Option<String>>,
    /// Omit to keep it; `null` clears it.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(schema_with = crate::spec::notes_nullable, required = false)]
    notes: Option<Option<String>>,
    /// Omit to keep it; `null` clears it (and frees it for another customer).
    #[serde(default, deserialize_with = "nullable")]
    #[schema(schema_with = crate::spec::external_id_nullable, required = false)]
    external_id: Option<Option<String>>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetPhoto {
    photo_id: Uuid,
}

#[derive(Serialize, ToSchema)]
pub struct HistoryEntry {
    sequence: i64,
    #[serde(rename = "type")]
    kind: String,
    #[schema(format = DateTime)]
    occurred_at: Option<String>,
    #[schema(format = Uuid)]
    user_id: Option<String>,
    changes: Value,
}

#[derive(Serialize, ToSchema)]
pub struct History {
    items: Vec<HistoryEntry>,
}

/// Answers a write with the customer as its events leave it (folded from
/// its stream). It never waits for a view; the token lets a later read wait
/// for one.
async fn reply_customer(
    state: &AppState,
    caller: &Caller,
    id: CustomerId,
    token: ConsistencyToken,
    version: u64,
    status: StatusCode,
) -> ApiResult<Reply<CustomerDto>> {
    let row = customer_from_store(state, caller, id).await?;
    reply_with(state, caller, row, token, version, status).await
}

/// Answers a write with `row`, the customer as the write left it.
async fn reply_with(
    state: &AppState,
    caller: &Caller,
    row: CustomerRow,
    token: ConsistencyToken,
    version: u64,
    status: StatusCode,
) -> ApiResult<Reply<CustomerDto>> {
    let location = format!("/v1/customers/{}", row.id);
    let row = with_photo_details(state, caller, row).await?;
    Ok(Reply::ok(CustomerDto::new(row, &state.settings.photo_urls))
        .status(status)
        .version(version as i64)
        .token(token)
        .location(location))
}

/// The customer folded from its events.
async fn customer_from_store(
    state: &AppState,
    caller: &Caller,
    id: CustomerId,
) -> ApiResult<CustomerRow> {
    let db = state.commands.db();
    let events =
        commands::events::read_company_stream::<Customer>(db, caller.company_id, &id.to_string())
            .await?;
    let row = projections::views::fold_events::<Customers>(&events).map_err(ApiError::internal)?;
    CustomerRow::try_from(found(row)?).map_err(ApiError::internal)
}

/// Fills in the photo's type and size (they live in the photo's events).
async fn with_photo_details(
    state: &AppState,
    caller: &Caller,
    mut row: CustomerRow,
) -> ApiResult<CustomerRow> {
    if let Some(photo_id) = &row.photo_id {
        let photo = state
            .commands
            .load::<Photo>(photo_id, caller.company_id)
            .await?;
        if let Some(image) = photo.and_then(|(photo, _)| photo.image) {
            row.photo_content_type = Some(image.content_type.mime().to_owned());
            row.photo_size = Some(image.size as i64);
        }
    }
    Ok(row)
}

/// Creates a customer.
#[utoipa::path(post, path = "/v1/customers", tag = "customers", security(("bearer" = [])), request_body = CreateCustomer,
    params(("Idempotency-Key" = Option<String>, Header)),
    responses((status = 201, body = CustomerDto),
        (status = 404, body = Problem, description = "No such photo in the caller's company"),
        (status = 409, body = Problem, description = "The id is taken, or the photo is attached elsewhere or rejected"),
        (status = 422, body = Problem)))]
pub async fn create_customer(
    State(state): State<AppState>,
    caller: Caller,
    IdempotencyKey(key): IdempotencyKey,
    Json(body): Json<CreateCustomer>,
) -> ApiResult<Reply<CustomerDto>> {
    let digest = key.as_ref().map(|_| crate::idempotency::digest(&body));
    let id = new_customer_id(body.id, key.as_deref(), caller.company_id);
    let details = body.details()?;
    let external_id = details.external_id.clone();
    let register = CustomerCommand::Register {
        customer_id: id,
        company_id: caller.company_id,
        details,
        photo: body.photo_id.map(PhotoId),
        by: caller.user_id,
    };
    let ctx = caller.context().with_request_digest(digest.clone());
    let claimed = match &external_id {
        Some(external_id) => external_ids::claim(&state.commands, &ctx, external_id, id).await?,
        None => false,
    };
    let outcome = photos::register_customer(&state.commands, &ctx, id, register).await;
    if let (Err(_), Some(external_id), true) = (&outcome, &external_id, claimed) {
        external_ids::release(&state.commands, &ctx, external_id, id).await;
    }
    let registered = match outcome {
        Ok(change) => Registered::from_change(id, &ctx, change)?,
        Err(CommandError::Domain(PhotoChangeError::Customer(CustomerError::AlreadyExists)))
            if key.is_some() =>
        {
            Registered {
                version: registered_before(&state, &caller, id, digest.as_deref()).await?,
                photos: vec![],
                row: None,
            }
        }
        Err(error) => return Err(error.into()),
    };
    let Registered {
        version,
        photos,
        row,
    } = registered;
    let token = photo_token(id, version, &photos);
    match row {
        // A new customer: its reply needs no read.
        Some(row) => reply_with(&state, &caller, row, token, version, StatusCode::CREATED).await,
        None => reply_customer(&state, &caller, id, token, version, StatusCode::CREATED).await,
    }
}

/// The id the client chose, or one derived from its `Idempotency-Key` (so a
/// repeat names the same customer), or a fresh one.
fn new_customer_id(chosen: Option<Uuid>, key: Option<&str>, company: CompanyId) -> CustomerId {
    match (chosen, key) {
        (Some(id), _) => CustomerId(id),
        (None, Some(key)) => crate::idempotency::derived_id::<Customer>(company, key),
        (None, None) => CustomerId(Uuid::now_v7()),
    }
}

impl CreateCustomer {
    /// The validated details, or every invalid field as one `422`.
    fn details(&self) -> ApiResult<CustomerDetails> {
        customer_details(NewDetails {
            name: self.name.as_deref(),
            surname: self.surname.as_deref(),
            email: self.email.as_deref(),
            phone: self.phone.as_deref(),
            notes: self.notes.as_deref(),
            external_id: self.external_id.as_deref(),
        })
    }
}

/// The text of a new customer's fields, as a request or an imported row gives it.
#[derive(Clone, Copy, Default)]
pub struct NewDetails<'a> {
    pub name: Option<&'a str>,
    pub surname: Option<&'a str>,
    pub email: Option<&'a str>,
    pub phone: Option<&'a str>,
    pub notes: Option<&'a str>,
    pub external_id: Option<&'a str>,
}

/// The validated details of a new customer, or every invalid field as one `422`.
pub fn customer_details(raw: NewDetails<'_>) -> ApiResult<CustomerDetails> {
    let mut fields = Fields::default();
    let name = fields.required("name", raw.name, PersonName::parse);
    let surname = fields.required("surname", raw.surname, PersonName::parse);
    let email = fields.optional("email", raw.email, Email::parse);
    let phone = fields.optional("phone", raw.phone, Phone::parse);
    let notes = fields.optional("notes", raw.notes, Notes::parse);
    let external_id = fields.optional("external_id", raw.external_id, ExternalId::parse);
    let (name, surname) = fields.finish_with((name, surname))?;
    Ok(CustomerDetails {
        name,
        surname,
        email,
        phone,
        notes,
        external_id,
    })
}

/// A registration's version, the photos it claimed and, when the customer's
/// whole stream is the events just written, its row folded from them alone.
struct Registered {
    version: u64,
    photos: Vec<(PhotoId, u64)>,
    row: Option<CustomerRow>,
}

impl Registered {
    fn from_change(
        id: CustomerId,
        ctx: &commands::CommandContext,
        PhotoChange { customer, photos }: PhotoChange,
    ) -> ApiResult<Self> {
        let row = if customer.version as usize == customer.events.len() {
            projections::views::fold_new::<Customers>(
                &id.to_string(),
                &ctx.occurred_at_text(),
                customer.events,
            )
            .map_err(ApiError::internal)?
            .map(CustomerRow::try_from)
            .transpose()
            .map_err(ApiError::internal)?
        } else {
            None
        };
        Ok(Self {
            version: customer.version,
            photos,
            row,
        })
    }
}

/// A repeat of the same `Idempotency-Key`: the version to answer with as the
/// first time (`409` if another request registered the id).
async fn registered_before(
    state: &AppState,
    caller: &Caller,
    id: CustomerId,
    digest: Option<&str>,
) -> ApiResult<u64> {
    let id_text = id.to_string();
    let first =
        crate::idempotency::first_result::<Customer>(state, caller.company_id, &id_text, digest);
    match first.await? {
        Some((_, version)) => Ok(version),
        None => Err(ApiError::conflict("a customer with this id already exists")),
    }
}

impl From<commands::events::StoredEvent> for HistoryEntry {
    /// The event's fields as changed, without the ones every event carries.
    fn from(event: commands::events::StoredEvent) -> Self {
        let mut changes = event
            .payload
            .as_object()
            .and_then(|o| o.values().next().cloned())
            .unwrap_or(Value::Null);
        if let Some(object) = changes.as_object_mut() {
            object.remove("company_id");
            object.remove("by");
            if let Some(Value::Object(change)) = object.remove("change") {
                object.extend(change);
            }
        }
        HistoryEntry {
            sequence: event.sequence,
            occurred_at: event
                .meta(commands::context::META_OCCURRED_AT)
                .map(timestamp),
            user_id: event
                .meta(commands::context::META_USER_ID)
                .map(str::to_owned),
            kind: event.event_type,
            changes,
        }
    }
}

/// One customer (a deleted one too, with `deleted_at` set).
#[utoipa::path(get, path = "/v1/customers/{id}", tag = "customers", security(("bearer" = [])), params(("id" = Uuid, Path), ("X-Consistency-Token" = Option<String>, Header)),
    responses((status = 200, body = CustomerDto), (status = 404, body = Problem, description = "No such customer in the caller's company")))]
pub async fn get_customer(
    State(state): State<AppState>,
    caller: Caller,
    WaitFor(wait): WaitFor,
    Path(id): Path<Uuid>,
) -> ApiResult<Reply<CustomerDto>> {
    let stale = state.await_token(caller.company_id, wait.as_ref()).await;
    let row = found(
        projections::read::customers::get(state.pool(), caller.company_id, CustomerId(id)).await?,
    )?;
    let version = row.last_seq;
    Ok(Reply::ok(CustomerDto::new(row, &state.settings.photo_urls))
        .version(version)
        .stale(stale))
}

/// Changes any subset of the writable fields; `null` clears an optional one.
#[utoipa::path(patch, path = "/v1/customers/{id}", tag = "customers", security(("bearer" = [])), params(("id" = Uuid, Path), ("If-Match" = Option<String>, Header)),
    request_body = UpdateCustomer,
    responses((status = 200, body = CustomerDto), (status = 404, body = Problem, description = "No such customer in the caller's company"),
        (status = 409, body = Problem, description = "The customer is deleted, or changed concurrently"),
        (status = 412, body = Problem, description = "The If-Match version is stale"), (status = 422, body = Problem)))]
pub async fn update_customer(
    State(state): State<AppState>,
    caller: Caller,
    IfMatch(expected): IfMatch,
    Path(id): Path<Uuid>,
    Json(body): Json<UpdateCustomer>,
) -> ApiResult<Reply<CustomerDto>> {
    let mut fields = Fields::default();
    let change = DetailsChange {
        name: fields.not_null("name", body.name, PersonName::parse),
        surname: fields.not_null("surname", body.surname, PersonName::parse),
        email: fields.nullable("email", body.email, Email::parse),
        phone: fields.nullable("phone", body.phone, Phone::parse),
        notes: fields.nullable("notes", body.notes, Notes::parse),
        external_id: fields.nullable("external_id", body.external_id, ExternalId::parse),
    };
    fields.finish()?;
    let id = CustomerId(id);
    let outcome =
        external_ids::change_details(&state.commands, &caller.context(), id, change, expected)
            .await?;
    let token = ConsistencyToken::applied::<Customer>(id, outcome.version);
    reply_customer(&state, &caller, id, token, outcome.version, StatusCode::OK).await
}

/// Soft-deletes a customer: it leaves the default list.
#[utoipa::path(delete, path = "/v1/customers/{id}", tag = "customers", security(("bearer" = [])), params(("id" = Uuid, Path), ("If-Match" = Option<String>, Header)),
    responses((status = 204, description = "Deleted (soft: an event; restorable)"), (status = 404, body = Problem, description = "No such customer in the caller's company"),
        (status = 409, body = Problem, description = "Already deleted, or changed concurrently"), (status = 412, body = Problem, description = "The If-Match version is stale")))]
pub async fn delete_customer(
    State(state): State<AppState>,
    caller: Caller,
    IfMatch(expected): IfMatch,
    Path(id): Path<Uuid>,
) -> ApiResult<Response> {
    let id = CustomerId(id);
    let command = CustomerCommand::Delete { by: caller.user_id };
    let outcome = state
        .commands
        .execute::<Customer>(&id.to_string(), command, &caller.context(), expected)
        .await?;
    let token = ConsistencyToken::applied::<Customer>(id, outcome.version);
    Ok(no_content(token))
}

/// Restores a deleted customer.
#[utoipa::path(post, path = "/v1/customers/{id}/restore", tag = "customers", security(("bearer" = [])), params(("id" = Uuid, Path), ("If-Match" = Option<String>, Header)),
    responses((status = 200, body = CustomerDto), (status = 404, body = Problem, description = "No such customer in the caller's company"),
        (status = 409, body = Problem, description = "Not deleted, or changed concurrently"), (status = 412, body = Problem, description = "The If-Match version is stale")))]
pub async fn restore_customer(
    State(state): State<AppState>,
    caller: Caller,
    IfMatch(expected): IfMatch,
    Path(id): Path<Uuid>,
) -> ApiResult<Reply<CustomerDto>> {
    let id = CustomerId(id);
    let command = CustomerCommand::Restore { by: caller.user_id };
    let outcome = state
        .commands
        .execute::<Customer>(&id.to_string(), command, &caller.context(), expected)
        .await?;
    let token = ConsistencyToken::applied::<Customer>(id, outcome.version);
    reply_customer(&state, &caller, id, token, outcome.version, StatusCode::OK).await
}

/// Shows an uploaded photo on the customer (upload flow, option 1); the
/// previous photo is detached.
#[utoipa::path(put, path = "/v1/customers/{id}/photo", tag = "customers", security(("bearer" = [])), params(("id" = Uuid, Path), ("If-Match" = Option<String>, Header)),
    request_body = SetPhoto,
    responses((status = 200, body = CustomerDto),
        (status = 404, body = Problem, description = "No such customer or photo in the caller's company"),
        (status = 409, body = Problem, description = "The customer is deleted, or the photo is attached elsewhere or rejected"),
        (status = 412, body = Problem, description = "The If-Match version is stale")))]
pub async fn set_photo(
    State(state): State<AppState>,
    caller: Caller,
    IfMatch(expected): IfMatch,
    Path(id): Path<Uuid>,
    Json(body): Json<SetPhoto>,
) -> ApiResult<Reply<CustomerDto>> {
    let id = CustomerId(id);
    let photo = PhotoId(body.photo_id);
    let change = photos::attach_photo(
        &state.commands,
        &caller.context(),
        id,
        photo,
        caller.user_id,
        expected,
    )
    .await?;
    reply_photo_change(&state, &caller, id, change).await
}

/// Removes the customer's photo.
#[utoipa::path(delete, path = "/v1/customers/{id}/photo", tag = "customers", security(("bearer" = [])), params(("id" = Uuid, Path), ("If-Match" = Option<String>, Header)),
    responses((status = 200, body = CustomerDto), (status = 404, body = Problem, description = "No such customer in the caller's company"),
        (status = 409, body = Problem, description = "The customer is deleted, or changed concurrently"), (status = 412, body = Problem, description = "The If-Match version is stale")))]
pub async fn remove_photo(
    State(state): State<AppState>,
    caller: Caller,
    IfMatch(expected): IfMatch,
    Path(id): Path<Uuid>,
) -> ApiResult<Reply<CustomerDto>> {
    let id = CustomerId(id);
    let change = photos::remove_photo(
        &state.commands,
        &caller.context(),
        id,
        caller.user_id,
        expected,
    )
    .await?;
    reply_photo_change(&state, &caller, id, change).await
}

/// A customer's write and the photos it touched, as one consistency token.
fn photo_token(id: CustomerId, version: u64, photos: &[(PhotoId, u64)]) -> ConsistencyToken {
    photos.iter().fold(
        ConsistencyToken::applied::<Customer>(id, version),
        |token, (photo, version)| token.and(ConsistencyToken::applied::<Photo>(*photo, *version)),
    )
}

async fn reply_photo_change(
    state: &AppState,
    caller: &Caller,
    id: CustomerId,
    change: PhotoChange,
) -> ApiResult<Reply<CustomerDto>> {
    let version = change.customer.version;
    let token = photo_token(id, version, &change.photos);
    reply_customer(state, caller, id, token, version, StatusCode::OK).await
}

/// The customer's events, oldest first: who changed what, when.
#[utoipa::path(get, path = "/v1/customers/{id}/history", tag = "customers", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 200, body = History), (status = 404, body = Problem, description = "No such customer in the caller's company")))]
pub async fn customer_history(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> ApiResult<Reply<History>> {
    let db = state.commands.db();
    let events =
        commands::events::read_company_stream::<Customer>(db, caller.company_id, &id.to_string())
            .await?;
    if events.is_empty() {
        return Err(ApiError::not_found());
    }
    let items = events.into_iter().map(HistoryEntry::from).collect();
    Ok(Reply::ok(History { items }))
}
