//! `ItemStore` over one DynamoDB table (layout: infra/TABLE.md).
//!
//! Conditions and update ops run inside DynamoDB (`ConditionExpression`,
//! `UpdateExpression`), so caps, counters and put-if-absent are exact under any
//! concurrency, in one request each. Reads are strongly consistent: a write is visible to
//! the next read, as with the local adapters.

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::delete_item::DeleteItemError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, ReturnValue,
    ReturnValuesOnConditionCheckFailure, ScalarAttributeType, StreamSpecification, StreamViewType,
    TimeToLiveSpecification,
};
use aws_sdk_dynamodb::Client;
use sightline_core::ports::paging::{self, Pager};
use sightline_core::ports::{
    apply_update, Condition, Item, ItemStore, Page, Query, StoreError, StoreResult, Transacted,
    UpdateOp, Write,
};

use crate::error::store_error;
use crate::expr::Expr;
use crate::value::{item_from_attributes, to_attributes};
use crate::AwsStoreConfig;

/// Partition key attribute (S).
pub const PK_ATTR: &str = "pk";
/// Sort key attribute (S).
pub const SK_ATTR: &str = "sk";
/// TTL attribute (N, Unix seconds), the table's `TimeToLiveSpecification`.
pub const TTL_ATTR: &str = "ttl";

/// How often an update of an expired item retries when another writer keeps changing it.
const EXPIRED_REPLACE_ATTEMPTS: usize = 5;

/// The DynamoDB `ItemStore`. Cheap to clone (the client is shared).
#[derive(Debug, Clone)]
pub struct DynamoItemStore {
    client: Client,
    table: String,
}

pub(crate) type Attributes = HashMap<String, AttributeValue>;

pub(crate) fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// A stored item, or `None` when it is expired at `now`.
fn live(stored: &Attributes, now: i64) -> StoreResult<Option<Item>> {
    let item = item_from_attributes(stored)?;
    Ok((!item.is_expired(now)).then_some(item))
}

pub(crate) fn key(pk: &str, sk: &str) -> Attributes {
    HashMap::from([
        (PK_ATTR.to_owned(), AttributeValue::S(pk.to_owned())),
        (SK_ATTR.to_owned(), AttributeValue::S(sk.to_owned())),
    ])
}

impl DynamoItemStore {
    /// Wraps a client (built with the retry/timeout policy of [`crate::load_sdk_config`],
    /// or any other, e.g. with interceptors in tests).
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    pub fn from_sdk_config(sdk: &SdkConfig, config: &AwsStoreConfig) -> Self {
        let mut builder = aws_sdk_dynamodb::config::Builder::from(sdk);
        if let Some(url) = &config.dynamodb_endpoint {
            builder = builder.endpoint_url(url);
        }
        Self::new(Client::from_conf(builder.build()), config.table.clone())
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// Creates the table as template.yaml declares it (pk/sk strings, on-demand billing,
    /// NEW_AND_OLD_IMAGES stream, TTL on `ttl`) unless it exists. For tests and local setups;
    /// in AWS the stack owns the table.
    pub async fn create_table_if_missing(&self) -> StoreResult<()> {
        use aws_sdk_dynamodb::operation::describe_table::DescribeTableError;
        match self
            .client
            .describe_table()
            .table_name(&self.table)
            .send()
            .await
        {
            Ok(_) => return Ok(()),
            Err(e)
                if matches!(
                    e.as_service_error(),
                    Some(DescribeTableError::ResourceNotFoundException(_))
                ) => {}
            Err(e) => return Err(store_error("DescribeTable", e)),
        }
        let attr = |name: &str| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
        };
        let key = |name: &str, kind: KeyType| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(kind)
                .build()
        };
        let build = |e: aws_sdk_dynamodb::error::BuildError| StoreError::Backend(e.to_string());
        let created = self
            .client
            .create_table()
            .table_name(&self.table)
            .attribute_definitions(attr(PK_ATTR).map_err(build)?)
            .attribute_definitions(attr(SK_ATTR).map_err(build)?)
            .key_schema(key(PK_ATTR, KeyType::Hash).map_err(build)?)
            .key_schema(key(SK_ATTR, KeyType::Range).map_err(build)?)
            .billing_mode(BillingMode::PayPerRequest)
            .stream_specification(
                StreamSpecification::builder()
                    .stream_enabled(true)
                    .stream_view_type(StreamViewType::NewAndOldImages)
                    .build()
                    .map_err(build)?,
            )
            .send()
            .await;
        match created {
            Ok(_) => {}
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_in_use_exception()) =>
            {
                return Ok(()); // created concurrently
            }
            Err(e) => return Err(store_error("CreateTable", e)),
        }
        // DynamoDB (unlike DynamoDB Local) takes a few seconds to create a table, and
        // refuses the TTL setting until then.
        for _ in 0..120 {
            let described = self
                .client
                .describe_table()
                .table_name(&self.table)
                .send()
                .await
                .map_err(|e| store_error("DescribeTable", e))?;
            let status = described.table.and_then(|t| t.table_status);
            if status == Some(aws_sdk_dynamodb::types::TableStatus::Active) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
        self.client
            .update_time_to_live()
            .table_name(&self.table)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .enabled(true)
                    .attribute_name(TTL_ATTR)
                    .build()
                    .map_err(build)?,
            )
            .send()
            .await
            .map_err(|e| store_error("UpdateTimeToLive", e))?;
        Ok(())
    }

    async fn get_stored(&self, pk: &str, sk: &str) -> StoreResult<Option<Attributes>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(pk, sk)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| store_error("GetItem", e))?;
        Ok(out.item)
    }

    /// Fast path of `update`: one `UpdateItem` that only applies to a live or absent item.
    /// `Err(Some(old))` when the condition failed and the stored item was `old`.
    async fn update_live(
        &self,
        pk: &str,
        sk: &str,
        ops: &[UpdateOp],
        condition: Option<&Condition>,
        now: i64,
    ) -> StoreResult<Result<Item, Option<Attributes>>> {
        let mut e = Expr::default();
        let update = e.update(ops);
        let guard = e.live_and(condition, now);
        let (names, values) = e.take();
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(pk, sk)))
            .set_update_expression(update)
            .condition_expression(guard)
            .set_expression_attribute_names(names)
            .set_expression_attribute_values(values)
            .return_values(ReturnValue::AllNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match out {
            Ok(out) => {
                let stored = out.attributes.unwrap_or_else(|| key(pk, sk));
                Ok(Ok(item_from_attributes(&stored)?))
            }
            Err(SdkError::ServiceError(failed))
                if failed.err().is_conditional_check_failed_exception() =>
            {
                match failed.into_err() {
                    UpdateItemError::ConditionalCheckFailedException(f) => Ok(Err(f.item)),
                    _ => Ok(Err(None)),
                }
            }
            Err(err) => Err(store_error("UpdateItem", err)),
        }
    }
}

#[async_trait]
impl ItemStore for DynamoItemStore {
    async fn get(&self, pk: &str, sk: &str) -> StoreResult<Option<Item>> {
        match self.get_stored(pk, sk).await? {
            Some(stored) => live(&stored, now_secs()),
            None => Ok(None),
        }
    }

    async fn put(&self, item: Item, condition: Option<Condition>) -> StoreResult<()> {
        let mut e = Expr::default();
        let condition = condition.map(|c| e.condition(&c, now_secs()));
        let (names, values) = e.take();
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(to_attributes(&item)))
            .set_condition_expression(condition)
            .set_expression_attribute_names(names)
            .set_expression_attribute_values(values)
            .send()
            .await
            .map_err(|err| match err.as_service_error() {
                Some(PutItemError::ConditionalCheckFailedException(_)) => {
                    StoreError::ConditionFailed
                }
                _ => store_error("PutItem", err),
            })?;
        Ok(())
    }

    async fn update(
        &self,
        pk: &str,
        sk: &str,
        ops: &[UpdateOp],
        condition: Option<Condition>,
    ) -> StoreResult<Item> {
        for _ in 0..EXPIRED_REPLACE_ATTEMPTS {
            let now = now_secs();
            let old = match self
                .update_live(pk, sk, ops, condition.as_ref(), now)
                .await?
            {
                Ok(item) => return Ok(item),
                Err(old) => old,
            };
            // The guard failed: either the condition is false, or the item is expired and
            // must be treated as absent (DynamoDB would merge into its stale attributes).
            let absent_passes = condition.as_ref().is_none_or(|c| c.matches(None));
            let old = match old {
                Some(old) => Some(old),
                // Emulators that do not return the old item on failure.
                None if absent_passes => self.get_stored(pk, sk).await?,
                None => None,
            };
            let expired = match &old {
                Some(old) => item_from_attributes(old)?.is_expired(now),
                None => false,
            };
            if !(expired && absent_passes) {
                if old.is_none() && absent_passes {
                    continue; // deleted in between: the fast path will now apply
                }
                return Err(StoreError::ConditionFailed);
            }
            // Replace the expired item by the update applied to an empty item, unless
            // another writer got there first (then start over).
            let mut fresh = Item::new(pk, sk, Default::default());
            apply_update(&mut fresh, ops);
            let mut e = Expr::default();
            let still_expired = e.expired(now);
            let (names, values) = e.take();
            let replaced = self
                .client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(to_attributes(&fresh)))
                .condition_expression(still_expired)
                .set_expression_attribute_names(names)
                .set_expression_attribute_values(values)
                .send()
                .await;
            match replaced {
                Ok(_) => return Ok(fresh),
                Err(err)
                    if matches!(
                        err.as_service_error(),
                        Some(PutItemError::ConditionalCheckFailedException(_))
                    ) => {}
                Err(err) => return Err(store_error("PutItem", err)),
            }
        }
        Err(StoreError::Unavailable(format!(
            "update of ({pk}, {sk}) kept racing with other writers"
        )))
    }

    async fn delete(
        &self,
        pk: &str,
        sk: &str,
        condition: Option<Condition>,
    ) -> StoreResult<Option<Item>> {
        let now = now_secs();
        let mut e = Expr::default();
        let condition = condition.map(|c| e.condition(&c, now));
        let (names, values) = e.take();
        let out = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key(pk, sk)))
            .set_condition_expression(condition)
            .set_expression_attribute_names(names)
            .set_expression_attribute_values(values)
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(|err| match err.as_service_error() {
                Some(DeleteItemError::ConditionalCheckFailedException(_)) => {
                    StoreError::ConditionFailed
                }
                _ => store_error("DeleteItem", err),
            })?;
        match out.attributes {
            Some(old) => live(&old, now),
            None => Ok(None),
        }
    }

    async fn transact(&self, writes: &[Write]) -> StoreResult<Transacted> {
        self.transact_writes(writes).await
    }

    async fn query(&self, pk: &str, query: Query) -> StoreResult<Page> {
        let prefix = query.sk_prefix.as_deref().filter(|p| !p.is_empty());
        let mut start = paging::start_after(&query)?.map(|sk| key(pk, &sk));
        let now = now_secs();
        let mut pager = Pager::new(&query);
        loop {
            let mut e = Expr::default();
            let pk_name = e.pk();
            let pk_value = e.value(AttributeValue::S(pk.to_owned()));
            let key_condition = match prefix {
                Some(p) => {
                    let sk_name = e.sk();
                    let p = e.value(AttributeValue::S(p.to_owned()));
                    format!("{pk_name} = {pk_value} AND begins_with({sk_name}, {p})")
                }
                None => format!("{pk_name} = {pk_value}"),
            };
            let (names, values) = e.take();
            // DynamoDB's limit counts items before the filter and expiry are applied.
            let want = query
                .limit
                .map(|_| i32::try_from(pager.batch_hint()).unwrap_or(i32::MAX));
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression(key_condition)
                .set_expression_attribute_names(names)
                .set_expression_attribute_values(values)
                .scan_index_forward(!query.descending)
                .consistent_read(true)
                .set_limit(want)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| store_error("Query", e))?;
            for stored in out.items.unwrap_or_default() {
                if let Some(item) = live(&stored, now)? {
                    if pager.offer(item).is_break() {
                        return Ok(pager.finish());
                    }
                }
            }
            match out.last_evaluated_key {
                Some(k) => start = Some(k),
                None => return Ok(pager.finish()),
            }
        }
    }
}
