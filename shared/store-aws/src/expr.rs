//! Port conditions and update ops → DynamoDB expressions.
//!
//! Every name and value goes through a placeholder (`#n0`, `:v0`), so any attribute name
//! works, including DynamoDB reserved words such as `TTL`.
//!
//! Expiry: DynamoDB deletes expired items some time after their TTL, but the port says an
//! expired item is absent at once. Conditions therefore check the TTL against the current
//! time in the same expression ([`Expr::condition`]).

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::Value;
use sightline_core::ports::{apply_update, CmpOp, Condition, Item, UpdateOp};

use crate::dynamo::{PK_ATTR, TTL_ATTR};
use crate::value::{stored_name, to_attribute, to_stored};

pub(crate) type Names = HashMap<String, String>;
pub(crate) type Values = HashMap<String, AttributeValue>;

/// Placeholders collected while building the expressions of one request.
#[derive(Debug, Default)]
pub(crate) struct Expr {
    pub names: HashMap<String, String>,
    pub values: HashMap<String, AttributeValue>,
    by_name: HashMap<String, String>,
}

impl Expr {
    /// Placeholder of a stored (already escaped) attribute name.
    fn stored(&mut self, stored: &str) -> String {
        if let Some(p) = self.by_name.get(stored) {
            return p.clone();
        }
        let p = format!("#n{}", self.by_name.len());
        self.by_name.insert(stored.to_owned(), p.clone());
        self.names.insert(p.clone(), stored.to_owned());
        p
    }

    /// Placeholder of an item attribute name.
    fn attr(&mut self, name: &str) -> String {
        self.stored(&stored_name(name))
    }

    pub fn pk(&mut self) -> String {
        self.stored(PK_ATTR)
    }

    pub fn sk(&mut self) -> String {
        self.stored(crate::dynamo::SK_ATTR)
    }

    pub fn value(&mut self, v: AttributeValue) -> String {
        let p = format!(":v{}", self.values.len());
        self.values.insert(p.clone(), v);
        p
    }

    /// True on every item, present or not.
    fn always(&mut self) -> String {
        let pk = self.pk();
        format!("(attribute_exists({pk}) OR attribute_not_exists({pk}))")
    }

    fn never(&mut self) -> String {
        let pk = self.pk();
        format!("(attribute_exists({pk}) AND attribute_not_exists({pk}))")
    }

    /// The item exists and is not expired at `now`, or does not exist at all.
    pub fn not_expired(&mut self, now: i64) -> String {
        let ttl = self.stored(TTL_ATTR);
        let now = self.value(AttributeValue::N(now.to_string()));
        format!("(attribute_not_exists({ttl}) OR {ttl} > {now})")
    }

    /// The item exists and is expired at `now`.
    pub fn expired(&mut self, now: i64) -> String {
        let ttl = self.stored(TTL_ATTR);
        let now = self.value(AttributeValue::N(now.to_string()));
        format!("{ttl} <= {now}")
    }

    /// The guard of an update: the item is live or absent (an expired item must not lend
    /// its stale attributes), and `condition` holds.
    pub fn live_and(&mut self, condition: Option<&Condition>, now: i64) -> String {
        let live = self.not_expired(now);
        match condition {
            Some(c) => format!("({live} AND {})", self.condition(c, now)),
            None => live,
        }
    }

    /// `condition` with port semantics: an item expired at `now` is judged as absent.
    ///
    /// On an absent item every DynamoDB function sees missing attributes, exactly as
    /// `Condition::matches(None)`; so an expired item must pass iff `matches(None)` does.
    pub fn condition(&mut self, condition: &Condition, now: i64) -> String {
        let on_present = self.present(condition);
        if condition.matches(None) {
            let expired = self.expired(now);
            format!("({expired} OR {on_present})")
        } else {
            let live = self.not_expired(now);
            format!("({live} AND {on_present})")
        }
    }

    /// `condition` judged on the stored item as DynamoDB sees it (no TTL logic).
    fn present(&mut self, condition: &Condition) -> String {
        match condition {
            Condition::Exists => format!("attribute_exists({})", self.pk()),
            Condition::NotExists => format!("attribute_not_exists({})", self.pk()),
            Condition::AttrExists(a) => format!("attribute_exists({})", self.attr(a)),
            Condition::AttrNotExists(a) => format!("attribute_not_exists({})", self.attr(a)),
            Condition::Cmp(a, op, v) => {
                let ordered = matches!(v, Value::Number(_) | Value::String(_));
                if !ordered && !matches!(op, CmpOp::Eq | CmpOp::Ne) {
                    // Only numbers and strings are ordered (the port says false, DynamoDB
                    // would reject the expression).
                    return self.never();
                }
                let a = self.attr(a);
                let v = self.value(to_stored(v));
                // A comparison with a missing attribute is false, `<>` included.
                format!("(attribute_exists({a}) AND {a} {op} {v})")
            }
            // DynamoDB refuses `a op a`; the port's answer depends only on the type.
            Condition::CmpAttr(a, op, b) if a == b => {
                let a = self.attr(a);
                match op {
                    CmpOp::Eq => format!("attribute_exists({a})"),
                    CmpOp::Le | CmpOp::Ge => {
                        let n = self.value(AttributeValue::S("N".into()));
                        let s = self.value(AttributeValue::S("S".into()));
                        format!("(attribute_type({a}, {n}) OR attribute_type({a}, {s}))")
                    }
                    CmpOp::Ne | CmpOp::Lt | CmpOp::Gt => self.never(),
                }
            }
            Condition::CmpAttr(a, op, b) => {
                let a = self.attr(a);
                let b = self.attr(b);
                format!("(attribute_exists({a}) AND attribute_exists({b}) AND {a} {op} {b})")
            }
            Condition::And(cs) if cs.is_empty() => self.always(),
            Condition::Or(cs) if cs.is_empty() => self.never(),
            Condition::And(cs) => self.join(cs, " AND "),
            Condition::Or(cs) => self.join(cs, " OR "),
            Condition::Not(c) => format!("(NOT {})", self.present(c)),
        }
    }

    fn join(&mut self, cs: &[Condition], sep: &str) -> String {
        let parts: Vec<String> = cs.iter().map(|c| self.present(c)).collect();
        format!("({})", parts.join(sep))
    }

    /// The `UpdateExpression` doing `ops` in order, or `None` when there is nothing to do.
    ///
    /// DynamoDB refuses two actions on one attribute in one expression, so the ops are first
    /// folded into one effect per attribute.
    pub fn update(&mut self, ops: &[UpdateOp]) -> Option<String> {
        let mut effects: Vec<(String, Effect)> = Vec::new();
        let mut ttl: Option<Option<i64>> = None;
        for op in ops {
            let name = match op {
                UpdateOp::Set(a, _)
                | UpdateOp::SetIfNotExists(a, _)
                | UpdateOp::Add(a, _)
                | UpdateOp::AddF64(a, _)
                | UpdateOp::Remove(a) => a,
                UpdateOp::SetTtl(t) => {
                    ttl = Some(*t);
                    continue;
                }
            };
            match effects.iter_mut().find(|(n, _)| n == name) {
                Some((_, effect)) => effect.then(op),
                None => effects.push((name.clone(), Effect::Keep.folded(op))),
            }
        }

        let (mut set, mut remove, mut add) = (Vec::new(), Vec::new(), Vec::new());
        for (name, effect) in effects {
            let a = self.attr(&name);
            match effect {
                Effect::Keep => {}
                Effect::Set(v) => set.push(format!("{a} = {}", self.value(to_stored(&v)))),
                Effect::Remove => remove.push(a),
                Effect::IfNotExists(v) => {
                    let v = self.value(to_stored(&v));
                    set.push(format!("{a} = if_not_exists({a}, {v})"));
                }
                Effect::Add(d) => add.push(format!("{a} {}", self.value(d.attribute()))),
                Effect::IfNotExistsAdd(v, d) => {
                    let v = self.value(to_attribute(&v));
                    let d = self.value(d.attribute());
                    set.push(format!("{a} = if_not_exists({a}, {v}) + {d}"));
                }
            }
        }
        match ttl {
            Some(Some(t)) => {
                let name = self.stored(TTL_ATTR);
                let v = self.value(AttributeValue::N(t.to_string()));
                set.push(format!("{name} = {v}"));
            }
            Some(None) => remove.push(self.stored(TTL_ATTR)),
            None => {}
        }

        let mut clauses = Vec::new();
        for (keyword, parts) in [("SET", set), ("REMOVE", remove), ("ADD", add)] {
            if !parts.is_empty() {
                clauses.push(format!("{keyword} {}", parts.join(", ")));
            }
        }
        (!clauses.is_empty()).then(|| clauses.join(" "))
    }

    /// Moves the placeholders out, `None` when empty (DynamoDB rejects empty maps).
    pub fn take(&mut self) -> (Option<Names>, Option<Values>) {
        let names = std::mem::take(&mut self.names);
        let values = std::mem::take(&mut self.values);
        self.by_name.clear();
        (
            (!names.is_empty()).then_some(names),
            (!values.is_empty()).then_some(values),
        )
    }
}

/// A numeric increment.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Delta {
    Int(i64),
    Float(f64),
}

impl Delta {
    fn plus(self, other: Delta) -> Delta {
        match (self, other) {
            (Delta::Int(a), Delta::Int(b)) => Delta::Int(a.saturating_add(b)),
            (a, b) => Delta::Float(a.as_f64() + b.as_f64()),
        }
    }

    fn as_f64(self) -> f64 {
        match self {
            Delta::Int(i) => i as f64,
            Delta::Float(f) => f,
        }
    }

    fn attribute(self) -> AttributeValue {
        let n = match self {
            Delta::Int(i) => Value::from(i),
            Delta::Float(f) => {
                serde_json::Number::from_f64(f).map_or(Value::from(0), Value::Number)
            }
        };
        to_attribute(&n)
    }
}

/// The combined effect of a run of ops on one attribute.
#[derive(Debug, Clone, PartialEq)]
enum Effect {
    Keep,
    /// The final value does not depend on the stored one.
    Set(Value),
    Remove,
    IfNotExists(Value),
    Add(Delta),
    IfNotExistsAdd(Value, Delta),
}

impl Effect {
    fn folded(mut self, op: &UpdateOp) -> Self {
        self.then(op);
        self
    }

    fn then(&mut self, op: &UpdateOp) {
        let delta = match op {
            UpdateOp::Add(_, n) => Some(Delta::Int(*n)),
            UpdateOp::AddF64(_, x) => Some(Delta::Float(*x)),
            _ => None,
        };
        let next = match (std::mem::replace(self, Effect::Keep), op) {
            (_, UpdateOp::Set(_, v)) => Effect::Set(v.clone()),
            (_, UpdateOp::Remove(_)) => Effect::Remove,
            (Effect::Keep, UpdateOp::SetIfNotExists(_, v)) => Effect::IfNotExists(v.clone()),
            (Effect::Remove, UpdateOp::SetIfNotExists(_, v)) => Effect::Set(v.clone()),
            // Known value, or absent: compute the result exactly as the core does.
            (Effect::Set(cur), op) => Effect::Set(known(Some(cur), op)),
            (Effect::Remove, op) => Effect::Set(known(None, op)),
            (Effect::Keep, _) => delta.map_or(Effect::Keep, Effect::Add),
            (Effect::Add(d), _) => Effect::Add(delta.map_or(d, |x| d.plus(x))),
            (Effect::IfNotExists(v), _) => match delta {
                Some(x) => Effect::IfNotExistsAdd(v, x),
                None => Effect::IfNotExists(v),
            },
            (Effect::IfNotExistsAdd(v, d), _) => {
                Effect::IfNotExistsAdd(v, delta.map_or(d, |x| d.plus(x)))
            }
        };
        *self = next;
    }
}

/// `op` applied to an attribute whose value is known (`None` = absent).
fn known(current: Option<Value>, op: &UpdateOp) -> Value {
    let mut item = Item::new("", "", Default::default());
    let name = "v";
    if let Some(v) = current {
        item.attrs.insert(name.to_owned(), v);
    }
    let op = match op {
        UpdateOp::SetIfNotExists(_, v) => UpdateOp::SetIfNotExists(name.to_owned(), v.clone()),
        UpdateOp::Add(_, n) => UpdateOp::Add(name.to_owned(), *n),
        UpdateOp::AddF64(_, x) => UpdateOp::AddF64(name.to_owned(), *x),
        other => other.clone(),
    };
    apply_update(&mut item, std::slice::from_ref(&op));
    item.attrs.remove(name).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn update(ops: &[UpdateOp]) -> (Option<String>, Expr) {
        let mut e = Expr::default();
        let u = e.update(ops);
        (u, e)
    }

    #[test]
    fn ops_on_one_attribute_fold_into_one_action() {
        let (u, e) = update(&[
            UpdateOp::set("a", 1),
            UpdateOp::add("a", 2),
            UpdateOp::set("s", "v"),
        ]);
        assert_eq!(u.as_deref(), Some("SET #n0 = :v0, #n1 = :v1"));
        assert_eq!(e.values[":v0"], AttributeValue::N("3".into()));

        let (u, _) = update(&[UpdateOp::add("n", 1), UpdateOp::add("n", 2)]);
        assert_eq!(u.as_deref(), Some("ADD #n0 :v0"));

        let (u, e) = update(&[
            UpdateOp::SetIfNotExists("f".into(), json!(5)),
            UpdateOp::add("f", 1),
        ]);
        assert_eq!(
            u.as_deref(),
            Some("SET #n0 = if_not_exists(#n0, :v0) + :v1")
        );
        assert_eq!(e.values[":v1"], AttributeValue::N("1".into()));

        let (u, _) = update(&[UpdateOp::Remove("x".into()), UpdateOp::SetTtl(None)]);
        assert_eq!(u.as_deref(), Some("REMOVE #n0, #n1"));

        assert_eq!(update(&[]).0, None);
    }

    #[test]
    fn remove_then_add_counts_from_zero() {
        let (u, e) = update(&[UpdateOp::Remove("n".into()), UpdateOp::add("n", 4)]);
        assert_eq!(u.as_deref(), Some("SET #n0 = :v0"));
        assert_eq!(e.values[":v0"], AttributeValue::N("4".into()));
    }
}
