//! Cold-start support shared by every Sightline Lambda function.
//!
//! A function's `main` is one call: [`serve`] reads and validates its configuration from the
//! environment once, builds the AWS adapters and the core [`Sightline`] once, and serves only
//! the routes it is given through `lambda_http`. The relay, which is not an HTTP function,
//! builds its publisher with `edge_publisher_from_env` (feature `relay`, which also links
//! the SSM client).

use std::sync::Arc;

use aws_config::environment::EnvironmentVariableCredentialsProvider;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::provider::SharedCredentialsProvider;
use axum::Router;
use sightline_core::app::{Config, Ports};
use sightline_core::events::ChangeEvent;
use sightline_core::ports::EventBus;
use sightline_core::Sightline;
use sightline_http::hub::Hub;
use sightline_http::AppState;
use sightline_store_aws::{
    https_client, load_sdk_config, retry_config, timeout_config, AwsStoreConfig, DynamoItemStore,
    S3BlobStore,
};
use sightline_store_local::{RandomIds, SystemClock};

/// A configuration problem found at cold start; the function refuses to start.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("environment variable {0} is required")]
    Missing(&'static str),
    #[error("environment variable {name} is invalid: {reason}")]
    Invalid { name: &'static str, reason: String },
    #[error("cannot read the secret `{name}` from SSM Parameter Store: {reason}")]
    Secret { name: String, reason: String },
}

/// Environment variables read at cold start.
pub mod env {
    /// The DynamoDB table (required).
    pub const TABLE: &str = "SIGHTLINE_TABLE";
    /// The S3 bucket for large payloads and trace batches (required).
    pub const BUCKET: &str = "SIGHTLINE_BUCKET";
    /// Set by Lambda itself; required elsewhere.
    pub const REGION: &str = "AWS_REGION";
    /// Endpoint overrides for DynamoDB Local and an S3-compatible server (tests only).
    pub const DYNAMODB_ENDPOINT: &str = "SIGHTLINE_DYNAMODB_ENDPOINT";
    pub const S3_ENDPOINT: &str = "SIGHTLINE_S3_ENDPOINT";
    /// relay: the edge's base URL (`https://…`), publish goes to `{url}/internal/publish`.
    pub const EDGE_URL: &str = "SIGHTLINE_EDGE_URL";
    /// relay: name of the SSM SecureString parameter holding the publish secret.
    pub const PUBLISH_SECRET_PARAMETER: &str = "SIGHTLINE_PUBLISH_SECRET_PARAMETER";
    /// Retention in days of snapshots and of traces (defaults: 30 and 7).
    pub const SNAPSHOT_RETENTION_DAYS: &str = "SIGHTLINE_SNAPSHOT_RETENTION_DAYS";
    pub const TRACE_RETENTION_DAYS: &str = "SIGHTLINE_TRACE_RETENTION_DAYS";
    /// Log filter (default `info`).
    pub const LOG: &str = "SIGHTLINE_LOG";
}

/// Reads and validates the storage configuration once per cold start.
pub fn store_config_from_env() -> Result<AwsStoreConfig, ConfigError> {
    let table = required(env::TABLE)?;
    if !(3..=255).contains(&table.len())
        || !table
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
    {
        return Err(ConfigError::Invalid {
            name: env::TABLE,
            reason: "a DynamoDB table name is 3-255 characters of [A-Za-z0-9_.-]".into(),
        });
    }
    let bucket = required(env::BUCKET)?;
    if !(3..=63).contains(&bucket.len())
        || !bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'.'))
    {
        return Err(ConfigError::Invalid {
            name: env::BUCKET,
            reason: "an S3 bucket name is 3-63 characters of [a-z0-9.-]".into(),
        });
    }
    let mut config = AwsStoreConfig::new(table, bucket);
    config.region = Some(required(env::REGION)?);
    config.dynamodb_endpoint = optional_url(env::DYNAMODB_ENDPOINT)?;
    config.s3_endpoint = optional_url(env::S3_ENDPOINT)?;
    Ok(config)
}

/// Handler limits from the environment: retention periods, which the stack also gives the
/// bucket's lifecycle rules so payloads leave with their items.
pub fn app_config_from_env() -> Result<Config, ConfigError> {
    let mut config = Config::default();
    if let Some(days) = optional_days(env::SNAPSHOT_RETENTION_DAYS)? {
        config.snapshot_retention_secs = days * 86_400;
    }
    if let Some(days) = optional_days(env::TRACE_RETENTION_DAYS)? {
        config.trace_retention_secs = days * 86_400;
    }
    Ok(config)
}

fn optional_days(name: &'static str) -> Result<Option<i64>, ConfigError> {
    match std::env::var(name).ok().filter(|v| !v.trim().is_empty()) {
        None => Ok(None),
        Some(v) => match v.trim().parse::<i64>() {
            Ok(d) if (1..=3650).contains(&d) => Ok(Some(d)),
            _ => Err(ConfigError::Invalid {
                name,
                reason: "must be a whole number of days between 1 and 3650".into(),
            }),
        },
    }
}

/// The relay's configuration: where to publish and the name of the secret to sign with.
#[derive(Debug, Clone)]
pub struct RelaySettings {
    pub edge_url: String,
    pub secret_parameter: String,
}

impl RelaySettings {
    pub fn from_env() -> Result<Self, ConfigError> {
        let edge_url = optional_url(env::EDGE_URL)?.ok_or(ConfigError::Missing(env::EDGE_URL))?;
        Ok(Self {
            edge_url: edge_url.trim_end_matches('/').to_owned(),
            secret_parameter: required(env::PUBLISH_SECRET_PARAMETER)?,
        })
    }
}

fn required(name: &'static str) -> Result<String, ConfigError> {
    std::env::var(name)
        .ok()
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
        .ok_or(ConfigError::Missing(name))
}

fn optional_url(name: &'static str) -> Result<Option<String>, ConfigError> {
    match std::env::var(name).ok().filter(|v| !v.trim().is_empty()) {
        None => Ok(None),
        Some(v) if v.starts_with("http://") || v.starts_with("https://") => {
            Ok(Some(v.trim().to_owned()))
        }
        Some(_) => Err(ConfigError::Invalid {
            name,
            reason: "must be an http:// or https:// URL".into(),
        }),
    }
}

/// Reads a SecureString parameter by name, decrypted. Called once per cold start.
#[cfg(feature = "relay")]
pub async fn fetch_secret(sdk: &SdkConfig, name: &str) -> Result<String, ConfigError> {
    let err = |reason: String| ConfigError::Secret {
        name: name.to_owned(),
        reason,
    };
    let out = aws_sdk_ssm::Client::new(sdk)
        .get_parameter()
        .name(name)
        .with_decryption(true)
        .send()
        .await
        .map_err(|e| err(aws_sdk_ssm::error::DisplayErrorContext(e).to_string()))?;
    out.parameter
        .and_then(|p| p.value)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| err("the parameter has no value".into()))
}

/// The relay's publisher: the edge URL from the environment, the secret from SSM by name.
#[cfg(feature = "relay")]
pub async fn edge_publisher_from_env(
) -> Result<sightline_http::edge_publish::EdgePublisher, ConfigError> {
    let relay = RelaySettings::from_env()?;
    // The loader (not `lambda_sdk_config`): it also honours `AWS_ENDPOINT_URL_SSM`.
    let sdk = load_sdk_config(Some(&required(env::REGION)?)).await;
    let secret = fetch_secret(&sdk, &relay.secret_parameter).await?;
    sightline_http::edge_publish::EdgePublisher::new(
        &relay.edge_url,
        secret.as_bytes(),
        PUBLISH_TIMEOUT,
    )
    .map_err(|e| ConfigError::Invalid {
        name: env::EDGE_URL,
        reason: e.to_string(),
    })
}

/// How long one publish may take before the invocation fails and the batch is retried.
pub const PUBLISH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The event bus of a Lambda function. There is no in-process hub: committed changes reach
/// the edge through DynamoDB Streams and the relay, so publishing here only logs.
#[derive(Debug, Default)]
pub struct StreamedBus;

impl EventBus for StreamedBus {
    fn publish(&self, event: ChangeEvent) {
        tracing::debug!(
            project = %event.project_id,
            service = %event.service,
            event = %event.event,
            "change committed; the relay publishes it from the table stream"
        );
    }
}

/// The core over DynamoDB and S3 with the SDK configuration of [`load_sdk_config`] (the
/// whole credentials chain: environment, profile, SSO, role), for tools run by an operator.
pub async fn build_app(stores: &AwsStoreConfig, config: Config) -> Arc<Sightline> {
    app_over(
        &load_sdk_config(stores.region.as_deref()).await,
        stores,
        config,
    )
}

/// The SDK configuration of a function: the stores' retry, timeout and HTTPS client policy,
/// the region, and the credentials Lambda puts in the environment (`AWS_ACCESS_KEY_ID`,
/// `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`). Not `aws_config`'s loader: its profile,
/// IMDS, ECS, SSO and STS providers never apply in Lambda and made every binary larger.
pub fn lambda_sdk_config(stores: &AwsStoreConfig) -> SdkConfig {
    SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(stores.region.clone().map(Region::new))
        .credentials_provider(SharedCredentialsProvider::new(
            EnvironmentVariableCredentialsProvider::new(),
        ))
        .retry_config(retry_config())
        .timeout_config(timeout_config())
        .http_client(https_client())
        .build()
}

fn app_over(sdk: &SdkConfig, stores: &AwsStoreConfig, config: Config) -> Arc<Sightline> {
    let ports = Ports {
        items: Arc::new(DynamoItemStore::from_sdk_config(sdk, stores)),
        blobs: Arc::new(S3BlobStore::from_sdk_config(sdk, stores)),
        events: Arc::new(StreamedBus),
        clock: Arc::new(SystemClock),
        ids: Arc::new(RandomIds),
    };
    Arc::new(Sightline::new(ports, config))
}

/// Sets up logging: plain lines on stderr, which CloudWatch collects and timestamps.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env(env::LOG)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .without_time() // CloudWatch stamps every line
        .with_writer(std::io::stderr)
        .try_init();
}

/// Runs an HTTP function: configuration and core once, then `routes` on every invocation.
pub async fn serve(routes: Router<AppState>) -> Result<(), lambda_http::Error> {
    init_logging();
    let stores = store_config_from_env()?;
    let app = app_over(&lambda_sdk_config(&stores), &stores, app_config_from_env()?);
    let (state, _closing) = AppState::new(app, Arc::new(Hub::default()));
    lambda_http::run(sightline_http::serve_routes(routes, state)).await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    /// The functions' SDK configuration carries the stores' whole policy, the region and an
    /// HTTPS client.
    #[test]
    fn lambda_sdk_config_has_the_stores_policy() {
        let mut stores = AwsStoreConfig::new("sightline", "sightline-blobs");
        stores.region = Some("eu-west-1".into());
        let sdk = lambda_sdk_config(&stores);
        assert_eq!(sdk.region().map(|r| r.as_ref()), Some("eu-west-1"));
        assert_eq!(sdk.retry_config(), Some(&retry_config()));
        assert_eq!(sdk.timeout_config(), Some(&timeout_config()));
        assert!(sdk.credentials_provider().is_some());
        assert!(sdk.http_client().is_some());
    }

    /// The loader path (operator tools, and the relay's SSM client, so an unreachable SSM
    /// fails its cold start within the stores' bounds) has the same policy.
    #[tokio::test]
    async fn the_loaded_sdk_config_has_the_stores_policy() {
        let sdk = load_sdk_config(Some("eu-west-1")).await;
        assert_eq!(sdk.region().map(|r| r.as_ref()), Some("eu-west-1"));
        assert_eq!(sdk.retry_config(), Some(&retry_config()));
        assert_eq!(sdk.timeout_config(), Some(&timeout_config()));
        assert!(sdk.http_client().is_some());
    }

    /// HTTPS goes through rustls with the `ring` provider (the only one linked): a server
    /// that does not speak TLS fails the handshake, it is not sent a plaintext request.
    #[tokio::test]
    async fn https_endpoints_are_spoken_to_over_tls() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut first = [0u8; 1];
            socket.read_exact(&mut first).await.unwrap();
            let _ = socket.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await;
            first[0]
        });
        let mut stores = AwsStoreConfig::new("sightline", "sightline-blobs");
        stores.region = Some("us-east-1".into());
        stores.dynamodb_endpoint = Some(format!("https://{addr}"));
        std::env::set_var("AWS_ACCESS_KEY_ID", "test");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "test");
        let items = DynamoItemStore::from_sdk_config(&lambda_sdk_config(&stores), &stores);
        let result = items.create_table_if_missing().await;
        assert!(
            result.is_err(),
            "a server without TLS cannot answer: {result:?}"
        );
        // 0x16: a TLS handshake record (ClientHello), not the start of an HTTP request.
        assert_eq!(server.await.unwrap(), 0x16);
    }
}
