//! Dashboard sessions: a browser signs in once with an admin key and then carries a random
//! session token in an HttpOnly cookie instead of the key.
//!
//! Only the SHA-256 of the token is stored (`SESSION#{sha256}` / `SESSION`, with a TTL), so a
//! leaked store cannot be replayed as sessions. The CSRF token is derived from the session
//! token, so it needs no storage and changes with every sign-in; the page's JavaScript sends
//! it back in a header that a cross-site form cannot set. A session also ends when the key it
//! was opened with is revoked.

use serde_json::{json, Value};

use super::{auth::attrs, sha256_hex, Sightline};
use crate::error::{Error, Result};
use crate::keys;
use crate::model::{ApiKeyRecord, Principal, Scope};
use crate::ports::{Condition, Item};

/// How long a dashboard session lasts.
pub const SESSION_TTL_SECS: i64 = 12 * 3600;

const SESSION_SK: &str = "SESSION";

/// Where a session is stored: keyed by the hash of its token, like API keys.
fn session_key(token: &str) -> String {
    format!("SESSION#{}", sha256_hex(token.as_bytes()))
}

/// The CSRF token belonging to a session token.
pub fn csrf_token_for(session_token: &str) -> String {
    sha256_hex(format!("sightline-csrf:{session_token}").as_bytes())
}

/// A freshly opened session: the token goes into the cookie and is never shown again.
#[derive(Debug, Clone)]
pub struct NewSession {
    pub token: String,
    pub csrf_token: String,
    pub principal: Principal,
    /// Unix seconds.
    pub expires_at: i64,
}

/// A valid session, resolved from its token.
#[derive(Debug, Clone)]
pub struct Session {
    pub principal: Principal,
    pub csrf_token: String,
    /// Unix seconds.
    pub expires_at: i64,
}

impl Session {
    /// What `GET /api/session` shows the page (never the session token).
    pub fn to_api(&self) -> Value {
        json!({
            "project_id": self.principal.project_id,
            "key_id": self.principal.key_id,
            "csrf_token": self.csrf_token,
            "expires_at": crate::timefmt::format_ms(self.expires_at * 1000),
        })
    }
}

impl Sightline {
    /// Signs in with an admin key (401 for an unknown key, 403 without the admin scope).
    pub async fn create_session(&self, raw_key: &str) -> Result<NewSession> {
        let principal = self.require(Some(raw_key), Scope::Admin).await?;
        let token = format!(
            "sls_{}{}",
            self.ids.random_hex128(),
            self.ids.random_hex128()
        );
        let expires_at = self.now_secs() + SESSION_TTL_SECS;
        let record = attrs(json!({
            "project_id": principal.project_id,
            "key_id": principal.key_id,
            "key_hash": sha256_hex(raw_key.trim().as_bytes()),
            "created_at": self.now_ms(),
        }));
        let item = Item::new(session_key(&token), SESSION_SK, record).with_ttl(Some(expires_at));
        self.items.put(item, Some(Condition::NotExists)).await?;
        Ok(NewSession {
            csrf_token: csrf_token_for(&token),
            token,
            principal,
            expires_at,
        })
    }

    /// Resolves a session token: 401 when unknown, expired, or its key was revoked since.
    pub async fn session(&self, token: &str) -> Result<Session> {
        let token = token.trim();
        if token.is_empty() || token.len() > 128 {
            return Err(Error::unauthorized("sign in to continue"));
        }
        let expired = || Error::unauthorized("the session has ended; sign in again");
        let item = self
            .items
            .get(&session_key(token), SESSION_SK)
            .await?
            .ok_or_else(expired)?;
        let key_hash = item.get_str("key_hash").unwrap_or_default();
        let (pk, sk) = keys::api_key(key_hash);
        let key = self
            .items
            .get(&pk, sk)
            .await?
            .and_then(|i| serde_json::from_value::<ApiKeyRecord>(Value::Object(i.attrs)).ok())
            .filter(|k| !k.revoked && k.scopes.contains(&Scope::Admin))
            .ok_or_else(expired)?;
        Ok(Session {
            principal: Principal {
                project_id: key.project_id,
                key_id: key.id,
                scopes: key.scopes,
            },
            csrf_token: csrf_token_for(token),
            expires_at: item.expires_at.unwrap_or_default(),
        })
    }

    /// Signs out: the token stops working at once, in every process.
    pub async fn delete_session(&self, token: &str) -> Result<()> {
        self.items
            .delete(&session_key(token.trim()), SESSION_SK, None)
            .await?;
        Ok(())
    }
}
