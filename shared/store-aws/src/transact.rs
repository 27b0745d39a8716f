//! `ItemStore::transact` as one `TransactWriteItems`: all writes or none, in one round trip
//! (plus one consistent `BatchGetItem` for the items after the updates, which DynamoDB
//! transactions do not return).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeValue, KeysAndAttributes, Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem,
    Update,
};
use sightline_core::ports::{apply_update, Item, StoreError, StoreResult, Transacted, Write};

use crate::dynamo::{key, now_secs, Attributes, DynamoItemStore};
use crate::error::store_error;
use crate::expr::Expr;
use crate::value::{item_from_attributes, to_attributes};

/// DynamoDB's limit of items per transaction.
pub(crate) const MAX_WRITES: usize = 100;
/// Rounds after a conflicting concurrent transaction (or an expired item to replace).
const ATTEMPTS: u32 = 10;

/// How one write goes into the transaction.
#[derive(Debug, Clone)]
enum Plan {
    /// As asked.
    AsIs,
    /// An update of an item that is expired: a put of the update applied to an empty item,
    /// on condition that the item is still expired.
    ReplaceExpired(Item),
}

/// A token per transaction attempt, so the SDK's own retries of that attempt are
/// idempotent (`ClientRequestToken`).
fn request_token() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{nanos:x}-{:x}-{n:x}", std::process::id())
}

fn build_error(e: aws_sdk_dynamodb::error::BuildError) -> StoreError {
    StoreError::Backend(format!("transaction: {e}"))
}

impl DynamoItemStore {
    /// A put of `item` in the transaction, on `condition` (built with `e`).
    fn put(
        &self,
        mut e: Expr,
        item: &Item,
        condition: Option<String>,
    ) -> StoreResult<aws_sdk_dynamodb::types::builders::TransactWriteItemBuilder> {
        let (names, values) = e.take();
        Ok(TransactWriteItem::builder().put(
            Put::builder()
                .table_name(self.table())
                .set_item(Some(to_attributes(item)))
                .set_condition_expression(condition)
                .set_expression_attribute_names(names)
                .set_expression_attribute_values(values)
                .return_values_on_condition_check_failure(
                    ReturnValuesOnConditionCheckFailure::AllOld,
                )
                .build()
                .map_err(build_error)?,
        ))
    }

    fn transact_item(
        &self,
        write: &Write,
        plan: &Plan,
        now: i64,
    ) -> StoreResult<TransactWriteItem> {
        let mut e = Expr::default();
        let item = match (write, plan) {
            (_, Plan::ReplaceExpired(fresh)) => {
                let still_expired = e.expired(now);
                self.put(e, fresh, Some(still_expired))?
            }
            (Write::Put { item, condition }, Plan::AsIs) => {
                let condition = condition.as_ref().map(|c| e.condition(c, now));
                self.put(e, item, condition)?
            }
            (
                Write::Update {
                    pk,
                    sk,
                    ops,
                    condition,
                },
                Plan::AsIs,
            ) => {
                // A transaction's update needs an expression: removing a name no stored
                // attribute can have ("_" alone is never an escaped name) only creates the
                // item, as an update without ops does.
                let update = e.update(ops);
                let guard = e.live_and(condition.as_ref(), now);
                let (names, values) = e.take();
                let mut names = names.unwrap_or_default();
                let update = update.unwrap_or_else(|| {
                    names.insert("#nothing".to_owned(), "_".to_owned());
                    "REMOVE #nothing".to_owned()
                });
                TransactWriteItem::builder().update(
                    Update::builder()
                        .table_name(self.table())
                        .set_key(Some(key(pk, sk)))
                        .update_expression(update)
                        .condition_expression(guard)
                        .set_expression_attribute_names(Some(names))
                        .set_expression_attribute_values(values)
                        .return_values_on_condition_check_failure(
                            ReturnValuesOnConditionCheckFailure::AllOld,
                        )
                        .build()
                        .map_err(build_error)?,
                )
            }
        };
        Ok(item.build())
    }

    pub(crate) async fn transact_writes(&self, writes: &[Write]) -> StoreResult<Transacted> {
        if writes.is_empty() {
            return Ok(Transacted::Written(Vec::new()));
        }
        if writes.len() > MAX_WRITES {
            return Err(StoreError::Backend(format!(
                "a transaction holds at most {MAX_WRITES} writes, got {}",
                writes.len()
            )));
        }
        let mut plans = vec![Plan::AsIs; writes.len()];
        for attempt in 0..ATTEMPTS {
            let now = now_secs();
            let items = writes
                .iter()
                .zip(&plans)
                .map(|(w, p)| self.transact_item(w, p, now))
                .collect::<StoreResult<Vec<_>>>()?;
            let sent = self
                .client()
                .transact_write_items()
                .set_transact_items(Some(items))
                .client_request_token(request_token())
                .send()
                .await;
            let reasons = match sent {
                Ok(_) => return self.written(writes, &plans).await.map(Transacted::Written),
                Err(SdkError::ServiceError(err))
                    if err.err().is_transaction_canceled_exception() =>
                {
                    match err.into_err() {
                        TransactWriteItemsError::TransactionCanceledException(c) => {
                            c.cancellation_reasons
                        }
                        _ => None,
                    }
                    .unwrap_or_default()
                }
                Err(e) => return Err(store_error("TransactWriteItems", e)),
            };
            let failed = reasons
                .iter()
                .position(|r| r.code() == Some("ConditionalCheckFailed"));
            if let Some(r) = reasons.iter().find(|r| {
                !matches!(
                    r.code(),
                    None | Some(
                        "None"
                            | "ConditionalCheckFailed"
                            | "TransactionConflict"
                            | "ThrottlingError"
                            | "ProvisionedThroughputExceeded"
                    )
                )
            }) {
                return Err(StoreError::Backend(format!(
                    "TransactWriteItems: {}: {}",
                    r.code().unwrap_or_default(),
                    r.message().unwrap_or_default()
                )));
            }
            match failed {
                Some(index) => {
                    let old = reasons[index].item();
                    match self.replan(&writes[index], &plans[index], old, now)? {
                        Some(plan) => plans[index] = plan,
                        None => return Ok(Transacted::ConditionFailed(index)),
                    }
                }
                // Cancelled by a conflicting concurrent transaction (or throttled): back off
                // and try again, as DynamoDB advises.
                None => {
                    let jitter = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| u64::from(d.subsec_nanos() % 10));
                    let backoff = (10u64 << attempt.min(6)) + jitter;
                    tokio::time::sleep(Duration::from_millis(backoff)).await;
                }
            }
        }
        Err(StoreError::Unavailable(
            "transaction kept conflicting with concurrent writes".into(),
        ))
    }

    /// After a failed condition on `write` (whose stored item was `old`): how to send it
    /// next round, or `None` when the failure stands.
    fn replan(
        &self,
        write: &Write,
        plan: &Plan,
        old: Option<&Attributes>,
        now: i64,
    ) -> StoreResult<Option<Plan>> {
        let Write::Update {
            pk,
            sk,
            ops,
            condition,
        } = write
        else {
            // Put conditions already treat an expired item as absent.
            return Ok(None);
        };
        if !condition.as_ref().is_none_or(|c| c.matches(None)) {
            return Ok(None);
        }
        let expired = match old {
            Some(old) => item_from_attributes(old)?.is_expired(now),
            None => false,
        };
        Ok(match (plan, expired) {
            (Plan::AsIs, true) => {
                let mut fresh = Item::new(pk.clone(), sk.clone(), Default::default());
                apply_update(&mut fresh, ops);
                Some(Plan::ReplaceExpired(fresh))
            }
            // The expired item was replaced or deleted meanwhile: update it normally.
            (Plan::ReplaceExpired(_), false) => Some(Plan::AsIs),
            (Plan::ReplaceExpired(_), true) => Some(plan.clone()),
            (Plan::AsIs, false) => None,
        })
    }

    /// The per-write results of a committed transaction: `None` for puts, the item after
    /// the update for updates (read right after the commit; a concurrent writer's later
    /// change to the same item may already show).
    async fn written(&self, writes: &[Write], plans: &[Plan]) -> StoreResult<Vec<Option<Item>>> {
        let to_read: Vec<(String, String)> = writes
            .iter()
            .zip(plans)
            .filter_map(|(w, p)| match (w, p) {
                (Write::Update { pk, sk, .. }, Plan::AsIs) => Some((pk.clone(), sk.clone())),
                _ => None,
            })
            .collect();
        let mut read: HashMap<(String, String), Item> = HashMap::new();
        let mut pending: Vec<HashMap<String, AttributeValue>> =
            to_read.iter().map(|(pk, sk)| key(pk, sk)).collect();
        for _ in 0..ATTEMPTS {
            if pending.is_empty() {
                break;
            }
            let keys = KeysAndAttributes::builder()
                .set_keys(Some(std::mem::take(&mut pending)))
                .consistent_read(true)
                .build()
                .map_err(build_error)?;
            let out = self
                .client()
                .batch_get_item()
                .request_items(self.table(), keys)
                .send()
                .await
                .map_err(|e| store_error("BatchGetItem", e))?;
            for stored in out
                .responses
                .and_then(|mut r| r.remove(self.table()))
                .unwrap_or_default()
            {
                let item = item_from_attributes(&stored)?;
                read.insert((item.pk.clone(), item.sk.clone()), item);
            }
            if let Some(k) = out
                .unprocessed_keys
                .and_then(|mut u| u.remove(self.table()))
            {
                pending = k.keys;
            }
        }
        Ok(writes
            .iter()
            .zip(plans)
            .map(|(w, p)| match (w, p) {
                (Write::Put { .. }, _) => None,
                (Write::Update { .. }, Plan::ReplaceExpired(fresh)) => Some(fresh.clone()),
                (Write::Update { pk, sk, .. }, Plan::AsIs) => {
                    read.remove(&(pk.clone(), sk.clone()))
                }
            })
            .collect())
    }
}
