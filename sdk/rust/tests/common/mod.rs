//! A real `sightline serve` child process on a random loopback port, with blocking admin
//! helpers (their own current-thread runtime, so tests themselves run without tokio).
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

pub const KEY: &str = "sl_test_0123456789abcdef0123456789abcdef0123456789abcdef01234567";

/// The `sightline` binary: `$SIGHTLINE_BIN`, else `<target>/debug/sightline` (built on demand).
fn binary() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Ok(p) = std::env::var("SIGHTLINE_BIN") {
            return PathBuf::from(p);
        }
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
        let target = std::env::var("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|_| root.join("target"));
        let bin = target.join("debug/sightline");
        if !bin.exists() {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let status = Command::new(cargo)
                .args(["build", "-p", "sightline-local", "--bin", "sightline"])
                .current_dir(&root)
                .status()
                .expect("run cargo build");
            assert!(status.success(), "building the sightline binary failed");
        }
        bin
    })
    .clone()
}

pub struct Server {
    pub base: String,
    _data_dir: tempfile::TempDir,
    child: Child,
    rt: tokio::runtime::Runtime,
    http: reqwest::Client,
}

impl Server {
    /// A server with 1 s SSE heartbeats (tests see them quickly).
    pub fn start() -> Self {
        Self::start_with_heartbeat(1)
    }

    pub fn start_with_heartbeat(heartbeat_secs: u64) -> Self {
        let data_dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(binary())
            .args(["serve", "--listen", "127.0.0.1:0"])
            .env("SIGHTLINE_DATA_DIR", data_dir.path())
            .env("SIGHTLINE_BOOTSTRAP_API_KEY", KEY)
            .env("SIGHTLINE_HEARTBEAT_SECS", heartbeat_secs.to_string())
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
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap();
        Self {
            base,
            _data_dir: data_dir,
            child,
            rt,
            http,
        }
    }

    pub fn config(&self, service: &str) -> sightline::Config {
        let mut c = sightline::Config::new(KEY, service).with_endpoint(self.base.clone());
        c.poll_interval = Duration::from_secs(300);
        c.request_timeout = Duration::from_secs(5);
        c
    }

    fn send(&self, req: reqwest::RequestBuilder) -> (u16, Value) {
        self.rt.block_on(async {
            let resp = req.header("X-API-Key", KEY).send().await.unwrap();
            let status = resp.status().as_u16();
            let text = resp.text().await.unwrap();
            (
                status,
                serde_json::from_str(&text).unwrap_or(Value::String(text)),
            )
        })
    }

    pub fn get(&self, path: &str) -> (u16, Value) {
        self.send(self.http.get(format!("{}{path}", self.base)))
    }

    pub fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(self.http.post(format!("{}{path}", self.base)).json(&body))
    }

    pub fn patch(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(self.http.patch(format!("{}{path}", self.base)).json(&body))
    }

    pub fn delete(&self, path: &str) -> (u16, Value) {
        self.send(self.http.delete(format!("{}{path}", self.base)))
    }

    /// SIGSTOP: connections are still accepted by the kernel, nothing answers.
    pub fn pause(&self) {
        let status = Command::new("kill")
            .args(["-STOP", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -STOP failed");
    }

    /// All breakpoints of a service (admin view).
    pub fn breakpoints(&self, service: &str) -> Vec<Value> {
        let (status, body) = self.get(&format!("/api/breakpoints?service={service}"));
        assert_eq!(status, 200, "{body}");
        body["breakpoints"].as_array().cloned().unwrap_or_default()
    }

    /// Full stored snapshots of a breakpoint.
    pub fn snapshots(&self, breakpoint_id: &str) -> Vec<Value> {
        let (status, list) = self.get(&format!(
            "/api/snapshots?breakpoint_id={breakpoint_id}&limit=100"
        ));
        assert_eq!(status, 200, "{list}");
        list["snapshots"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|s| {
                self.get(&format!("/api/snapshots/{}", s["id"].as_str().unwrap()))
                    .1
            })
            .collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `cond` every 20 ms until it holds or `timeout` passes; returns whether it held.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Threads of this process.
pub fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|d| d.count())
        .unwrap_or(0)
}
