//! The one mapping from failures to HTTP responses.
//!
//! Every error leaves as JSON `{"detail": "..."}`, the shape the original FastAPI backend's clients
//! parse. Client mistakes are 4xx with a message saying what is wrong; anything internal is logged
//! server-side and answered with a generic 500 that carries no SQL, stack trace or secret.

use pgmon_shared::store::StoreError;
use poem::Response;
use poem::http::StatusCode;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object};

#[derive(Debug, Clone, Object, serde::Serialize)]
pub struct ErrorBody {
    pub detail: String,
}

fn body(detail: impl Into<String>) -> Json<ErrorBody> {
    Json(ErrorBody {
        detail: detail.into(),
    })
}

#[derive(Debug, ApiResponse)]
pub enum ApiError {
    /// The request is malformed or a value is invalid.
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>),
    /// Missing, invalid, expired or revoked credentials.
    #[oai(status = 401)]
    Unauthorized(Json<ErrorBody>, #[oai(header = "WWW-Authenticate")] String),
    /// Authenticated, but the role does not allow this.
    #[oai(status = 403)]
    Forbidden(Json<ErrorBody>),
    #[oai(status = 404)]
    NotFound(Json<ErrorBody>),
    /// The change clashes with the stored state.
    #[oai(status = 409)]
    Conflict(Json<ErrorBody>),
    #[oai(status = 413)]
    TooLarge(Json<ErrorBody>),
    /// The body is not in a content type the operation reads.
    #[oai(status = 415)]
    UnsupportedMediaType(Json<ErrorBody>),
    /// A parameter or the body does not match the operation's schema (a wrong type, a missing or
    /// unknown field, a value out of range); `detail` names it.
    #[oai(status = 422)]
    Unprocessable(Json<ErrorBody>),
    /// Too many attempts; retry after the given number of seconds.
    #[oai(status = 429)]
    TooManyRequests(Json<ErrorBody>, #[oai(header = "Retry-After")] u64),
    #[oai(status = 500)]
    Internal(Json<ErrorBody>),

    /// The store is unreachable.
    #[oai(status = 503)]
    Unavailable(Json<ErrorBody>),
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::BadRequest(body(detail))
    }
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::Unauthorized(body(detail), "Bearer".into())
    }
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::Forbidden(body(detail))
    }
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::NotFound(body(detail))
    }
    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::Conflict(body(detail))
    }
    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::Unavailable(body(detail))
    }
    pub fn too_large(detail: impl Into<String>) -> Self {
        Self::TooLarge(body(detail))
    }
    pub fn too_many(retry_after_secs: u64) -> Self {
        Self::TooManyRequests(
            body("too many failed login attempts; try again later"),
            retry_after_secs.max(1),
        )
    }
    /// 422: the values are well-formed but refused (e.g. a target `servers.allowed_targets` refuses).
    pub fn unprocessable(detail: impl Into<String>) -> Self {
        Self::Unprocessable(body(detail))
    }
    /// 429 with its own `detail`.
    pub fn too_many_with(detail: impl Into<String>, retry_after_secs: u64) -> Self {
        Self::TooManyRequests(body(detail), retry_after_secs.max(1))
    }
    /// Logs `err` and answers a generic 500.
    pub fn internal(err: impl std::fmt::Display) -> Self {
        tracing::error!(error = %err, "internal error");
        Self::Internal(body("internal error"))
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => ApiError::not_found("not found"),
            StoreError::Conflict(m) => ApiError::conflict(m),
            StoreError::Unavailable(m) | StoreError::Transient(m) => {
                tracing::warn!(error = %m, "store unavailable");
                ApiError::Unavailable(body("the pgmon store is unavailable"))
            }
            StoreError::MissingPartition(m) => ApiError::internal(m),
            StoreError::Other(m) => ApiError::internal(m),
        }
    }
}

/// Turns errors raised outside our handlers (poem-openapi's parse and auth errors, 404 of unknown
/// routes, 405) into the same JSON shape, keeping their status. A request that does not match the
/// operation's schema is a 422, as FastAPI answered it (poem-openapi says 400).
pub async fn to_json_response(err: poem::Error) -> Response {
    use poem_openapi::error::{ParseMultipartError, ParseParamError, ParseRequestPayloadError};
    if err.is_from_response() {
        return err.into_response();
    }
    let unprocessable = err.is::<ParseRequestPayloadError>()
        || err.is::<ParseParamError>()
        || err.is::<ParseMultipartError>();
    let status = if unprocessable {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        err.status()
    };
    let detail = if status.is_server_error() {
        tracing::error!(error = %err, "unhandled error");
        "internal error".to_string()
    } else if status == StatusCode::NOT_FOUND {
        "not found".to_string()
    } else if status == StatusCode::UNAUTHORIZED {
        "not authenticated".to_string()
    } else if let Some(e) = err.downcast_ref::<ParseRequestPayloadError>() {
        // `failed to parse "ServerIn": unknown field `colour`` names the type, not what was sent.
        let reason = match e.reason.split_once("\": ") {
            Some((_, r)) if e.reason.starts_with("failed to parse \"") => r,
            _ => e.reason.as_str(),
        };
        format!("request body: {}", reason.trim_end_matches('.'))
    } else {
        err.to_string()
    };
    let mut resp = Response::builder()
        .status(status)
        .content_type("application/json; charset=utf-8")
        .body(serde_json::to_string(&ErrorBody { detail }).unwrap_or_default());
    if status == StatusCode::UNAUTHORIZED {
        resp.headers_mut()
            .insert("www-authenticate", poem::http::HeaderValue::from_static("Bearer"));
    }
    resp
}
