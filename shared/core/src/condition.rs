//! Breakpoint conditions, in the expr language (DESIGN §6, reference §4).
//!
//! The TraceKit SDKs and backend use Go's `expr-lang/expr`; we use the `expr-lang` crate, which
//! has Go-compatible semantics, and close the gaps the shared fixture exposes around it:
//!
//! * **Nil-safe member access.** The fixture wants `user.settings.theme == nil` to be true when
//!   `settings` is null, where the crate raises an error. The crate's AST is private, so the
//!   source is rewritten instead: every member access `a.b` becomes `a?.b` and every index
//!   `a[k]` becomes `a?.[k]` (the crate's optional chaining), outside string literals and
//!   comments. Identifiers the variables do not contain evaluate to `nil` as well, so
//!   "missing or nil ⇒ nil" holds at every level.
//! * **`contains(a, b)`** exists as a function (string contains substring, array contains
//!   element, map contains key), as the fixture's server-only cases need.
//!
//! # Bounds
//! A condition runs on every capture, against data the server does not control, and is written
//! by any project member, so both its parse and its evaluation are bounded:
//!
//! * at save time ([`Condition::compile`]): at most [`MAX_CONDITION_LEN`] bytes, at most
//!   [`MAX_NESTING`] levels of brackets and [`MAX_OPERATORS`] operators (parse and evaluation
//!   recurse once per level, ~1–2 KiB of stack each); only known functions, minus the few whose
//!   cost is not linear in their input ([`DISALLOWED_FUNCTIONS`]); no `let` (a binding
//!   reused by `+` doubles in size per statement); ranges only with integer-literal bounds,
//!   at most [`MAX_RANGE_ELEMENTS`] elements in all and never inside a predicate function;
//!   predicate functions (`any`, `map`, `filter`, …) not nested in one another, so a condition is
//!   at worst one pass over one array; `matches` only against a string-literal pattern that
//!   compiles within [`MAX_REGEX_SIZE`] (the regex crate matches in linear time, and the
//!   pattern is compiled once, not per capture);
//! * at evaluation time: every variable the expression reads is charged its size against
//!   [`EVAL_BUDGET`] (the crate clones a value on each read, so this is the work it does);
//!   past the budget, evaluation stops with [`ConditionError::Budget`].
//!
//! Evaluation returns an error rather than panicking: the parser is known to panic on some
//! inputs (map literals with non-literal values; rejected up front), so parsing and evaluation
//! also run under `catch_unwind` where the target unwinds.

use std::cell::Cell;
use std::collections::HashMap;
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, LazyLock, Mutex};

use expr::{ContextProvider, Environment, Program, Value};
use serde_json::Value as Json;

/// Longest condition accepted, in bytes (a breakpoint condition is a one-liner).
pub const MAX_CONDITION_LEN: usize = 1024;
/// Deepest bracket nesting accepted: parsing and evaluation recurse once per level.
pub const MAX_NESTING: usize = 32;
/// Most operators (including `.`, `[`, `(`) accepted: each can add a level of recursion.
pub const MAX_OPERATORS: usize = 128;
/// Most elements all the ranges (`1..10`) of one condition may produce together.
pub const MAX_RANGE_ELEMENTS: i128 = 10_000;
/// Compiled-size limit of a `matches` pattern (the regex crate's `size_limit`).
pub const MAX_REGEX_SIZE: usize = 1 << 20;
/// Budget for one evaluation, in units of variable data read (about one per byte or scalar).
pub const EVAL_BUDGET: u64 = 16 << 20;
/// Deepest variables nesting converted for evaluation (serde_json's own parse limit).
pub const MAX_VALUE_DEPTH: usize = 128;
/// Entries a [`ConditionCache`] holds before it starts over.
pub const CACHE_CAPACITY: usize = 1024;

/// Built-in functions whose cost is not linear in their input, refused in conditions:
/// `reduce` (accumulator can double per element), `repeat` and `replace` (output is a product
/// of input sizes), `uniq`, `groupBy` and `fromPairs` (quadratic).
pub const DISALLOWED_FUNCTIONS: &[&str] = &[
    "reduce",
    "repeat",
    "replace",
    "uniq",
    "groupBy",
    "fromPairs",
];

/// Functions a condition may call: the crate's builtins with linear (or n log n) cost, plus
/// `contains`.
const ALLOWED_FUNCTIONS: &[&str] = &[
    // ours
    "contains",
    // strings
    "trim",
    "trimPrefix",
    "trimSuffix",
    "upper",
    "lower",
    "split",
    "splitAfter",
    "indexOf",
    "lastIndexOf",
    "hasPrefix",
    "hasSuffix",
    // predicates and arrays
    "all",
    "any",
    "one",
    "none",
    "map",
    "filter",
    "find",
    "findIndex",
    "findLast",
    "findLastIndex",
    "count",
    "sum",
    "sort",
    "sortBy",
    "join",
    "first",
    "last",
    "take",
    "reverse",
    "concat",
    "flatten",
    // maps, conversion, numbers
    "len",
    "keys",
    "values",
    "toPairs",
    "get",
    "type",
    "int",
    "float",
    "string",
    "toJSON",
    "fromJSON",
    "toBase64",
    "fromBase64",
    "abs",
    "ceil",
    "floor",
    "round",
    "max",
    "min",
    "mean",
    "median",
    "bitand",
    "bitor",
    "bitxor",
    "bitnand",
    "bitnot",
    "bitshl",
    "bitshr",
    "bitushr",
    // time
    "now",
    "date",
    "duration",
    "timezone",
];

/// Functions that take a predicate evaluated once per array element.
const PREDICATE_FUNCTIONS: &[&str] = &[
    "all",
    "any",
    "one",
    "none",
    "map",
    "filter",
    "find",
    "findIndex",
    "findLast",
    "findLastIndex",
    "count",
    "sum",
    "sortBy",
    "reduce",
    "groupBy",
];

/// Where a condition can be evaluated: the `condition_eval` field sent to SDKs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConditionEval {
    /// The SDKs' portable subset: they evaluate it before capturing.
    SdkEvaluable,
    /// Needs the server: SDKs capture unconditionally and the server filters.
    ServerOnly,
}

impl ConditionEval {
    /// The wire spelling: `"sdk-evaluable"` or `"server-only"`.
    pub fn as_str(&self) -> &'static str {
        match self {
            ConditionEval::SdkEvaluable => "sdk-evaluable",
            ConditionEval::ServerOnly => "server-only",
        }
    }
}

impl fmt::Display for ConditionEval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `IsSDKEvaluable` classifier of reference §4, rule for rule as in the Go SDK
/// (`evaluator.go`; Go regexps are ASCII-only, so `\w`, `\s`, `\d` and `\b` are ASCII here too).
/// The SDKs decide from this whether to evaluate a condition themselves, so it must agree with
/// them exactly, even where it is cruder than a parser (e.g. `?` inside a string literal).
pub fn classify(expression: &str) -> ConditionEval {
    if is_sdk_evaluable(expression) {
        ConditionEval::SdkEvaluable
    } else {
        ConditionEval::ServerOnly
    }
}

fn is_sdk_evaluable(expression: &str) -> bool {
    let b = expression.as_bytes();
    !(has_function_call(b)
        || has_word(b, b"matches")
        || expression.contains("=~")
        || b.iter()
            .enumerate()
            .any(|(i, &c)| c == b'~' && (i == 0 || b[i - 1] != b'='))
        || has_single(b, b'&')
        || has_single(b, b'|')
        || expression.contains("<<")
        || expression.contains(">>")
        || expression.contains("${")
        || expression.contains("..")
        || expression.contains('?')
        || b.windows(2).any(|w| w[0] == b'[' && w[1].is_ascii_digit())
        || b.windows(2)
            .any(|w| matches!(w[0], b'+' | b'-' | b'*' | b'/') && w[1] == b'='))
}

/// ASCII `\w`, as in Go's RE2.
fn is_word(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// `\b[a-zA-Z_]\w*\s*\(`: a word starting with a letter or `_`, then optional `[\t\n\f\r ]`,
/// then `(`.
fn has_function_call(b: &[u8]) -> bool {
    let mut i = 0;
    while i < b.len() {
        if !is_word(b[i]) {
            i += 1;
            continue;
        }
        let starts_ok = b[i].is_ascii_alphabetic() || b[i] == b'_';
        while i < b.len() && is_word(b[i]) {
            i += 1;
        }
        if starts_ok {
            let mut j = i;
            while j < b.len() && matches!(b[j], b' ' | b'\t' | b'\n' | b'\r' | 0x0c) {
                j += 1;
            }
            if b.get(j) == Some(&b'(') {
                return true;
            }
        }
    }
    false
}

/// `\bWORD\b` with ASCII word boundaries.
fn has_word(b: &[u8], word: &[u8]) -> bool {
    b.windows(word.len()).enumerate().any(|(i, w)| {
        w == word
            && (i == 0 || !is_word(b[i - 1]))
            && b.get(i + word.len()).is_none_or(|&c| !is_word(c))
    })
}

/// A `c` that is not part of a `cc` pair (pairs are consumed left to right, as in the SDKs).
fn has_single(b: &[u8], c: u8) -> bool {
    let mut i = 0;
    while i < b.len() {
        if b[i] == c {
            if b.get(i + 1) == Some(&c) {
                i += 2;
                continue;
            }
            return true;
        }
        i += 1;
    }
    false
}

/// Why a condition was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum ConditionError {
    #[error("condition is {len} bytes long; the limit is {max}")]
    TooLong { len: usize, max: usize },
    #[error("condition is empty")]
    Empty,
    #[error("invalid condition: {0}")]
    Parse(String),
    #[error("unknown function `{0}`")]
    UnknownFunction(String),
    /// Valid expr, but outside what the server agrees to run (see the module docs on bounds).
    #[error("not allowed in a condition: {0}")]
    Unsupported(String),
    #[error("condition evaluation failed: {0}")]
    Eval(String),
    #[error("condition must evaluate to a bool, got {0}")]
    NotBool(String),
    #[error("condition exceeded its evaluation budget")]
    Budget,
}

impl ConditionError {
    /// Whether the expression itself is bad (refuse it when saving), as opposed to failing
    /// on particular variables.
    pub fn is_invalid_expression(&self) -> bool {
        matches!(
            self,
            ConditionError::TooLong { .. }
                | ConditionError::Empty
                | ConditionError::Parse(_)
                | ConditionError::UnknownFunction(_)
                | ConditionError::Unsupported(_)
        )
    }
}

/// A parsed, validated condition. Cheap to clone and `Send + Sync`, so it can be cached.
#[derive(Clone)]
pub struct Condition {
    inner: Arc<Inner>,
}

struct Inner {
    source: String,
    eval: ConditionEval,
    program: Program,
    /// Top-level names the expression may read; absent ones are bound to nil.
    roots: Vec<String>,
    /// Reads `$env`, so all variables must be converted.
    uses_env: bool,
}

impl fmt::Debug for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Condition")
            .field("source", &self.inner.source)
            .field("eval", &self.inner.eval)
            .finish()
    }
}

impl Condition {
    /// Parses and validates `expression` (see the module docs for what is refused). Meant to
    /// run when a breakpoint is saved, so a bad condition is refused with a 400 there.
    pub fn compile(expression: &str) -> Result<Condition, ConditionError> {
        if expression.len() > MAX_CONDITION_LEN {
            return Err(ConditionError::TooLong {
                len: expression.len(),
                max: MAX_CONDITION_LEN,
            });
        }
        if expression.trim().is_empty() {
            return Err(ConditionError::Empty);
        }
        let analysis = analyse(expression)?;
        // The original is parsed first so that errors point at what the user wrote.
        let original = parse(expression)?;
        let program = match analysis.nil_safe_source.as_deref().map(parse) {
            Some(Ok(nil_safe)) => nil_safe,
            // Rewriting only turns `.`/`[` into `?.`/`?.[`, so this should not happen; the
            // unrewritten program is still correct, only not nil-safe.
            _ => original,
        };
        Ok(Condition {
            inner: Arc::new(Inner {
                source: expression.to_owned(),
                eval: classify(expression),
                program,
                roots: analysis.roots,
                uses_env: analysis.uses_env,
            }),
        })
    }

    /// The expression as given to [`Condition::compile`].
    pub fn source(&self) -> &str {
        &self.inner.source
    }

    /// [`classify`] of the source.
    pub fn classify(&self) -> ConditionEval {
        self.inner.eval
    }

    /// Evaluates against `vars` (a JSON object of variable name to value; anything else is an
    /// empty environment) and returns the result as JSON.
    pub fn evaluate(&self, vars: &Json) -> Result<Json, ConditionError> {
        to_json(&self.run(vars)?, 0)
    }

    /// Evaluates as a condition: `nil` is false, a bool is itself, anything else is an error.
    pub fn evaluate_bool(&self, vars: &Json) -> Result<bool, ConditionError> {
        match self.run(vars)? {
            Value::Bool(b) => Ok(b),
            Value::Nil => Ok(false),
            other => Err(ConditionError::NotBool(type_name(&other).to_owned())),
        }
    }

    fn run(&self, vars: &Json) -> Result<Value, ConditionError> {
        let scope = Scope::new(&self.inner, vars)?;
        let result = catch_unwind(AssertUnwindSafe(|| {
            ENVIRONMENT.run(&self.inner.program, &scope)
        }));
        if scope.exhausted.get() {
            return Err(ConditionError::Budget);
        }
        match result {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(ConditionError::Eval(error.to_string())),
            Err(_) => Err(ConditionError::Eval("the evaluator panicked".to_owned())),
        }
    }
}

/// A bounded, thread-safe cache of compiled conditions keyed by source, so the server does not
/// re-parse a breakpoint's condition on every capture. When full it starts over: conditions
/// are cheap to recompile and a project has far fewer than [`CACHE_CAPACITY`] live ones.
#[derive(Default)]
pub struct ConditionCache {
    entries: Mutex<HashMap<String, Condition>>,
}

impl fmt::Debug for ConditionCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConditionCache")
            .field("len", &self.len())
            .finish()
    }
}

impl ConditionCache {
    /// The compiled condition for `expression`, compiling (and caching) it on a miss. Errors
    /// are not cached.
    pub fn get_or_compile(&self, expression: &str) -> Result<Condition, ConditionError> {
        if let Some(hit) = self.lock().get(expression) {
            return Ok(hit.clone());
        }
        // Compiled outside the lock: two threads may both compile on a miss, which is harmless.
        let condition = Condition::compile(expression)?;
        let mut entries = self.lock();
        if entries.len() >= CACHE_CAPACITY {
            entries.clear();
        }
        entries.insert(expression.to_owned(), condition.clone());
        Ok(condition)
    }

    /// Number of cached conditions.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Condition>> {
        // A panic elsewhere while holding the lock cannot leave the map inconsistent.
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

// ---------------------------------------------------------------------------------------------
// Evaluation environment

static ENVIRONMENT: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    env.add_function("contains", |call| contains(&call.args));
    // Refused at compile time already; overridden too, so they can never run.
    for name in DISALLOWED_FUNCTIONS {
        env.add_function(name, |call| {
            Err(expr::Error::ExprError(format!(
                "{}() is not allowed in conditions",
                call.ident
            )))
        });
    }
    env
});

/// `contains(haystack, needle)`: substring, array element (numbers compare by value) or map
/// key. A nil haystack contains nothing, in line with nil-safe access.
fn contains(args: &[Value]) -> expr::Result<Value> {
    let [haystack, needle] = args else {
        return Err(expr::Error::ExprError(
            "contains() takes exactly two arguments".to_owned(),
        ));
    };
    let found = match (haystack, needle) {
        (Value::Nil, _) => false,
        (Value::String(s), Value::String(sub)) => s.contains(sub.as_str()),
        (Value::Array(items), needle) => items.iter().any(|item| loose_eq(item, needle)),
        (Value::Map(map), Value::String(key)) => map.contains_key(key),
        (h, n) => {
            return Err(expr::Error::ExprError(format!(
                "contains() cannot look for {} in {}",
                type_name(n),
                type_name(h)
            )))
        }
    };
    Ok(Value::Bool(found))
}

/// Equality as the `==` operator has it: integers and floats compare by value.
fn loose_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Integer(i), Value::Float(f)) | (Value::Float(f), Value::Integer(i)) => {
            *i as f64 == *f
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| loose_eq(x, y))
        }
        (Value::Map(x), Value::Map(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| loose_eq(v, w)))
        }
        _ => a == b,
    }
}

/// The variables one evaluation sees: only the top-level names the expression reads are
/// converted, each once, with its size precomputed so that reads can be charged cheaply.
struct Scope {
    vars: HashMap<String, (Value, u64)>,
    spent: Cell<u64>,
    exhausted: Cell<bool>,
}

impl Scope {
    fn new(inner: &Inner, vars: &Json) -> Result<Scope, ConditionError> {
        let object = vars.as_object();
        let mut map = HashMap::with_capacity(inner.roots.len());
        for name in &inner.roots {
            let converted = match object.and_then(|o| o.get(name)) {
                Some(json) => from_json(json, 0)?,
                None => (Value::Nil, 1),
            };
            map.insert(name.clone(), converted);
        }
        if inner.uses_env {
            for (name, json) in object.into_iter().flatten() {
                if !map.contains_key(name) {
                    map.insert(name.clone(), from_json(json, 0)?);
                }
            }
        }
        Ok(Scope {
            vars: map,
            spent: Cell::new(0),
            exhausted: Cell::new(false),
        })
    }

    /// Charges `weight`; false once the budget is gone.
    fn charge(&self, weight: u64) -> bool {
        let spent = self.spent.get().saturating_add(weight);
        self.spent.set(spent);
        if spent > EVAL_BUDGET {
            self.exhausted.set(true);
        }
        !self.exhausted.get()
    }
}

impl ContextProvider for Scope {
    fn get(&self, key: &str) -> Option<&Value> {
        let (value, weight) = self.vars.get(key)?;
        if self.charge(*weight) {
            Some(value)
        } else {
            // Ends evaluation with "unknown variable"; `run` reports it as `Budget`.
            None
        }
    }

    fn to_context(&self) -> expr::Context {
        let weight = self.vars.values().map(|(_, w)| *w).sum();
        if !self.charge(weight) {
            return expr::Context::default();
        }
        self.vars
            .iter()
            .map(|(k, (v, _))| (k.as_str(), v.clone()))
            .collect()
    }
}

/// JSON to expr value, with its weight (≈ bytes and scalars). Integers that fit `i64` stay
/// integers (so `%` works); other numbers become floats.
fn from_json(json: &Json, depth: usize) -> Result<(Value, u64), ConditionError> {
    if depth > MAX_VALUE_DEPTH {
        return Err(ConditionError::Eval(format!(
            "variables are nested more than {MAX_VALUE_DEPTH} levels deep"
        )));
    }
    Ok(match json {
        Json::Null => (Value::Nil, 1),
        Json::Bool(b) => (Value::Bool(*b), 1),
        Json::Number(n) => match n.as_i64() {
            Some(i) => (Value::Integer(i), 1),
            None => (Value::Float(n.as_f64().unwrap_or(f64::NAN)), 1),
        },
        Json::String(s) => (Value::String(s.clone()), 1 + s.len() as u64),
        Json::Array(items) => {
            let mut weight = 1;
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                let (v, w) = from_json(item, depth + 1)?;
                weight += w;
                out.push(v);
            }
            (Value::Array(out), weight)
        }
        Json::Object(map) => {
            let mut weight = 1;
            let mut out = Vec::with_capacity(map.len());
            for (k, item) in map {
                let (v, w) = from_json(item, depth + 1)?;
                weight += w + k.len() as u64;
                out.push((k.clone(), v));
            }
            // `Value: FromIterator<(K, V)>` builds a `Value::Map`, keeping the order.
            (out.into_iter().collect(), weight)
        }
    })
}

/// expr value to JSON, the way Go's `encoding/json` would render the Go value.
fn to_json(value: &Value, depth: usize) -> Result<Json, ConditionError> {
    if depth > MAX_VALUE_DEPTH {
        return Err(ConditionError::Eval(format!(
            "result is nested more than {MAX_VALUE_DEPTH} levels deep"
        )));
    }
    Ok(match value {
        Value::Nil => Json::Null,
        Value::Bool(b) => Json::Bool(*b),
        Value::Integer(i) => Json::from(*i),
        Value::Float(f) => serde_json::Number::from_f64(*f)
            .map(Json::Number)
            .ok_or_else(|| ConditionError::Eval(format!("result {f} is not a finite number")))?,
        Value::String(s) => Json::String(s.clone()),
        Value::Bytes(bytes) => Json::Array(bytes.iter().map(|b| Json::from(*b)).collect()),
        Value::DateTime(_) | Value::Timezone(_) => Json::String(value.to_string()),
        Value::Duration(nanos) => Json::from(*nanos),
        Value::Month(n) | Value::Weekday(n) => Json::from(*n),
        Value::Array(items) => Json::Array(
            items
                .iter()
                .map(|v| to_json(v, depth + 1))
                .collect::<Result<_, _>>()?,
        ),
        Value::Map(map) => Json::Object(
            map.iter()
                .map(|(k, v)| Ok((k.clone(), to_json(v, depth + 1)?)))
                .collect::<Result<_, ConditionError>>()?,
        ),
        Value::KeyedMap(pairs) => Json::Object(
            pairs
                .iter()
                .map(|(k, v)| {
                    let key = match k {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    Ok((key, to_json(v, depth + 1)?))
                })
                .collect::<Result<_, ConditionError>>()?,
        ),
    })
}

/// Go-style type names, for error messages.
fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Nil => "nil",
        Value::Bool(_) => "bool",
        Value::Integer(_) => "int",
        Value::Float(_) => "float",
        Value::String(_) => "string",
        Value::Bytes(_) => "bytes",
        Value::DateTime(_) => "time.Time",
        Value::Duration(_) => "time.Duration",
        Value::Timezone(_) => "time.Location",
        Value::Month(_) => "time.Month",
        Value::Weekday(_) => "time.Weekday",
        Value::Array(_) => "array",
        Value::Map(_) | Value::KeyedMap(_) => "map",
    }
}

/// The crate's parser, which can panic on some inputs, made to return an error instead.
fn parse(source: &str) -> Result<Program, ConditionError> {
    match catch_unwind(|| expr::compile(source)) {
        Ok(Ok(program)) => Ok(program),
        Ok(Err(error)) => Err(ConditionError::Parse(error.to_string())),
        Err(_) => Err(ConditionError::Parse(
            "the parser rejected this expression".to_owned(),
        )),
    }
}

// ---------------------------------------------------------------------------------------------
// Static analysis: a small lexer for the expr grammar, enough to enforce the bounds, find the
// variables read and rewrite member access to be nil-safe. Anything it cannot make sense of is
// left for the real parser to reject.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Ident,
    Int,
    Float,
    Str,
    Punct,
    Other,
}

#[derive(Clone, Copy, Debug)]
struct Token<'a> {
    kind: Kind,
    text: &'a str,
    start: usize,
}

impl Token<'_> {
    fn is(&self, punct: &str) -> bool {
        self.kind == Kind::Punct && self.text == punct
    }
}

/// Words of the grammar that are operators rather than values.
const OPERATOR_WORDS: &[&str] = &[
    "and",
    "or",
    "not",
    "in",
    "contains",
    "startsWith",
    "endsWith",
    "matches",
    "if",
    "else",
    "let",
];

const OPERATOR_PUNCT: &[&str] = &[
    "+", "-", "*", "/", "%", "**", "^", "==", "!=", "<", ">", "<=", ">=", "&&", "||", "!", "??",
    "?", ".", "?.", "..", "|", "(", "[", "{",
];

/// Operators binding tighter than `..` or `matches` when they follow its right operand.
const TIGHTER_AFTER: &[&str] = &[
    "+", "-", "*", "/", "%", "**", "^", ".", "?.", "[", "??", "(", "..",
];

/// Operators binding tighter than `..` when they precede its left operand.
const TIGHTER_BEFORE: &[&str] = &["+", "-", "*", "/", "%", "**", "^", "..", "!"];

/// Whether a token ends an operand, so that a following `.` or `[` is member access/indexing.
fn ends_operand(t: &Token<'_>) -> bool {
    match t.kind {
        Kind::Ident => !OPERATOR_WORDS.contains(&t.text),
        Kind::Int | Kind::Float | Kind::Str => true,
        Kind::Punct => matches!(t.text, ")" | "]" | "}"),
        Kind::Other => false,
    }
}

fn lex(src: &str) -> Vec<Token<'_>> {
    let b = src.as_bytes();
    let mut out: Vec<Token<'_>> = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let start = i;
        let c = b[i];
        let next = b.get(i + 1).copied();
        let kind = match c {
            b' ' | b'\t' | b'\r' | b'\n' => {
                i += 1;
                continue;
            }
            b'/' if next == Some(b'/') => {
                i = find(b, i + 2, b"\n").unwrap_or(b.len());
                continue;
            }
            b'/' if next == Some(b'*') => {
                i = find(b, i + 2, b"*/").map_or(b.len(), |p| p + 2);
                continue;
            }
            b'"' | b'\'' => {
                i = scan_quoted(b, i + 1, c);
                Kind::Str
            }
            b'`' => {
                i = find(b, i + 1, b"`").map_or(b.len(), |p| p + 1);
                Kind::Str
            }
            b'b' | b'B' if matches!(next, Some(b'"' | b'\'')) => {
                i = scan_quoted(b, i + 2, next.unwrap_or(b'"'));
                Kind::Str
            }
            b'#' | b'$' | b'_' | b'a'..=b'z' | b'A'..=b'Z' => {
                i += 1;
                while i < b.len() && is_word(b[i]) {
                    i += 1;
                }
                Kind::Ident
            }
            b'0'..=b'9' => {
                let (end, kind) = scan_number(b, i);
                i = end;
                kind
            }
            b'.' if next.is_some_and(|n| n.is_ascii_digit())
                && !out.last().is_some_and(ends_operand) =>
            {
                let (end, kind) = scan_number(b, i);
                i = end;
                kind
            }
            _ => {
                let rest = &src[i..];
                let two = if rest.starts_with("?.") {
                    // `?.5` is a ternary followed by a number, not optional chaining.
                    !b.get(i + 2).is_some_and(u8::is_ascii_digit)
                } else {
                    ["??", "..", "**", "==", "!=", "<=", ">=", "&&", "||"]
                        .iter()
                        .any(|p| rest.starts_with(p))
                };
                if two {
                    i += 2;
                    Kind::Punct
                } else if c.is_ascii() {
                    i += 1;
                    Kind::Punct
                } else {
                    i += rest.chars().next().map_or(1, char::len_utf8);
                    Kind::Other
                }
            }
        };
        out.push(Token {
            kind,
            text: &src[start..i],
            start,
        });
    }
    out
}

fn find(b: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    b.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

/// End (exclusive) of a quoted literal whose body starts at `i`; the input's end if unclosed.
fn scan_quoted(b: &[u8], mut i: usize, quote: u8) -> usize {
    while i < b.len() {
        if b[i] == b'\\' {
            i += 2;
            continue;
        }
        if b[i] == quote {
            return i + 1;
        }
        i += 1;
    }
    b.len()
}

fn scan_number(b: &[u8], start: usize) -> (usize, Kind) {
    let mut i = start;
    let digits = |i: &mut usize| {
        while *i < b.len() && (b[*i].is_ascii_digit() || b[*i] == b'_') {
            *i += 1;
        }
    };
    if b[i] == b'0' && matches!(b.get(i + 1), Some(b'x' | b'X' | b'o' | b'O' | b'b' | b'B')) {
        i += 2;
        while i < b.len() && is_word(b[i]) {
            i += 1;
        }
        return (i, Kind::Int);
    }
    digits(&mut i);
    let mut float = false;
    if b.get(i) == Some(&b'.') && b.get(i + 1) != Some(&b'.') {
        float = true;
        i += 1;
        digits(&mut i);
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        let mut j = i + 1;
        if matches!(b.get(j), Some(b'+' | b'-')) {
            j += 1;
        }
        if b.get(j).is_some_and(u8::is_ascii_digit) {
            i = j;
            digits(&mut i);
            float = true;
        }
    }
    (i, if float { Kind::Float } else { Kind::Int })
}

fn parse_int(text: &str) -> Option<i64> {
    let clean = text.replace('_', "");
    let (digits, radix) = match clean.get(..2) {
        Some("0x" | "0X") => (&clean[2..], 16),
        Some("0o" | "0O") => (&clean[2..], 8),
        Some("0b" | "0B") => (&clean[2..], 2),
        _ => (clean.as_str(), 10),
    };
    i64::from_str_radix(digits, radix).ok()
}

/// The value of a string literal token, unescaped exactly as the crate does it.
fn string_literal(text: &str) -> Option<String> {
    let inner = text.get(1..text.len().checked_sub(1)?)?;
    if text.starts_with('`') {
        return Some(inner.to_owned());
    }
    if !(text.starts_with('"') || text.starts_with('\'')) {
        return None; // a bytes literal
    }
    Some(
        inner
            .replace("\\\\", "\\")
            .replace("\\n", "\n")
            .replace("\\r", "\r")
            .replace("\\t", "\t")
            .replace("\\\"", "\""),
    )
}

struct Analysis {
    roots: Vec<String>,
    uses_env: bool,
    nil_safe_source: Option<String>,
}

fn unsupported(what: impl Into<String>) -> ConditionError {
    ConditionError::Unsupported(what.into())
}

fn analyse(src: &str) -> Result<Analysis, ConditionError> {
    let toks = lex(src);
    // One entry per open bracket: whether it opens a predicate function's arguments.
    let mut stack: Vec<bool> = Vec::new();
    let mut operators = 0usize;
    let mut range_elements: i128 = 0;
    let mut roots: Vec<String> = Vec::new();
    let mut uses_env = false;
    // Byte offsets where the nil-safe rewrite inserts text: `?` before `.`, `?.` before `[`.
    let mut inserts: Vec<(usize, &str)> = Vec::new();

    for (idx, t) in toks.iter().enumerate() {
        let prev = idx.checked_sub(1).map(|p| &toks[p]);
        let after_operand = prev.is_some_and(ends_operand);
        let in_predicate = stack.iter().any(|p| *p);
        match t.kind {
            Kind::Punct => {
                if OPERATOR_PUNCT.contains(&t.text) {
                    operators += 1;
                }
                match t.text {
                    "(" | "[" | "{" => {
                        let predicate_call = t.text == "("
                            && idx > 0
                            && is_call(&toks, idx - 1)
                            && PREDICATE_FUNCTIONS.contains(&toks[idx - 1].text);
                        stack.push(predicate_call);
                        if stack.len() > MAX_NESTING {
                            return Err(unsupported(format!(
                                "brackets nested more than {MAX_NESTING} levels deep"
                            )));
                        }
                        if t.text == "{" {
                            check_map_literal(&toks, idx)?;
                        }
                        if t.text == "[" && after_operand && !is_slice(&toks, idx) {
                            inserts.push((t.start, "?."));
                        }
                    }
                    ")" | "]" | "}" => {
                        stack.pop();
                    }
                    "." => {
                        let member = toks.get(idx + 1).is_some_and(|n| n.kind == Kind::Ident);
                        let method = toks.get(idx + 2).is_some_and(|n| n.is("("));
                        if after_operand && member && !method {
                            inserts.push((t.start, "?"));
                        }
                    }
                    ".." => {
                        if in_predicate {
                            return Err(unsupported("ranges inside a predicate function"));
                        }
                        range_elements += check_range(&toks, idx)?;
                        if range_elements > MAX_RANGE_ELEMENTS {
                            return Err(unsupported(format!(
                                "ranges producing more than {MAX_RANGE_ELEMENTS} elements"
                            )));
                        }
                    }
                    _ => {}
                }
            }
            Kind::Ident => {
                if OPERATOR_WORDS.contains(&t.text) {
                    operators += 1;
                }
                let member = prev.is_some_and(|p| p.is(".") || p.is("?."));
                if t.text == "let" && !member {
                    return Err(unsupported("`let` bindings"));
                }
                if is_call(&toks, idx) {
                    check_function(t.text, in_predicate)?;
                } else if t.text == "matches" && after_operand {
                    check_matches(&toks, idx)?;
                } else if !member
                    && !t.text.starts_with('#')
                    && !OPERATOR_WORDS.contains(&t.text)
                    && !matches!(t.text, "true" | "false" | "nil")
                {
                    if t.text == "$env" {
                        uses_env = true;
                    } else if !roots.iter().any(|r| r == t.text) {
                        roots.push(t.text.to_owned());
                    }
                }
            }
            _ => {}
        }
        if operators > MAX_OPERATORS {
            return Err(unsupported(format!("more than {MAX_OPERATORS} operators")));
        }
    }

    let nil_safe_source = (!inserts.is_empty()).then(|| {
        let mut out = String::with_capacity(src.len() + 2 * inserts.len());
        let mut last = 0;
        for (at, text) in inserts {
            out.push_str(&src[last..at]);
            out.push_str(text);
            last = at;
        }
        out.push_str(&src[last..]);
        out
    });
    Ok(Analysis {
        roots,
        uses_env,
        nil_safe_source,
    })
}

/// Whether the identifier at `idx` is a function call (not a method call, and not an operator
/// word such as `x startsWith ("a")`, `not (x)` or `if (x) {…}`).
fn is_call(toks: &[Token<'_>], idx: usize) -> bool {
    let t = &toks[idx];
    let prev = idx.checked_sub(1).map(|p| &toks[p]);
    t.kind == Kind::Ident
        && toks.get(idx + 1).is_some_and(|n| n.is("("))
        && !matches!(t.text, "not" | "if")
        && !prev.is_some_and(|p| p.is(".") || p.is("?.") || ends_operand(p))
}

fn check_function(name: &str, in_predicate: bool) -> Result<(), ConditionError> {
    if DISALLOWED_FUNCTIONS.contains(&name) {
        return Err(unsupported(format!(
            "function `{name}()` (its cost is not bounded by its input)"
        )));
    }
    if !ALLOWED_FUNCTIONS.contains(&name) {
        return Err(ConditionError::UnknownFunction(name.to_owned()));
    }
    if in_predicate && PREDICATE_FUNCTIONS.contains(&name) {
        return Err(unsupported(format!(
            "`{name}()` inside another predicate function (nested loops)"
        )));
    }
    Ok(())
}

/// Whether the `[` at `idx` (after an operand) is a slice `a[i:j]` rather than an index: a `:`
/// at its top level that does not close a ternary `?`.
fn is_slice(toks: &[Token<'_>], idx: usize) -> bool {
    let mut depth = 0usize;
    let mut ternaries = 0usize;
    for t in toks.iter().skip(idx + 1).filter(|t| t.kind == Kind::Punct) {
        match t.text {
            "(" | "[" | "{" => depth += 1,
            ")" | "}" => depth = depth.saturating_sub(1),
            "]" if depth == 0 => return false,
            "]" => depth -= 1,
            "?" if depth == 0 => ternaries += 1,
            ":" if depth == 0 => {
                if ternaries == 0 {
                    return true;
                }
                ternaries -= 1;
            }
            _ => {}
        }
    }
    false
}

/// The crate's map literals keep only a leading literal of each value and panic on anything
/// else (`{a: x}`), so a map literal must have literal values only.
fn check_map_literal(toks: &[Token<'_>], idx: usize) -> Result<(), ConditionError> {
    let key = |t: Option<&Token<'_>>| t.is_some_and(|t| matches!(t.kind, Kind::Ident | Kind::Str));
    let colon = |t: Option<&Token<'_>>| t.is_some_and(|t| t.is(":"));
    // A predicate or `if` block cannot start with `name :`, so this is a map literal.
    if !(key(toks.get(idx + 1)) && colon(toks.get(idx + 2))) {
        return Ok(());
    }
    let mut i = idx + 1;
    loop {
        let literal = toks.get(i + 2).is_some_and(|t| {
            matches!(t.kind, Kind::Str | Kind::Int | Kind::Float)
                || (t.kind == Kind::Ident && matches!(t.text, "true" | "false" | "nil"))
        });
        if !(key(toks.get(i)) && colon(toks.get(i + 1)) && literal) {
            return Err(unsupported(
                "map literals whose values are not plain literals",
            ));
        }
        match toks.get(i + 3) {
            Some(t) if t.is("}") => return Ok(()),
            Some(t) if t.is(",") => {
                if toks.get(i + 4).is_some_and(|t| t.is("}")) {
                    return Ok(());
                }
                i += 4;
            }
            _ => {
                return Err(unsupported(
                    "map literals whose values are not plain literals",
                ))
            }
        }
    }
}

/// A range `a..b` must have integer-literal bounds (optionally negative), and nothing binding
/// tighter around them, so its size is known now. Returns its number of elements.
fn check_range(toks: &[Token<'_>], idx: usize) -> Result<i128, ConditionError> {
    let bad = || unsupported("ranges (`a..b`) whose bounds are not integer literals");
    let lo_at = idx.checked_sub(1).ok_or_else(bad)?;
    if toks[lo_at].kind != Kind::Int {
        return Err(bad());
    }
    let mut lo = i128::from(parse_int(toks[lo_at].text).ok_or_else(bad)?);
    let mut before = lo_at.checked_sub(1);
    if let Some(b) = before {
        if toks[b].is("-") {
            if b > 0 && ends_operand(&toks[b - 1]) {
                return Err(bad()); // `x - 1..5` is `(x - 1)..5`
            }
            lo = -lo;
            before = b.checked_sub(1);
        }
    }
    if let Some(b) = before.map(|b| &toks[b]) {
        if (b.kind == Kind::Punct && TIGHTER_BEFORE.contains(&b.text)) || b.text == "not" {
            return Err(bad());
        }
    }
    let mut hi_at = idx + 1;
    let negative = toks.get(hi_at).is_some_and(|t| t.is("-"));
    if negative {
        hi_at += 1;
    }
    let hi_tok = toks
        .get(hi_at)
        .filter(|t| t.kind == Kind::Int)
        .ok_or_else(bad)?;
    let mut hi = i128::from(parse_int(hi_tok.text).ok_or_else(bad)?);
    if negative {
        hi = -hi;
    }
    if let Some(a) = toks.get(hi_at + 1) {
        if a.kind == Kind::Punct && TIGHTER_AFTER.contains(&a.text) {
            return Err(bad());
        }
    }
    Ok((hi - lo + 1).max(0))
}

/// `matches` needs a string-literal pattern (compiled once with the program, not per capture)
/// that compiles within [`MAX_REGEX_SIZE`].
fn check_matches(toks: &[Token<'_>], idx: usize) -> Result<(), ConditionError> {
    let bad = || unsupported("`matches` with a pattern that is not a string literal");
    let pattern = toks
        .get(idx + 1)
        .filter(|t| t.kind == Kind::Str)
        .and_then(|t| string_literal(t.text))
        .ok_or_else(bad)?;
    if let Some(a) = toks.get(idx + 2) {
        if a.kind == Kind::Punct && TIGHTER_AFTER.contains(&a.text) {
            return Err(bad());
        }
    }
    regex::RegexBuilder::new(&pattern)
        .size_limit(MAX_REGEX_SIZE)
        .build()
        .map(|_| ())
        .map_err(|e| ConditionError::Parse(format!("invalid `matches` pattern: {e}")))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn rewritten(src: &str) -> Option<String> {
        analyse(src).unwrap().nil_safe_source
    }

    #[test]
    fn rewrites_member_access_and_indexing_only() {
        assert_eq!(rewritten("a.b.c == nil").as_deref(), Some("a?.b?.c == nil"));
        assert_eq!(rewritten("a[\"k\"].b").as_deref(), Some("a?.[\"k\"]?.b"));
        assert_eq!(rewritten("a[1:2]"), None);
        assert_eq!(rewritten("a[c ? 1 : 2]").as_deref(), Some("a?.[c ? 1 : 2]"));
        assert_eq!(rewritten("\"a.b\" + 'x.y'"), None);
        assert_eq!(rewritten("1.5 + .5"), None);
        assert_eq!(rewritten("[1, 2] == x"), None);
        assert_eq!(rewritten("filter(xs, .a)"), None);
        assert_eq!(rewritten("date(x).Year()"), None);
        assert_eq!(rewritten("a?.b"), None);
        assert_eq!(rewritten("x // a.b\n"), None);
        assert_eq!(rewritten("(a).b").as_deref(), Some("(a)?.b"));
    }

    #[test]
    fn allowed_functions_exist_in_the_crate() {
        let ctx = expr::Context::default();
        for name in ALLOWED_FUNCTIONS.iter().chain(DISALLOWED_FUNCTIONS) {
            if let Err(e) = ENVIRONMENT.eval(&format!("{name}()"), &ctx) {
                assert!(!e.to_string().contains("Unknown function"), "{name}: {e}");
            }
        }
        for name in PREDICATE_FUNCTIONS {
            assert!(ALLOWED_FUNCTIONS.contains(name) || DISALLOWED_FUNCTIONS.contains(name));
        }
    }

    #[test]
    fn collects_top_level_names() {
        let a = analyse("user.profile.age > 1 && len(tags) > 0 && all(xs, #.ok)").unwrap();
        assert_eq!(a.roots, vec!["user", "tags", "xs"]);
        assert!(!a.uses_env);
        assert!(analyse("$env.x == 1").unwrap().uses_env);
    }
}
