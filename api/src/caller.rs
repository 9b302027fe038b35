//! The caller of a request, from its bearer credential: an API key (looked
//! up on every request), or an access token whose security stamp still
//! matches the users view, so removing a user or changing its role or
//! password ends its tokens at once.
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use domain::values::Role;
use domain::{CompanyId, UserId};
use uuid::Uuid;

use crate::error::ApiError;
use crate::state::AppState;

/// The authenticated caller: the only source of the company id anywhere in
/// the API. Handlers that need a user ask for one.
#[derive(Clone, Debug)]
pub struct Caller {
    /// The user, or for an API key the key's id: what events record as
    /// the actor (`created_by`, `updated_by`).
    pub user_id: UserId,
    pub company_id: CompanyId,
    pub role: Role,
    pub kind: CallerKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallerKind {
    User,
    /// A server-to-server client with an admin's rights in its company.
    ApiKey,
}

impl Caller {
    pub fn require_admin(&self) -> Result<(), ApiError> {
        match self.role {
            Role::Admin => Ok(()),
            Role::User => Err(ApiError::forbidden()),
        }
    }

    /// The metadata of a command this caller runs.
    pub fn context(&self) -> commands::CommandContext {
        commands::CommandContext::new(self.company_id, self.user_id, Uuid::now_v7())
            .by_api_key(self.kind == CallerKind::ApiKey)
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .ok_or(ApiError::Unauthenticated(
                "a Bearer access token is required",
            ))?
            .trim();
        if token.starts_with(crate::api_keys::PREFIX) {
            let (key, company_id) = crate::api_keys::authenticate(state.pool(), token)
                .await?
                .ok_or(ApiError::Unauthenticated(
                    "the API key is invalid or was deleted",
                ))?;
            state.api_key_usage.used(state.pool(), key);
            return Ok(Self {
                user_id: UserId(key),
                company_id,
                role: Role::Admin,
                kind: CallerKind::ApiKey,
            });
        }
        let claims = state.tokens.verify(token).ok_or(ApiError::Unauthenticated(
            "the access token is invalid or expired",
        ))?;
        let (user_id, company_id) = (UserId(claims.sub), CompanyId(claims.cid));
        let revoked = || ApiError::Unauthenticated("the access token is no longer valid");
        let viewed =
            projections::read::users::credentials_by_id(state.pool(), company_id, user_id).await?;
        let role = match viewed {
            Some(c) if c.security_stamp == claims.st => c.role,
            // Stamps only grow: the view has seen a revoking change.
            Some(c) if c.security_stamp > claims.st => return Err(revoked()),
            // The view is behind the token (a signup or a change whose user
            // row is not projected yet, e.g. while the bus fails over): the
            // event log decides, so a valid session is never refused.
            _ => {
                projections::read::users::from_log(state.commands.db(), company_id, user_id)
                    .await?
                    .filter(|user| user.security_stamp == claims.st)
                    .ok_or_else(revoked)?
                    .role
            }
        };
        let role = Role::parse(&role).map_err(ApiError::internal)?;
        Ok(Self {
            user_id,
            company_id,
            role,
            kind: CallerKind::User,
        })
    }
}
