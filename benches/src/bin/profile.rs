//! Where a capture's time goes: CPU cost of the pure steps (parse, condition, scrub,
//! serialisation) and, per backend, every store operation a capture and a poll make, with
//! counts and mean wall time (sequential, then with 32 captures in flight).
//!
//! Run: `cargo run --release -p sightline-benches --bin profile [-- N [memory|sqlite]]`
//! (N captures, default 3000; both backends and the pure steps unless one is named).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{json, Value};
use sightline_benches::{capture_body, variables, Backend, Harness, OpStats, SERVICE};
use sightline_core::condition::Condition;
use sightline_core::pii::Scrubber;
use sightline_core::wire::CaptureRequest;

fn main() -> anyhow::Result<()> {
    let n: u64 = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()
        .context("N must be a number")?
        .unwrap_or(3000);
    let only = std::env::args().nth(2);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    if only.is_none() {
        pure_steps(n)?;
        rt.block_on(primitives(n))?;
    }
    for backend in [Backend::Memory, Backend::Sqlite] {
        if only.as_deref().is_none_or(|o| o == backend.name()) {
            rt.block_on(store_ops(backend, n))?;
        }
    }
    Ok(())
}

/// Median per-call time of `f` over 7 batches of `n` calls.
fn per_call<F: FnMut()>(n: u64, mut f: F) -> Duration {
    let mut batches: Vec<Duration> = (0..7)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..n {
                f();
            }
            t.elapsed() / u32::try_from(n).unwrap_or(u32::MAX)
        })
        .collect();
    batches.sort();
    batches[3]
}

fn pure_steps(n: u64) -> anyhow::Result<()> {
    let body = serde_json::to_vec(&capture_body("0f8fad5b-d9cb-469f-a165-70867728950e", 1))?;
    let vars = variables();
    let vars_len = serde_json::to_vec(&vars)?.len();
    let req = CaptureRequest::parse(&body)?;
    let cond = Condition::compile("amount > 1")?;
    let scrubber = Scrubber::builtin();
    println!(
        "== CPU of the pure steps (median of 7 batches of {n}; body {} B, variables {vars_len} B)",
        body.len()
    );
    let parse = per_call(n, || {
        std::hint::black_box(CaptureRequest::parse(std::hint::black_box(&body)).is_ok());
    });
    let condition = per_call(n, || {
        // What capture does: clone the variables into the condition context, then evaluate.
        let mut ctx = vars.as_object().cloned().unwrap_or_default();
        if let Some(rc) = &req.request_context {
            ctx.entry("request").or_insert_with(|| rc.clone());
        }
        std::hint::black_box(cond.evaluate_bool(&Value::Object(ctx)).ok());
    });
    let clone = per_call(n, || {
        std::hint::black_box(vars.clone());
    });
    let scrub = per_call(n, || {
        let mut v = vars.clone();
        std::hint::black_box(scrubber.scrub_variables(&mut v));
    })
    .saturating_sub(clone);
    let scrub_ctx = per_call(n, || {
        let mut c = req.request_context.clone().unwrap_or(Value::Null);
        std::hint::black_box(scrubber.scrub_request_context(&mut c));
    });
    let dedup_key = per_call(n, || {
        let content = json!([
            req.variables,
            req.stack_trace,
            req.expression_results,
            req.trace_id,
            req.span_id
        ]);
        let text = format!("bp\0{}\0{content}", req.captured_at_raw);
        std::hint::black_box(sightline_core::app::sha256_hex(text.as_bytes()));
    });
    let payload = json!({"variables": vars, "stack_trace": req.stack_trace, "request_context": req.request_context});
    let serialise = per_call(n, || {
        std::hint::black_box(payload.to_string());
    });
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!(
        "  parse body (CaptureRequest::parse)      {:8.2} µs",
        us(parse)
    );
    println!(
        "  condition (context clone + evaluate)    {:8.2} µs",
        us(condition)
    );
    println!(
        "  scrub variables (excl. clone)           {:8.2} µs  = {:.0} MB/s",
        us(scrub),
        vars_len as f64 / scrub.as_secs_f64().max(1e-12) / 1e6
    );
    println!(
        "  scrub request context                   {:8.2} µs",
        us(scrub_ctx)
    );
    println!("  dedup key without idempotency_key       {:8.2} µs  (content JSON + sha256; not taken with a key)", us(dedup_key));
    println!("  serialise payload once                  {:8.2} µs  (a stored item is serialised again by SQLite's adapter)", us(serialise));
    println!(
        "  clone variables                         {:8.2} µs",
        us(clone)
    );
    Ok(())
}

/// The two costs every SQLite store call pays: the `spawn_blocking` round trip, and the
/// SQLite work itself (same schema and pragmas as `SqliteItemStore`, run inline).
async fn primitives(n: u64) -> anyhow::Result<()> {
    println!("== primitives (median of 7 batches of {n})");
    let mut batches = Vec::new();
    for _ in 0..7 {
        let t = Instant::now();
        for _ in 0..n {
            tokio::task::spawn_blocking(|| std::hint::black_box(1)).await?;
        }
        batches.push(t.elapsed() / u32::try_from(n).unwrap_or(u32::MAX));
    }
    batches.sort();
    println!(
        "  tokio spawn_blocking round trip (empty)  {:8.2} µs",
        batches[3].as_secs_f64() * 1e6
    );

    let dir = tempfile::tempdir()?;
    let db = dir.path().join("raw.db");
    let conn = rusqlite::Connection::open(&db)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.execute_batch(
        "CREATE TABLE items (pk TEXT NOT NULL, sk TEXT NOT NULL, attrs TEXT NOT NULL, expires_at INTEGER, \
         PRIMARY KEY (pk, sk)) WITHOUT ROWID; \
         CREATE INDEX items_expires_at ON items (expires_at) WHERE expires_at IS NOT NULL;",
    )?;
    let reader =
        rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let attrs = serde_json::to_string(&capture_body("0f8fad5b-d9cb-469f-a165-70867728950e", 1))?;
    let upsert = "INSERT INTO items (pk, sk, attrs, expires_at) VALUES (?1, ?2, ?3, ?4) \
                  ON CONFLICT (pk, sk) DO UPDATE SET attrs = excluded.attrs, expires_at = excluded.expires_at";
    let select = "SELECT attrs, expires_at FROM items WHERE pk = ?1 AND sk = ?2 AND (expires_at IS NULL OR expires_at > ?3)";
    let mut seq = 0_u64;
    let mut put = || -> rusqlite::Result<()> {
        seq += 1;
        conn.prepare_cached(upsert)?.execute(rusqlite::params![
            "P#default#SNAP",
            format!("{seq:020}"),
            attrs,
            2_000_000_000_i64
        ])?;
        Ok(())
    };
    let t = Instant::now();
    for _ in 0..n {
        put()?;
    }
    let autocommit = t.elapsed() / u32::try_from(n).unwrap_or(u32::MAX);
    let mut seq2 = 0_u64;
    let t = Instant::now();
    for _ in 0..n {
        seq2 += 1;
        // What a conditional put/update does: BEGIN IMMEDIATE, read, write, COMMIT.
        let tx =
            rusqlite::Transaction::new_unchecked(&conn, rusqlite::TransactionBehavior::Immediate)?;
        let _: Option<String> = tx
            .prepare_cached(select)?
            .query_row(
                rusqlite::params!["P#default#SERVICES", "checkout-api", 0],
                |r| r.get(0),
            )
            .ok();
        tx.prepare_cached(upsert)?.execute(rusqlite::params![
            "P#default#DEDUP",
            format!("d{seq2:020}"),
            "{}",
            2_000_000_000_i64
        ])?;
        tx.commit()?;
    }
    let tx_put = t.elapsed() / u32::try_from(n).unwrap_or(u32::MAX);
    // A reader after each write: its page cache is invalidated by the writer's commit.
    let t = Instant::now();
    for i in 0..n {
        put()?;
        let _: Option<String> = reader
            .prepare_cached(select)?
            .query_row(
                rusqlite::params!["P#default#SNAP", format!("{:020}", i + 1), 0],
                |r| r.get(0),
            )
            .ok();
    }
    let put_then_read =
        (t.elapsed() / u32::try_from(n).unwrap_or(u32::MAX)).saturating_sub(autocommit);
    let t = Instant::now();
    for i in 0..n {
        let _: Option<String> = reader
            .prepare_cached(select)?
            .query_row(
                rusqlite::params!["P#default#SNAP", format!("{:020}", i + 1), 0],
                |r| r.get(0),
            )
            .ok();
    }
    let read_warm = t.elapsed() / u32::try_from(n).unwrap_or(u32::MAX);
    // The same upserts, five per transaction (one capture's writes in one commit).
    let groups = (n / 5).max(1);
    let t = Instant::now();
    for _ in 0..groups {
        let tx =
            rusqlite::Transaction::new_unchecked(&conn, rusqlite::TransactionBehavior::Immediate)?;
        for _ in 0..5 {
            put()?;
        }
        tx.commit()?;
    }
    let batched = t.elapsed() / u32::try_from(groups * 5).unwrap_or(u32::MAX);
    // Autocommit again, without automatic checkpoints (a background checkpointer's view).
    conn.pragma_update(None, "wal_autocheckpoint", 0)?;
    let t = Instant::now();
    for _ in 0..n {
        put()?;
    }
    let no_checkpoint = t.elapsed() / u32::try_from(n).unwrap_or(u32::MAX);
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!(
        "  sqlite upsert 2 KB row, autocommit        {:8.2} µs",
        us(autocommit)
    );
    println!(
        "  sqlite BEGIN + point read + upsert + COMMIT {:6.2} µs",
        us(tx_put)
    );
    println!(
        "  sqlite point read, other conn just wrote  {:8.2} µs",
        us(put_then_read)
    );
    println!(
        "  sqlite point read, no writes in between   {:8.2} µs",
        us(read_warm)
    );
    println!(
        "  sqlite upsert 2 KB row, 5 per COMMIT      {:8.2} µs per row",
        us(batched)
    );
    println!(
        "  sqlite upsert 2 KB row, autocommit, no auto-checkpoint {:6.2} µs",
        us(no_checkpoint)
    );
    Ok(())
}

async fn store_ops(backend: Backend, n: u64) -> anyhow::Result<()> {
    let h = Arc::new(Harness::new(backend).await?);
    let mut seq = 1_000_000;
    for _ in 0..200 {
        seq += 1;
        h.app.capture(&h.principal, h.request(seq)).await?;
    }

    // Sequential captures. Requests are built before the clock starts: building one costs
    // about as much as capturing it.
    let requests: Vec<_> = (0..n)
        .map(|_| {
            seq += 1;
            h.request(seq)
        })
        .collect();
    h.recorder.take();
    h.recorder.set_enabled(true);
    let t = Instant::now();
    for req in requests {
        h.app.capture(&h.principal, req).await?;
    }
    let wall = t.elapsed();
    h.recorder.set_enabled(false);
    report(
        &format!("{}: capture, sequential", backend.name()),
        n,
        wall,
        &h.recorder.take(),
    );

    // 32 in flight.
    let rounds = n.div_ceil(32);
    let mut requests: Vec<_> = (0..rounds * 32)
        .map(|_| {
            seq += 1;
            h.request(seq)
        })
        .collect();
    h.recorder.set_enabled(true);
    let t = Instant::now();
    let mut done = 0;
    while done < n {
        let tasks: Vec<_> = requests
            .drain(..32)
            .map(|req| {
                let h = h.clone();
                tokio::spawn(async move { h.app.capture(&h.principal, req).await })
            })
            .collect();
        for task in tasks {
            task.await??;
        }
        done += 32;
    }
    let wall = t.elapsed();
    h.recorder.set_enabled(false);
    report(
        &format!("{}: capture, 32 in flight", backend.name()),
        done,
        wall,
        &h.recorder.take(),
    );

    // Sequential polls.
    h.recorder.set_enabled(true);
    let t = Instant::now();
    for _ in 0..n {
        h.app.poll(&h.principal, SERVICE, Vec::new()).await?;
    }
    let wall = t.elapsed();
    h.recorder.set_enabled(false);
    report(
        &format!("{}: poll, sequential", backend.name()),
        n,
        wall,
        &h.recorder.take(),
    );
    Ok(())
}

fn report(title: &str, n: u64, wall: Duration, ops: &std::collections::BTreeMap<String, OpStats>) {
    let per = wall.as_secs_f64() / n as f64;
    println!(
        "== {title}: {n} in {:.2} s = {:.0}/s, {:.1} µs each",
        wall.as_secs_f64(),
        n as f64 / wall.as_secs_f64(),
        per * 1e6
    );
    println!(
        "  {:<40} {:>8} {:>10} {:>10} {:>12}",
        "store operation", "per call", "mean µs", "max µs", "µs per call"
    );
    let mut store_total = 0.0;
    for (k, s) in ops {
        let mean = s.total.as_secs_f64() / s.count.max(1) as f64 * 1e6;
        let per_call = s.total.as_secs_f64() / n as f64 * 1e6;
        store_total += per_call;
        println!(
            "  {k:<40} {:>8.2} {mean:>10.1} {:>10.0} {per_call:>12.1}",
            s.count as f64 / n as f64,
            s.max.as_secs_f64() * 1e6
        );
    }
    println!(
        "  store time per call {store_total:.1} µs of {:.1} µs wall ({:.0}%; >100% means overlapping calls)",
        per * 1e6,
        store_total / (per * 1e6) * 100.0
    );
}
