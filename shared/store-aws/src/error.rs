//! SDK errors → `StoreError`: what the SDK's retries could not fix because the service was
//! unreachable, slow or throttling is `Unavailable` (the HTTP layer answers 503); anything
//! else (validation, permissions, missing table) is a `Backend` error.

use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use sightline_core::ports::StoreError;

/// Error codes that mean "try again later" rather than "this request is wrong".
const TRANSIENT_CODES: &[&str] = &[
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "Throttling",
    "RequestLimitExceeded",
    "LimitExceededException",
    "InternalServerError",
    "InternalError",
    "ServiceUnavailable",
    "SlowDown",
    "TransactionInProgressException",
    "RequestTimeout",
];

/// Maps an SDK error of operation `op` that is not a business outcome (those are matched
/// by the caller before).
pub(crate) fn store_error<E>(op: &str, err: SdkError<E, HttpResponse>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match &err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            StoreError::Unavailable(format!("{op}: {}", DisplayErrorContext(&err)))
        }
        SdkError::ServiceError(service) => {
            let code = service.err().code().unwrap_or("unknown");
            let message = service.err().message().unwrap_or("");
            if TRANSIENT_CODES.contains(&code) || service.raw().status().is_server_error() {
                StoreError::Unavailable(format!("{op}: {code}: {message}"))
            } else {
                StoreError::Backend(format!("{op}: {code}: {message}"))
            }
        }
        _ => StoreError::Backend(format!("{op}: {}", DisplayErrorContext(&err))),
    }
}
