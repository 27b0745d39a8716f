//! API keys and projects: keys are stored only as SHA-256 hashes.

use serde_json::{json, Value};

use super::{lock, sha256_hex, Sightline};
use crate::error::{Error, Result};
use crate::keys;
use crate::model::{ApiKeyRecord, Principal, Project, Scope};
use crate::ports::{Attrs, Condition, Item, Query, StoreError, UpdateOp};
use crate::timefmt::format_ms;

/// What [`Sightline::bootstrap`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum BootstrapOutcome {
    /// A new installation: the default project and its first key (shown once).
    Created {
        project_id: String,
        api_key: String,
        key: ApiKeyRecord,
    },
    /// Already bootstrapped earlier.
    Existing { project_id: String },
}

const BOOTSTRAP_SK: &str = "BOOTSTRAP";

impl Sightline {
    /// Resolves a raw key to its project and scopes (401 when unknown or revoked).
    pub async fn authenticate(&self, raw_key: &str) -> Result<Principal> {
        let raw_key = raw_key.trim();
        if raw_key.is_empty() || raw_key.len() > 256 {
            return Err(Error::unauthorized("missing or malformed API key"));
        }
        let hash = sha256_hex(raw_key.as_bytes());
        let now = self.now_ms();
        if let Some((p, at)) = lock(&self.auth_cache).get(&hash) {
            if now - *at < self.config.auth_cache_ms {
                return Ok(p.clone());
            }
        }
        let (pk, sk) = keys::api_key(&hash);
        let item = self.items.get(&pk, sk).await?;
        let record = item
            .and_then(|i| serde_json::from_value::<ApiKeyRecord>(Value::Object(i.attrs)).ok())
            .filter(|r| !r.revoked)
            .ok_or_else(|| Error::unauthorized("invalid or revoked API key"))?;
        let principal = Principal {
            project_id: record.project_id,
            key_id: record.id,
            scopes: record.scopes,
        };
        let mut cache = lock(&self.auth_cache);
        if cache.len() > 10_000 {
            cache.clear();
        }
        cache.insert(hash, (principal.clone(), now));
        Ok(principal)
    }

    /// Authenticates and checks the scope: 401 without a valid key, 403 without the scope.
    pub async fn require(&self, raw_key: Option<&str>, scope: Scope) -> Result<Principal> {
        let raw = raw_key.ok_or_else(|| {
            Error::unauthorized(
                "an API key is required (X-API-Key header or Authorization: Bearer)",
            )
        })?;
        let p = self.authenticate(raw).await?;
        if !p.has(scope) {
            let name = match scope {
                Scope::Sdk => "sdk",
                Scope::Admin => "admin",
            };
            return Err(Error::forbidden(format!(
                "this API key lacks the `{name}` scope"
            )));
        }
        Ok(p)
    }

    /// First start: creates the default project and a key with both scopes. With
    /// `raw_key`, that key is used (scripts and CI) and is also ensured on later starts.
    pub async fn bootstrap(&self, raw_key: Option<&str>) -> Result<BootstrapOutcome> {
        if let Some(existing) = self.default_project().await? {
            if let Some(raw) = raw_key {
                self.ensure_key(&existing, raw).await?;
            }
            return Ok(BootstrapOutcome::Existing {
                project_id: existing,
            });
        }
        let project_id = "default".to_owned();
        let project = Project {
            id: project_id.clone(),
            name: "Default project".into(),
            created_at: format_ms(self.now_ms()),
        };
        let (pk, sk) = keys::project(&project_id);
        self.items
            .put(Item::new(pk, sk, to_attrs(&project)), None)
            .await?;
        let (key, api_key) = self
            .create_api_key(
                &project_id,
                "bootstrap",
                &[Scope::Sdk, Scope::Admin],
                raw_key,
            )
            .await?;
        let marker = Item::new(
            keys::META_PK,
            BOOTSTRAP_SK,
            attrs(json!({"project_id": project_id})),
        );
        match self.items.put(marker, Some(Condition::NotExists)).await {
            Ok(()) => Ok(BootstrapOutcome::Created {
                project_id,
                api_key,
                key,
            }),
            // Another process bootstrapped concurrently: keep theirs, drop our key.
            Err(StoreError::ConditionFailed) => {
                self.revoke_api_key(&project_id, &key.id).await?;
                let existing = self.default_project().await?.unwrap_or(project_id);
                Ok(BootstrapOutcome::Existing {
                    project_id: existing,
                })
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn ensure_key(&self, project_id: &str, raw: &str) -> Result<()> {
        let (pk, sk) = keys::api_key(&sha256_hex(raw.trim().as_bytes()));
        if self.items.get(&pk, sk).await?.is_none() {
            self.create_api_key(
                project_id,
                "bootstrap",
                &[Scope::Sdk, Scope::Admin],
                Some(raw),
            )
            .await?;
        }
        Ok(())
    }

    pub async fn default_project(&self) -> Result<Option<String>> {
        let item = self.items.get(keys::META_PK, BOOTSTRAP_SK).await?;
        Ok(item.and_then(|i| i.get_str("project_id").map(str::to_owned)))
    }

    /// Creates a key; returns its record and the raw key (the only time it is visible).
    pub async fn create_api_key(
        &self,
        project_id: &str,
        name: &str,
        scopes: &[Scope],
        raw_key: Option<&str>,
    ) -> Result<(ApiKeyRecord, String)> {
        if scopes.is_empty() {
            return Err(Error::bad_request(
                "invalid_scopes",
                "a key needs at least one scope (sdk, admin)",
            ));
        }
        let raw = match raw_key {
            Some(r) if !r.trim().is_empty() => r.trim().to_owned(),
            Some(_) => {
                return Err(Error::bad_request(
                    "invalid_key",
                    "the API key must not be empty",
                ))
            }
            None => format!(
                "sl_{}{}",
                self.ids.random_hex128(),
                self.ids.random_hex128()
            ),
        };
        let hash = sha256_hex(raw.as_bytes());
        let record = ApiKeyRecord {
            id: hash[..12].to_owned(),
            project_id: project_id.to_owned(),
            name: name.to_owned(),
            scopes: scopes.to_vec(),
            created_at: format_ms(self.now_ms()),
            revoked: false,
        };
        let (pk, sk) = keys::api_key(&hash);
        self.items
            .put(
                Item::new(pk, sk, to_attrs(&record)),
                Some(Condition::NotExists),
            )
            .await
            .map_err(|e| match e {
                StoreError::ConditionFailed => Error::new(
                    crate::ErrorKind::Conflict,
                    "key_exists",
                    "this API key already exists",
                ),
                e => e.into(),
            })?;
        let mut listing = to_attrs(&record);
        listing.insert("hash".into(), hash.into());
        self.items
            .put(
                Item::new(keys::project_keys(project_id), record.id.clone(), listing),
                None,
            )
            .await?;
        Ok((record, raw))
    }

    pub async fn list_api_keys(&self, project_id: &str) -> Result<Vec<ApiKeyRecord>> {
        let page = self
            .items
            .query(&keys::project_keys(project_id), Query::default())
            .await?;
        Ok(page
            .items
            .into_iter()
            .filter_map(|i| serde_json::from_value(Value::Object(i.attrs)).ok())
            .collect())
    }

    /// Revokes a key by its id; effective immediately in this process.
    pub async fn revoke_api_key(&self, project_id: &str, key_id: &str) -> Result<ApiKeyRecord> {
        let listing = self
            .items
            .get(&keys::project_keys(project_id), key_id)
            .await?
            .ok_or_else(|| Error::not_found("API key"))?;
        let hash = listing.get_str("hash").unwrap_or_default().to_owned();
        let (pk, sk) = keys::api_key(&hash);
        let revoked = [UpdateOp::set("revoked", true)];
        self.items
            .update(&pk, sk, &revoked, Some(Condition::Exists))
            .await?;
        let item = self
            .items
            .update(
                &keys::project_keys(project_id),
                key_id,
                &revoked,
                Some(Condition::Exists),
            )
            .await?;
        lock(&self.auth_cache).remove(&hash);
        serde_json::from_value(Value::Object(item.attrs))
            .map_err(|e| Error::new(crate::ErrorKind::Internal, "corrupt_record", e.to_string()))
    }
}

pub(super) fn attrs(v: Value) -> Attrs {
    match v {
        Value::Object(m) => m,
        _ => Attrs::new(),
    }
}

pub(super) fn to_attrs<T: serde::Serialize>(v: &T) -> Attrs {
    attrs(serde_json::to_value(v).unwrap_or(Value::Null))
}
