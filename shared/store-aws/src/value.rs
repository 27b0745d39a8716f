//! JSON attributes ↔ DynamoDB attribute values, and the escaping of attribute names.
//!
//! Items keep their attributes as native DynamoDB attributes (so conditions and `ADD` run
//! in DynamoDB). Three top-level names belong to the table (`pk`, `sk`, `ttl`); an item
//! attribute of that name, or any name starting with `_`, is stored with one more leading
//! `_`, which keeps the mapping one-to-one. Values DynamoDB cannot hold natively are kept
//! as JSON text ([`to_stored`]).

use std::collections::HashMap;

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::{Map, Number, Value};
use sightline_core::ports::{Item, StoreError, StoreResult};

use crate::dynamo::{PK_ATTR, SK_ATTR, TTL_ATTR};

/// The stored name of item attribute `name`.
pub(crate) fn stored_name(name: &str) -> String {
    if name.starts_with('_') || name == PK_ATTR || name == SK_ATTR || name == TTL_ATTR {
        format!("_{name}")
    } else {
        name.to_owned()
    }
}

/// The item attribute name of stored attribute `stored` (not one of the table's own).
fn item_name(stored: &str) -> &str {
    stored.strip_prefix('_').unwrap_or(stored)
}

pub(crate) fn to_attribute(value: &Value) -> AttributeValue {
    match value {
        Value::Null => AttributeValue::Null(true),
        Value::Bool(b) => AttributeValue::Bool(*b),
        Value::Number(n) => AttributeValue::N(n.to_string()),
        Value::String(s) => AttributeValue::S(s.clone()),
        Value::Array(a) => AttributeValue::L(a.iter().map(to_attribute).collect()),
        Value::Object(m) => AttributeValue::M(
            m.iter()
                .map(|(k, v)| (k.clone(), to_attribute(v)))
                .collect(),
        ),
    }
}

/// Deepest nesting stored natively (DynamoDB allows 32 levels).
const MAX_NATIVE_DEPTH: usize = 30;

/// Whether DynamoDB can hold `value` as native attributes: no empty map key, bounded
/// nesting, numbers within DynamoDB's range (magnitude 1e-130 to 1e126).
fn native_ok(value: &Value, depth: usize) -> bool {
    match value {
        Value::Number(n) => n.as_f64().is_none_or(|x| {
            x == 0.0 || n.is_i64() || n.is_u64() || (1e-130..1e126).contains(&x.abs())
        }),
        Value::Array(a) => depth < MAX_NATIVE_DEPTH && a.iter().all(|v| native_ok(v, depth + 1)),
        Value::Object(m) => {
            depth < MAX_NATIVE_DEPTH
                && m.iter()
                    .all(|(k, v)| !k.is_empty() && native_ok(v, depth + 1))
        }
        _ => true,
    }
}

/// The stored form of an item attribute's value. Client data DynamoDB cannot hold natively
/// (see [`native_ok`]; e.g. a captured dict with an empty key) is stored as its JSON text
/// in a binary attribute, a type nothing else uses; such a value is opaque to conditions.
pub(crate) fn to_stored(value: &Value) -> AttributeValue {
    if native_ok(value, 0) {
        to_attribute(value)
    } else {
        AttributeValue::B(Blob::new(value.to_string().into_bytes()))
    }
}

/// DynamoDB normalises numbers (`1.50` → `1.5`, `2.0` → `2`): integral values come back as
/// integers, everything else as `f64`.
pub(crate) fn number(n: &str) -> StoreResult<Value> {
    if let Ok(i) = n.parse::<i64>() {
        return Ok(Value::from(i));
    }
    if let Ok(u) = n.parse::<u64>() {
        return Ok(Value::from(u));
    }
    n.parse::<f64>()
        .ok()
        .and_then(Number::from_f64)
        .map(Value::Number)
        .ok_or_else(|| StoreError::Backend(format!("unreadable stored number {n:?}")))
}

pub(crate) fn from_attribute(value: &AttributeValue) -> StoreResult<Value> {
    Ok(match value {
        AttributeValue::Null(_) => Value::Null,
        AttributeValue::Bool(b) => Value::Bool(*b),
        AttributeValue::N(n) => number(n)?,
        AttributeValue::S(s) => Value::String(s.clone()),
        AttributeValue::L(l) => {
            Value::Array(l.iter().map(from_attribute).collect::<Result<_, _>>()?)
        }
        AttributeValue::M(m) => {
            let mut out = Map::new();
            for (k, v) in m {
                out.insert(k.clone(), from_attribute(v)?);
            }
            Value::Object(out)
        }
        AttributeValue::B(json) => serde_json::from_slice(json.as_ref())
            .map_err(|e| StoreError::Backend(format!("unreadable stored JSON value: {e}")))?,
        other => {
            return Err(StoreError::Backend(format!(
                "unsupported stored attribute type {other:?}"
            )))
        }
    })
}

/// The stored form of an item (`PutItem`).
pub(crate) fn to_attributes(item: &Item) -> HashMap<String, AttributeValue> {
    let mut out = HashMap::with_capacity(item.attrs.len() + 3);
    out.insert(PK_ATTR.to_owned(), AttributeValue::S(item.pk.clone()));
    out.insert(SK_ATTR.to_owned(), AttributeValue::S(item.sk.clone()));
    if let Some(t) = item.expires_at {
        out.insert(TTL_ATTR.to_owned(), AttributeValue::N(t.to_string()));
    }
    for (name, value) in &item.attrs {
        out.insert(stored_name(name), to_stored(value));
    }
    out
}

/// Reads a stored item, e.g. a `GetItem` result or a DynamoDB Streams image (`NewImage`,
/// `OldImage`), whatever its TTL.
pub fn item_from_attributes(stored: &HashMap<String, AttributeValue>) -> StoreResult<Item> {
    let key = |name: &str| match stored.get(name) {
        Some(AttributeValue::S(s)) => Ok(s.clone()),
        _ => Err(StoreError::Backend(format!(
            "stored item without a string {name:?} attribute"
        ))),
    };
    let mut item = Item::new(key(PK_ATTR)?, key(SK_ATTR)?, Map::new());
    for (name, value) in stored {
        match name.as_str() {
            PK_ATTR | SK_ATTR => {}
            TTL_ATTR => {
                item.expires_at = match value {
                    AttributeValue::N(n) => n.parse::<i64>().ok(),
                    _ => None,
                };
            }
            _ => {
                item.attrs
                    .insert(item_name(name).to_owned(), from_attribute(value)?);
            }
        }
    }
    Ok(item)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn names_round_trip() {
        for name in ["a", "pk", "sk", "ttl", "_x", "__y", "ttl_", "TTL", ""] {
            assert_eq!(item_name(&stored_name(name)), name);
        }
        assert_eq!(stored_name("ttl"), "_ttl");
        assert_eq!(stored_name("n"), "n");
    }

    #[test]
    fn values_round_trip() {
        let v = json!({"a": [1, -2, 1.5, "s", null, true, {"x": {}}], "max": i64::MAX,
            "min": i64::MIN, "u": u64::MAX, "e": [], "s": ""});
        assert_eq!(from_attribute(&to_attribute(&v)).unwrap(), v);
    }

    #[test]
    fn items_round_trip() {
        let attrs = json!({"pk": 1, "ttl": "x", "_a": 2, "b": 3});
        let item = Item::new("p", "s", attrs.as_object().cloned().unwrap()).with_ttl(Some(42));
        let stored = to_attributes(&item);
        assert!(matches!(stored.get("ttl"), Some(AttributeValue::N(n)) if n == "42"));
        assert_eq!(item_from_attributes(&stored).unwrap(), item);
    }
}
