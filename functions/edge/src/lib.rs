//! Sightline's edge Worker: every SDK and dashboard SSE stream terminates here, in a Durable
//! Object per (project, service) ([`hub::StreamHub`]); signed publishes from the change relay
//! fan out through those objects; every other request passes through to the origin API.
//!
//! Routes:
//! - `GET /sdk/snapshots/stream/{service}`: SDK stream (API key with the `sdk` scope),
//! - `GET /api/events`: dashboard stream (API key with the `admin` scope; cookie-authenticated
//!   requests pass through to the origin, which serves them from its own hub),
//! - `POST /internal/publish`: signed [`PublishBatch`] (see `sightline_core::publish`),
//! - anything else: forwarded to `ORIGIN_URL` unchanged.

mod auth;
mod config;
mod errors;
pub mod hub;
mod origin;

use std::collections::BTreeMap;

use sightline_core::events::{Audience, ChangeEvent};
use sightline_core::model::Scope;
use sightline_core::publish::{
    verify, PublishAuthError, PublishBatch, PUBLISH_PATH, SIGNATURE_HEADER, TIMESTAMP_HEADER,
};
use worker::{event, Context, Date, Env, Method, Request, Response, Result};

use crate::config::Config;
use crate::errors::json_error;
use crate::hub::HubName;

const SDK_STREAM_PREFIX: &str = "/sdk/snapshots/stream/";
const DASHBOARD_STREAM_PATH: &str = "/api/events";
/// Largest publish body accepted (the relay batches well under this).
const MAX_PUBLISH_BYTES: usize = 1024 * 1024;

#[event(fetch)]
async fn fetch(req: Request, env: Env, _ctx: Context) -> Result<Response> {
    let config = match Config::from_env(&env) {
        Ok(c) => c,
        Err(msg) => return json_error(500, "edge_misconfigured", &msg),
    };
    let path = req.path();
    let method = req.method();
    if path == PUBLISH_PATH {
        if method != Method::Post {
            return json_error(405, "method_not_allowed", "use POST");
        }
        return publish(req, &env, &config).await;
    }
    if method == Method::Get {
        if let Some(segment) = path.strip_prefix(SDK_STREAM_PREFIX) {
            if !segment.is_empty() && !segment.contains('/') {
                return sdk_stream(req, &env, &config, segment).await;
            }
        }
        if path == DASHBOARD_STREAM_PATH && auth::api_key(&req).is_some() {
            return dashboard_stream(req, &env, &config).await;
        }
    }
    origin::pass_through(req, &config).await
}

async fn sdk_stream(req: Request, env: &Env, config: &Config, segment: &str) -> Result<Response> {
    let Some(service) = percent_decode(segment) else {
        return json_error(
            400,
            "invalid_service",
            "the service name is not valid UTF-8",
        );
    };
    let principal = match auth::require(&req, config, Scope::Sdk).await? {
        Ok(p) => p,
        Err(refusal) => return Ok(refusal),
    };
    let key = auth::api_key(&req).unwrap_or_default();
    let name = HubName::Service {
        project: principal.project_id,
        service,
    };
    hub::connect(env, &name, &key).await
}

async fn dashboard_stream(req: Request, env: &Env, config: &Config) -> Result<Response> {
    let principal = match auth::require(&req, config, Scope::Admin).await? {
        Ok(p) => p,
        Err(refusal) => return Ok(refusal),
    };
    let name = HubName::Dashboard {
        project: principal.project_id,
    };
    hub::connect(env, &name, "").await
}

async fn publish(mut req: Request, env: &Env, config: &Config) -> Result<Response> {
    let Some(secret) = config.publish_secret.as_deref() else {
        return json_error(
            503,
            "publish_disabled",
            "PUBLISH_SECRET is not configured on this edge",
        );
    };
    let declared = req
        .headers()
        .get("content-length")?
        .and_then(|n| n.parse::<usize>().ok());
    if declared.is_some_and(|n| n > MAX_PUBLISH_BYTES) {
        return payload_too_large();
    }
    let body = req.bytes().await?;
    if body.len() > MAX_PUBLISH_BYTES {
        return payload_too_large();
    }
    let ts = req.headers().get(TIMESTAMP_HEADER)?;
    let sig = req.headers().get(SIGNATURE_HEADER)?;
    let now_secs = i64::try_from(Date::now().as_millis() / 1000).unwrap_or(i64::MAX);
    if let Err(e) = verify(
        secret.as_bytes(),
        ts.as_deref(),
        sig.as_deref(),
        &body,
        now_secs,
    ) {
        return refuse_publish(&e);
    }
    let batch: PublishBatch = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => return json_error(400, "invalid_batch", &format!("not a publish batch: {e}")),
    };
    let sig = sig.unwrap_or_default();
    if !hub::first_sighting(env, &batch.id, &sig, now_secs).await? {
        return refuse_publish(&PublishAuthError::Replayed);
    }
    let delivered = batch.events.len();
    let mut outcomes = Vec::new();
    for (name, events) in route(batch.events) {
        outcomes.push(async move { (hub::deliver(env, &name, &events).await, name) });
    }
    for (outcome, name) in futures::future::join_all(outcomes).await {
        if let Err(e) = outcome {
            worker::console_error!("publish to {:?} failed: {e}", name);
            return json_error(
                502,
                "fan_out_failed",
                "the edge could not deliver every event",
            );
        }
    }
    Response::from_json(&serde_json::json!({ "delivered": delivered }))
}

/// Groups a batch per hub, keeping commit order within each: SDK-visible events go to the
/// (project, service) hub, every event to the project's dashboard hub.
fn route(events: Vec<ChangeEvent>) -> BTreeMap<HubName, Vec<ChangeEvent>> {
    let mut by_hub: BTreeMap<HubName, Vec<ChangeEvent>> = BTreeMap::new();
    for ev in events {
        if ev.audience == Audience::All {
            by_hub
                .entry(HubName::Service {
                    project: ev.project_id.clone(),
                    service: ev.service.clone(),
                })
                .or_default()
                .push(ev.clone());
        }
        by_hub
            .entry(HubName::Dashboard {
                project: ev.project_id.clone(),
            })
            .or_default()
            .push(ev);
    }
    by_hub
}

fn refuse_publish(e: &PublishAuthError) -> Result<Response> {
    json_error(401, e.code(), &e.to_string())
}

fn payload_too_large() -> Result<Response> {
    json_error(
        413,
        "payload_too_large",
        &format!("publish bodies are limited to {MAX_PUBLISH_BYTES} bytes"),
    )
}

/// Decodes `%XX` escapes of a path segment; `None` when the result is not UTF-8.
fn percent_decode(segment: &str) -> Option<String> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                let v = hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0);
                out.push(u8::try_from(v).unwrap_or(b'?'));
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_path_segments_like_core_encodes_them() {
        for s in ["svc", "my svc", "ünï/cødé", "a%b"] {
            let enc = sightline_core::app::encode_path_segment(s);
            assert_eq!(percent_decode(&enc).as_deref(), Some(s));
        }
        assert_eq!(percent_decode("%ff").as_deref(), None);
        assert_eq!(percent_decode("100%").as_deref(), Some("100%"));
    }

    #[test]
    fn routes_sdk_events_to_the_service_and_everything_to_the_dashboard() {
        let ev = |service: &str, audience| ChangeEvent {
            project_id: "p".into(),
            service: service.into(),
            event: "x".into(),
            data: serde_json::json!({}),
            audience,
        };
        let routed = route(vec![
            ev("a", Audience::All),
            ev("b", Audience::Dashboard),
            ev("a", Audience::All),
        ]);
        let service_a = HubName::Service {
            project: "p".into(),
            service: "a".into(),
        };
        assert_eq!(routed[&service_a].len(), 2);
        assert_eq!(
            routed[&HubName::Dashboard {
                project: "p".into()
            }]
                .len(),
            3
        );
        assert_eq!(routed.len(), 2);
    }
}
