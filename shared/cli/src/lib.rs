//! `keys create|list|revoke`: the API-key commands of `sightline` (embedded store) and
//! `sightline-admin` (DynamoDB), defined once so both binaries take the same arguments and
//! print the same output.

use clap::Subcommand;
use sightline_core::model::Scope;
use sightline_core::Sightline;

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
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

#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    #[error("unknown scope `{0}` (use sdk, admin)")]
    UnknownScope(String),
    #[error(transparent)]
    App(#[from] sightline_core::error::Error),
}

/// Runs `command`; `default_project` applies when the command names no project. A new key
/// goes to stdout (alone, for scripts), what happened to stderr.
pub async fn run_keys(
    app: &Sightline,
    default_project: String,
    command: KeysCommand,
) -> Result<(), KeysError> {
    match command {
        KeysCommand::Create {
            name,
            scopes,
            project,
        } => {
            let scopes = scopes
                .split(',')
                .map(|s| Scope::parse(s).ok_or_else(|| KeysError::UnknownScope(s.to_owned())))
                .collect::<Result<Vec<_>, _>>()?;
            let project = project.unwrap_or(default_project);
            let (record, raw) = app.create_api_key(&project, &name, &scopes, None).await?;
            println!("{raw}");
            eprintln!(
                "created key {} in project {} (shown only now)",
                record.id, record.project_id
            );
        }
        KeysCommand::List { project } => {
            for k in app
                .list_api_keys(&project.unwrap_or(default_project))
                .await?
            {
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
            let k = app
                .revoke_api_key(&project.unwrap_or(default_project), &id)
                .await?;
            println!("revoked {}", k.id);
        }
    }
    Ok(())
}
