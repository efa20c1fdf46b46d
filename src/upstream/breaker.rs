//! A circuit breaker per upstream: after `threshold` consecutive failures (no answer, the
//! request timeout, or a 502/503/504) it opens, and calls fail at once without sending
//! anything until `open_for` has passed; then one probe goes through (half-open) and its
//! outcome closes or reopens it. An upstream that accepts connections and never answers
//! then costs callers nothing instead of a full request timeout each.

use std::{sync::Mutex, time::Duration};

use tokio::time::Instant;

/// The breaker's settings, validated: at least one failure opens it, for a positive time.
#[derive(Debug, Clone, Copy)]
pub struct BreakerSettings {
    threshold: u32,
    open_for: Duration,
}

impl BreakerSettings {
    pub fn new(threshold: u32, open_for: Duration) -> Option<Self> {
        (threshold > 0 && !open_for.is_zero()).then_some(Self {
            threshold,
            open_for,
        })
    }
}

#[derive(Debug, Default)]
struct State {
    failures: u32,
    open_until: Option<Instant>,
    /// A probe is in flight while half-open: others still wait.
    probing: bool,
}

/// See the module docs.
#[derive(Debug)]
pub struct Breaker {
    settings: BreakerSettings,
    state: Mutex<State>,
}

/// Leave to send one request. Its outcome goes back through [`Ticket::record`]; a ticket
/// dropped unrecorded (the caller went away, or its own deadline cut the request) counts
/// as neither, so a half-open probe never stays taken.
#[must_use]
pub struct Ticket<'a> {
    breaker: &'a Breaker,
    recorded: bool,
}

impl Ticket<'_> {
    /// How the request went: `true` for any answer but a 502/503/504.
    pub fn record(mut self, healthy: bool) {
        self.recorded = true;
        self.breaker.record(healthy);
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if !self.recorded {
            self.breaker.lock().probing = false;
        }
    }
}

impl Breaker {
    pub fn new(settings: BreakerSettings) -> Self {
        Breaker {
            settings,
            state: Mutex::new(State::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Asks to send one request: a ticket, or how long the open circuit still refuses.
    pub fn admit(&self) -> Result<Ticket<'_>, Duration> {
        let mut st = self.lock();
        if let Some(until) = st.open_until {
            let now = Instant::now();
            if now < until {
                return Err(until - now);
            }
            if st.probing {
                return Err(self.settings.open_for.min(Duration::from_secs(1)));
            }
            st.probing = true;
        }
        Ok(Ticket {
            breaker: self,
            recorded: false,
        })
    }

    fn record(&self, healthy: bool) {
        let mut st = self.lock();
        if healthy {
            *st = State::default();
            return;
        }
        st.failures = st.failures.saturating_add(1);
        if st.probing || st.failures >= self.settings.threshold {
            st.open_until = Some(Instant::now() + self.settings.open_for);
            st.probing = false;
        }
    }

    /// True while calls are refused.
    #[cfg(test)]
    fn is_open(&self) -> bool {
        self.lock().open_until.is_some_and(|u| Instant::now() < u)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker() -> Breaker {
        Breaker::new(BreakerSettings::new(3, Duration::from_secs(10)).unwrap())
    }

    #[tokio::test(start_paused = true)]
    async fn it_opens_after_consecutive_failures_and_a_probe_closes_it() {
        let b = breaker();
        for _ in 0..2 {
            b.admit().expect("closed").record(false);
        }
        b.admit().expect("closed").record(true);
        for _ in 0..3 {
            b.admit().expect("closed").record(false);
        }
        assert!(matches!(b.admit(), Err(d) if d <= Duration::from_secs(10)));
        tokio::time::advance(Duration::from_secs(11)).await;
        let probe = b.admit().expect("one probe");
        assert!(b.admit().is_err(), "only one");
        probe.record(true);
        assert!(b.admit().is_ok());
        assert!(!b.is_open());
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_probe_reopens_it() {
        let b = breaker();
        for _ in 0..3 {
            b.admit().expect("closed").record(false);
        }
        tokio::time::advance(Duration::from_secs(11)).await;
        b.admit().expect("a probe").record(false);
        assert!(b.is_open());
        // A probe that never reports (its caller went away) frees the way for the next.
        tokio::time::advance(Duration::from_secs(11)).await;
        drop(b.admit().expect("a probe"));
        assert!(b.admit().is_ok(), "the next probe may go");
        assert!(BreakerSettings::new(0, Duration::from_secs(1)).is_none());
    }
}
