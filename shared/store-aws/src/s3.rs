//! `BlobStore` over one S3 bucket. Keys are used as given (layout: infra/TABLE.md).

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_s3::error::SdkError;
use aws_sdk_s3::operation::get_object::GetObjectError;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::Client;
use sightline_core::ports::{BlobStore, StoreError, StoreResult};

use crate::error::store_error;
use crate::AwsStoreConfig;

/// Most keys S3 returns per `ListObjectsV2` page.
const S3_PAGE: usize = 1000;
/// S3 answers 409 to a conditional write that raced with another one; the loser retries
/// and then sees the winner's object (412).
const CONFLICT_ATTEMPTS: usize = 5;

/// The S3 `BlobStore`. Cheap to clone (the client is shared).
#[derive(Debug, Clone)]
pub struct S3BlobStore {
    client: Client,
    bucket: String,
}

impl S3BlobStore {
    pub fn new(client: Client, bucket: impl Into<String>) -> Self {
        Self {
            client,
            bucket: bucket.into(),
        }
    }

    pub fn from_sdk_config(sdk: &SdkConfig, config: &AwsStoreConfig) -> Self {
        let mut builder = aws_sdk_s3::config::Builder::from(sdk);
        if let Some(url) = &config.s3_endpoint {
            builder = builder.endpoint_url(url).force_path_style(true);
        }
        Self::new(Client::from_conf(builder.build()), config.bucket.clone())
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// Creates the bucket unless it exists. For tests and local setups; in AWS the stack
    /// owns the bucket (encryption, public access block, lifecycle).
    pub async fn create_bucket_if_missing(&self) -> StoreResult<()> {
        if self
            .client
            .head_bucket()
            .bucket(&self.bucket)
            .send()
            .await
            .is_ok()
        {
            return Ok(());
        }
        let mut create = self.client.create_bucket().bucket(&self.bucket);
        let region = self.client.config().region().map(|r| r.as_ref().to_owned());
        if let Some(region) = region.filter(|r| r != "us-east-1") {
            use aws_sdk_s3::types::{BucketLocationConstraint, CreateBucketConfiguration};
            create = create.create_bucket_configuration(
                CreateBucketConfiguration::builder()
                    .location_constraint(BucketLocationConstraint::from(region.as_str()))
                    .build(),
            );
        }
        match create.send().await {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error().is_some_and(|s| {
                    s.is_bucket_already_owned_by_you() || s.is_bucket_already_exists()
                }) =>
            {
                Ok(())
            }
            Err(e) => Err(store_error("CreateBucket", e)),
        }
    }
}

/// HTTP status of a service error, if the error came from S3.
fn status<E>(err: &SdkError<E, aws_sdk_s3::config::http::HttpResponse>) -> Option<u16> {
    match err {
        SdkError::ServiceError(s) => Some(s.raw().status().as_u16()),
        _ => None,
    }
}

#[async_trait]
impl BlobStore for S3BlobStore {
    async fn put(&self, key: &str, bytes: Vec<u8>, if_none_match: bool) -> StoreResult<()> {
        let body = bytes::Bytes::from(bytes);
        for _ in 0..CONFLICT_ATTEMPTS {
            let mut put = self
                .client
                .put_object()
                .bucket(&self.bucket)
                .key(key)
                .body(ByteStream::from(body.clone()));
            if if_none_match {
                put = put.if_none_match("*");
            }
            match put.send().await {
                Ok(_) => return Ok(()),
                Err(e) => match status(&e) {
                    Some(412) => return Err(StoreError::ConditionFailed),
                    Some(409) if if_none_match => continue,
                    _ => return Err(store_error("PutObject", e)),
                },
            }
        }
        Err(StoreError::Unavailable(format!(
            "PutObject {key}: conflicting concurrent writes persisted"
        )))
    }

    async fn get(&self, key: &str) -> StoreResult<Option<Vec<u8>>> {
        let out = match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) if matches!(e.as_service_error(), Some(GetObjectError::NoSuchKey(_))) => {
                return Ok(None)
            }
            Err(e) => return Err(store_error("GetObject", e)),
        };
        let body = out
            .body
            .collect()
            .await
            .map_err(|e| StoreError::Unavailable(format!("GetObject {key}: body: {e}")))?;
        Ok(Some(body.into_bytes().to_vec()))
    }

    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<String>> {
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        while keys.len() < limit {
            let page_size = (limit - keys.len()).min(S3_PAGE);
            let mut list = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(prefix)
                .max_keys(i32::try_from(page_size).unwrap_or(1000));
            list = match &token {
                Some(t) => list.continuation_token(t),
                None => list.set_start_after(start_after.map(str::to_owned)),
            };
            let out = list
                .send()
                .await
                .map_err(|e| store_error("ListObjectsV2", e))?;
            keys.extend(
                out.contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_owned)),
            );
            token = out.next_continuation_token;
            if token.is_none() || !out.is_truncated.unwrap_or(false) {
                break;
            }
        }
        keys.truncate(limit);
        Ok(keys)
    }

    async fn delete(&self, key: &str) -> StoreResult<()> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| store_error("DeleteObject", e))?;
        Ok(())
    }
}
