//! Signup, tokens (login, refresh, logout) and `/v1/me`.
use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use commands::{accounts, passwords, CommandContext};
use domain::user::UserCommand;
use domain::values::{CompanyName, Email, PersonName, Role};
use domain::{CompanyId, UserId};
use projections::consistency::ConsistencyToken;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use utoipa::ToSchema;
use uuid::Uuid;

use super::company::CompanyDto;
use super::users::{load_user, UserDto};
use super::Reply;
use crate::caller::{Caller, CallerKind};
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{Json, WaitFor};
use crate::ratelimit::LoginGate;
use crate::sessions;
use crate::state::AppState;
use crate::validate::Fields;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignupRequest {
    #[schema(schema_with = crate::spec::company_name, required = true)]
    company_name: Option<String>,
    #[schema(schema_with = crate::spec::person_name, required = true)]
    name: Option<String>,
    #[schema(schema_with = crate::spec::email, required = true)]
    email: Option<String>,
    #[schema(schema_with = crate::spec::password, required = true)]
    password: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct SignupResponse {
    company: CompanyDto,
    user: UserDto,
    #[serde(flatten)]
    tokens: TokenResponse,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    email: String,
    password: String,
}

#[derive(Serialize, ToSchema)]
pub struct TokenResponse {
    access_token: String,
    #[schema(value_type = String, pattern = "^Bearer$")]
    token_type: &'static str,
    /// Seconds the access token is valid.
    expires_in: u64,
    /// Exchange it at `/v1/auth/refresh` for new tokens; each use spends it.
    refresh_token: String,
    /// Seconds the refresh token is valid.
    refresh_expires_in: u64,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    refresh_token: String,
}

/// A new access token and the next refresh token of `family` (a new login
/// when `None`).
async fn issue_tokens(
    state: &AppState,
    user: UserId,
    company: CompanyId,
    security_stamp: i64,
    family: Option<&str>,
) -> ApiResult<TokenResponse> {
    let ttl = state.settings.token_ttl.as_secs();
    let refresh_ttl = state.settings.refresh_ttl.as_secs();
    let access_token =
        state
            .tokens
            .issue(&user.to_string(), &company.to_string(), security_stamp, ttl)?;
    let refresh_token = sessions::issue(
        state.pool(),
        family,
        user,
        company,
        security_stamp,
        refresh_ttl,
    )
    .await?;
    Ok(TokenResponse {
        access_token,
        token_type: "Bearer",
        expires_in: ttl,
        refresh_token,
        refresh_expires_in: refresh_ttl,
    })
}

/// Creates a company and its first admin, and logs the admin in.
#[utoipa::path(post, path = "/v1/signup", tag = "auth", request_body = SignupRequest,
    responses(
        (status = 201, body = SignupResponse),
        (status = 403, body = Problem, description = "Signup is disabled on this server"),
        (status = 409, body = Problem, description = "The email is taken"),
        (status = 422, body = Problem)))]
pub async fn signup(
    State(state): State<AppState>,
    Json(body): Json<SignupRequest>,
) -> ApiResult<Reply<SignupResponse>> {
    if !state.settings.signup_enabled {
        return Err(ApiError::Forbidden("signup is disabled on this server"));
    }
    let (company_name, name, email, password) = body.validated()?;
    let password_hash = passwords::hash(password)
        .await
        .map_err(ApiError::internal)?;
    let (company_id, user_id) = (CompanyId(Uuid::now_v7()), UserId(Uuid::now_v7()));
    let ctx = CommandContext::new(company_id, user_id, Uuid::now_v7());
    let register = UserCommand::Register {
        user_id: ctx.user_id,
        company_id: ctx.company_id,
        email: email.clone(),
        name,
        surname: None,
        title: None,
        role: Role::Admin,
        password_hash,
    };
    let (company, user) =
        accounts::sign_up(&state.commands, &ctx, company_name, register, &email).await?;
    let token =
        ConsistencyToken::applied::<domain::company::Company>(ctx.company_id, company.version).and(
            ConsistencyToken::applied::<domain::user::User>(ctx.user_id, user.version),
        );
    signed_up(&state, &ctx, token, user.version).await
}

/// The new account, logged in. Login must work at once: wait for the views
/// before answering. If they lag (the bus or the workers are down) the
/// account exists all the same: answer from its events (the token works
/// once the views catch up).
async fn signed_up(
    state: &AppState,
    ctx: &CommandContext,
    token: ConsistencyToken,
    user_version: u64,
) -> ApiResult<Reply<SignupResponse>> {
    let stale = state.await_token(ctx.company_id, Some(&token)).await;
    let (user, folded_stamp) =
        super::users::fresh_user(state, ctx.company_id, ctx.user_id, user_version).await?;
    let company = super::company::company_from_store(state, ctx.company_id).await?;
    let security_stamp = match folded_stamp {
        Some(stamp) => stamp,
        None => stored_stamp(state, ctx).await?,
    };
    let tokens = issue_tokens(state, ctx.user_id, ctx.company_id, security_stamp, None).await?;
    Ok(Reply::ok(SignupResponse {
        company,
        user,
        tokens,
    })
    .status(StatusCode::CREATED)
    .token(token)
    .stale(stale))
}

impl SignupRequest {
    /// The company name, admin name, email and password, or every invalid
    /// field as one `422`.
    fn validated(&self) -> ApiResult<(CompanyName, PersonName, Email, String)> {
        let mut fields = Fields::default();
        let company_name = fields.required(
            "company_name",
            self.company_name.as_deref(),
            CompanyName::parse,
        );
        let name = fields.required("name", self.name.as_deref(), PersonName::parse);
        let email = fields.required("email", self.email.as_deref(), Email::parse);
        let password = fields.password("password", self.password.as_deref());
        fields.finish_with((company_name, name, email, password))
    }
}

/// The user's security stamp as the users view holds it.
async fn stored_stamp(state: &AppState, ctx: &CommandContext) -> ApiResult<i64> {
    Ok(
        projections::read::users::credentials_by_id(state.pool(), ctx.company_id, ctx.user_id)
            .await?
            .ok_or_else(ApiError::not_found)?
            .security_stamp,
    )
}

/// Exchanges an email and password for an access token and a refresh token.
#[utoipa::path(post, path = "/v1/auth/token", tag = "auth", request_body = TokenRequest,
    responses(
        (status = 200, body = TokenResponse),
        (status = 401, body = Problem, description = "Wrong email or password (the same answer for both)"),
        (status = 429, body = Problem, description = "Too many failed logins for this email from this address, or from this address")))]
pub async fn token(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Json(body): Json<TokenRequest>,
) -> ApiResult<Reply<TokenResponse>> {
    let account = body.email.trim().to_lowercase();
    let address = peer.ip().to_string();
    login_gate(&state, &account, &address).await?;
    let credentials =
        projections::read::users::credentials_by_email(state.pool(), &account).await?;
    let hash = credentials.as_ref().map(|c| c.password_hash.clone());
    // Unknown email and wrong password cost the same and answer the same.
    let valid = passwords::verify(body.password, hash).await;
    let Some(credentials) = credentials.filter(|_| valid) else {
        state.login_throttle.failed(&account, &address);
        return Err(ApiError::Unauthenticated("invalid email or password"));
    };
    state.login_throttle.succeeded(&account, &address);
    let (user, company, stamp) = (
        credentials.id,
        credentials.company_id,
        credentials.security_stamp,
    );
    let tokens = issue_tokens(&state, user, company, stamp, None).await?;
    Ok(Reply::ok(tokens))
}

/// The login throttle's word on this account from this address: `429` while
/// it refuses, a pause after recent failures.
async fn login_gate(state: &AppState, account: &str, address: &str) -> ApiResult<()> {
    match state.login_throttle.gate(account, address) {
        LoginGate::Refuse(seconds) => Err(ApiError::RateLimited {
            detail: "too many failed logins; retry later".to_owned(),
            retry_after: seconds,
        }),
        LoginGate::Proceed(delay) => {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            Ok(())
        }
    }
}

/// Exchanges a refresh token for a new access token and the next refresh
/// token. The one sent is spent: using it again revokes every token of its
/// login, and so do logout and any change that ends the user's sessions.
#[utoipa::path(post, path = "/v1/auth/refresh", tag = "auth", request_body = RefreshRequest,
    responses(
        (status = 200, body = TokenResponse),
        (status = 401, body = Problem, description = "The refresh token is unknown, expired, spent or revoked, or the user's sessions ended")))]
pub async fn refresh(
    State(state): State<AppState>,
    Json(body): Json<RefreshRequest>,
) -> ApiResult<Reply<TokenResponse>> {
    let refused = || ApiError::Unauthenticated("the refresh token is invalid, expired or revoked");
    let session = sessions::spend(state.pool(), body.refresh_token.trim())
        .await?
        .map_err(|_| refused())?;
    let current = projections::read::users::credentials_by_id(
        state.pool(),
        session.company_id,
        session.user_id,
    )
    .await?
    .filter(|c| c.security_stamp == session.security_stamp);
    if current.is_none() {
        // Removed, demoted or re-passworded since the login: the login ends.
        sessions::revoke_family(state.pool(), &session.family).await?;
        return Err(refused());
    }
    let tokens = issue_tokens(
        &state,
        session.user_id,
        session.company_id,
        session.security_stamp,
        Some(&session.family),
    )
    .await?;
    Ok(Reply::ok(tokens))
}

/// Ends the login a refresh token belongs to (its access tokens expire on
/// their own, within their `expires_in`).
#[utoipa::path(post, path = "/v1/auth/logout", tag = "auth", security(("bearer" = [])), request_body = RefreshRequest,
    responses((status = 204, description = "The refresh token and its chain no longer work")))]
pub async fn logout(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<RefreshRequest>,
) -> ApiResult<StatusCode> {
    // A token of someone else is left alone, and the answer does not say so.
    sessions::revoke_for(state.pool(), body.refresh_token.trim(), caller.user_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The calling user.
#[utoipa::path(get, path = "/v1/me", tag = "auth", security(("bearer" = [])),
    params(("X-Consistency-Token" = Option<String>, Header)),
    responses((status = 200, body = UserDto)))]
pub async fn me(
    State(state): State<AppState>,
    caller: Caller,
    WaitFor(wait): WaitFor,
) -> ApiResult<Reply<UserDto>> {
    if caller.kind == CallerKind::ApiKey {
        return Err(ApiError::Forbidden(
            "an API key is not a user: /v1/me needs a user's access token",
        ));
    }
    let stale = state.await_token(caller.company_id, wait.as_ref()).await;
    let (user, version) = load_user(&state, &caller, caller.user_id).await?;
    Ok(Reply::ok(user).version(version).stale(stale))
}
