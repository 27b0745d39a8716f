//! The one error type handlers return; hosts map [`ErrorKind`] to an HTTP status.

use crate::ports::StoreError;

/// What went wrong, as a caller can act on it. Each kind has one HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// 400: the request is malformed or a field is invalid.
    BadRequest,
    /// 401: no credential, or an unknown/revoked one.
    Unauthorized,
    /// 403: a valid credential without the needed scope.
    Forbidden,
    /// 404: nothing with that id in the caller's project.
    NotFound,
    /// 405: the route exists, the method does not.
    MethodNotAllowed,
    /// 409: the request conflicts with the current state.
    Conflict,
    /// 413: the body is over the size limit.
    PayloadTooLarge,
    /// 415: unsupported content type.
    UnsupportedMediaType,
    /// 429: over a rate limit.
    TooManyRequests,
    /// 503: the store is unavailable; the caller should retry.
    Unavailable,
    /// 500: a bug.
    Internal,
}

impl ErrorKind {
    pub fn status(self) -> u16 {
        match self {
            Self::BadRequest => 400,
            Self::Unauthorized => 401,
            Self::Forbidden => 403,
            Self::NotFound => 404,
            Self::MethodNotAllowed => 405,
            Self::Conflict => 409,
            Self::PayloadTooLarge => 413,
            Self::UnsupportedMediaType => 415,
            Self::TooManyRequests => 429,
            Self::Unavailable => 503,
            Self::Internal => 500,
        }
    }
}

/// An error with a stable machine-readable `code` and a human message.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{code}: {message}")]
pub struct Error {
    pub kind: ErrorKind,
    pub code: &'static str,
    pub message: String,
}

impl Error {
    pub fn new(kind: ErrorKind, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            kind,
            code,
            message: message.into(),
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::BadRequest, code, message)
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(
            ErrorKind::NotFound,
            "not_found",
            format!("{what} not found"),
        )
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unauthorized, "unauthorized", message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Forbidden, "forbidden", message)
    }

    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(
            ErrorKind::PayloadTooLarge,
            "payload_too_large",
            format!("request body is larger than the limit of {limit} bytes"),
        )
    }

    /// The JSON body every error is sent as: `{"error":{"code","message"}}`.
    pub fn to_body(&self) -> serde_json::Value {
        serde_json::json!({"error": {"code": self.code, "message": self.message}})
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::InvalidCursor => {
                Self::bad_request("invalid_cursor", "the cursor is not valid for this query")
            }
            StoreError::ConditionFailed => Self::new(
                ErrorKind::Conflict,
                "conflict",
                "the item changed concurrently; retry",
            ),
            StoreError::Unavailable(m) => Self::new(
                ErrorKind::Unavailable,
                "store_unavailable",
                format!("storage is unavailable: {m}"),
            ),
            StoreError::Backend(m) => Self::new(
                ErrorKind::Unavailable,
                "store_error",
                format!("storage error: {m}"),
            ),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
