//! `sightline-admin`: bootstrap and API keys of a deployed Sightline, run from an operator's
//! shell with AWS credentials (or against emulators). It talks to the table directly with
//! the same core and adapters as the functions, so keys are hashed the same way.
//!
//! Configuration is the functions' own: `SIGHTLINE_TABLE`, `SIGHTLINE_BUCKET`, `AWS_REGION`
//! (and `SIGHTLINE_DYNAMODB_ENDPOINT` / `SIGHTLINE_S3_ENDPOINT` for emulators).

use anyhow::Context;
use clap::{Parser, Subcommand};
use sightline_cli::KeysCommand;
use sightline_core::app::BootstrapOutcome;

#[derive(Parser)]
#[command(
    name = "sightline-admin",
    version,
    about = "Bootstrap and API keys of a deployed Sightline"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create the first project and its admin+SDK key (does nothing when already done).
    Bootstrap {
        /// Use this key instead of a generated one (e.g. from a secret store).
        #[arg(long, env = "SIGHTLINE_BOOTSTRAP_API_KEY", hide_env_values = true)]
        api_key: Option<String>,
    },
    /// Create the table and bucket if missing (emulators and local setups; in AWS the stack
    /// owns them).
    InitStorage,
    /// Manage API keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    sightline_lambda::init_logging();
    let cli = Cli::parse();
    let stores = sightline_lambda::store_config_from_env()?;
    if let Command::InitStorage = cli.command {
        let (items, blobs) = sightline_store_aws::connect(&stores).await;
        items
            .create_table_if_missing()
            .await
            .context("creating the table")?;
        blobs
            .create_bucket_if_missing()
            .await
            .context("creating the bucket")?;
        println!(
            "table {} and bucket {} are ready",
            stores.table, stores.bucket
        );
        return Ok(());
    }
    let app = sightline_lambda::build_app(&stores, sightline_lambda::app_config_from_env()?).await;
    let api_key = match &cli.command {
        Command::Bootstrap { api_key } => api_key.clone().filter(|k| !k.trim().is_empty()),
        _ => None,
    };
    let default = match app
        .bootstrap(api_key.as_deref())
        .await
        .context("bootstrapping")?
    {
        BootstrapOutcome::Created {
            project_id,
            api_key: raw,
            ..
        } => {
            if api_key.is_some() {
                eprintln!(
                    "bootstrapped project `{project_id}` with the given key (scopes: sdk, admin)"
                );
            } else {
                eprintln!("bootstrapped project `{project_id}`; its key (scopes: sdk, admin), shown only now:");
                println!("{raw}");
            }
            project_id
        }
        BootstrapOutcome::Existing { project_id } => {
            if matches!(cli.command, Command::Bootstrap { .. }) {
                eprintln!("already bootstrapped: project `{project_id}`");
            }
            project_id
        }
    };
    let Command::Keys { command } = cli.command else {
        return Ok(());
    };
    sightline_cli::run_keys(&app, default, command).await?;
    Ok(())
}
