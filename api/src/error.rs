//! The one place errors become HTTP: RFC 9457 `application/problem+json`.
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

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub detail: String,
    pub errors: Vec<FieldError>,
    pub retry_after: Option<u64>,
    pub www_authenticate: bool,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Self {
            status,
            detail: detail.into(),
            errors: vec![],
            retry_after: None,
            www_authenticate: false,
        }
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, detail)
    }

    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self {
            www_authenticate: true,
            ..Self::new(StatusCode::UNAUTHORIZED, detail)
        }
    }

    pub fn forbidden() -> Self {
        Self::new(StatusCode::FORBIDDEN, "only admins may do this")
    }

    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "no such resource")
    }

    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, detail)
    }

    pub fn unavailable(what: &str) -> Self {
        Self {
            retry_after: Some(5),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("{what} is unavailable; retry shortly"),
            )
        }
    }

    /// `503` that says why (a timeout says it is one).
    pub fn unavailable_because(what: &str, reason: &str) -> Self {
        Self {
            retry_after: Some(5),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("{what} is unavailable ({reason}); retry shortly"),
            )
        }
    }

    pub fn internal(error: impl std::fmt::Display) -> Self {
        tracing::error!(%error, "internal error");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
    }

    pub fn invalid(errors: Vec<FieldError>) -> Self {
        Self {
            errors,
            ..Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "the request has invalid fields",
            )
        }
    }

    pub fn field(field: &str, message: impl Into<String>) -> Self {
        Self::invalid(vec![FieldError {
            field: field.to_owned(),
            message: message.into(),
        }])
    }
}

fn title(status: StatusCode) -> &'static str {
    status.canonical_reason().unwrap_or("Error")
}

impl ApiError {
    /// The problem document this error answers with.
    pub fn problem(&self) -> Problem {
        let slug = title(self.status).to_lowercase().replace(' ', "-");
        Problem {
            kind: format!("https://crm.example/problems/{slug}"),
            title: title(self.status).to_owned(),
            status: self.status.as_u16(),
            detail: self.detail.clone(),
            errors: self.errors.clone(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let problem = self.problem();
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        let mut response = (self.status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(seconds) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if self.www_authenticate {
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
                DomainErrorKind::Conflict => Self::conflict(e.to_string()),
            },
            CommandError::NotFound => Self::not_found(),
            CommandError::Stale { .. } => Self::new(
                StatusCode::PRECONDITION_FAILED,
                "the resource has changed since the version in If-Match",
            ),
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
