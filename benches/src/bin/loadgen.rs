//! HTTP load generator for a running `sightline serve`.
//!
//! Closed loop by default: `--concurrency` workers, each with its own keep-alive
//! HTTP/1.1 connection, send back to back. With `--rate R` the load is open loop: each worker
//! sends on a fixed schedule (R/concurrency per second), and `latency_from_schedule_ms`
//! counts from the intended send time, so a stalled server is not hidden (no coordinated
//! omission).
//!
//! Bounded: stops after `--duration` seconds or `--requests` requests, whichever is first.
//! Prints one JSON object: requests, errors (non-2xx or transport), status counts,
//! throughput, latency percentiles, and the CPU time this process used (the server shares
//! the machine).
//!
//! The measured requests go over bare `hyper` connections, one per worker: the generator
//! shares the server's cores, and every microsecond it spends is one the server does not
//! get (with `reqwest`'s pool, URL parsing and header maps it spent ~52 µs of CPU per
//! capture, now ~40 µs).
//!
//! `capture` first creates an unlimited breakpoint through the admin API and sends
//! distinct ~2 KB snapshots as an SDK sends them (the current `captured_at`, a unique
//! `idempotency_key`, random-looking trace and span ids); `poll` sends
//! `GET /sdk/snapshots/active/{service}`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use clap::{Parser, ValueEnum};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use sightline_benches::{breakpoint_body, capture_body, FUNCTION, LABEL, SERVICE};
use sightline_core::timefmt::format_ms;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    Capture,
    Poll,
}

#[derive(Debug, Parser)]
#[command(
    name = "loadgen",
    about = "Bounded HTTP load against a Sightline server"
)]
struct Args {
    /// Server base URL, e.g. http://127.0.0.1:8081
    #[arg(long)]
    base: String,
    /// API key with the sdk scope (and admin for `capture`, which creates a breakpoint).
    #[arg(long, env = "SIGHTLINE_API_KEY")]
    key: String,
    #[arg(long, value_enum)]
    mode: Mode,
    /// Parallel workers (one keep-alive connection each).
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Measured seconds (after warm-up).
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Stop after this many measured requests.
    #[arg(long)]
    requests: Option<u64>,
    /// Seconds of load before measuring (not counted).
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Target requests/s over all workers (open loop); without it, closed loop.
    #[arg(long)]
    rate: Option<f64>,
    /// Per-request timeout in seconds.
    #[arg(long, default_value_t = 10.0)]
    timeout: f64,
    /// Worker threads of the load generator's runtime.
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

/// What one worker observed while measuring.
#[derive(Default)]
struct Stats {
    /// Microseconds from send to full response.
    latencies_us: Vec<u64>,
    /// Microseconds from the scheduled send time to full response (rate mode).
    scheduled_us: Vec<u64>,
    errors: u64,
    statuses: BTreeMap<String, u64>,
    /// Sends that started more than 5 ms after their scheduled time (rate mode): the
    /// generator itself could not keep up (tokio timers alone are up to ~1-2 ms late).
    late_sends: u64,
}

struct Shared {
    url: String,
    /// Where the server listens (`host:port`), and the `Host` header sent to it.
    authority: String,
    /// The request target: the URL's path.
    path: String,
    timeout: Duration,
    key: String,
    mode: Mode,
    /// `capture`: the body without its opening `{` and the per-request fields
    /// (idempotency key, trace and span ids), which each request splices in front.
    body_tail: String,
    seq: AtomicU64,
    measured: AtomicU64,
    limit: u64,
    stop: AtomicBool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.concurrency == 0 || args.threads == 0 {
        bail!("--concurrency and --threads must be at least 1");
    }
    if !(args.duration > 0.0 && args.duration <= 3600.0) {
        bail!("--duration must be in (0, 3600] seconds");
    }
    if args.rate.is_some_and(|r| r <= 0.0 || !r.is_finite()) {
        bail!("--rate must be positive");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads)
        .enable_all()
        .build()?;
    let report = rt.block_on(run(&args))?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

async fn run(args: &Args) -> anyhow::Result<Value> {
    let base = args.base.trim_end_matches('/').to_owned();
    // Setting up the breakpoint is not measured: `reqwest` does it.
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs_f64(args.timeout))
        .build()?;

    let (url, body_tail, breakpoint_id) = match args.mode {
        Mode::Capture => {
            let bp_id = create_breakpoint(&client, &base, &args.key).await?;
            let mut body = capture_body(&bp_id, 0);
            if let Value::Object(m) = &mut body {
                for k in ["idempotency_key", "trace_id", "span_id", "captured_at"] {
                    m.remove(k);
                }
            }
            let text = serde_json::to_string(&body)?;
            let tail = text
                .strip_prefix('{')
                .context("capture body is not an object")?
                .to_owned();
            (format!("{base}/sdk/snapshots/capture"), tail, Some(bp_id))
        }
        Mode::Poll => (
            format!("{base}/sdk/snapshots/active/{SERVICE}"),
            String::new(),
            None,
        ),
    };
    let uri: http::Uri = url.parse().context("--base is not a URL")?;
    if uri.scheme_str() != Some("http") {
        bail!("--base must be an http:// URL (the generator speaks plain HTTP/1.1)");
    }
    let authority = uri.authority().context("--base has no host")?.to_string();
    let path = uri.path().to_owned();

    let shared = Arc::new(Shared {
        authority,
        path,
        timeout: Duration::from_secs_f64(args.timeout),
        url,
        key: args.key.clone(),
        mode: args.mode,
        body_tail,
        seq: AtomicU64::new(0),
        measured: AtomicU64::new(0),
        limit: args.requests.unwrap_or(u64::MAX),
        stop: AtomicBool::new(false),
    });

    let start = Instant::now();
    let measure_from = start + Duration::from_secs_f64(args.warmup.max(0.0));
    let deadline = measure_from + Duration::from_secs_f64(args.duration);
    // Each worker sends every `interval` in rate mode, staggered across the interval.
    let interval = args
        .rate
        .map(|r| Duration::from_secs_f64(args.concurrency as f64 / r));
    let cpu_before = cpu_seconds();

    let workers: Vec<_> = (0..args.concurrency)
        .map(|w| {
            let shared = shared.clone();
            let first = interval.map(|i| start + i.mul_f64(w as f64 / args.concurrency as f64));
            tokio::spawn(worker(shared, measure_from, deadline, interval, first))
        })
        .collect();
    let mut all = Stats::default();
    for w in workers {
        let s = w.await?;
        all.latencies_us.extend(s.latencies_us);
        all.scheduled_us.extend(s.scheduled_us);
        all.errors += s.errors;
        all.late_sends += s.late_sends;
        for (k, v) in s.statuses {
            *all.statuses.entry(k).or_default() += v;
        }
    }
    let end = Instant::now();
    let elapsed = end.saturating_duration_since(measure_from).as_secs_f64();
    let cpu = cpu_seconds().zip(cpu_before).map(|(a, b)| a - b);

    let requests = all.latencies_us.len() as u64;
    let mut report = json!({
        "mode": match args.mode { Mode::Capture => "capture", Mode::Poll => "poll" },
        "url": shared.url,
        "breakpoint_id": breakpoint_id,
        "concurrency": args.concurrency,
        "target_rate": args.rate,
        "measured_seconds": round3(elapsed),
        "requests": requests,
        "errors": all.errors,
        "statuses": all.statuses,
        "throughput_rps": round3(if elapsed > 0.0 { requests as f64 / elapsed } else { 0.0 }),
        "latency_ms": percentiles(&mut all.latencies_us),
        "loadgen_cpu_seconds": cpu.map(round3),
        "loadgen_nice": nice(),
    });
    if interval.is_some() {
        report["latency_from_schedule_ms"] = percentiles(&mut all.scheduled_us);
        report["late_sends_over_5ms"] = all.late_sends.into();
    }
    Ok(report)
}

/// Creates the unlimited benchmark breakpoint, or reuses the active one already at its call
/// site (a server keeps one active breakpoint per function + label, so a second run gets 409).
async fn create_breakpoint(
    client: &reqwest::Client,
    base: &str,
    key: &str,
) -> anyhow::Result<String> {
    let resp = client
        .post(format!("{base}/api/breakpoints"))
        .header("x-api-key", key)
        .json(&breakpoint_body())
        .send()
        .await
        .context("POST /api/breakpoints")?;
    let status = resp.status();
    let body: Value = resp.json().await.context("breakpoint response")?;
    let bp = if status == reqwest::StatusCode::CONFLICT {
        existing_breakpoint(client, base, key).await?
    } else if status.is_success() {
        body
    } else {
        bail!("creating the breakpoint failed: {status} {body}");
    };
    let unlimited = ["max_captures", "rate_limit_per_minute"]
        .iter()
        .all(|k| bp.get(k).and_then(Value::as_i64) == Some(0));
    if !unlimited {
        bail!("the benchmark breakpoint is not unlimited (max_captures/rate_limit_per_minute 0): {bp}");
    }
    bp.get("id")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .context("breakpoint has no id")
}

async fn existing_breakpoint(
    client: &reqwest::Client,
    base: &str,
    key: &str,
) -> anyhow::Result<Value> {
    let resp = client
        .get(format!("{base}/api/breakpoints?service={SERVICE}"))
        .header("x-api-key", key)
        .send()
        .await
        .context("GET /api/breakpoints")?;
    let status = resp.status();
    let mut body: Value = resp.json().await.context("breakpoint list")?;
    if !status.is_success() {
        bail!("listing breakpoints failed: {status} {body}");
    }
    let list = match body.get_mut("breakpoints").map(Value::take) {
        Some(Value::Array(list)) => list,
        _ => bail!("unexpected breakpoint list: {body}"),
    };
    list.into_iter()
        .find(|b| {
            b.get("function_name").and_then(Value::as_str) == Some(FUNCTION)
                && b.get("label").and_then(Value::as_str) == Some(LABEL)
                && b.get("status").and_then(Value::as_str) == Some("active")
        })
        .context("409 on create, but no active breakpoint at the benchmark call site")
}

async fn worker(
    shared: Arc<Shared>,
    measure_from: Instant,
    deadline: Instant,
    interval: Option<Duration>,
    mut next_send: Option<Instant>,
) -> Stats {
    let mut stats = Stats::default();
    let mut conn = None;
    loop {
        if let Some(at) = next_send {
            if at >= deadline {
                break;
            }
            tokio::time::sleep_until(at.into()).await;
        }
        let sent = Instant::now();
        if sent >= deadline || shared.stop.load(Ordering::Relaxed) {
            break;
        }
        let measuring = sent >= measure_from;
        if measuring && shared.measured.fetch_add(1, Ordering::Relaxed) >= shared.limit {
            shared.stop.store(true, Ordering::Relaxed);
            break;
        }
        let status = send(&shared, &mut conn).await;
        let done = Instant::now();
        if measuring {
            stats.latencies_us.push(micros(done - sent));
            if let Some(at) = next_send {
                stats
                    .scheduled_us
                    .push(micros(done.saturating_duration_since(at)));
                if sent.saturating_duration_since(at) > Duration::from_millis(5) {
                    stats.late_sends += 1;
                }
            }
            match status {
                Ok(code) => {
                    if !(200..300).contains(&code) {
                        stats.errors += 1;
                    }
                    *stats.statuses.entry(code.to_string()).or_default() += 1;
                }
                Err(kind) => {
                    stats.errors += 1;
                    *stats.statuses.entry(kind.to_owned()).or_default() += 1;
                }
            }
        }
        if let (Some(at), Some(i)) = (next_send.as_mut(), interval) {
            *at += i;
        }
    }
    stats
}

/// SplitMix64's finaliser: distinct inputs give distinct, evenly spread outputs.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Sends one request on the worker's connection (opening one if it has none) and reads
/// the whole response; the status, or a transport error kind. A connection that failed or
/// timed out is dropped, and the next request opens a new one.
async fn send(
    shared: &Shared,
    conn: &mut Option<SendRequest<Full<Bytes>>>,
) -> Result<u16, &'static str> {
    let request = request(shared).map_err(|_| "request")?;
    let exchange = async {
        // A kept connection the server has closed is not ready: open another.
        let kept = match conn.take() {
            Some(mut sender) => sender.ready().await.ok().map(|()| sender),
            None => None,
        };
        let sender = conn.insert(match kept {
            Some(sender) => sender,
            None => connect(&shared.authority).await?,
        });
        let response = sender
            .send_request(request)
            .await
            .map_err(|_| "transport")?;
        let status = response.status().as_u16();
        response.into_body().collect().await.map_err(|_| "body")?;
        Ok(status)
    };
    let outcome = match tokio::time::timeout(shared.timeout, exchange).await {
        Ok(outcome) => outcome,
        Err(_) => Err("timeout"),
    };
    if outcome.is_err() {
        *conn = None;
    }
    outcome
}

/// A keep-alive HTTP/1.1 connection to `authority`, driven by a task of its own and ready
/// for its first request.
async fn connect(authority: &str) -> Result<SendRequest<Full<Bytes>>, &'static str> {
    let stream = tokio::net::TcpStream::connect(authority)
        .await
        .map_err(|_| "connect")?;
    stream.set_nodelay(true).map_err(|_| "connect")?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|_| "connect")?;
    tokio::spawn(connection);
    sender.ready().await.map_err(|_| "connect")?;
    Ok(sender)
}

/// The next request of this run: a capture with its own idempotency key, capture time and
/// trace and span ids (as an SDK sends them), or a poll.
fn request(shared: &Shared) -> http::Result<http::Request<Full<Bytes>>> {
    let builder = http::Request::builder()
        .uri(shared.path.as_str())
        .header(http::header::HOST, shared.authority.as_str())
        .header("x-api-key", shared.key.as_str());
    match shared.mode {
        Mode::Capture => {
            let seq = shared.seq.fetch_add(1, Ordering::Relaxed);
            let pid = std::process::id();
            let captured_at = format_ms(unix_ms());
            let id = (u64::from(pid) << 40) ^ seq;
            let body = format!(
                "{{\"idempotency_key\":\"lg-{pid}-{seq:x}\",\"captured_at\":\"{captured_at}\",\"trace_id\":\"{:016x}{:016x}\",\"span_id\":\"{:016x}\",{}",
                mix(id),
                mix(!id),
                mix(id ^ 0x5bd1_e995),
                shared.body_tail
            );
            builder
                .method(http::Method::POST)
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(Full::new(Bytes::from(body)))
        }
        Mode::Poll => builder.method(http::Method::GET).body(Full::default()),
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// p50/p90/p99/p99.9/max/mean in milliseconds (nearest-rank).
fn percentiles(us: &mut [u64]) -> Value {
    if us.is_empty() {
        return Value::Null;
    }
    us.sort_unstable();
    let at = |q: f64| {
        let rank = ((q * us.len() as f64).ceil() as usize).clamp(1, us.len());
        round3(us[rank - 1] as f64 / 1000.0)
    };
    let mean = us.iter().sum::<u64>() as f64 / us.len() as f64 / 1000.0;
    json!({
        "p50": at(0.50),
        "p90": at(0.90),
        "p99": at(0.99),
        "p999": at(0.999),
        "max": at(1.0),
        "mean": round3(mean),
    })
}

/// User + system CPU seconds of this process so far (Linux `/proc/self/stat`).
fn cpu_seconds() -> Option<f64> {
    let fields = proc_stat()?;
    // utime and stime are fields 14 and 15.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // USER_HZ is 100 on every Linux configuration Sightline targets.
    Some((utime + stime) / 100.0)
}

/// This process's nice value (field 19 of `/proc/self/stat`): `scripts/load.sh` raises
/// the generator's priority where it may, and a report says whether it did.
fn nice() -> Option<i64> {
    proc_stat()?.get(16)?.parse().ok()
}

/// The fields of `/proc/self/stat` after the parenthesised command name (field 3 first).
fn proc_stat() -> Option<Vec<String>> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = stat.rsplit_once(')')?.1;
    Some(rest.split_whitespace().map(str::to_owned).collect())
}
