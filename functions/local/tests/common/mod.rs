//! A real `sightline serve` on a random loopback port, and helpers to talk to it.
//!
//! With `SIGHTLINE_TEST_BASE_URL` set, the same tests run against an already running
//! deployment instead (e.g. the Lambda functions behind a local router): no process is
//! spawned; `SIGHTLINE_TEST_API_KEY` must be the key the deployment was bootstrapped with
//! (this harness's [`KEY`]), `SIGHTLINE_TEST_RESET` is a shell command run before each test
//! to give it an empty deployment, and `SIGHTLINE_TEST_CLI` the command that takes the
//! place of `sightline` for `keys ...`. Tests then share the deployment: run them with
//! `--test-threads=1`. `SIGHTLINE_TEST_STOP` and `SIGHTLINE_TEST_START` are the shell
//! commands that stop the deployment's processes (SIGTERM, succeeding only on a graceful
//! exit) and start them again over the same storage, for the restart test.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures::StreamExt;
use serde_json::Value;

pub const KEY: &str = "sl_test_0123456789abcdef0123456789abcdef0123456789abcdef01234567";

pub struct Server {
    pub base: String,
    pub data_dir: tempfile::TempDir,
    /// `None` against an external deployment.
    child: Option<Child>,
    pub http: reqwest::Client,
}

/// The external deployment under test, if any (see the module docs).
pub fn external_base() -> Option<String> {
    std::env::var("SIGHTLINE_TEST_BASE_URL")
        .ok()
        .filter(|b| !b.trim().is_empty())
        .map(|b| b.trim().trim_end_matches('/').to_owned())
}

fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

impl Server {
    pub fn start() -> Self {
        if let Some(base) = external_base() {
            return Self::external(base);
        }
        let data_dir = tempfile::tempdir().unwrap();
        Self::start_in(data_dir)
    }

    fn external(base: String) -> Self {
        let key = std::env::var("SIGHTLINE_TEST_API_KEY").unwrap_or_default();
        assert_eq!(
            key, KEY,
            "SIGHTLINE_TEST_API_KEY must be the key the deployment was bootstrapped with: {KEY}"
        );
        if let Ok(reset) = std::env::var("SIGHTLINE_TEST_RESET") {
            let out = Command::new("sh").args(["-c", &reset]).output().unwrap();
            assert!(
                out.status.success(),
                "SIGHTLINE_TEST_RESET failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Self {
            base,
            data_dir: tempfile::tempdir().unwrap(),
            child: None,
            http: http_client(),
        }
    }

    pub fn start_in(data_dir: tempfile::TempDir) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_sightline"))
            .args(["serve", "--listen", "127.0.0.1:0"])
            .env("SIGHTLINE_DATA_DIR", data_dir.path())
            .env("SIGHTLINE_BOOTSTRAP_API_KEY", KEY)
            .env("SIGHTLINE_HEARTBEAT_SECS", "1")
            .env("SIGHTLINE_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start sightline");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let base = loop {
            let line = lines
                .next()
                .expect("server exited before listening")
                .unwrap();
            if let Some(rest) = line.strip_prefix("Sightline listening on ") {
                break rest.trim().to_owned();
            }
        };
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Self {
            base,
            data_dir,
            child: Some(child),
            http: http_client(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Runs `sightline <args>` against this server's data dir and returns stdout.
    /// Against an external deployment, runs `$SIGHTLINE_TEST_CLI <args>` instead.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = if self.child.is_some() {
            Command::new(env!("CARGO_BIN_EXE_sightline"))
                .args(args)
                .env("SIGHTLINE_DATA_DIR", self.data_dir.path())
                .env("SIGHTLINE_LOG", "warn")
                .output()
                .expect("run sightline cli")
        } else {
            let cli = std::env::var("SIGHTLINE_TEST_CLI").expect(
                "SIGHTLINE_TEST_CLI is needed for CLI steps against an external deployment",
            );
            Command::new("sh")
                .args(["-c", &format!("{cli} \"$@\""), "cli"])
                .args(args)
                .output()
                .expect("run SIGHTLINE_TEST_CLI")
        };
        assert!(
            out.status.success(),
            "cli {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.send(self.http.get(self.url(path)), KEY).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(self.http.post(self.url(path)).json(&body), KEY)
            .await
    }

    pub async fn post_raw(&self, path: &str, body: &str) -> (u16, Value) {
        self.send(
            self.http
                .post(self.url(path))
                .header("content-type", "application/json")
                .body(body.to_owned()),
            KEY,
        )
        .await
    }

    pub async fn patch(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(self.http.patch(self.url(path)).json(&body), KEY)
            .await
    }

    pub async fn delete(&self, path: &str) -> (u16, Value) {
        self.send(self.http.delete(self.url(path)), KEY).await
    }

    pub async fn send(&self, req: reqwest::RequestBuilder, key: &str) -> (u16, Value) {
        let resp = req.header("X-API-Key", key).send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, body)
    }

    /// Auto-registers a call site and returns the breakpoint object.
    pub async fn register(&self, service: &str, function: &str, label: &str, line: i64) -> Value {
        let (status, bp) = self
            .post(
                "/sdk/snapshots/auto-register",
                serde_json::json!({"service_name": service, "file_path": format!("/app/{service}.py"),
                    "line_number": line, "function_name": function, "label": label}),
            )
            .await;
        assert!(
            status == 201 || status == 200,
            "auto-register: {status} {bp}"
        );
        bp
    }

    /// Waits until a change made through one process of an external deployment shows in
    /// the others: each Lambda function keeps its reads of a service's state for
    /// `state_cache_ms` (1 s). One local server drops them at once: nothing to wait for.
    pub async fn settle(&self) {
        if self.child.is_none() {
            let ms = sightline_core::app::Config::default().state_cache_ms;
            tokio::time::sleep(Duration::from_millis(u64::try_from(ms).unwrap() + 100)).await;
        }
    }

    /// Opens an SSE stream with the given key.
    pub async fn stream(&self, path: &str, key: &str) -> SseReader {
        let resp = self
            .http
            .get(self.url(path))
            .header("X-API-Key", key)
            .header("Accept", "text/event-stream")
            .timeout(Duration::from_secs(3600))
            .send()
            .await
            .unwrap();
        SseReader::new(resp)
    }

    /// Sends SIGTERM and waits for the process to exit; returns whether it exited cleanly.
    /// Against an external deployment, runs `$SIGHTLINE_TEST_STOP`.
    pub fn terminate(&mut self) -> bool {
        let Some(child) = self.child.as_mut() else {
            return run_external("SIGHTLINE_TEST_STOP");
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        for _ in 0..100 {
            if let Ok(Some(status)) = child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }

    /// Starts the server again over the same data after [`Server::terminate`]. Against an
    /// external deployment, runs `$SIGHTLINE_TEST_START` (no reset: the data must be there).
    pub fn restart(mut self) -> Self {
        if self.child.is_none() {
            assert!(
                run_external("SIGHTLINE_TEST_START"),
                "SIGHTLINE_TEST_START failed"
            );
            return self;
        }
        let dir = std::mem::replace(&mut self.data_dir, tempfile::tempdir().unwrap());
        drop(self);
        Self::start_in(dir)
    }
}

/// Runs the deployment command in `var`; whether it succeeded.
fn run_external(var: &str) -> bool {
    let cmd = std::env::var(var)
        .unwrap_or_else(|_| panic!("{var} is needed to restart an external deployment"));
    let out = Command::new("sh").args(["-c", &cmd]).output().unwrap();
    if !out.status.success() {
        eprintln!("{var} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    out.status.success()
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One parsed SSE event, with the raw frame for wire-format checks.
#[derive(Debug, Clone)]
pub struct SseEvent {
    pub event: String,
    pub data: Value,
    pub raw: String,
}

pub struct SseReader {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    stream: futures::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    buf: String,
}

impl SseReader {
    fn new(resp: reqwest::Response) -> Self {
        Self {
            status: resp.status().as_u16(),
            headers: resp.headers().clone(),
            stream: resp.bytes_stream().boxed(),
            buf: String::new(),
        }
    }

    /// The next event within `timeout`, or `None` when the stream ended or timed out.
    pub async fn next(&mut self, timeout: Duration) -> Option<SseEvent> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(pos) = self.buf.find("\n\n") {
                let raw: String = self.buf.drain(..pos + 2).collect();
                let mut event = String::new();
                let mut data = Vec::new();
                for line in raw.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        event = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push(v.trim_start().to_owned());
                    }
                }
                let data = serde_json::from_str(&data.join("\n")).unwrap_or(Value::Null);
                return Some(SseEvent { event, data, raw });
            }
            let chunk = tokio::time::timeout_at(deadline, self.stream.next())
                .await
                .ok()??
                .ok()?;
            self.buf.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    /// Skips heartbeats and returns the next other event.
    pub async fn next_non_heartbeat(&mut self, timeout: Duration) -> Option<SseEvent> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let ev = self.next(left).await?;
            if ev.event != "heartbeat" {
                return Some(ev);
            }
        }
    }
}
