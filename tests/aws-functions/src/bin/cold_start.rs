//! `sightline-cold-start RUNS BINARY...`: cold-start init time of Lambda function binaries,
//! from process start to its first `GET /2018-06-01/runtime/invocation/next` on a minimal
//! Lambda runtime API stub on loopback (the moment Lambda considers init done). Prints the
//! median and the range over RUNS starts of each binary. The binaries' configuration comes
//! from this process's environment (e.g. emulator endpoints); no invocation is ever sent.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let runs: usize = args
        .next()
        .context("usage: sightline-cold-start RUNS BINARY...")?
        .parse()
        .context("RUNS must be a number")?;
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let api = listener.local_addr()?.to_string();
    println!(
        "{:<12} {:>10} {:>10} {:>10}",
        "binary", "median", "min", "max"
    );
    for bin in args {
        let mut times = Vec::with_capacity(runs);
        for _ in 0..runs {
            times.push(init_time(&listener, &api, &bin)?);
        }
        times.sort();
        let name = function_name(&bin);
        let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1000.0);
        println!(
            "{name:<12} {:>10} {:>10} {:>10}",
            ms(times[times.len() / 2]),
            ms(times[0]),
            ms(times[times.len() - 1])
        );
    }
    Ok(())
}

/// `target/lambda/poll/bootstrap` → `poll`; otherwise the file name.
fn function_name(bin: &str) -> String {
    let path = std::path::Path::new(bin);
    let file = path.file_name().map(|n| n.to_string_lossy().into_owned());
    match file.as_deref() {
        Some("bootstrap") => path
            .parent()
            .and_then(|p| p.file_name())
            .map_or_else(|| "bootstrap".into(), |n| n.to_string_lossy().into_owned()),
        Some(f) => f.to_owned(),
        None => bin.to_owned(),
    }
}

fn init_time(listener: &TcpListener, api: &str, bin: &str) -> anyhow::Result<Duration> {
    let name = function_name(bin);
    let started = Instant::now();
    let mut child = Command::new(bin)
        .env("AWS_LAMBDA_RUNTIME_API", api)
        .env("AWS_LAMBDA_FUNCTION_NAME", &name)
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{name}"))
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "cold-start")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {bin}"))?;
    listener.set_nonblocking(true)?;
    let result = loop {
        if started.elapsed() > Duration::from_secs(20) {
            break Err(anyhow::anyhow!("{bin} never asked for an invocation"));
        }
        match listener.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(false)?;
                let mut line = String::new();
                BufReader::new(&stream).read_line(&mut line)?;
                if line.starts_with("GET ") && line.contains("/runtime/invocation/next") {
                    break Ok(started.elapsed());
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if let Ok(Some(status)) = child.try_wait() {
                    bail!("{bin} exited during init: {status}");
                }
                std::thread::sleep(Duration::from_micros(100));
            }
            Err(e) => return Err(e.into()),
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    result
}
