//! The Durable Object that holds SSE streams. One instance per (project, service) holds that
//! service's SDK streams; one per project holds its dashboard streams; one more remembers
//! recently seen publish batches (replay protection). All are the same class, [`StreamHub`],
//! addressed by a [`HubName`].
//!
//! An SDK stream gets `init` (the origin's current state for the service, fetched after the
//! stream is registered so no event published meanwhile is lost: such events queue behind
//! `init`), then every published event of its service in order. A `heartbeat` goes to every
//! stream from an alarm, which is also where dead streams are noticed and dropped: the
//! runtime does not tell an object that a client went away, it only stops taking frames, so
//! a stream that took nothing in a whole heartbeat interval while frames waited is dead. Service hubs report their stream count to the project's
//! dashboard hub, which sends it to dashboards as `sdk_count`.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::rc::Rc;
use std::time::Duration;

use futures::channel::mpsc;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sightline_core::app::encode_path_segment;
use sightline_core::events::{names, sse_frame, Audience, ChangeEvent};
use sightline_core::publish::MAX_SKEW_SECS;
use worker::{
    durable_object, wasm_bindgen::JsValue, Date, DurableObject, Env, Headers, ListOptions, Method,
    Request, RequestInit, Response, Result, State,
};

use crate::config::{number_var, Config};
use crate::errors::json_error;
use crate::origin;

/// The Durable Object binding in infra/wrangler.toml.
pub const HUB_BINDING: &str = "STREAM_HUB";
/// Header carrying the [`HubName`] (JSON) on every request to a hub.
const NAME_HEADER: &str = "x-sightline-hub";
/// Frames buffered per stream; a client this far behind is dropped (it reconnects and gets a
/// fresh `init`), so one stalled reader never holds memory or delays the others.
const STREAM_BUFFER: usize = 256;
/// Default of `HEARTBEAT_SECS` (the protocol asks for at most 15 s).
const DEFAULT_HEARTBEAT_SECS: f64 = 15.0;
/// Seen-batch records are pruned every this many publishes.
const PRUNE_EVERY: u32 = 256;
const SEEN_PREFIX: &str = "seen:";
const COUNTS_KEY: &str = "sdk_counts";

/// Which hub an object is; its JSON is the object's name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum HubName {
    /// SDK streams of one service.
    Service { project: String, service: String },
    /// Dashboard streams of one project.
    Dashboard { project: String },
    /// Publish batch ids and signatures seen within the replay window.
    PublishGuard,
}

impl HubName {
    fn object_name(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

async fn call(env: &Env, name: &HubName, path: &str, body: Option<String>) -> Result<Response> {
    let stub = env
        .durable_object(HUB_BINDING)?
        .get_by_name(&name.object_name())?;
    let headers = Headers::new();
    headers.set(NAME_HEADER, &name.object_name())?;
    let mut init = RequestInit::new();
    init.with_method(Method::Post).with_headers(headers);
    if let Some(body) = body {
        init.with_body(Some(JsValue::from_str(&body)));
    }
    stub.fetch_with_request(Request::new_with_init(
        &format!("https://hub{path}"),
        &init,
    )?)
    .await
}

/// Opens a stream on `name` (the caller is already authenticated); `api_key` is used to read
/// the service's state from the origin for `init`.
pub async fn connect(env: &Env, name: &HubName, api_key: &str) -> Result<Response> {
    let body = json!({ "api_key": api_key }).to_string();
    call(env, name, "/connect", Some(body)).await
}

/// Hands published events to a hub, in order.
pub async fn deliver(env: &Env, name: &HubName, events: &[ChangeEvent]) -> Result<()> {
    let body =
        serde_json::to_string(events).map_err(|e| worker::Error::RustError(e.to_string()))?;
    let resp = call(env, name, "/deliver", Some(body)).await?;
    if resp.status_code() / 100 != 2 {
        return Err(worker::Error::RustError(format!(
            "hub answered {}",
            resp.status_code()
        )));
    }
    Ok(())
}

/// Records a publish batch; false when its id or signature was already seen (a replay).
pub async fn first_sighting(env: &Env, id: &str, signature: &str, now_secs: i64) -> Result<bool> {
    let body = json!({ "id": id, "signature": signature, "now": now_secs }).to_string();
    let mut resp = call(env, &HubName::PublishGuard, "/seen", Some(body)).await?;
    let answer: Value = resp.json().await?;
    Ok(answer.get("first").and_then(Value::as_bool) == Some(true))
}

struct Client {
    id: u64,
    tx: mpsc::Sender<Vec<u8>>,
    /// Frames queued, and frames the runtime has taken to write to the client. A client
    /// that goes away is not reported to the object: the runtime just stops taking frames.
    sent: u64,
    taken: Rc<Cell<u64>>,
    /// `taken` at the last heartbeat, when frames were waiting then.
    waiting_since: Option<u64>,
    /// False until `init` is sent; events meanwhile wait in `pending`.
    ready: bool,
    /// Frames published before `init` went out, each with whether it ends the stream and
    /// the event it carries.
    pending: Vec<(Rc<str>, bool, Rc<ChangeEvent>)>,
    /// What this stream was last told, so an event that repeats it is not sent again.
    shown: Shown,
    since_ms: f64,
}

impl Client {
    /// Queues one frame; false when the client is gone or too far behind.
    fn send(&mut self, frame: &str) -> bool {
        self.sent += 1;
        self.tx.try_send(frame.as_bytes().to_vec()).is_ok()
    }

    /// True when frames have been waiting since the last heartbeat and not one was taken
    /// since: nobody is reading (a live client takes each frame within milliseconds).
    fn is_stalled(&self) -> bool {
        self.waiting_since == Some(self.taken.get())
    }

    /// Sends a heartbeat and notes whether frames are left waiting for the next check.
    fn heartbeat(&mut self, frame: &str) -> bool {
        if self.is_stalled() {
            return false;
        }
        let ok = self.send(frame);
        let taken = self.taken.get();
        self.waiting_since = (self.sent > taken).then_some(taken);
        ok
    }
}

#[derive(Default)]
struct Inner {
    clients: Vec<Client>,
    next_id: u64,
    alarm_armed: bool,
    /// Service hubs: the stream count last reported to the dashboard hub.
    reported: Option<usize>,
    /// Dashboard hubs: connected SDK streams per service (also kept in storage).
    sdk_counts: Option<BTreeMap<String, usize>>,
    /// Publish guard: sightings since the last prune.
    since_prune: u32,
}

#[durable_object]
pub struct StreamHub {
    state: State,
    env: Env,
    inner: RefCell<Inner>,
}

#[derive(Deserialize)]
struct ConnectBody {
    #[serde(default)]
    api_key: String,
}

#[derive(Deserialize, Serialize)]
struct CountBody {
    service: String,
    count: usize,
}

#[derive(Deserialize)]
struct SeenBody {
    id: String,
    signature: String,
    now: i64,
}

impl DurableObject for StreamHub {
    fn new(state: State, env: Env) -> Self {
        Self {
            state,
            env,
            inner: RefCell::new(Inner::default()),
        }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        let name: Option<HubName> = req
            .headers()
            .get(NAME_HEADER)?
            .and_then(|n| serde_json::from_str(&n).ok());
        let Some(name) = name else {
            return json_error(400, "bad_hub_request", "missing hub name");
        };
        match (req.path().as_str(), &name) {
            ("/connect", HubName::Service { service, .. }) => {
                let body: ConnectBody = req.json().await?;
                self.connect_sdk(service, &body.api_key).await
            }
            ("/connect", HubName::Dashboard { .. }) => self.connect_dashboard().await,
            ("/deliver", HubName::Service { project, service }) => {
                let events: Vec<ChangeEvent> = req.json().await?;
                self.deliver_sdk(&events);
                self.report_count(project, service).await;
                Response::empty()
            }
            ("/deliver", HubName::Dashboard { .. }) => {
                let events: Vec<ChangeEvent> = req.json().await?;
                self.deliver_dashboard(&events);
                Response::empty()
            }
            ("/count", HubName::Dashboard { .. }) => {
                let body: CountBody = req.json().await?;
                self.update_count(body).await?;
                Response::empty()
            }
            ("/seen", HubName::PublishGuard) => {
                let body: SeenBody = req.json().await?;
                let first = self.record_sighting(&body).await?;
                Response::from_json(&json!({ "first": first }))
            }
            _ => json_error(404, "not_found", "no such hub route"),
        }
    }

    async fn alarm(&self) -> Result<Response> {
        let now = Date::now().as_millis() as f64;
        let max_age_ms = number_var(&self.env, "MAX_STREAM_SECS", 0.0) * 1000.0;
        let frame = sse_frame(names::HEARTBEAT, &json!({ "ts": now as i64 }));
        let any_left = {
            let mut inner = self.inner.borrow_mut();
            inner.alarm_armed = false;
            inner.clients.retain_mut(|c| {
                let expired = max_age_ms > 0.0 && now - c.since_ms > max_age_ms;
                !c.ready || (c.heartbeat(&frame) && !expired)
            });
            !inner.clients.is_empty()
        };
        if any_left {
            self.arm_alarm().await?;
        }
        if let Some(HubName::Service { project, service }) = self.name() {
            self.report_count(&project, &service).await;
        }
        Response::empty()
    }
}

impl StreamHub {
    fn name(&self) -> Option<HubName> {
        self.state
            .id()
            .name()
            .and_then(|n| serde_json::from_str(&n).ok())
    }

    fn add_client(&self, ready: bool) -> (u64, FrameStream) {
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let taken = Rc::new(Cell::new(0u64));
        let counter = taken.clone();
        let rx: FrameStream = Box::pin(rx.map(move |frame| {
            counter.set(counter.get() + 1);
            Ok(frame)
        }));
        let mut inner = self.inner.borrow_mut();
        inner.next_id += 1;
        let id = inner.next_id;
        inner.clients.push(Client {
            id,
            tx,
            sent: 0,
            taken,
            waiting_since: None,
            ready,
            pending: Vec::new(),
            shown: Shown::default(),
            since_ms: Date::now().as_millis() as f64,
        });
        (id, rx)
    }

    fn remove_client(&self, id: u64) {
        self.inner.borrow_mut().clients.retain(|c| c.id != id);
    }

    async fn arm_alarm(&self) -> Result<()> {
        if std::mem::replace(&mut self.inner.borrow_mut().alarm_armed, true) {
            return Ok(());
        }
        let secs = number_var(&self.env, "HEARTBEAT_SECS", DEFAULT_HEARTBEAT_SECS).max(0.1);
        let armed = self
            .state
            .storage()
            .set_alarm(Duration::from_millis((secs * 1000.0) as u64))
            .await;
        if armed.is_err() {
            // Let the next connect or delivery try again.
            self.inner.borrow_mut().alarm_armed = false;
        }
        armed
    }

    async fn connect_sdk(&self, service: &str, api_key: &str) -> Result<Response> {
        let (id, rx) = self.add_client(false);
        let init = match self.sdk_state(service, api_key).await {
            Ok(Ok(init)) => init,
            Err(e) => {
                self.remove_client(id);
                return Err(e);
            }
            Ok(Err(refusal)) => {
                self.remove_client(id);
                return Ok(refusal);
            }
        };
        let killed = init.get("kill_switch").and_then(Value::as_bool) == Some(true);
        {
            let mut inner = self.inner.borrow_mut();
            if let Some(pos) = inner.clients.iter().position(|c| c.id == id) {
                let c = &mut inner.clients[pos];
                let mut open = c.send(&sse_frame(names::INIT, &init)) && !killed;
                c.shown = Shown::from_init(&init);
                for (frame, closes, ev) in std::mem::take(&mut c.pending) {
                    if !open {
                        break;
                    }
                    if c.shown.repeats(&ev.event, &ev.data) {
                        continue;
                    }
                    open = c.send(&frame) && !closes;
                }
                c.ready = true;
                if !open {
                    inner.clients.remove(pos);
                }
            }
        }
        self.arm_alarm().await?;
        if let Some(HubName::Service { project, service }) = self.name() {
            self.report_count(&project, &service).await;
        }
        sse_response(rx)
    }

    /// The service's `{"breakpoints":[…],"kill_switch":bool}` from the origin's poll route,
    /// or the refusal to answer the client with.
    async fn sdk_state(
        &self,
        service: &str,
        api_key: &str,
    ) -> Result<std::result::Result<Value, Response>> {
        let config = match Config::from_env(&self.env) {
            Ok(c) => c,
            Err(m) => return json_error(500, "edge_misconfigured", &m).map(Err),
        };
        let path = format!("/sdk/snapshots/active/{}", encode_path_segment(service));
        let Ok(mut resp) = origin::get(&config, &path, api_key).await else {
            return json_error(
                502,
                "origin_unavailable",
                "the origin API could not be reached",
            )
            .map(Err);
        };
        let status = resp.status_code();
        let body = resp.text().await.unwrap_or_default();
        let poll = serde_json::from_str::<Value>(&body).ok();
        match (status, poll) {
            (200, Some(poll)) => Ok(Ok(json!({
                "breakpoints": poll.get("breakpoints").cloned().unwrap_or_else(|| json!([])),
                "kill_switch": poll.get("kill_switch").and_then(Value::as_bool).unwrap_or(false),
            }))),
            (200, None) => json_error(
                502,
                "origin_unavailable",
                "the origin's poll answer was unreadable",
            )
            .map(Err),
            // The origin's own JSON error (401, 403, 400, …), as it is.
            (_, Some(_)) => {
                let headers = Headers::new();
                headers.set("content-type", "application/json")?;
                Ok(Err(Response::ok(body)?
                    .with_status(status)
                    .with_headers(headers)))
            }
            (_, None) => json_error(
                502,
                "origin_unavailable",
                &format!("the origin answered {status}"),
            )
            .map(Err),
        }
    }

    async fn connect_dashboard(&self) -> Result<Response> {
        let counts = self.sdk_counts().await?;
        let (id, rx) = self.add_client(true);
        let init = sse_frame(names::INIT, &json!({ "sdk_counts": counts }));
        {
            let mut inner = self.inner.borrow_mut();
            if let Some(c) = inner.clients.iter_mut().find(|c| c.id == id) {
                if !c.send(&init) {
                    inner.clients.retain(|c| c.id != id);
                }
            }
        }
        self.arm_alarm().await?;
        sse_response(rx)
    }

    fn deliver_sdk(&self, events: &[ChangeEvent]) {
        let mut inner = self.inner.borrow_mut();
        for ev in events.iter().filter(|e| e.audience == Audience::All) {
            let frame: Rc<str> = sse_frame(&ev.event, &ev.data).into();
            let event = Rc::new(ev.clone());
            // Mirrors the local hub: a kill switch turned on ends every SDK stream after the
            // event, and SDKs fall back to polling.
            let closes = ev.event == names::KILL_SWITCH
                && ev.data.get("enabled").and_then(Value::as_bool) == Some(true);
            inner.clients.retain_mut(|c| {
                if !c.ready {
                    c.pending.push((frame.clone(), closes, event.clone()));
                    return true;
                }
                if c.shown.repeats(&ev.event, &ev.data) {
                    return true;
                }
                c.send(&frame) && !closes
            });
        }
    }

    fn deliver_dashboard(&self, events: &[ChangeEvent]) {
        let mut inner = self.inner.borrow_mut();
        for ev in events {
            let mut data = ev.data.clone();
            if let Value::Object(m) = &mut data {
                m.entry("service")
                    .or_insert_with(|| ev.service.clone().into());
            }
            let frame = sse_frame(&ev.event, &data);
            inner.clients.retain_mut(|c| c.send(&frame));
        }
    }

    /// Tells the project's dashboard hub how many SDK streams this service holds, when that
    /// changed since the last report.
    async fn report_count(&self, project: &str, service: &str) {
        let count = {
            let mut inner = self.inner.borrow_mut();
            let count = inner.clients.len();
            if inner.reported == Some(count) {
                return;
            }
            inner.reported = Some(count);
            count
        };
        let body = serde_json::to_string(&CountBody {
            service: service.to_owned(),
            count,
        })
        .unwrap_or_default();
        let dashboard = HubName::Dashboard {
            project: project.to_owned(),
        };
        if let Err(e) = call(&self.env, &dashboard, "/count", Some(body)).await {
            worker::console_error!("sdk_count report failed: {e}");
            self.inner.borrow_mut().reported = None;
        }
    }

    async fn sdk_counts(&self) -> Result<BTreeMap<String, usize>> {
        if let Some(c) = self.inner.borrow().sdk_counts.clone() {
            return Ok(c);
        }
        let stored: Option<BTreeMap<String, usize>> = self.state.storage().get(COUNTS_KEY).await?;
        let counts = stored.unwrap_or_default();
        self.inner.borrow_mut().sdk_counts = Some(counts.clone());
        Ok(counts)
    }

    async fn update_count(&self, body: CountBody) -> Result<()> {
        let mut counts = self.sdk_counts().await?;
        if body.count == 0 {
            counts.remove(&body.service);
        } else {
            counts.insert(body.service.clone(), body.count);
        }
        self.inner.borrow_mut().sdk_counts = Some(counts.clone());
        self.state.storage().put(COUNTS_KEY, &counts).await?;
        let frame = sse_frame(names::SDK_COUNT, &json!(body));
        self.inner
            .borrow_mut()
            .clients
            .retain_mut(|c| c.send(&frame));
        Ok(())
    }

    /// Remembers a batch id and signature for twice the staleness window (a batch older than
    /// that is refused as stale anyway); false when either was already there.
    async fn record_sighting(&self, seen: &SeenBody) -> Result<bool> {
        let storage = self.state.storage();
        let keys = [
            format!("{SEEN_PREFIX}id:{}", seen.id),
            format!("{SEEN_PREFIX}sig:{}", seen.signature),
        ];
        for key in &keys {
            if storage.get::<i64>(key).await?.is_some() {
                return Ok(false);
            }
        }
        for key in &keys {
            storage.put(key, seen.now).await?;
        }
        let prune = {
            let mut inner = self.inner.borrow_mut();
            inner.since_prune += 1;
            inner.since_prune >= PRUNE_EVERY
        };
        if prune {
            self.inner.borrow_mut().since_prune = 0;
            let all = storage
                .list_with_options(ListOptions::new().prefix(SEEN_PREFIX))
                .await?;
            let cutoff = seen.now - 2 * MAX_SKEW_SECS;
            let mut old = Vec::new();
            all.for_each(&mut |value, key| {
                if value.as_f64().is_some_and(|t| (t as i64) < cutoff) {
                    if let Some(k) = key.as_string() {
                        old.push(k);
                    }
                }
            });
            for chunk in old.chunks(128) {
                storage.delete_multiple(chunk.to_vec()).await?;
            }
        }
        Ok(true)
    }
}

/// What one SDK stream was last told: a fingerprint of each breakpoint it holds and the kill
/// switch. Changes reach the edge asynchronously (in AWS through the table's stream), so an
/// event committed just before a stream's `init` was read can arrive after it, carrying
/// what `init` already said; such an event, or any that repeats the stream's last word on
/// a breakpoint, is not sent again. An event that changes anything is always sent.
#[derive(Default)]
struct Shown {
    breakpoints: HashMap<String, u64>,
    kill_switch: bool,
}

impl Shown {
    fn from_init(init: &Value) -> Self {
        let breakpoints = init
            .get("breakpoints")
            .and_then(Value::as_array)
            .map(|bps| {
                bps.iter()
                    .filter_map(|bp| Some((bp.get("id")?.as_str()?.to_owned(), fingerprint(bp))))
                    .collect()
            })
            .unwrap_or_default();
        Self {
            breakpoints,
            kill_switch: init.get("kill_switch").and_then(Value::as_bool) == Some(true),
        }
    }

    /// True when `event` tells nothing new; otherwise records it as shown.
    fn repeats(&mut self, event: &str, data: &Value) -> bool {
        match event {
            names::BREAKPOINT_CREATED | names::BREAKPOINT_UPDATED => {
                let Some(id) = data.get("id").and_then(Value::as_str) else {
                    return false;
                };
                let print = fingerprint(data);
                self.breakpoints.insert(id.to_owned(), print) == Some(print)
            }
            names::BREAKPOINT_DELETED => {
                if let Some(id) = data.get("id").and_then(Value::as_str) {
                    self.breakpoints.remove(id);
                }
                false
            }
            names::KILL_SWITCH => {
                let enabled = data.get("enabled").and_then(Value::as_bool) == Some(true);
                std::mem::replace(&mut self.kill_switch, enabled) == enabled
            }
            _ => false,
        }
    }
}

/// A hash of a JSON value that ignores the order of object keys.
fn fingerprint(v: &Value) -> u64 {
    fn feed(v: &Value, h: &mut std::collections::hash_map::DefaultHasher) {
        match v {
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                h.write_u8(b'{');
                for k in keys {
                    k.hash(h);
                    feed(&m[k.as_str()], h);
                }
            }
            Value::Array(a) => {
                h.write_u8(b'[');
                h.write_usize(a.len());
                a.iter().for_each(|x| feed(x, h));
            }
            other => other.to_string().hash(h),
        }
    }
    let mut h = std::collections::hash_map::DefaultHasher::new();
    feed(v, &mut h);
    h.finish()
}

/// The body of one stream: its frames, counted as the runtime takes them.
type FrameStream = std::pin::Pin<Box<dyn futures::Stream<Item = Result<Vec<u8>>>>>;

fn sse_response(rx: FrameStream) -> Result<Response> {
    let headers = Headers::new();
    headers.set("content-type", "text/event-stream")?;
    headers.set("cache-control", "no-cache")?;
    headers.set("x-accel-buffering", "no")?;
    Ok(Response::from_stream(rx)?.with_headers(headers))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_init_already_shows_is_not_sent_again() {
        let bp = json!({"id": "b1", "condition": "x > 1", "enabled": true});
        let mut shown = Shown::from_init(&json!({"breakpoints": [bp], "kill_switch": false}));
        // The same breakpoint, keys in another order: nothing new.
        let reordered = json!({"enabled": true, "condition": "x > 1", "id": "b1"});
        assert!(shown.repeats(names::BREAKPOINT_CREATED, &reordered));
        assert!(shown.repeats(names::BREAKPOINT_UPDATED, &reordered));
        let changed = json!({"id": "b1", "condition": "x > 2", "enabled": true});
        assert!(!shown.repeats(names::BREAKPOINT_UPDATED, &changed));
        assert!(shown.repeats(names::BREAKPOINT_UPDATED, &changed));
        // A deletion is always sent, and a later re-creation is news again.
        assert!(!shown.repeats(names::BREAKPOINT_DELETED, &json!({"id": "b1"})));
        assert!(!shown.repeats(names::BREAKPOINT_CREATED, &changed));
        assert!(shown.repeats(names::KILL_SWITCH, &json!({"enabled": false})));
        assert!(!shown.repeats(names::KILL_SWITCH, &json!({"enabled": true})));
        assert!(!shown.repeats("other", &json!({})));
    }
}
