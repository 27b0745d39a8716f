//! `sightline-admin`: bootstrap and API keys of a deployed Sightline, run from an operator's
//! shell with AWS credentials (or against emulators). It talks to the table directly with
//! the same core and adapters as the functions, so keys are hashed the same way.
//!
//! Configuration is the functions' own: `SIGHTLINE_TABLE`, `SIGHTLINE_BUCKET`, `AWS_REGION`
//! (and `SIGHTLINE_DYNAMODB_ENDPOINT` / `SIGHTLINE_S3_ENDPOINT` for emulators).

use anyhow::Context;
use clap::{Parser, Subcommand};
use sightline_core::app::BootstrapOutcome;
use sightline_core::model::Scope;

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

#[derive(Subcommand)]
enum KeysCommand {
    /// Create a key and print it (it is shown only this once).
    Create {
        #[arg(long, default_value = "cli")]
        name: String,
        /// Comma-separated: sdk, admin.
        #[arg(long, default_value = "sdk")]
        scopes: String,
        /// Project of the key (default: the bootstrap project). A new name creates a project.
        #[arg(long)]
        project: Option<String>,
    },
    /// List keys (ids and scopes, never the keys themselves).
    List {
        #[arg(long)]
        project: Option<String>,
    },
    /// Revoke a key by id.
    Revoke {
        id: String,
        #[arg(long)]
        project: Option<String>,
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
    match command {
        KeysCommand::Create {
            name,
            scopes,
            project,
        } => {
            let scopes = scopes
                .split(',')
                .map(|s| {
                    Scope::parse(s).with_context(|| format!("unknown scope `{s}` (use sdk, admin)"))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let project = project.unwrap_or(default);
            let (record, raw) = app.create_api_key(&project, &name, &scopes, None).await?;
            println!("{raw}");
            eprintln!(
                "created key {} in project {} (shown only now)",
                record.id, record.project_id
            );
        }
        KeysCommand::List { project } => {
            for k in app.list_api_keys(&project.unwrap_or(default)).await? {
                let scopes: Vec<&str> = k
                    .scopes
                    .iter()
                    .map(|s| match s {
                        Scope::Sdk => "sdk",
                        Scope::Admin => "admin",
                    })
                    .collect();
                let state = if k.revoked { "revoked" } else { "active" };
                println!(
                    "{}\t{}\t{}\t{}\t{}",
                    k.id,
                    k.name,
                    scopes.join(","),
                    state,
                    k.created_at
                );
            }
        }
        KeysCommand::Revoke { id, project } => {
            let k = app.revoke_api_key(&project.unwrap_or(default), &id).await?;
            println!("revoked {}", k.id);
        }
    }
    Ok(())
}
