//! Users of the caller's company. Changes that affect authentication wait
//! for the users view before answering, so they take effect at once.
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use commands::{accounts, passwords};
use domain::user::{User, UserCommand};
use domain::values::{Email, PersonName, Role, Title};
use domain::{CompanyId, UserId};
use projections::consistency::ConsistencyToken;
use projections::read::users::UserRow;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{found, no_content, timestamp, PageParams, Reply};
use crate::caller::Caller;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{nullable, IdempotencyKey, IfMatch, Json, Path, Query, WaitFor};
use crate::state::AppState;
use crate::validate::Fields;

#[derive(Clone, Serialize, ToSchema)]
pub struct UserDto {
    #[schema(format = Uuid)]
    pub id: String,
    #[schema(format = Uuid)]
    pub company_id: String,
    pub email: String,
    pub name: String,
    pub surname: Option<String>,
    pub title: Option<String>,
    #[schema(schema_with = crate::spec::role)]
    pub role: String,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub updated_at: String,
    pub version: i64,
}

impl From<UserRow> for UserDto {
    fn from(row: UserRow) -> Self {
        Self {
            id: row.id.to_string(),
            company_id: row.company_id.to_string(),
            email: row.email,
            name: row.name,
            surname: row.surname,
            title: row.title,
            role: row.role,
            created_at: timestamp(&row.created_at),
            updated_at: timestamp(&row.updated_at),
            version: row.last_seq,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct UserPage {
    items: Vec<UserDto>,
    next_cursor: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    #[schema(schema_with = crate::spec::email, required = true)]
    email: Option<String>,
    #[schema(schema_with = crate::spec::person_name, required = true)]
    name: Option<String>,
    #[schema(schema_with = crate::spec::person_name_nullable)]
    surname: Option<String>,
    #[schema(schema_with = crate::spec::title_nullable)]
    title: Option<String>,
    #[schema(schema_with = crate::spec::password, required = true)]
    password: Option<String>,
    #[schema(schema_with = crate::spec::role, required = true)]
    role: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateUser {
    /// Omit to keep it; it cannot be cleared (`null` is `422`).
    #[serde(default, deserialize_with = "nullable")]
    #[schema(schema_with = crate::spec::person_name, required = false)]
    name: Option<Option<String>>,
    /// Omit to keep it; `null` clears it.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(schema_with = crate::spec::person_name_nullable, required = false)]
    surname: Option<Option<String>>,
    /// Omit to keep it; `null` clears it.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(schema_with = crate::spec::title_nullable, required = false)]
    title: Option<Option<String>>,
    /// Omit to keep it; it cannot be cleared (`null` is `422`).
    #[serde(default, deserialize_with = "nullable")]
    #[schema(schema_with = crate::spec::email, required = false)]
    email: Option<Option<String>>,
    /// Omit to keep it; `null` is `422`.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(schema_with = crate::spec::password, required = false)]
    password: Option<Option<String>>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeRole {
    #[schema(schema_with = crate::spec::role, required = true)]
    role: Option<String>,
}

/// The user as the view shows it, with its version.
pub async fn load_user(state: &AppState, caller: &Caller, id: UserId) -> ApiResult<(UserDto, i64)> {
    let row = found(projections::read::users::get(state.pool(), caller.company_id, id).await?)?;
    let version = row.last_seq;
    Ok((row.into(), version))
}

/// The user at (at least) `version`: the view's row, or, while the views
/// lag behind that write, the user folded from its events (a committed
/// write is never answered with a 404). The security stamp comes with a
/// folded user (the view's is in its credentials).
pub async fn fresh_user(
    state: &AppState,
    company: CompanyId,
    id: UserId,
    version: u64,
) -> ApiResult<(UserDto, Option<i64>)> {
    if let Some(row) = projections::read::users::get(state.pool(), company, id).await? {
        if row.last_seq >= version as i64 {
            return Ok((row.into(), None));
        }
    }
    let row = found(projections::read::users::from_log(state.commands.db(), company, id).await?)?;
    let stamp = row.security_stamp;
    let row = projections::read::users::UserRow::try_from(row).map_err(ApiError::internal)?;
    Ok((row.into(), Some(stamp)))
}

/// Waits for the user's view, then answers with it.
async fn reply_user(
    state: &AppState,
    caller: &Caller,
    id: UserId,
    version: u64,
    status: StatusCode,
) -> ApiResult<Reply<UserDto>> {
    let token = ConsistencyToken::applied::<User>(id, version);
    let stale = state.await_token(caller.company_id, Some(&token)).await;
    let (user, _) = fresh_user(state, caller.company_id, id, version).await?;
    Ok(Reply::ok(user)
        .status(status)
        .version(version as i64)
        .token(token)
        .stale(stale)
        .location(format!("/v1/users/{id}")))
}

/// Users of the caller's company, oldest first.
#[utoipa::path(get, path = "/v1/users", tag = "users", security(("bearer" = [])), params(PageParams, ("X-Consistency-Token" = Option<String>, Header)),
    responses((status = 200, body = UserPage)))]
pub async fn list_users(
    State(state): State<AppState>,
    caller: Caller,
    WaitFor(wait): WaitFor,
    Query(page): Query<PageParams>,
) -> ApiResult<Reply<UserPage>> {
    let stale = state.await_token(caller.company_id, wait.as_ref()).await;
    let scope = format!("{}/users", caller.company_id);
    let after = page
        .cursor
        .as_deref()
        .map(|c| crate::cursor::decode(&state.settings.cursor_key, &scope, c))
        .transpose()?;
    let (rows, next) = projections::read::users::list(
        state.pool(),
        caller.company_id,
        after.as_ref(),
        page.limit()?,
    )
    .await?;
    Ok(Reply::ok(UserPage {
        items: rows.into_iter().map(UserDto::from).collect(),
        next_cursor: next.map(|k| crate::cursor::encode(&state.settings.cursor_key, &scope, &k)),
    })
    .stale(stale))
}

/// Adds a user to the company (admins only).
#[utoipa::path(post, path = "/v1/users", tag = "users", security(("bearer" = [])), request_body = CreateUser,
    params(("Idempotency-Key" = Option<String>, Header)),
    responses(
        (status = 201, body = UserDto),
        (status = 403, body = Problem, description = "Only admins may do this"),
        (status = 409, body = Problem, description = "The email is taken, or the user an Idempotency-Key created was removed since"),
        (status = 422, body = Problem)))]
pub async fn create_user(
    State(state): State<AppState>,
    caller: Caller,
    IdempotencyKey(key): IdempotencyKey,
    Json(body): Json<CreateUser>,
) -> ApiResult<Reply<UserDto>> {
    caller.require_admin()?;
    let digest = key.as_ref().map(|_| body.digest());
    let new = body.validated()?;
    let user_id = match key.as_deref() {
        Some(key) => crate::idempotency::derived_id::<User>(caller.company_id, key),
        None => UserId(Uuid::now_v7()),
    };
    let ctx = caller.context().with_request_digest(digest.clone());
    let (email, role) = (new.email.clone(), new.role);
    let register = new.register(user_id, caller.company_id).await?;
    let created =
        accounts::create_user(&state.commands, &ctx, user_id, register, &email, role).await;
    let version = match created {
        Ok(outcome) => outcome.version,
        Err(commands::CommandError::Domain(accounts::AccountError::User(
            domain::user::UserError::AlreadyExists,
        ))) if key.is_some() => created_before(&state, &caller, user_id, digest.as_deref()).await?,
        Err(error) => return Err(error.into()),
    };
    reply_user(&state, &caller, user_id, version, StatusCode::CREATED).await
}

/// A new user's validated fields.
struct NewUser {
    email: Email,
    name: PersonName,
    surname: Option<PersonName>,
    title: Option<Title>,
    password: String,
    role: Role,
}

impl NewUser {
    /// The command that registers this user (its password hashed).
    async fn register(self, user_id: UserId, company_id: CompanyId) -> ApiResult<UserCommand> {
        let password_hash = passwords::hash(self.password)
            .await
            .map_err(ApiError::internal)?;
        Ok(UserCommand::Register {
            user_id,
            company_id,
            email: self.email,
            name: self.name,
            surname: self.surname,
            title: self.title,
            role: self.role,
            password_hash,
        })
    }
}

impl CreateUser {
    /// What an `Idempotency-Key` stands for. The password stays out: the
    /// digest is stored in the event log.
    fn digest(&self) -> String {
        crate::idempotency::digest(&(
            &self.email,
            &self.name,
            &self.surname,
            &self.title,
            &self.role,
        ))
    }

    /// The validated fields, or every invalid one as one `422`.
    fn validated(&self) -> ApiResult<NewUser> {
        let mut fields = Fields::default();
        let email = fields.required("email", self.email.as_deref(), Email::parse);
        let name = fields.required("name", self.name.as_deref(), PersonName::parse);
        let surname = fields.optional("surname", self.surname.as_deref(), PersonName::parse);
        let title = fields.optional("title", self.title.as_deref(), Title::parse);
        let password = fields.password("password", self.password.as_deref());
        let role = fields.required("role", self.role.as_deref(), Role::parse);
        let (email, name, password, role) = fields.finish_with((email, name, password, role))?;
        Ok(NewUser {
            email,
            name,
            surname,
            title,
            password,
            role,
        })
    }
}

/// A repeat of the same `Idempotency-Key`: the version to answer with as the
/// first time (`409` if the user is gone since, or another request took the id).
async fn created_before(
    state: &AppState,
    caller: &Caller,
    user_id: UserId,
    digest: Option<&str>,
) -> ApiResult<u64> {
    let id_text = user_id.to_string();
    let first =
        crate::idempotency::first_result::<User>(state, caller.company_id, &id_text, digest);
    match first.await? {
        Some((user, _)) if user.removed => Err(ApiError::conflict(
            "the user this Idempotency-Key created has been removed since",
        )),
        Some((_, version)) => Ok(version),
        None => Err(ApiError::conflict(
            "this Idempotency-Key was used for another request",
        )),
    }
}

/// One user of the company.
#[utoipa::path(get, path = "/v1/users/{id}", tag = "users", security(("bearer" = [])), params(("id" = Uuid, Path), ("X-Consistency-Token" = Option<String>, Header)),
    responses((status = 200, body = UserDto), (status = 404, body = Problem, description = "No such user in the caller's company")))]
pub async fn get_user(
    State(state): State<AppState>,
    caller: Caller,
    WaitFor(wait): WaitFor,
    Path(id): Path<Uuid>,
) -> ApiResult<Reply<UserDto>> {
    let stale = state.await_token(caller.company_id, wait.as_ref()).await;
    let (user, version) = load_user(&state, &caller, UserId(id)).await?;
    Ok(Reply::ok(user).version(version).stale(stale))
}

/// Changes a user's profile, email or password (admins, or the user itself).
#[utoipa::path(patch, path = "/v1/users/{id}", tag = "users", security(("bearer" = [])), params(("id" = Uuid, Path), ("If-Match" = Option<String>, Header)),
    request_body = UpdateUser,
    responses((status = 200, body = UserDto),
        (status = 403, body = Problem, description = "Only admins may change other users"),
        (status = 404, body = Problem, description = "No such user in the caller's company"),
        (status = 409, body = Problem, description = "The email is taken, or the user changed concurrently"),
        (status = 412, body = Problem, description = "The If-Match version is stale"), (status = 422, body = Problem)))]
pub async fn update_user(
    State(state): State<AppState>,
    caller: Caller,
    IfMatch(expected): IfMatch,
    Path(id): Path<Uuid>,
    Json(body): Json<UpdateUser>,
) -> ApiResult<Reply<UserDto>> {
    let id = UserId(id);
    if caller.user_id != id {
        caller.require_admin()?;
    }
    let update = parse_update(body)?;
    let version =
        accounts::update_user(&state.commands, &caller.context(), id, update, expected).await?;
    reply_user(&state, &caller, id, version, StatusCode::OK).await
}

/// The body's changes as domain values, every invalid field reported at once.
fn parse_update(body: UpdateUser) -> ApiResult<accounts::UserUpdate> {
    let mut fields = Fields::default();
    let name = fields.not_null("name", body.name, PersonName::parse);
    let surname = fields.nullable("surname", body.surname, PersonName::parse);
    let title = fields.nullable("title", body.title, Title::parse);
    let email = fields.not_null("email", body.email, Email::parse);
    let password = match body.password {
        None => None,
        Some(None) => {
            fields.error("password", "must not be null");
            None
        }
        Some(raw) => fields.password("password", raw.as_deref()),
    };
    fields.finish()?;
    Ok(accounts::UserUpdate {
        name,
        surname,
        title,
        email,
        password,
    })
}

/// Makes a user an admin or a plain user (admins only); the last admin cannot be demoted.
#[utoipa::path(put, path = "/v1/users/{id}/role", tag = "users", security(("bearer" = [])), params(("id" = Uuid, Path), ("If-Match" = Option<String>, Header)),
    request_body = ChangeRole,
    responses((status = 200, body = UserDto),
        (status = 403, body = Problem, description = "Only admins may do this"),
        (status = 404, body = Problem, description = "No such user in the caller's company"),
        (status = 409, body = Problem, description = "The company would lose its last admin"),
        (status = 412, body = Problem, description = "The If-Match version is stale"), (status = 422, body = Problem)))]
pub async fn change_role(
    State(state): State<AppState>,
    caller: Caller,
    IfMatch(expected): IfMatch,
    Path(id): Path<Uuid>,
    Json(body): Json<ChangeRole>,
) -> ApiResult<Reply<UserDto>> {
    caller.require_admin()?;
    let mut fields = Fields::default();
    let role = fields.required("role", body.role.as_deref(), Role::parse);
    let role = fields.finish_with(role)?;
    let id = UserId(id);
    let outcome =
        accounts::change_role(&state.commands, &caller.context(), id, role, expected).await?;
    reply_user(&state, &caller, id, outcome.version, StatusCode::OK).await
}

/// Removes a user (admins only); its tokens stop working at once.
#[utoipa::path(delete, path = "/v1/users/{id}", tag = "users", security(("bearer" = [])), params(("id" = Uuid, Path), ("If-Match" = Option<String>, Header)),
    responses((status = 204, description = "Removed; its tokens stop working at once"),
        (status = 403, body = Problem, description = "Only admins may do this"),
        (status = 404, body = Problem, description = "No such user in the caller's company"),
        (status = 409, body = Problem, description = "The company would lose its last admin"),
        (status = 412, body = Problem, description = "The If-Match version is stale")))]
pub async fn delete_user(
    State(state): State<AppState>,
    caller: Caller,
    IfMatch(expected): IfMatch,
    Path(id): Path<Uuid>,
) -> ApiResult<Response> {
    caller.require_admin()?;
    let id = UserId(id);
    let outcome = accounts::remove_user(&state.commands, &caller.context(), id, expected).await?;
    let token = ConsistencyToken::applied::<User>(id, outcome.version);
    state.await_token(caller.company_id, Some(&token)).await;
    Ok(no_content(token))
}
