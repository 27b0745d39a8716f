//! Domain records as stored (item attributes) and as served on the admin API.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::condition::{classify, ConditionEval};
use crate::ports::{Attrs, Item};

/// Vendor defaults (reference §7.4) applied to new breakpoints.
pub mod defaults {
    pub const MAX_CAPTURES: i64 = 100;
    pub const RATE_LIMIT_PER_MINUTE: i64 = 10;
    pub const EXPIRY_MS: i64 = 24 * 3600 * 1000;
    pub const IDLE_TIMEOUT_HOURS: i64 = 24;
    pub const MAX_DEPTH: i64 = 3;
    /// Deleted breakpoints stay as tombstones this long, so late captures are dropped as
    /// `deleted` rather than `unknown_breakpoint`.
    pub const TOMBSTONE_SECS: i64 = 7 * 24 * 3600;
    pub const SNAPSHOT_RETENTION_SECS: i64 = 30 * 24 * 3600;
}

/// What an API key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// The SDK API: poll, auto-register, capture, check-in, stream, OTLP ingest.
    Sdk,
    /// The admin API and dashboard.
    Admin,
}

impl Scope {
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "sdk" => Some(Self::Sdk),
            "admin" => Some(Self::Admin),
            _ => None,
        }
    }
}

/// A stored API key. The raw key is never stored, only its SHA-256.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiKeyRecord {
    /// Public identifier: the first 12 hex digits of the hash.
    pub id: String,
    pub project_id: String,
    pub name: String,
    pub scopes: Vec<Scope>,
    pub created_at: String,
    #[serde(default)]
    pub revoked: bool,
}

/// The authenticated caller. Every handler takes the project from here, never from the body.
#[derive(Debug, Clone, PartialEq)]
pub struct Principal {
    pub project_id: String,
    pub key_id: String,
    pub scopes: Vec<Scope>,
}

impl Principal {
    pub fn has(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Project {
    pub id: String,
    pub name: String,
    pub created_at: String,
}

/// Snapshot (variables + stack) or logpoint (only `capture_expressions` results).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    #[default]
    Snapshot,
    Logpoint,
}

impl Mode {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "snapshot" | "capture" => Some(Self::Snapshot),
            "logpoint" => Some(Self::Logpoint),
            _ => None,
        }
    }
}

/// How the breakpoint came to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// Registered by an SDK's capture call.
    AutoRegister,
    /// Created through the admin API or dashboard.
    #[default]
    Manual,
}

/// A breakpoint as stored. Counters are updated atomically by the store, never by
/// read-modify-write of the whole record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Breakpoint {
    pub id: String,
    pub service_name: String,
    pub file_path: String,
    pub line_number: i64,
    pub function_name: String,
    pub label: String,
    pub enabled: bool,
    #[serde(default)]
    pub condition: Option<String>,
    #[serde(default)]
    pub mode: Mode,
    #[serde(default)]
    pub capture_expressions: Vec<String>,
    /// 0 = unlimited.
    pub max_captures: i64,
    #[serde(default)]
    pub capture_count: i64,
    /// 0 = unlimited.
    pub rate_limit_per_minute: i64,
    /// Unix ms; captures after it are dropped as `expired`.
    #[serde(default)]
    pub expire_at: Option<i64>,
    /// Dropped as `idle_expired` after this many hours without a capture (`None` = pinned).
    #[serde(default)]
    pub idle_timeout_hours: Option<i64>,
    #[serde(default)]
    pub stack_depth: Option<i64>,
    #[serde(default)]
    pub max_depth: Option<i64>,
    #[serde(default)]
    pub max_payload_bytes: Option<i64>,
    #[serde(default)]
    pub origin: Origin,
    pub created_at: i64,
    pub updated_at: i64,
    #[serde(default)]
    pub last_captured_at: Option<i64>,
    #[serde(default)]
    pub drop_count: i64,
    /// Why the server disabled the breakpoint (`exhausted`); cleared when re-enabled.
    #[serde(default)]
    pub disabled_reason: Option<String>,
    #[serde(default)]
    pub deleted_at: Option<i64>,
    /// Current rate-limit window (Unix minute) and captures in it.
    #[serde(default)]
    pub rate_window: i64,
    #[serde(default)]
    pub rate_count: i64,
}

/// Why a breakpoint is not capturing right now, if it is not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inactive {
    Deleted,
    Disabled,
    Expired,
    IdleExpired,
    Exhausted,
}

impl Inactive {
    pub fn reason(self) -> DropReason {
        match self {
            Self::Deleted => DropReason::Deleted,
            Self::Disabled => DropReason::Disabled,
            Self::Expired => DropReason::Expired,
            Self::IdleExpired => DropReason::IdleExpired,
            Self::Exhausted => DropReason::Exhausted,
        }
    }
}

/// Where a breakpoint sits in the code.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CallSite {
    pub file_path: String,
    pub line_number: i64,
    pub function_name: String,
    pub label: String,
}

impl Breakpoint {
    /// A new, enabled breakpoint with the vendor defaults (reference §7.4).
    pub fn new(
        id: String,
        service_name: String,
        site: CallSite,
        origin: Origin,
        now_ms: i64,
    ) -> Self {
        Self {
            id,
            service_name,
            file_path: site.file_path,
            line_number: site.line_number,
            function_name: site.function_name,
            label: site.label,
            enabled: true,
            condition: None,
            mode: Mode::Snapshot,
            capture_expressions: Vec::new(),
            max_captures: defaults::MAX_CAPTURES,
            capture_count: 0,
            rate_limit_per_minute: defaults::RATE_LIMIT_PER_MINUTE,
            expire_at: Some(now_ms + defaults::EXPIRY_MS),
            idle_timeout_hours: Some(defaults::IDLE_TIMEOUT_HOURS),
            stack_depth: None,
            max_depth: Some(defaults::MAX_DEPTH),
            max_payload_bytes: None,
            origin,
            created_at: now_ms,
            updated_at: now_ms,
            last_captured_at: None,
            drop_count: 0,
            disabled_reason: None,
            deleted_at: None,
            rate_window: 0,
            rate_count: 0,
        }
    }

    pub fn condition_eval(&self) -> Option<ConditionEval> {
        self.condition
            .as_deref()
            .filter(|c| !c.trim().is_empty())
            .map(classify)
    }

    /// Why this breakpoint would not capture at `now_ms`, or `None` if it would.
    pub fn inactive(&self, now_ms: i64) -> Option<Inactive> {
        if self.deleted_at.is_some() {
            Some(Inactive::Deleted)
        } else if !self.enabled {
            if self.disabled_reason.as_deref() == Some("exhausted") {
                Some(Inactive::Exhausted)
            } else {
                Some(Inactive::Disabled)
            }
        } else if self.expire_at.is_some_and(|t| t <= now_ms) {
            Some(Inactive::Expired)
        } else if self.is_idle(now_ms) {
            Some(Inactive::IdleExpired)
        } else if self.max_captures > 0 && self.capture_count >= self.max_captures {
            Some(Inactive::Exhausted)
        } else {
            None
        }
    }

    fn is_idle(&self, now_ms: i64) -> bool {
        match self.idle_timeout_hours {
            Some(h) if h > 0 => {
                let since = self
                    .last_captured_at
                    .unwrap_or(self.created_at)
                    .max(self.updated_at);
                now_ms - since > h.saturating_mul(3_600_000)
            }
            _ => false,
        }
    }

    /// The breakpoint object of the SDK wire protocol (reference §2.2, §11 item 3): every
    /// field every SDK parses, never a null where an SDK would choke, no `expire_at`
    /// (the server enforces expiry; tz-aware values crash the Python SDK).
    pub fn to_wire(&self) -> Value {
        let mut m = Attrs::new();
        m.insert("id".into(), self.id.clone().into());
        m.insert("service_name".into(), self.service_name.clone().into());
        m.insert("file_path".into(), self.file_path.clone().into());
        m.insert("line_number".into(), self.line_number.into());
        m.insert("function_name".into(), self.function_name.clone().into());
        m.insert("label".into(), self.label.clone().into());
        m.insert("enabled".into(), self.enabled.into());
        m.insert("max_captures".into(), self.max_captures.into());
        m.insert("capture_count".into(), self.capture_count.into());
        m.insert(
            "mode".into(),
            (if self.mode == Mode::Logpoint {
                "logpoint"
            } else {
                "snapshot"
            })
            .into(),
        );
        if let (Some(c), Some(eval)) = (&self.condition, self.condition_eval()) {
            m.insert("condition".into(), c.clone().into());
            m.insert("condition_eval".into(), eval.as_str().into());
        }
        if !self.capture_expressions.is_empty() {
            m.insert(
                "capture_expressions".into(),
                self.capture_expressions.clone().into(),
            );
        }
        for (k, v) in [
            ("stack_depth", self.stack_depth),
            ("max_depth", self.max_depth),
            ("max_payload_bytes", self.max_payload_bytes),
            ("idle_timeout_hours", self.idle_timeout_hours),
        ] {
            if let Some(v) = v {
                m.insert(k.into(), v.into());
            }
        }
        Value::Object(m)
    }

    /// The wire object with `enabled` reflecting whether it captures now, for answers that
    /// may carry an inactive breakpoint (auto-register of an existing one).
    pub fn to_sdk_wire(&self, now_ms: i64) -> Value {
        let mut v = self.to_wire();
        if let Value::Object(m) = &mut v {
            m.insert("enabled".into(), self.inactive(now_ms).is_none().into());
        }
        v
    }

    /// The admin API shape: everything, with times as RFC 3339.
    pub fn to_api(&self, now_ms: i64) -> Value {
        use crate::timefmt::format_ms;
        let mut v = self.to_wire();
        if let Value::Object(m) = &mut v {
            m.insert("condition".into(), self.condition.clone().into());
            m.insert(
                "condition_eval".into(),
                self.condition_eval().map(|e| e.as_str()).into(),
            );
            m.insert(
                "capture_expressions".into(),
                self.capture_expressions.clone().into(),
            );
            for (k, val) in [
                ("stack_depth", self.stack_depth),
                ("max_depth", self.max_depth),
                ("max_payload_bytes", self.max_payload_bytes),
                ("idle_timeout_hours", self.idle_timeout_hours),
            ] {
                m.insert(k.into(), val.into());
            }
            m.insert(
                "rate_limit_per_minute".into(),
                self.rate_limit_per_minute.into(),
            );
            m.insert("expire_at".into(), self.expire_at.map(format_ms).into());
            m.insert(
                "origin".into(),
                serde_json::to_value(self.origin).unwrap_or(Value::Null),
            );
            m.insert("created_at".into(), format_ms(self.created_at).into());
            m.insert("updated_at".into(), format_ms(self.updated_at).into());
            m.insert(
                "last_captured_at".into(),
                self.last_captured_at.map(format_ms).into(),
            );
            m.insert("drop_count".into(), self.drop_count.into());
            m.insert(
                "disabled_reason".into(),
                self.disabled_reason.clone().into(),
            );
            let status = match self.inactive(now_ms) {
                None => "active",
                Some(Inactive::Deleted) => "deleted",
                Some(Inactive::Disabled) => "disabled",
                Some(Inactive::Expired) => "expired",
                Some(Inactive::IdleExpired) => "idle_expired",
                Some(Inactive::Exhausted) => "exhausted",
            };
            m.insert("status".into(), status.into());
        }
        v
    }

    pub fn from_item(item: &Item) -> Option<Self> {
        serde_json::from_value(Value::Object(item.attrs.clone())).ok()
    }

    pub fn to_attrs(&self) -> Attrs {
        match serde_json::to_value(self) {
            Ok(Value::Object(m)) => m,
            _ => Attrs::new(),
        }
    }
}

/// Why a capture was not stored. Each is counted per breakpoint and per service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DropReason {
    KillSwitch,
    UnknownBreakpoint,
    Deleted,
    Disabled,
    Expired,
    IdleExpired,
    Exhausted,
    RateLimited,
    Duplicate,
    ConditionFalse,
    ConditionError,
}

impl DropReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::KillSwitch => "kill_switch",
            Self::UnknownBreakpoint => "unknown_breakpoint",
            Self::Deleted => "deleted",
            Self::Disabled => "disabled",
            Self::Expired => "expired",
            Self::IdleExpired => "idle_expired",
            Self::Exhausted => "exhausted",
            Self::RateLimited => "rate_limited",
            Self::Duplicate => "duplicate",
            Self::ConditionFalse => "condition_false",
            Self::ConditionError => "condition_error",
        }
    }

    /// The counter attribute on breakpoint and service items.
    pub fn counter_attr(self) -> String {
        format!("drop_{}", self.as_str())
    }

    pub const ALL: [DropReason; 11] = [
        Self::KillSwitch,
        Self::UnknownBreakpoint,
        Self::Deleted,
        Self::Disabled,
        Self::Expired,
        Self::IdleExpired,
        Self::Exhausted,
        Self::RateLimited,
        Self::Duplicate,
        Self::ConditionFalse,
        Self::ConditionError,
    ];
}

/// Collects `drop_*` counters of an item into `{reason: count}`.
pub fn drops_of(attrs: &Attrs) -> Value {
    let mut m = Attrs::new();
    for r in DropReason::ALL {
        if let Some(n) = attrs.get(&r.counter_attr()).and_then(Value::as_i64) {
            if n > 0 {
                m.insert(r.as_str().into(), n.into());
            }
        }
    }
    Value::Object(m)
}
