//! Ports: the only way core touches the outside world.
//!
//! `ItemStore` is shaped like DynamoDB (partition key + sort key, conditional writes,
//! atomic counters, TTL) so the same handler code runs on DynamoDB, SQLite and memory.
//! Every adapter must pass the contract suite in `tests/store-contract`.

use std::fmt;

use async_trait::async_trait;
use serde_json::{Map, Value};

/// Attributes of an item: a JSON object. Numbers used as counters are integers.
pub type Attrs = Map<String, Value>;

/// One stored record, addressed by `(pk, sk)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub pk: String,
    pub sk: String,
    pub attrs: Attrs,
    /// Unix seconds after which the item is gone (DynamoDB TTL semantics: reads never
    /// return an expired item, even before the backend physically deletes it).
    pub expires_at: Option<i64>,
}

impl Item {
    pub fn new(pk: impl Into<String>, sk: impl Into<String>, attrs: Attrs) -> Self {
        Self {
            pk: pk.into(),
            sk: sk.into(),
            attrs,
            expires_at: None,
        }
    }

    pub fn with_ttl(mut self, expires_at: Option<i64>) -> Self {
        self.expires_at = expires_at;
        self
    }

    pub fn is_expired(&self, now_secs: i64) -> bool {
        self.expires_at.is_some_and(|t| t <= now_secs)
    }

    pub fn get_i64(&self, name: &str) -> Option<i64> {
        self.attrs.get(name).and_then(Value::as_i64)
    }

    pub fn get_str(&self, name: &str) -> Option<&str> {
        self.attrs.get(name).and_then(Value::as_str)
    }
}

/// Comparison operators usable in conditions (DynamoDB's `= <> < <= > >=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// A condition on the current state of one item, checked atomically with a write.
/// A comparison against a missing attribute is false, as in DynamoDB.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    /// The item exists (and is not expired).
    Exists,
    /// The item does not exist (or is expired).
    NotExists,
    AttrExists(String),
    AttrNotExists(String),
    /// `attr <op> value`
    Cmp(String, CmpOp, Value),
    /// `attr <op> other_attr`
    CmpAttr(String, CmpOp, String),
    And(Vec<Condition>),
    Or(Vec<Condition>),
    Not(Box<Condition>),
}

impl Condition {
    pub fn cmp(attr: &str, op: CmpOp, value: impl Into<Value>) -> Self {
        Self::Cmp(attr.to_owned(), op, value.into())
    }

    /// Evaluates the condition against the current item (`None` = absent). Adapters that
    /// cannot push conditions down (SQLite, memory) call this inside their transaction.
    pub fn matches(&self, item: Option<&Item>) -> bool {
        match self {
            Self::Exists => item.is_some(),
            Self::NotExists => item.is_none(),
            Self::AttrExists(a) => item.is_some_and(|i| i.attrs.contains_key(a)),
            Self::AttrNotExists(a) => !item.is_some_and(|i| i.attrs.contains_key(a)),
            Self::Cmp(a, op, v) => item
                .and_then(|i| i.attrs.get(a))
                .is_some_and(|cur| compare(cur, *op, v)),
            Self::CmpAttr(a, op, b) => {
                item.is_some_and(|i| match (i.attrs.get(a), i.attrs.get(b)) {
                    (Some(x), Some(y)) => compare(x, *op, y),
                    _ => false,
                })
            }
            Self::And(cs) => cs.iter().all(|c| c.matches(item)),
            Self::Or(cs) => cs.iter().any(|c| c.matches(item)),
            Self::Not(c) => !c.matches(item),
        }
    }
}

/// DynamoDB-like comparison: numbers with numbers, strings with strings, bools and nulls
/// only for (in)equality. Mismatched types compare unequal.
fn compare(a: &Value, op: CmpOp, b: &Value) -> bool {
    use std::cmp::Ordering;
    let ord = match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => Some(x.cmp(&y)),
            _ => x
                .as_f64()
                .zip(y.as_f64())
                .and_then(|(x, y)| x.partial_cmp(&y)),
        },
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        _ => None,
    };
    match (op, ord) {
        (CmpOp::Eq, Some(o)) => o == Ordering::Equal,
        (CmpOp::Ne, Some(o)) => o != Ordering::Equal,
        (CmpOp::Eq, None) => a == b,
        (CmpOp::Ne, None) => a != b,
        (CmpOp::Lt, Some(o)) => o == Ordering::Less,
        (CmpOp::Le, Some(o)) => o != Ordering::Greater,
        (CmpOp::Gt, Some(o)) => o == Ordering::Greater,
        (CmpOp::Ge, Some(o)) => o != Ordering::Less,
        (_, None) => false,
    }
}

/// One change made by [`ItemStore::update`], applied in order (DynamoDB `SET`/`ADD`/`REMOVE`).
#[derive(Debug, Clone, PartialEq)]
pub enum UpdateOp {
    Set(String, Value),
    /// `SET a = if_not_exists(a, v)`
    SetIfNotExists(String, Value),
    /// `ADD a n`: a missing attribute counts as 0.
    Add(String, i64),
    /// `ADD a x` for a floating-point total (metric sums).
    AddF64(String, f64),
    Remove(String),
    /// Changes the item's TTL (`None` clears it).
    SetTtl(Option<i64>),
}

impl UpdateOp {
    pub fn set(attr: &str, value: impl Into<Value>) -> Self {
        Self::Set(attr.to_owned(), value.into())
    }

    pub fn add(attr: &str, n: i64) -> Self {
        Self::Add(attr.to_owned(), n)
    }
}

/// Applies update ops to an item in place (shared by adapters that update in Rust).
pub fn apply_update(item: &mut Item, ops: &[UpdateOp]) {
    for op in ops {
        match op {
            UpdateOp::Set(a, v) => {
                item.attrs.insert(a.clone(), v.clone());
            }
            UpdateOp::SetIfNotExists(a, v) => {
                item.attrs.entry(a.clone()).or_insert_with(|| v.clone());
            }
            UpdateOp::Add(a, n) => {
                let cur = item.attrs.get(a).and_then(Value::as_i64).unwrap_or(0);
                item.attrs
                    .insert(a.clone(), Value::from(cur.saturating_add(*n)));
            }
            UpdateOp::AddF64(a, x) => {
                let cur = item.attrs.get(a).and_then(Value::as_f64).unwrap_or(0.0);
                let next = serde_json::Number::from_f64(cur + x).map_or(Value::Null, Value::Number);
                item.attrs.insert(a.clone(), next);
            }
            UpdateOp::Remove(a) => {
                item.attrs.remove(a);
            }
            UpdateOp::SetTtl(t) => item.expires_at = *t,
        }
    }
}

/// Options for [`ItemStore::query`].
#[derive(Debug, Clone, Default)]
pub struct Query {
    /// Only sort keys starting with this prefix.
    pub sk_prefix: Option<String>,
    /// Newest (greatest sort key) first.
    pub descending: bool,
    /// Maximum number of items returned (after `filter`). `None` means all; `Some(0)` is
    /// refused by adapters, as by DynamoDB.
    pub limit: Option<usize>,
    /// Opaque cursor from a previous [`Page::next`].
    pub cursor: Option<String>,
    /// Items not matching are skipped (DynamoDB FilterExpression); pages still fill to `limit`.
    pub filter: Option<Condition>,
}

/// One page of a query, in sort-key order.
#[derive(Debug, Clone, Default)]
pub struct Page {
    pub items: Vec<Item>,
    /// Cursor for the next page, `None` when there is nothing more.
    pub next: Option<String>,
}

/// One write of [`ItemStore::transact`].
#[derive(Debug, Clone, PartialEq)]
pub enum Write {
    /// As [`ItemStore::put`].
    Put {
        item: Item,
        condition: Option<Condition>,
    },
    /// As [`ItemStore::update`].
    Update {
        pk: String,
        sk: String,
        ops: Vec<UpdateOp>,
        condition: Option<Condition>,
    },
}

/// What [`ItemStore::transact`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum Transacted {
    /// Every write was applied. Per write, in order: the item after an update, `None` for
    /// a put.
    Written(Vec<Option<Item>>),
    /// The condition of the write at this index did not hold; nothing was written.
    ConditionFailed(usize),
}

pub mod paging;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The write's condition did not hold; nothing was written.
    #[error("condition failed")]
    ConditionFailed,
    #[error("invalid cursor")]
    InvalidCursor,
    /// Throttling or a transient fault that persisted through the adapter's retries.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("store error: {0}")]
    Backend(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// DynamoDB-shaped key-value store.
#[async_trait]
pub trait ItemStore: Send + Sync + 'static {
    async fn get(&self, pk: &str, sk: &str) -> StoreResult<Option<Item>>;
    /// Writes the whole item if `condition` (on the existing item) holds.
    async fn put(&self, item: Item, condition: Option<Condition>) -> StoreResult<()>;
    /// Atomically applies `ops` to the item (creating it when absent) if `condition` holds,
    /// and returns the item as it is after the update.
    async fn update(
        &self,
        pk: &str,
        sk: &str,
        ops: &[UpdateOp],
        condition: Option<Condition>,
    ) -> StoreResult<Item>;
    /// Deletes the item if `condition` holds; returns the deleted item, if any.
    async fn delete(
        &self,
        pk: &str,
        sk: &str,
        condition: Option<Condition>,
    ) -> StoreResult<Option<Item>>;
    async fn query(&self, pk: &str, query: Query) -> StoreResult<Page>;

    /// Applies `writes` (at most one per item) as one unit: all of them when every
    /// condition holds, none otherwise. One round trip where the backend allows it
    /// (SQLite, memory, DynamoDB `TransactWriteItems`), so a handler that writes several
    /// items pays for one.
    ///
    /// The default runs the writes one by one, in order, and when a condition fails it
    /// undoes only the put-if-absent (`Condition::NotExists`) writes before it. Callers
    /// therefore order writes so that this suffices: put-if-absent writes first, then at
    /// most one other conditional write, then unconditional ones.
    async fn transact(&self, writes: &[Write]) -> StoreResult<Transacted> {
        let mut written = Vec::with_capacity(writes.len());
        for (index, write) in writes.iter().enumerate() {
            let result = match write {
                Write::Put { item, condition } => self
                    .put(item.clone(), condition.clone())
                    .await
                    .map(|()| None),
                Write::Update {
                    pk,
                    sk,
                    ops,
                    condition,
                } => self.update(pk, sk, ops, condition.clone()).await.map(Some),
            };
            match result {
                Ok(item) => written.push(item),
                Err(StoreError::ConditionFailed) => {
                    for undo in &writes[..index] {
                        if let Write::Put {
                            item,
                            condition: Some(Condition::NotExists),
                        } = undo
                        {
                            self.delete(&item.pk, &item.sk, None).await?;
                        }
                    }
                    return Ok(Transacted::ConditionFailed(index));
                }
                Err(e) => return Err(e),
            }
        }
        Ok(Transacted::Written(written))
    }
}

/// S3-shaped blob store.
#[async_trait]
pub trait BlobStore: Send + Sync + 'static {
    /// Stores `bytes` at `key`. With `if_none_match`, fails with `ConditionFailed` when the key exists.
    async fn put(&self, key: &str, bytes: Vec<u8>, if_none_match: bool) -> StoreResult<()>;
    async fn get(&self, key: &str) -> StoreResult<Option<Vec<u8>>>;
    /// Keys under `prefix` in lexicographic order, at most `limit`, starting after `start_after`.
    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<String>>;
    async fn delete(&self, key: &str) -> StoreResult<()>;
}

/// Where committed changes are announced (in-process hub locally, relay + edge in AWS).
/// Publishing is best effort: a lost event is repaired by the SDK's next poll.
pub trait EventBus: Send + Sync + 'static {
    fn publish(&self, event: crate::events::ChangeEvent);
}

/// Wall clock, injectable for tests.
pub trait Clock: Send + Sync + 'static {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;
}

/// Random identifiers, injectable for tests.
pub trait IdGen: Send + Sync + 'static {
    /// A fresh random 128-bit id as 32 lowercase hex characters.
    fn random_hex128(&self) -> String;
}

impl fmt::Display for CmpOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Eq => "=",
            Self::Ne => "<>",
            Self::Lt => "<",
            Self::Le => "<=",
            Self::Gt => ">",
            Self::Ge => ">=",
        })
    }
}
