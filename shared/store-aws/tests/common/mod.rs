//! Emulator endpoints for the tests: DynamoDB Local and an S3-compatible server, started by
//! scripts/aws-emulators.sh (scripts/test-aws-store.sh does it all).
//!
//! Without `SIGHTLINE_TEST_DYNAMODB_URL` / `SIGHTLINE_TEST_S3_URL` the tests print why and
//! pass, so a plain `cargo test --workspace` needs no emulators; with
//! `SIGHTLINE_REQUIRE_AWS_TESTS=1` (set by the script) a missing endpoint fails instead.

#![allow(dead_code)]

use std::time::{SystemTime, UNIX_EPOCH};

use sightline_store_aws::AwsStoreConfig;

/// The store configuration of one test: its own table and bucket, so tests run in parallel
/// and repeated runs against long-lived emulators do not collide. `None`: skipped.
pub fn config(test: &str) -> Option<AwsStoreConfig> {
    let dynamodb = std::env::var("SIGHTLINE_TEST_DYNAMODB_URL").ok();
    let s3 = std::env::var("SIGHTLINE_TEST_S3_URL").ok();
    let (Some(dynamodb), Some(s3)) = (dynamodb, s3) else {
        let why = "set SIGHTLINE_TEST_DYNAMODB_URL and SIGHTLINE_TEST_S3_URL \
                   (scripts/test-aws-store.sh starts the emulators and sets them)";
        if std::env::var("SIGHTLINE_REQUIRE_AWS_TESTS").as_deref() == Ok("1") {
            panic!(
                "{test}: SIGHTLINE_REQUIRE_AWS_TESTS=1 but the emulators are not configured: {why}"
            );
        }
        eprintln!("skipped {test}: {why}");
        return None;
    };
    let name = unique_name(test);
    let mut config = AwsStoreConfig::new(name.clone(), name);
    config.region = Some("us-east-1".into());
    config.dynamodb_endpoint = Some(dynamodb);
    config.s3_endpoint = Some(s3);
    Some(config)
}

/// A table/bucket name (lowercase, digits and dashes, at most 63 characters).
pub fn unique_name(test: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let test: String = test
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(30)
        .collect();
    format!("sl-{test}-{:x}-{nanos:x}", std::process::id())
}
