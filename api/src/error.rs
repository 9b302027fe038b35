//! The one place errors become HTTP: RFC 9457 `application/problem+json`.
//!
//! [`ApiError`] names the contract's error kinds; each kind has one status,
//! and [`ApiError::problem`] is the only code that turns a kind into a body.
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use commands::error::Classified;
use commands::objects::ObjectStoreError;
use commands::CommandError;
use domain::DomainErrorKind;
use serde::Serialize;
use utoipa::ToSchema;

/// One invalid field of a request body.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

/// An RFC 9457 problem document.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

/// The error kinds of the contract, each answered with one status.
#[derive(Debug)]
pub enum ApiError {
    /// `400`: a path, query, header or body the server cannot read.
    BadRequest(String),
    /// `401`, with `WWW-Authenticate: Bearer`.
    Unauthenticated(&'static str),
    /// `403`: the caller is known but may not do this.
    Forbidden(&'static str),
    /// `404`: nothing of that name in the caller's company.
    NotFound(&'static str),
    /// `405`
    MethodNotAllowed,
    /// `409`: the change contradicts the resource's state.
    Conflict(String),
    /// `412`: `If-Match` names an older version.
    Stale,
    /// `413`
    TooLarge(String),
    /// `415`
    UnsupportedMediaType(String),
    /// `422`: the body is readable but these fields are wrong.
    Invalid(Vec<FieldError>),
    /// `429`, with `Retry-After`.
    RateLimited { detail: String, retry_after: u64 },
    /// `503`, with `Retry-After`.
    Unavailable { detail: String, retry_after: u64 },
    /// `500`: logged where it is made ([`ApiError::internal`]); the client
    /// learns nothing more.
    Internal,
}

pub type ApiResult<T> = Result<T, ApiError>;

/// How long a client waits before retrying a store that is down.
const UNAVAILABLE_RETRY_SECS: u64 = 5;

impl ApiError {
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::BadRequest(detail.into())
    }

    pub fn forbidden() -> Self {
        Self::Forbidden("only admins may do this")
    }

    pub fn not_found() -> Self {
        Self::NotFound("no such resource")
    }

    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::Conflict(detail.into())
    }

    /// `503` for a store that is down.
    pub fn unavailable(what: &str) -> Self {
        Self::Unavailable {
            detail: format!("{what} is unavailable; retry shortly"),
            retry_after: UNAVAILABLE_RETRY_SECS,
        }
    }

    /// `503` that says why (a timeout says it is one).
    pub fn unavailable_because(what: &str, reason: &str) -> Self {
        Self::Unavailable {
            detail: format!("{what} is unavailable ({reason}); retry shortly"),
            retry_after: UNAVAILABLE_RETRY_SECS,
        }
    }

    /// Logs the cause, which the client never sees.
    pub fn internal(error: impl std::fmt::Display) -> Self {
        tracing::error!(%error, "internal error");
        Self::Internal
    }

    pub fn field(field: &str, message: impl Into<String>) -> Self {
        Self::Invalid(vec![FieldError {
            field: field.to_owned(),
            message: message.into(),
        }])
    }

    /// A body extractor's refusal: too large, or unreadable.
    pub fn unreadable_body(status: StatusCode, detail: String) -> Self {
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            Self::TooLarge(detail)
        } else {
            Self::BadRequest(detail)
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::Stale => StatusCode::PRECONDITION_FAILED,
            Self::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn detail(&self) -> &str {
        match self {
            Self::BadRequest(detail)
            | Self::Conflict(detail)
            | Self::TooLarge(detail)
            | Self::UnsupportedMediaType(detail)
            | Self::RateLimited { detail, .. }
            | Self::Unavailable { detail, .. } => detail,
            Self::Unauthenticated(detail) | Self::Forbidden(detail) | Self::NotFound(detail) => {
                detail
            }
            Self::MethodNotAllowed => "this route does not allow that method",
            Self::Stale => "the resource has changed since the version in If-Match",
            Self::Invalid(_) => "the request has invalid fields",
            Self::Internal => "internal error",
        }
    }

    fn retry_after(&self) -> Option<u64> {
        match self {
            Self::RateLimited { retry_after, .. } | Self::Unavailable { retry_after, .. } => {
                Some(*retry_after)
            }
            _ => None,
        }
    }

    /// The field errors of a `422`; empty for every other kind.
    pub fn field_errors(&self) -> &[FieldError] {
        match self {
            Self::Invalid(errors) => errors,
            _ => &[],
        }
    }

    /// The problem document this error answers with.
    pub fn problem(&self) -> Problem {
        let status = self.status();
        let title = status.canonical_reason().unwrap_or("Error");
        let slug = title.to_lowercase().replace(' ', "-");
        Problem {
            kind: format!("https://crm.example/problems/{slug}"),
            title: title.to_owned(),
            status: status.as_u16(),
            detail: self.detail().to_owned(),
            errors: self.field_errors().to_vec(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&self.problem()).unwrap_or_default();
        let mut response = (self.status(), body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(seconds) = self.retry_after() {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if matches!(self, Self::Unauthenticated(_)) {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl<E: std::error::Error + Classified> From<CommandError<E>> for ApiError {
    fn from(error: CommandError<E>) -> Self {
        match error {
            CommandError::Domain(e) => match e.kind() {
                DomainErrorKind::NotFound => Self::not_found(),
                DomainErrorKind::Conflict => Self::Conflict(e.to_string()),
            },
            CommandError::NotFound => Self::not_found(),
            CommandError::Stale { .. } => Self::Stale,
            CommandError::Contended => {
                Self::conflict("the resource is being changed concurrently; retry")
            }
            CommandError::Unavailable(reason) => {
                Self::unavailable_because("the event store", &reason)
            }
            CommandError::Internal(e) => Self::internal(e),
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        if commands::error::is_connection_error(&error) {
            tracing::warn!(%error, "the database is unavailable");
            Self::unavailable_because("the database", commands::error::unavailable_reason(&error))
        } else {
            Self::internal(error)
        }
    }
}

impl From<projections::view::ProjectionError> for ApiError {
    fn from(error: projections::view::ProjectionError) -> Self {
        match error {
            projections::view::ProjectionError::Database(error) => error.into(),
            unreadable => Self::internal(unreadable),
        }
    }
}

impl From<commands::photos::UploadError> for ApiError {
    fn from(error: commands::photos::UploadError) -> Self {
        match error {
            commands::photos::UploadError::Command(error) => error.into(),
            commands::photos::UploadError::Objects(error) => error.into(),
        }
    }
}

impl From<ObjectStoreError> for ApiError {
    fn from(error: ObjectStoreError) -> Self {
        match error {
            ObjectStoreError::Unavailable(_) => Self::unavailable("the object store"),
            ObjectStoreError::Other(e) => Self::internal(e),
        }
    }
}
