//! `sightline`: the local server (every handler + embedded SQLite store + in-process SSE
//! hub) and key management for its data directory.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use sightline_cli::KeysCommand;
use sightline_core::app::{BootstrapOutcome, Config, Ports};
use sightline_core::Sightline;
use sightline_http::hub::Hub;
use sightline_http::AppState;
use sightline_store_local::{open_local_store, RandomIds, SystemClock};

/// A capture allocates and frees hundreds of small JSON nodes; mimalloc's thread-local
/// free lists cost a fraction of the system allocator's (docs/PERFORMANCE.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "sightline",
    version,
    about = "Sightline: non-breaking breakpoints for production services"
)]
struct Cli {
    /// Where the embedded store keeps its data.
    #[arg(
        long,
        global = true,
        env = "SIGHTLINE_DATA_DIR",
        default_value = "./.sightline"
    )]
    data_dir: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve {
        /// Address to listen on.
        #[arg(long, env = "SIGHTLINE_LISTEN", default_value = "127.0.0.1:8081")]
        listen: SocketAddr,
        /// Seconds between SSE heartbeats (at most 15).
        #[arg(long, env = "SIGHTLINE_HEARTBEAT_SECS", default_value_t = 15)]
        heartbeat_secs: u64,
    },
    /// Manage API keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SIGHTLINE_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Serve {
            listen,
            heartbeat_secs,
        } => serve(&cli.data_dir, listen, heartbeat_secs).await,
        Command::Keys { command } => keys(&cli.data_dir, command).await,
    }
}

fn open(
    data_dir: &Path,
) -> anyhow::Result<(
    Arc<Sightline>,
    Arc<Hub>,
    Arc<sightline_store_local::SqliteItemStore>,
)> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating data dir {}", data_dir.display()))?;
    let clock = Arc::new(SystemClock);
    let (items, blobs) = open_local_store(data_dir, clock.clone())
        .with_context(|| format!("opening the store in {}", data_dir.display()))?;
    let hub = Arc::new(Hub::default());
    let events = edge_forwarding_bus(hub.clone())?;
    let ports = Ports {
        items: items.clone(),
        blobs,
        events,
        clock,
        ids: Arc::new(RandomIds),
    };
    Ok((
        Arc::new(Sightline::new(ports, Config::default())),
        hub,
        items,
    ))
}

/// With `SIGHTLINE_EDGE_PUBLISH_URL` and `SIGHTLINE_PUBLISH_SECRET` set, committed events
/// also go to the edge Worker (signed, in the background), so this server can be the origin
/// behind it; otherwise only the in-process hub gets them.
fn edge_forwarding_bus(hub: Arc<Hub>) -> anyhow::Result<Arc<dyn sightline_core::ports::EventBus>> {
    use sightline_http::edge_publish::{EdgeForwardingBus, EdgePublisher};
    let set = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let Some(url) = set("SIGHTLINE_EDGE_PUBLISH_URL") else {
        return Ok(hub);
    };
    let secret = set("SIGHTLINE_PUBLISH_SECRET")
        .context("SIGHTLINE_EDGE_PUBLISH_URL is set but SIGHTLINE_PUBLISH_SECRET is not")?;
    let publisher = EdgePublisher::new(&url, secret.as_bytes(), Duration::from_secs(5))?;
    tracing::info!(%url, "forwarding committed events to the edge");
    Ok(Arc::new(EdgeForwardingBus::spawn(hub, publisher)))
}

async fn serve(data_dir: &Path, listen: SocketAddr, heartbeat_secs: u64) -> anyhow::Result<()> {
    if heartbeat_secs == 0 || heartbeat_secs > 15 {
        bail!("--heartbeat-secs must be between 1 and 15");
    }
    let (app, hub, items) = open(data_dir)?;
    let bootstrap_key = std::env::var("SIGHTLINE_BOOTSTRAP_API_KEY")
        .ok()
        .filter(|k| !k.trim().is_empty());
    let outcome = app
        .bootstrap(bootstrap_key.as_deref())
        .await
        .context("bootstrapping the data dir")?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    let addr = listener.local_addr()?;
    println!("Sightline listening on http://{addr}");
    println!("  data dir:  {}", data_dir.display());
    match outcome {
        BootstrapOutcome::Created {
            project_id,
            api_key,
            ..
        } => {
            println!("  project:   {project_id} (new)");
            if bootstrap_key.is_some() {
                println!("  API key:   from SIGHTLINE_BOOTSTRAP_API_KEY (scopes: sdk, admin)");
            } else {
                println!("  API key:   {api_key}   (scopes: sdk, admin; shown only now, keep it)");
            }
        }
        BootstrapOutcome::Existing { project_id } => {
            println!(
                "  project:   {project_id} (use your existing key, or `sightline keys create`)"
            );
        }
    }
    println!("  SDK endpoint: http://{addr}   e.g. tracekit.init(endpoint=\"http://{addr}\", ...)");
    println!("  Dashboard:    http://{addr}/   (sign in with an admin API key)");

    let (mut state, closing) = AppState::new(app, hub);
    state.heartbeat = Duration::from_secs(heartbeat_secs);
    // The local counterpart of the S3 lifecycle rules: large payloads leave with their items.
    let config = state.app.config().clone();
    let secs = |s: i64| Duration::from_secs(u64::try_from(s).unwrap_or(u64::MAX));
    let blob_retention = [
        (
            data_dir.join("blobs").join("snapshots"),
            secs(config.snapshot_retention_secs),
        ),
        (
            data_dir.join("blobs").join("traces"),
            secs(config.trace_retention_secs),
        ),
    ];
    let sweeper = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tick.tick().await;
            if let Err(e) = items.sweep_expired().await {
                tracing::warn!(error = %e, "sweeping expired items failed");
            }
            for (dir, max_age) in blob_retention.clone() {
                let removed = tokio::task::spawn_blocking(move || sweep_old_files(&dir, max_age))
                    .await
                    .unwrap_or(0);
                if removed > 0 {
                    tracing::info!(removed, "removed payload blobs past retention");
                }
            }
        }
    });
    let routes = axum::Router::new()
        .merge(sightline_http::sdk_routes())
        .merge(sightline_http::ingest_routes())
        .merge(sightline_http::admin_routes())
        .merge(sightline_dashboard::routes());
    let router = sightline_http::serve_routes(routes, state);
    axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            shutdown_signal().await;
            tracing::info!("shutting down: finishing in-flight requests");
            let _ = closing.send(true);
        })
        .await
        .context("serving")?;
    sweeper.abort();
    Ok(())
}

/// Deletes files under `dir` older than `max_age`.
fn sweep_old_files(dir: &Path, max_age: Duration) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(meta) = entry.metadata() else { continue };
        if meta.is_dir() {
            removed += sweep_old_files(&path, max_age);
            let _ = std::fs::remove_dir(&path); // only succeeds when now empty
        } else if meta
            .modified()
            .ok()
            .and_then(|m| m.elapsed().ok())
            .is_some_and(|age| age > max_age)
            && std::fs::remove_file(&path).is_ok()
        {
            removed += 1;
        }
    }
    removed
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

async fn keys(data_dir: &Path, command: KeysCommand) -> anyhow::Result<()> {
    let (app, _, _) = open(data_dir)?;
    let default = match app.bootstrap(None).await? {
        BootstrapOutcome::Created {
            project_id,
            api_key,
            ..
        } => {
            println!(
                "Initialised {} with project `{project_id}`; its bootstrap key: {api_key}",
                data_dir.display()
            );
            project_id
        }
        BootstrapOutcome::Existing { project_id } => project_id,
    };
    sightline_cli::run_keys(&app, default, command).await?;
    Ok(())
}
