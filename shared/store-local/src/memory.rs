//! In-memory adapters for unit tests and benchmarks: one `BTreeMap` under a `Mutex`, so
//! every operation is trivially atomic. A poisoned lock is recovered (the maps are never
//! left half-updated).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use sightline_core::ports::{
    apply_update, Attrs, BlobStore, Clock, Condition, Item, ItemStore, Page, Query, StoreError,
    StoreResult, Transacted, UpdateOp, Write,
};

use crate::{now_secs, SystemClock};
use sightline_core::ports::paging::{plan, Pager};

/// Partition key -> sort key -> item. Expired items stay until swept but are never visible.
type Partitions = BTreeMap<String, BTreeMap<String, Stored>>;

/// An item as kept. One written whole is kept as its attributes' JSON text: copying it in
/// from a borrowed write is one serialisation into one string, where a copy of the tree
/// allocates every key and value (a 2 KB snapshot is ~30 KB of tree) and freeing it later
/// frees each again. Reading the text back gives the same attributes in the same order
/// (floats round-trip exactly), as from SQLite, which keeps the same text. An item that is
/// updated is kept as a tree, so its counters change in place.
enum Stored {
    Text {
        /// JSON text.
        attrs: Box<[u8]>,
        expires_at: Option<i64>,
    },
    Tree(Item),
}

impl Stored {
    fn text(item: &Item) -> StoreResult<Self> {
        let attrs = serde_json::to_vec(&item.attrs)
            .map_err(|e| StoreError::Backend(format!("item not serialisable: {e}")))?;
        Ok(Self::Text {
            attrs: attrs.into_boxed_slice(),
            expires_at: item.expires_at,
        })
    }

    fn is_expired(&self, now: i64) -> bool {
        match self {
            Self::Text { expires_at, .. } => expires_at.is_some_and(|t| t <= now),
            Self::Tree(item) => item.is_expired(now),
        }
    }

    /// The item stored at `(pk, sk)`, read from its text when kept as text.
    fn item(&self, pk: &str, sk: &str) -> StoreResult<Cow<'_, Item>> {
        match self {
            Self::Text { attrs, expires_at } => {
                let attrs: Attrs = serde_json::from_slice(attrs)
                    .map_err(|e| StoreError::Backend(format!("stored item unreadable: {e}")))?;
                Ok(Cow::Owned(Item::new(pk, sk, attrs).with_ttl(*expires_at)))
            }
            Self::Tree(item) => Ok(Cow::Borrowed(item)),
        }
    }

    fn into_item(self, pk: &str, sk: &str) -> StoreResult<Item> {
        match self {
            Self::Tree(item) => Ok(item),
            text => text.item(pk, sk).map(Cow::into_owned),
        }
    }
}

/// One write of a transaction, ready to apply under the lock.
enum Planned<'a> {
    Put(Stored),
    Update(&'a [UpdateOp]),
}

/// `ItemStore` in memory.
pub struct MemoryItemStore {
    data: Mutex<Partitions>,
    clock: Arc<dyn Clock>,
}

impl Default for MemoryItemStore {
    fn default() -> Self {
        Self::new(Arc::new(SystemClock))
    }
}

impl MemoryItemStore {
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            data: Mutex::new(BTreeMap::new()),
            clock,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Partitions> {
        self.data.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn now(&self) -> i64 {
        now_secs(&*self.clock)
    }

    /// Drops expired items; returns how many.
    pub fn sweep_expired(&self) -> usize {
        let now = self.now();
        let mut data = self.lock();
        let mut removed = 0;
        data.retain(|_, part| {
            let before = part.len();
            part.retain(|_, item| !item.is_expired(now));
            removed += before - part.len();
            !part.is_empty()
        });
        removed
    }

    fn live<'a>(data: &'a Partitions, pk: &str, sk: &str, now: i64) -> Option<&'a Stored> {
        data.get(pk)
            .and_then(|p| p.get(sk))
            .filter(|i| !i.is_expired(now))
    }

    fn insert(data: &mut Partitions, pk: &str, sk: &str, stored: Stored) {
        data.entry(pk.to_owned())
            .or_default()
            .insert(sk.to_owned(), stored);
    }

    /// Applies `ops` to the stored item (a fresh one when absent or expired) where it
    /// lies, and returns a copy of the result: one copy per update instead of two.
    fn update_in_place(
        data: &mut Partitions,
        pk: &str,
        sk: &str,
        now: i64,
        ops: &[UpdateOp],
    ) -> StoreResult<Item> {
        let stored = data
            .entry(pk.to_owned())
            .or_default()
            .entry(sk.to_owned())
            .or_insert_with(|| Stored::Tree(Item::new(pk, sk, Attrs::new())));
        if stored.is_expired(now) {
            *stored = Stored::Tree(Item::new(pk, sk, Attrs::new()));
        }
        if let Stored::Text { .. } = stored {
            *stored = Stored::Tree(stored.item(pk, sk)?.into_owned());
        }
        let Stored::Tree(item) = stored else {
            return Err(StoreError::Backend("item not updatable".into()));
        };
        apply_update(item, ops);
        Ok(item.clone())
    }

    /// Checks `condition` against the live item at `(pk, sk)`; `Ok(false)` when it fails.
    fn holds(
        data: &Partitions,
        pk: &str,
        sk: &str,
        now: i64,
        condition: Option<&Condition>,
    ) -> StoreResult<bool> {
        let Some(condition) = condition else {
            return Ok(true);
        };
        let current = match Self::live(data, pk, sk, now) {
            Some(stored) => Some(stored.item(pk, sk)?),
            None => None,
        };
        Ok(condition.matches(current.as_deref()))
    }

    fn check(
        data: &Partitions,
        pk: &str,
        sk: &str,
        now: i64,
        condition: Option<&Condition>,
    ) -> StoreResult<()> {
        if Self::holds(data, pk, sk, now, condition)? {
            Ok(())
        } else {
            Err(StoreError::ConditionFailed)
        }
    }
}

#[async_trait]
impl ItemStore for MemoryItemStore {
    async fn get(&self, pk: &str, sk: &str) -> StoreResult<Option<Item>> {
        let now = self.now();
        let data = self.lock();
        Self::live(&data, pk, sk, now)
            .map(|stored| stored.item(pk, sk).map(Cow::into_owned))
            .transpose()
    }

    async fn put(&self, item: Item, condition: Option<Condition>) -> StoreResult<()> {
        let stored = Stored::text(&item)?;
        let now = self.now();
        let mut data = self.lock();
        Self::check(&data, &item.pk, &item.sk, now, condition.as_ref())?;
        Self::insert(&mut data, &item.pk, &item.sk, stored);
        Ok(())
    }

    async fn update(
        &self,
        pk: &str,
        sk: &str,
        ops: &[UpdateOp],
        condition: Option<Condition>,
    ) -> StoreResult<Item> {
        let now = self.now();
        let mut data = self.lock();
        Self::check(&data, pk, sk, now, condition.as_ref())?;
        Self::update_in_place(&mut data, pk, sk, now, ops)
    }

    async fn delete(
        &self,
        pk: &str,
        sk: &str,
        condition: Option<Condition>,
    ) -> StoreResult<Option<Item>> {
        let now = self.now();
        let mut data = self.lock();
        Self::check(&data, pk, sk, now, condition.as_ref())?;
        let Some(part) = data.get_mut(pk) else {
            return Ok(None);
        };
        let old = part.remove(sk);
        if part.is_empty() {
            data.remove(pk);
        }
        old.filter(|i| !i.is_expired(now))
            .map(|stored| stored.into_item(pk, sk))
            .transpose()
    }

    /// Atomic: every condition is checked under the one lock before anything is written.
    /// Items to put are serialised before the lock is taken, so concurrent callers wait less.
    async fn transact(&self, writes: &[Write]) -> StoreResult<Transacted> {
        let planned = writes
            .iter()
            .map(|w| {
                Ok(match w {
                    Write::Put { item, condition } => (
                        item.pk.as_str(),
                        item.sk.as_str(),
                        condition.as_ref(),
                        Planned::Put(Stored::text(item)?),
                    ),
                    Write::Update {
                        pk,
                        sk,
                        ops,
                        condition,
                    } => (
                        pk.as_str(),
                        sk.as_str(),
                        condition.as_ref(),
                        Planned::Update(ops),
                    ),
                })
            })
            .collect::<StoreResult<Vec<_>>>()?;
        let now = self.now();
        let mut data = self.lock();
        for (index, (pk, sk, condition, _)) in planned.iter().enumerate() {
            if !Self::holds(&data, pk, sk, now, *condition)? {
                return Ok(Transacted::ConditionFailed(index));
            }
        }
        let mut written = Vec::with_capacity(planned.len());
        for (pk, sk, _, planned) in planned {
            written.push(match planned {
                Planned::Put(stored) => {
                    Self::insert(&mut data, pk, sk, stored);
                    None
                }
                Planned::Update(ops) => Some(Self::update_in_place(&mut data, pk, sk, now, ops)?),
            });
        }
        Ok(Transacted::Written(written))
    }

    async fn query(&self, pk: &str, query: Query) -> StoreResult<Page> {
        let range = plan(&query)?;
        let now = self.now();
        let mut pager = Pager::new(&query);
        let data = self.lock();
        let Some(part) = data.get(pk) else {
            return Ok(pager.finish());
        };
        if range.is_empty() {
            return Ok(pager.finish());
        }
        let iter = part.range::<str, _>(range.as_ref());
        let iter: Box<dyn Iterator<Item = (&String, &Stored)>> = if query.descending {
            Box::new(iter.rev())
        } else {
            Box::new(iter)
        };
        for (sk, stored) in iter.filter(|(_, i)| !i.is_expired(now)) {
            let item = stored.item(pk, sk)?.into_owned();
            if pager.offer(item).is_break() {
                break;
            }
        }
        Ok(pager.finish())
    }
}

/// `BlobStore` in memory.
#[derive(Default)]
pub struct MemoryBlobStore {
    data: Mutex<BTreeMap<String, Vec<u8>>>,
}

impl MemoryBlobStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Vec<u8>>> {
        self.data.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait]
impl BlobStore for MemoryBlobStore {
    async fn put(&self, key: &str, bytes: Vec<u8>, if_none_match: bool) -> StoreResult<()> {
        let mut data = self.lock();
        if if_none_match && data.contains_key(key) {
            return Err(StoreError::ConditionFailed);
        }
        data.insert(key.to_owned(), bytes);
        Ok(())
    }

    async fn get(&self, key: &str) -> StoreResult<Option<Vec<u8>>> {
        Ok(self.lock().get(key).cloned())
    }

    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<String>> {
        let lower = match start_after {
            Some(a) if a >= prefix => Bound::Excluded(a),
            _ => Bound::Included(prefix),
        };
        Ok(self
            .lock()
            .range::<str, _>((lower, Bound::Unbounded))
            .map(|(k, _)| k)
            .take_while(|k| k.starts_with(prefix))
            .take(limit)
            .cloned()
            .collect())
    }

    async fn delete(&self, key: &str) -> StoreResult<()> {
        self.lock().remove(key);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::{json, Value};

    use super::*;

    fn attrs(v: Value) -> Attrs {
        match v {
            Value::Object(m) => m,
            _ => Attrs::new(),
        }
    }

    #[tokio::test]
    async fn an_item_kept_as_text_reads_back_exactly() {
        let store = MemoryItemStore::default();
        let original = attrs(json!({
            "z": 1, "a": [0.1, -2.5e-8, 1e300, -0.0, 1.0, 18_446_744_073_709_551_615_u64, i64::MIN],
            "s": "tab\t \u{1} \"q\" \\ é 😀", "nested": {"b": {"c": [null, true, {}]}}, "m": "last",
        }));
        let item = Item::new("P", "k", original.clone()).with_ttl(Some(i64::MAX));
        store.put(item.clone(), None).await.unwrap();
        let got = store.get("P", "k").await.unwrap().unwrap();
        assert_eq!(got, item);
        let keys = |a: &Attrs| a.keys().cloned().collect::<Vec<_>>();
        assert_eq!(keys(&got.attrs), keys(&original), "key order kept");
        assert_eq!(
            got.attrs["a"][3].as_f64().map(f64::is_sign_negative),
            Some(true),
            "-0.0 kept"
        );

        // An update reads the text, then changes the tree in place.
        let updated = store
            .update("P", "k", &[UpdateOp::add("z", 2)], None)
            .await
            .unwrap();
        let mut expected = item.clone();
        expected.attrs.insert("z".into(), 3.into());
        assert_eq!(updated, expected);
        assert_eq!(store.get("P", "k").await.unwrap().unwrap(), expected);
        assert_eq!(keys(&updated.attrs), keys(&original), "update keeps order");

        // A transaction's put is kept as text too, and its condition sees the stored item.
        let put = Write::Put {
            item: Item::new("P", "k", original.clone()),
            condition: Some(Condition::cmp("z", sightline_core::ports::CmpOp::Eq, 3)),
        };
        let done = store.transact(&[put]).await.unwrap();
        assert_eq!(done, Transacted::Written(vec![None]));
        assert_eq!(
            store.get("P", "k").await.unwrap().unwrap(),
            Item::new("P", "k", original)
        );
    }
}
