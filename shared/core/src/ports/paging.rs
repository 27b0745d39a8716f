//! How every adapter answers [`ItemStore::query`]: which sort keys to scan (prefix and
//! cursor applied) and how a page is filled from items offered in scan order, so all of
//! them page identically.
//!
//! [`ItemStore::query`]: super::ItemStore::query

use std::ops::{Bound, ControlFlow};

use super::{Condition, Item, Page, Query, StoreError, StoreResult};

/// Page cursors: the hex of the last sort key a page consumed. Opaque to clients, the same
/// on every adapter (they all page here), and garbage fails to decode.
mod cursor {
    use super::{StoreError, StoreResult};

    pub fn encode(sk: &str) -> String {
        hex::encode(sk.as_bytes())
    }

    pub fn decode(cursor: &str) -> StoreResult<String> {
        let bytes = hex::decode(cursor).map_err(|_| StoreError::InvalidCursor)?;
        String::from_utf8(bytes).map_err(|_| StoreError::InvalidCursor)
    }
}

/// Sort-key range a query scans, in ascending key terms (the scan direction is separate).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkRange {
    pub lower: Bound<String>,
    pub upper: Bound<String>,
}

impl SkRange {
    /// True when no string can lie in the range (`BTreeMap::range` panics on some of these).
    pub fn is_empty(&self) -> bool {
        match (&self.lower, &self.upper) {
            (Bound::Included(l), Bound::Included(u)) => l > u,
            (Bound::Included(l) | Bound::Excluded(l), Bound::Excluded(u))
            | (Bound::Excluded(l), Bound::Included(u)) => l >= u,
            _ => false,
        }
    }

    pub fn as_ref(&self) -> (Bound<&str>, Bound<&str>) {
        (bound_ref(&self.lower), bound_ref(&self.upper))
    }

    /// Narrows the range to continue a scan after `last_sk`.
    pub fn advance(&mut self, last_sk: String, descending: bool) {
        if descending {
            self.upper = Bound::Excluded(last_sk);
        } else {
            self.lower = Bound::Excluded(last_sk);
        }
    }
}

fn bound_ref(b: &Bound<String>) -> Bound<&str> {
    match b {
        Bound::Included(s) => Bound::Included(s.as_str()),
        Bound::Excluded(s) => Bound::Excluded(s.as_str()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

/// Validates the query and returns the sort key its cursor continues after, if any.
pub fn start_after(query: &Query) -> StoreResult<Option<String>> {
    if query.limit == Some(0) {
        // DynamoDB rejects Limit=0 too; an empty page could not carry a useful cursor.
        return Err(StoreError::Backend("query limit must be at least 1".into()));
    }
    let prefix = query.sk_prefix.as_deref().unwrap_or("");
    let cursor = query.cursor.as_deref().map(cursor::decode).transpose()?;
    if cursor.as_ref().is_some_and(|c| !c.starts_with(prefix)) {
        return Err(StoreError::InvalidCursor);
    }
    Ok(cursor)
}

/// Validates the query and returns the range still to scan (prefix and cursor applied).
pub fn plan(query: &Query) -> StoreResult<SkRange> {
    let cursor = start_after(query)?;
    let prefix = query.sk_prefix.as_deref().unwrap_or("");
    let prefix_lower = if prefix.is_empty() {
        Bound::Unbounded
    } else {
        Bound::Included(prefix.to_owned())
    };
    let prefix_upper = prefix_end(prefix).map_or(Bound::Unbounded, Bound::Excluded);
    Ok(match (cursor, query.descending) {
        (None, _) => SkRange {
            lower: prefix_lower,
            upper: prefix_upper,
        },
        (Some(c), false) => SkRange {
            lower: Bound::Excluded(c),
            upper: prefix_upper,
        },
        (Some(c), true) => SkRange {
            lower: prefix_lower,
            upper: Bound::Excluded(c),
        },
    })
}

/// The least string greater than every string starting with `prefix`, or `None` if there is
/// none. UTF-8 byte order equals code point order, so bumping the last char is enough.
fn prefix_end(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let next = (u32::from(last) + 1..=u32::from(char::MAX)).find_map(char::from_u32);
        if let Some(next) = next {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

/// Fills one page from items offered in scan order (already without expired items).
///
/// Once the page is full it keeps consuming non-matching items until it sees the next
/// matching one, so `next` is `None` exactly when nothing more would match, and the cursor
/// skips the non-matching items already scanned.
pub struct Pager<'a> {
    limit: Option<usize>,
    filter: Option<&'a Condition>,
    items: Vec<Item>,
    last_scanned: Option<String>,
    next: Option<String>,
}

impl<'a> Pager<'a> {
    pub fn new(query: &'a Query) -> Self {
        Self {
            limit: query.limit,
            filter: query.filter.as_ref(),
            items: Vec::new(),
            last_scanned: None,
            next: None,
        }
    }

    /// Offers the next item in scan order; `Break` means the page is complete.
    pub fn offer(&mut self, item: Item) -> ControlFlow<()> {
        let matches = self.filter.is_none_or(|f| f.matches(Some(&item)));
        if Some(self.items.len()) == self.limit {
            if matches {
                self.next = self.last_scanned.take();
                return ControlFlow::Break(());
            }
            self.last_scanned = Some(item.sk);
            return ControlFlow::Continue(());
        }
        self.last_scanned = Some(item.sk.clone());
        if matches {
            self.items.push(item);
        }
        ControlFlow::Continue(())
    }

    /// How many more rows are worth fetching in one go.
    pub fn batch_hint(&self) -> usize {
        match (self.filter, self.limit) {
            (None, Some(l)) => l
                .saturating_sub(self.items.len())
                .saturating_add(1)
                .min(1000),
            _ => 256,
        }
    }

    pub fn finish(self) -> Page {
        Page {
            items: self.items,
            next: self.next.as_deref().map(cursor::encode),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_bumps_last_char() {
        assert_eq!(prefix_end(""), None);
        assert_eq!(prefix_end("a#").as_deref(), Some("a$"));
        assert_eq!(prefix_end("a\u{D7FF}").as_deref(), Some("a\u{E000}"));
        assert_eq!(prefix_end("a\u{10FFFF}").as_deref(), Some("b"));
        assert_eq!(prefix_end("\u{10FFFF}"), None);
    }

    #[test]
    fn cursor_roundtrip_and_garbage() {
        assert_eq!(
            cursor::decode(&cursor::encode("a#é")).ok().as_deref(),
            Some("a#é")
        );
        assert!(matches!(
            cursor::decode("xyz"),
            Err(StoreError::InvalidCursor)
        ));
        assert!(matches!(
            cursor::decode("ff"),
            Err(StoreError::InvalidCursor)
        ));
    }

    #[test]
    fn cursor_outside_prefix_is_invalid() {
        let q = Query {
            sk_prefix: Some("a#".into()),
            cursor: Some(cursor::encode("b#1")),
            ..Query::default()
        };
        assert!(matches!(plan(&q), Err(StoreError::InvalidCursor)));
    }

    #[test]
    fn empty_ranges() {
        let r = |l, u| SkRange { lower: l, upper: u };
        let s = |x: &str| x.to_owned();
        assert!(r(Bound::Excluded(s("a")), Bound::Excluded(s("a"))).is_empty());
        assert!(r(Bound::Included(s("a")), Bound::Excluded(s("a"))).is_empty());
        assert!(!r(Bound::Included(s("a")), Bound::Included(s("a"))).is_empty());
        assert!(r(Bound::Included(s("b")), Bound::Included(s("a"))).is_empty());
        assert!(!r(Bound::Unbounded, Bound::Excluded(s("a"))).is_empty());
    }
}
