//! The signed publish protocol between the change relay (or a local origin) and the edge.
//!
//! `POST {edge}/internal/publish` carries a JSON [`PublishBatch`] with two headers:
//! [`TIMESTAMP_HEADER`] (unix seconds) and [`SIGNATURE_HEADER`]
//! (`v1=<hex HMAC-SHA256(secret, "{ts}.{body}")>`). Binding the timestamp into the MAC lets the
//! receiver reject stale requests; rejecting a batch id or signature it has already seen within
//! [`MAX_SKEW_SECS`] (the receiver's job: it keeps state) closes the replay window.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::events::ChangeEvent;

/// The path of the publish endpoint on the edge.
pub const PUBLISH_PATH: &str = "/internal/publish";
/// Unix seconds at which the batch was signed.
pub const TIMESTAMP_HEADER: &str = "X-Sightline-Timestamp";
/// `v1=<hex HMAC-SHA256(secret, "{ts}.{body}")>`.
pub const SIGNATURE_HEADER: &str = "X-Sightline-Signature";
/// A signed request older or newer than this is refused; replays are tracked this long.
pub const MAX_SKEW_SECS: i64 = 300;

const SCHEME_PREFIX: &str = "v1=";

/// One signed publish request: committed change events, in commit order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PublishBatch {
    /// Unique per batch; the receiver refuses an id it has seen within [`MAX_SKEW_SECS`].
    pub id: String,
    pub events: Vec<ChangeEvent>,
}

/// Why a publish request was refused. Every variant is a 401 for the sender.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishAuthError {
    #[error("missing {TIMESTAMP_HEADER} header")]
    MissingTimestamp,
    #[error("{TIMESTAMP_HEADER} must be unix seconds")]
    MalformedTimestamp,
    #[error("missing {SIGNATURE_HEADER} header")]
    MissingSignature,
    #[error("{SIGNATURE_HEADER} must be v1=<hex HMAC-SHA256>")]
    MalformedSignature,
    #[error("timestamp is {skew_secs} s away from now (limit {MAX_SKEW_SECS} s)")]
    Stale { skew_secs: i64 },
    #[error("signature does not match")]
    BadSignature,
    #[error("batch was already published")]
    Replayed,
}

impl PublishAuthError {
    /// A stable machine-readable code for the JSON error body.
    pub fn code(&self) -> &'static str {
        match self {
            Self::MissingTimestamp | Self::MissingSignature => "missing_signature",
            Self::MalformedTimestamp | Self::MalformedSignature => "malformed_signature",
            Self::Stale { .. } => "stale_request",
            Self::BadSignature => "bad_signature",
            Self::Replayed => "replayed_request",
        }
    }
}

fn mac(secret: &[u8], ts: i64, body: &[u8]) -> Hmac<Sha256> {
    // HMAC accepts keys of any length, so construction cannot fail.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        unreachable!("HMAC takes keys of any length")
    };
    mac.update(ts.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The [`SIGNATURE_HEADER`] value for `body` signed at `ts`.
pub fn sign(secret: &[u8], ts: i64, body: &[u8]) -> String {
    let tag = mac(secret, ts, body).finalize().into_bytes();
    format!("{SCHEME_PREFIX}{}", hex::encode(tag))
}

/// Checks a publish request's headers against its body: present, well-formed, fresh within
/// [`MAX_SKEW_SECS`] of `now_secs`, and signed with `secret` (compared in constant time).
pub fn verify(
    secret: &[u8],
    ts_header: Option<&str>,
    sig_header: Option<&str>,
    body: &[u8],
    now_secs: i64,
) -> Result<(), PublishAuthError> {
    let ts_header = ts_header.ok_or(PublishAuthError::MissingTimestamp)?;
    let sig_header = sig_header.ok_or(PublishAuthError::MissingSignature)?;
    let ts: i64 = ts_header
        .trim()
        .parse()
        .map_err(|_| PublishAuthError::MalformedTimestamp)?;
    let tag = sig_header
        .trim()
        .strip_prefix(SCHEME_PREFIX)
        .and_then(|hex_tag| hex::decode(hex_tag).ok())
        .filter(|tag| tag.len() == 32)
        .ok_or(PublishAuthError::MalformedSignature)?;
    let skew_secs = now_secs.saturating_sub(ts);
    if skew_secs.saturating_abs() > MAX_SKEW_SECS {
        return Err(PublishAuthError::Stale { skew_secs });
    }
    mac(secret, ts, body)
        .verify_slice(&tag)
        .map_err(|_| PublishAuthError::BadSignature)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"test-secret";
    const BODY: &[u8] = br#"{"id":"b1","events":[]}"#;
    const NOW: i64 = 1_800_000_000;

    #[test]
    fn signed_request_verifies() {
        let sig = sign(SECRET, NOW, BODY);
        assert!(sig.starts_with("v1="));
        assert_eq!(sig.len(), 3 + 64);
        let ts = NOW.to_string();
        assert_eq!(verify(SECRET, Some(&ts), Some(&sig), BODY, NOW), Ok(()));
        // Within the window on either side.
        assert_eq!(
            verify(SECRET, Some(&ts), Some(&sig), BODY, NOW + 300),
            Ok(())
        );
        assert_eq!(
            verify(SECRET, Some(&ts), Some(&sig), BODY, NOW - 300),
            Ok(())
        );
    }

    #[test]
    fn matches_a_reference_hmac() {
        // RFC 4231-style check computed independently: HMAC-SHA256("key", "0.body").
        let sig = sign(b"key", 0, b"body");
        let expected = {
            let mut mac = Hmac::<Sha256>::new_from_slice(b"key").unwrap();
            mac.update(b"0.body");
            format!("v1={}", hex::encode(mac.finalize().into_bytes()))
        };
        assert_eq!(sig, expected);
    }

    #[test]
    fn tampered_body_wrong_secret_or_timestamp_is_refused() {
        let sig = sign(SECRET, NOW, BODY);
        let ts = NOW.to_string();
        assert_eq!(
            verify(SECRET, Some(&ts), Some(&sig), b"{}", NOW),
            Err(PublishAuthError::BadSignature)
        );
        assert_eq!(
            verify(b"other", Some(&ts), Some(&sig), BODY, NOW),
            Err(PublishAuthError::BadSignature)
        );
        let moved = (NOW + 1).to_string();
        assert_eq!(
            verify(SECRET, Some(&moved), Some(&sig), BODY, NOW),
            Err(PublishAuthError::BadSignature)
        );
    }

    #[test]
    fn stale_or_future_timestamps_are_refused() {
        let old = NOW - 301;
        let sig = sign(SECRET, old, BODY);
        assert_eq!(
            verify(SECRET, Some(&old.to_string()), Some(&sig), BODY, NOW),
            Err(PublishAuthError::Stale { skew_secs: 301 })
        );
        let future = NOW + 301;
        let sig = sign(SECRET, future, BODY);
        assert_eq!(
            verify(SECRET, Some(&future.to_string()), Some(&sig), BODY, NOW),
            Err(PublishAuthError::Stale { skew_secs: -301 })
        );
        let extreme = i64::MIN.to_string();
        assert!(matches!(
            verify(SECRET, Some(&extreme), Some(&sig), BODY, NOW),
            Err(PublishAuthError::Stale { .. })
        ));
    }

    #[test]
    fn missing_or_malformed_headers_are_refused() {
        let sig = sign(SECRET, NOW, BODY);
        let ts = NOW.to_string();
        assert_eq!(
            verify(SECRET, None, Some(&sig), BODY, NOW),
            Err(PublishAuthError::MissingTimestamp)
        );
        assert_eq!(
            verify(SECRET, Some(&ts), None, BODY, NOW),
            Err(PublishAuthError::MissingSignature)
        );
        assert_eq!(
            verify(SECRET, Some("yesterday"), Some(&sig), BODY, NOW),
            Err(PublishAuthError::MalformedTimestamp)
        );
        for bad in [
            "",
            "v1=",
            "v1=zz",
            "v2=00",
            &sig[3..],
            "v1=abcd",
            &format!("{sig}00"),
        ] {
            assert_eq!(
                verify(SECRET, Some(&ts), Some(bad), BODY, NOW),
                Err(PublishAuthError::MalformedSignature),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn errors_have_codes_and_messages() {
        assert_eq!(PublishAuthError::Replayed.code(), "replayed_request");
        assert_eq!(
            PublishAuthError::Stale { skew_secs: 400 }.to_string(),
            "timestamp is 400 s away from now (limit 300 s)"
        );
    }

    #[test]
    fn batch_round_trips_as_json() {
        let batch = PublishBatch {
            id: "b1".into(),
            events: vec![ChangeEvent {
                project_id: "p".into(),
                service: "svc".into(),
                event: "kill_switch".into(),
                data: serde_json::json!({"enabled": true}),
                audience: crate::events::Audience::All,
            }],
        };
        let json = serde_json::to_string(&batch).unwrap();
        assert_eq!(serde_json::from_str::<PublishBatch>(&json).unwrap(), batch);
    }
}
