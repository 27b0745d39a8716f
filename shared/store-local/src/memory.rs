//! In-memory adapters for unit tests: one `BTreeMap` under a `Mutex`, so every operation is
//! trivially atomic. A poisoned lock is recovered (the maps are never left half-updated).

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
type Partitions = BTreeMap<String, BTreeMap<String, Item>>;

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

    fn live<'a>(data: &'a Partitions, pk: &str, sk: &str, now: i64) -> Option<&'a Item> {
        data.get(pk)
            .and_then(|p| p.get(sk))
            .filter(|i| !i.is_expired(now))
    }

    /// Applies `ops` to the stored item (a fresh one when absent or expired) where it
    /// lies, and returns a copy of the result: one copy per update instead of two.
    fn update_in_place(
        data: &mut Partitions,
        pk: &str,
        sk: &str,
        now: i64,
        ops: &[UpdateOp],
    ) -> Item {
        let item = data
            .entry(pk.to_owned())
            .or_default()
            .entry(sk.to_owned())
            .or_insert_with(|| Item::new(pk, sk, Attrs::new()));
        if item.is_expired(now) {
            *item = Item::new(pk, sk, Attrs::new());
        }
        apply_update(item, ops);
        item.clone()
    }

    fn check(condition: Option<&Condition>, current: Option<&Item>) -> StoreResult<()> {
        match condition {
            Some(c) if !c.matches(current) => Err(StoreError::ConditionFailed),
            _ => Ok(()),
        }
    }
}

#[async_trait]
impl ItemStore for MemoryItemStore {
    async fn get(&self, pk: &str, sk: &str) -> StoreResult<Option<Item>> {
        let now = self.now();
        Ok(Self::live(&self.lock(), pk, sk, now).cloned())
    }

    async fn put(&self, item: Item, condition: Option<Condition>) -> StoreResult<()> {
        let now = self.now();
        let mut data = self.lock();
        Self::check(
            condition.as_ref(),
            Self::live(&data, &item.pk, &item.sk, now),
        )?;
        data.entry(item.pk.clone())
            .or_default()
            .insert(item.sk.clone(), item);
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
        Self::check(condition.as_ref(), Self::live(&data, pk, sk, now))?;
        Ok(Self::update_in_place(&mut data, pk, sk, now, ops))
    }

    async fn delete(
        &self,
        pk: &str,
        sk: &str,
        condition: Option<Condition>,
    ) -> StoreResult<Option<Item>> {
        let now = self.now();
        let mut data = self.lock();
        Self::check(condition.as_ref(), Self::live(&data, pk, sk, now))?;
        let Some(part) = data.get_mut(pk) else {
            return Ok(None);
        };
        let old = part.remove(sk);
        if part.is_empty() {
            data.remove(pk);
        }
        Ok(old.filter(|i| !i.is_expired(now)))
    }

    /// Atomic: every condition is checked under the one lock before anything is written.
    /// Items to put are copied before the lock is taken, so concurrent callers wait less.
    async fn transact(&self, writes: &[Write]) -> StoreResult<Transacted> {
        let mut puts: Vec<Option<Item>> = writes
            .iter()
            .map(|w| match w {
                Write::Put { item, .. } => Some(item.clone()),
                Write::Update { .. } => None,
            })
            .collect();
        let now = self.now();
        let mut data = self.lock();
        for (index, write) in writes.iter().enumerate() {
            let (pk, sk, condition) = match write {
                Write::Put { item, condition } => (&item.pk, &item.sk, condition),
                Write::Update {
                    pk, sk, condition, ..
                } => (pk, sk, condition),
            };
            if Self::check(condition.as_ref(), Self::live(&data, pk, sk, now)).is_err() {
                return Ok(Transacted::ConditionFailed(index));
            }
        }
        let mut written = Vec::with_capacity(writes.len());
        for (write, put) in writes.iter().zip(puts.iter_mut()) {
            match write {
                Write::Put { item, .. } => {
                    let item = put.take().unwrap_or_else(|| item.clone());
                    data.entry(item.pk.clone())
                        .or_default()
                        .insert(item.sk.clone(), item);
                    written.push(None);
                }
                Write::Update { pk, sk, ops, .. } => {
                    written.push(Some(Self::update_in_place(&mut data, pk, sk, now, ops)));
                }
            }
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
        let iter = part.range::<str, _>(range.as_ref()).map(|(_, i)| i);
        let iter: Box<dyn Iterator<Item = &Item>> = if query.descending {
            Box::new(iter.rev())
        } else {
            Box::new(iter)
        };
        for item in iter.filter(|i| !i.is_expired(now)) {
            if pager.offer(item.clone()).is_break() {
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
