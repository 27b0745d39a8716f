//! DynamoDB and S3 adapters of the core's store ports: [`DynamoItemStore`] implements
//! `ItemStore` over one table, [`S3BlobStore`] implements `BlobStore` over one bucket.
//!
//! Both pass the same contract suite (`tests/store-contract`) as the SQLite and memory
//! adapters. The table layout and every access pattern are documented in infra/TABLE.md.
//!
//! ```ignore
//! let config = AwsStoreConfig::new("sightline", "sightline-blobs");
//! let (items, blobs) = sightline_store_aws::connect(&config).await;
//! ```

mod dynamo;
mod error;
mod expr;
mod s3;
mod transact;
mod value;

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_smithy_http_client::proxy::ProxyConfig;
use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
use aws_smithy_http_client::{Builder, ConnectorBuilder};
use aws_smithy_runtime_api::client::http::SharedHttpClient;

pub use dynamo::{DynamoItemStore, PK_ATTR, SK_ATTR, TTL_ATTR};
pub use s3::S3BlobStore;
pub use value::item_from_attributes;

/// Where the stores live. `*_endpoint` point the clients at emulators (DynamoDB Local, an
/// S3-compatible server); in AWS they stay `None` and the SDK's defaults apply.
#[derive(Debug, Clone)]
pub struct AwsStoreConfig {
    /// The single DynamoDB table (see infra/TABLE.md).
    pub table: String,
    /// The S3 bucket of large payloads.
    pub bucket: String,
    /// Region override; `None` uses the SDK's chain (`AWS_REGION`, profile, IMDS).
    pub region: Option<String>,
    pub dynamodb_endpoint: Option<String>,
    /// Also switches S3 to path-style addressing, which emulators need.
    pub s3_endpoint: Option<String>,
}

impl AwsStoreConfig {
    pub fn new(table: impl Into<String>, bucket: impl Into<String>) -> Self {
        Self {
            table: table.into(),
            bucket: bucket.into(),
            region: None,
            dynamodb_endpoint: None,
            s3_endpoint: None,
        }
    }
}

/// Attempts per request, including the first. Throttling and transient faults (5xx,
/// connection errors, timeouts) are retried with exponential backoff and jitter.
pub const MAX_ATTEMPTS: u32 = 4;
/// First retry delay; doubles per attempt up to [`MAX_BACKOFF`].
pub const INITIAL_BACKOFF: Duration = Duration::from_millis(50);
pub const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// Bounds that turn an unreachable store into `StoreError::Unavailable` (→ 503) within
/// seconds instead of a hung request.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(12);

/// Loads the shared SDK configuration (credentials, and the region unless given, from the
/// environment, the profile or the execution role) with the retry and timeout policy of the
/// stores. Every AWS client Sightline builds through the loader uses it, the stores' and
/// the relay's SSM client alike.
pub async fn load_sdk_config(region: Option<&str>) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .retry_config(retry_config())
        .timeout_config(timeout_config());
    if let Some(region) = region {
        loader = loader.region(Region::new(region.to_owned()));
    }
    loader.http_client(https_client()).load().await
}

/// The stores' retry policy: [`MAX_ATTEMPTS`], backoff from [`INITIAL_BACKOFF`] to
/// [`MAX_BACKOFF`].
pub fn retry_config() -> RetryConfig {
    RetryConfig::standard()
        .with_max_attempts(MAX_ATTEMPTS)
        .with_initial_backoff(INITIAL_BACKOFF)
        .with_max_backoff(MAX_BACKOFF)
}

/// The stores' timeouts: [`CONNECT_TIMEOUT`], [`ATTEMPT_TIMEOUT`], [`OPERATION_TIMEOUT`].
pub fn timeout_config() -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .operation_attempt_timeout(ATTEMPT_TIMEOUT)
        .operation_timeout(OPERATION_TIMEOUT)
        .build()
}

/// The SDK's HTTPS client (hyper, rustls) with rustls' `ring` provider, configured as the
/// SDK's default client is (connector settings, sleep, proxies from the environment). The
/// default client uses aws-lc-rs: a second, larger crypto library next to the `ring` that
/// reqwest already links, and size matters in every Lambda binary (docs/PERFORMANCE.md).
pub fn https_client() -> SharedHttpClient {
    Builder::new().build_with_connector_fn(|settings, components| {
        let mut connector =
            ConnectorBuilder::default().tls_provider(Provider::Rustls(CryptoMode::Ring));
        connector.set_connector_settings(settings.cloned());
        if let Some(components) = components {
            connector.set_sleep_impl(components.sleep_impl());
        }
        connector.set_proxy_config(Some(ProxyConfig::from_env()));
        connector.build()
    })
}

/// Builds both stores from one SDK configuration (one credentials chain, one HTTP client
/// per service), as a Lambda cold start or `main` does once.
pub async fn connect(config: &AwsStoreConfig) -> (DynamoItemStore, S3BlobStore) {
    let sdk = load_sdk_config(config.region.as_deref()).await;
    (
        DynamoItemStore::from_sdk_config(&sdk, config),
        S3BlobStore::from_sdk_config(&sdk, config),
    )
}
