//! `SimClock`: the one notion of "now" shared by every simulated upstream.
//!
//! Tasks, sessions and datetimes in responses all read this clock, so a test can freeze time
//! (`SimClock::manual()`) and step it with `advance()` instead of sleeping.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};

/// A shared simulated clock. Cloning is cheap; all clones see the same time.
#[derive(Clone)]
pub struct SimClock {
    inner: Arc<Inner>,
}

struct Inner {
    /// `Some` for a real clock: elapsed tokio time counts (so paused tokio time also works).
    started: Option<tokio::time::Instant>,
    /// Added by `advance()`, for both kinds.
    offset: Mutex<Duration>,
    /// Wall time of the clock's epoch (`now() == 0`).
    epoch: DateTime<Utc>,
}

impl SimClock {
    /// A clock that advances with real (tokio) time.
    pub fn real() -> Self {
        Self::build(Some(tokio::time::Instant::now()))
    }

    /// A frozen clock: it moves only with `advance()`.
    pub fn manual() -> Self {
        Self::build(None)
    }

    fn build(started: Option<tokio::time::Instant>) -> Self {
        SimClock {
            inner: Arc::new(Inner {
                started,
                offset: Mutex::new(Duration::ZERO),
                epoch: Utc::now(),
            }),
        }
    }

    /// Moves the clock forward (on a real clock this adds to the elapsed time).
    pub fn advance(&self, by: Duration) {
        let mut offset = lock(&self.inner.offset);
        *offset = offset.saturating_add(by);
    }

    /// Time since the clock's epoch.
    pub fn now(&self) -> Duration {
        let elapsed = self.inner.started.map(|s| s.elapsed()).unwrap_or_default();
        elapsed.saturating_add(*lock(&self.inner.offset))
    }

    /// Wall time of clock time `at` (epoch = `Utc::now()` when the clock was created).
    pub fn wall(&self, at: Duration) -> DateTime<Utc> {
        self.inner.epoch + chrono::Duration::from_std(at).unwrap_or(chrono::Duration::MAX)
    }

    /// Whether this is a frozen (manual) clock.
    pub fn is_manual(&self) -> bool {
        self.inner.started.is_none()
    }
}

impl std::fmt::Debug for SimClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimClock")
            .field("manual", &self.is_manual())
            .field("now", &self.now())
            .finish()
    }
}

/// A poisoned lock only means another thread panicked mid-update of a plain value; keep going.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The instant an RFC 3339 text names, for the tests of each part's datetime format (a typo
/// in the text fails the test here rather than comparing a default instant).
#[cfg(test)]
pub(crate) fn utc(rfc3339: &str) -> DateTime<Utc> {
    match DateTime::parse_from_rfc3339(rfc3339) {
        Ok(t) => t.with_timezone(&Utc),
        Err(e) => panic!("{rfc3339}: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_with_advance() {
        let c = SimClock::manual();
        assert_eq!(c.now(), Duration::ZERO);
        c.advance(Duration::from_secs(5));
        let c2 = c.clone();
        assert_eq!(c2.now(), Duration::from_secs(5));
        assert_eq!(
            c.wall(Duration::from_secs(5)) - c.wall(Duration::ZERO),
            chrono::Duration::seconds(5)
        );
    }
}
