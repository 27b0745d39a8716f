//! The JSON error body of the API (`{"error":{"code","message"}}`), answered by the edge itself.

use serde_json::json;
use worker::{Response, Result};

pub fn json_error(status: u16, code: &str, message: &str) -> Result<Response> {
    Ok(
        Response::from_json(&json!({"error": {"code": code, "message": message}}))?
            .with_status(status),
    )
}
