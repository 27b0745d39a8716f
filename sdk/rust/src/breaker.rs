//! Circuit breaker on capture uploads (reference §7.3). Time is passed in by the caller, so
//! the state machine is tested with an injected clock.

use std::collections::VecDeque;
use std::time::Instant;

use crate::config::CircuitBreakerConfig;

/// What [`CircuitBreaker::allow`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Closed: go ahead.
    Allowed,
    /// The cooldown just ended: closed again, failures cleared; go ahead.
    Resumed,
    /// Open: drop the capture before any HTTP.
    Open,
}

/// Closed ↔ open, no half-open probe. Not thread-safe by itself (the SDK keeps it in a mutex).
#[derive(Debug)]
pub struct CircuitBreaker {
    config: CircuitBreakerConfig,
    failures: VecDeque<Instant>,
    opened_at: Option<Instant>,
}

impl CircuitBreaker {
    pub fn new(config: CircuitBreakerConfig) -> Self {
        Self {
            config,
            failures: VecDeque::new(),
            opened_at: None,
        }
    }

    /// Whether a capture may be sent at `now`; closes the breaker once the cooldown is over.
    pub fn allow(&mut self, now: Instant) -> Admission {
        match self.opened_at {
            None => Admission::Allowed,
            Some(at) if now.saturating_duration_since(at) >= self.config.cooldown => {
                self.opened_at = None;
                self.failures.clear();
                Admission::Resumed
            }
            Some(_) => Admission::Open,
        }
    }

    /// Whether the breaker is open at `now` (without changing state).
    pub fn is_open(&self, now: Instant) -> bool {
        self.opened_at
            .is_some_and(|at| now.saturating_duration_since(at) < self.config.cooldown)
    }

    /// Records a counted failure (network error, timeout or 5xx of a capture upload).
    /// Returns `true` when this failure tripped the breaker (closed → open).
    pub fn record_failure(&mut self, now: Instant) -> bool {
        if self.opened_at.is_some() {
            return false;
        }
        let window = self.config.window;
        while self
            .failures
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= window)
        {
            self.failures.pop_front();
        }
        self.failures.push_back(now);
        // Bounded: only the newest `max_failures` matter.
        let max = self.config.max_failures.max(1) as usize;
        while self.failures.len() > max {
            self.failures.pop_front();
        }
        if self.failures.len() >= max {
            self.opened_at = Some(now);
            self.failures.clear();
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn breaker() -> CircuitBreaker {
        CircuitBreaker::new(CircuitBreakerConfig {
            max_failures: 3,
            window: Duration::from_secs(60),
            cooldown: Duration::from_secs(300),
        })
    }

    #[test]
    fn trips_after_max_failures_within_window() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut b = breaker();
        assert_eq!(b.allow(t0), Admission::Allowed);
        assert!(!b.record_failure(t0));
        assert!(!b.record_failure(t0 + s(10)));
        assert!(b.record_failure(t0 + s(20)), "third failure in 60 s trips");
        assert!(b.is_open(t0 + s(21)));
        assert_eq!(b.allow(t0 + s(21)), Admission::Open);
        assert!(
            !b.record_failure(t0 + s(22)),
            "failures while open do not re-trip"
        );
        assert_eq!(b.allow(t0 + s(319)), Admission::Open);
        assert_eq!(
            b.allow(t0 + s(320)),
            Admission::Resumed,
            "cooldown counts from the trip"
        );
        assert_eq!(b.allow(t0 + s(321)), Admission::Allowed);
        assert!(!b.is_open(t0 + s(321)));
        // Failures were cleared on resume.
        assert!(!b.record_failure(t0 + s(330)));
        assert!(!b.record_failure(t0 + s(331)));
        assert!(b.record_failure(t0 + s(332)));
    }

    #[test]
    fn failures_outside_the_window_do_not_count() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut b = breaker();
        assert!(!b.record_failure(t0));
        assert!(!b.record_failure(t0 + s(30)));
        assert!(!b.record_failure(t0 + s(61)), "the first one aged out");
        assert!(!b.is_open(t0 + s(61)));
        assert!(b.record_failure(t0 + s(62)));
    }
}
