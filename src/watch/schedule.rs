//! The timing rules of the pollers: the adaptive interval, jitter, the backoff after
//! transient failures, and the per-upstream pacer that caps poll requests per second.
//!
//! Plain functions and one small struct, so the math is unit-tested on its own with paused
//! tokio time.

use std::time::Duration;

use tokio::time::Instant;

use crate::config::WatchConfig;

/// The bounds of a watcher's own `heartbeat_interval` (the contract's): a faster one would
/// send a caller full tasks many times a second for nothing.
pub const HEARTBEAT_BOUNDS: (Duration, Duration) =
    (Duration::from_secs(1), Duration::from_secs(3600));

/// The engine's timing settings, from `[watch]`.
#[derive(Debug, Clone)]
pub struct Settings {
    pub min: Duration,
    pub max: Duration,
    pub growth: f64,
    pub jitter: f64,
    pub max_wait: Duration,
    pub retry_budget: u32,
    pub max_polls_per_second: u32,
    pub heartbeat_default: Option<Duration>,
    /// Resources polled at once per upstream (`limits.max_pollers_per_upstream`).
    pub max_pollers: usize,
}

impl From<&WatchConfig> for Settings {
    fn from(c: &WatchConfig) -> Self {
        Settings {
            min: c.min_poll_interval,
            max: c.max_poll_interval.max(c.min_poll_interval),
            growth: c.growth.max(1.0),
            jitter: c.jitter.clamp(0.0, 0.5),
            max_wait: c.max_wait,
            retry_budget: c.retry_budget,
            max_polls_per_second: c.max_polls_per_second.max(1),
            heartbeat_default: Some(c.heartbeat_default).filter(|d| !d.is_zero()),
            max_pollers: crate::config::LimitsConfig::default().max_pollers_per_upstream,
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings::from(&WatchConfig::default())
    }
}

impl Settings {
    /// A watcher's own floor: unset means the server's minimum; always within the server's bounds.
    pub fn floor(&self, asked: Option<Duration>) -> Duration {
        asked.unwrap_or(self.min).clamp(self.min, self.max)
    }

    /// A watcher's heartbeat: unset means the server's default, zero turns it off, anything
    /// else is clamped to [`HEARTBEAT_BOUNDS`].
    pub fn heartbeat(&self, asked: Option<Duration>) -> Option<Duration> {
        match asked {
            None => self.heartbeat_default,
            Some(d) if d.is_zero() => None,
            Some(d) => Some(d.clamp(HEARTBEAT_BOUNDS.0, HEARTBEAT_BOUNDS.1)),
        }
    }

    /// The interval after a poll: back to the floor on a change, else one growth step
    /// towards the maximum (never below the floor).
    pub fn next_interval(&self, current: Duration, floor: Duration, changed: bool) -> Duration {
        if changed {
            return floor;
        }
        current
            .mul_f64(self.growth)
            .clamp(floor.min(self.max), self.max)
    }

    /// How long to wait after the `failures`-th transient failure in a row: doubling from
    /// the floor, at most the maximum, and at least what the upstream asked for
    /// (`Retry-After`, itself capped at the maximum).
    pub fn backoff(
        &self,
        floor: Duration,
        failures: u32,
        retry_after: Option<Duration>,
    ) -> Duration {
        let doubled = floor.saturating_mul(1u32 << failures.min(16));
        let asked = retry_after.unwrap_or_default().min(self.max);
        doubled.min(self.max).max(asked)
    }

    /// `d` spread by up to ±`jitter`, with `unit` a random number in [0, 1), so many pollers
    /// started together do not hit the upstream in lockstep.
    pub fn jittered(&self, d: Duration, unit: f64) -> Duration {
        let factor = 1.0 + self.jitter * (2.0 * unit.clamp(0.0, 1.0) - 1.0);
        d.mul_f64(factor.max(0.0)).max(Duration::from_millis(1))
    }
}

/// Paces requests to one upstream: a token bucket refilled at `rate` per second holding at
/// most a tenth of a second's worth (at least one), so bursts stay short.
#[derive(Debug)]
pub struct Pacer {
    per_token: Duration,
    capacity: f64,
    tokens: f64,
    last: Instant,
}

impl Pacer {
    pub fn new(rate: u32) -> Self {
        let rate = rate.max(1);
        let capacity = (f64::from(rate) / 10.0).max(1.0);
        Pacer {
            per_token: Duration::from_secs(1) / rate,
            capacity,
            tokens: capacity,
            last: Instant::now(),
        }
    }

    fn refill(&mut self, now: Instant) {
        let earned =
            now.saturating_duration_since(self.last).as_secs_f64() / self.per_token.as_secs_f64();
        self.tokens = (self.tokens + earned).min(self.capacity);
        self.last = now;
    }

    /// How long the next request must wait for its token (zero when one is there); takes it.
    pub fn reserve(&mut self, now: Instant) -> Duration {
        self.refill(now);
        self.tokens -= 1.0;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            self.per_token.mul_f64(-self.tokens)
        }
    }

    /// Waits for the next request's token.
    pub async fn acquire(&mut self) {
        let wait = self.reserve(Instant::now());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings {
            min: Duration::from_millis(500),
            max: Duration::from_secs(10),
            growth: 1.5,
            jitter: 0.1,
            max_wait: Duration::from_secs(60),
            retry_budget: 5,
            max_polls_per_second: 50,
            heartbeat_default: Some(Duration::from_secs(15)),
            max_pollers: 100,
        }
    }

    #[test]
    fn interval_grows_by_the_factor_while_nothing_changes_up_to_the_maximum() {
        let s = settings();
        let floor = s.floor(None);
        let mut d = floor;
        let mut seen = vec![d];
        for _ in 0..12 {
            d = s.next_interval(d, floor, false);
            seen.push(d);
        }
        assert_eq!(seen[1], Duration::from_millis(750));
        assert_eq!(seen[2], Duration::from_millis(1125));
        assert!(seen.windows(2).all(|w| w[1] >= w[0]));
        assert_eq!(*seen.last().unwrap(), Duration::from_secs(10));
    }

    #[test]
    fn a_change_brings_the_interval_back_to_the_floor() {
        let s = settings();
        let floor = s.floor(None);
        assert_eq!(s.next_interval(Duration::from_secs(10), floor, true), floor);
    }

    #[test]
    fn a_watchers_floor_is_clamped_to_the_server_bounds() {
        let s = settings();
        assert_eq!(s.floor(Some(Duration::from_millis(1))), s.min);
        assert_eq!(s.floor(Some(Duration::from_secs(3600))), s.max);
        assert_eq!(
            s.floor(Some(Duration::from_secs(2))),
            Duration::from_secs(2)
        );
        // A slow floor also holds the interval up after a change.
        let slow = s.floor(Some(Duration::from_secs(2)));
        assert_eq!(s.next_interval(s.min, slow, false), slow);
    }

    #[test]
    fn jitter_stays_within_its_fraction() {
        let s = settings();
        let d = Duration::from_secs(1);
        assert_eq!(s.jittered(d, 0.0), Duration::from_millis(900));
        assert_eq!(s.jittered(d, 0.5), d);
        assert!(s.jittered(d, 0.999_999) <= Duration::from_millis(1100));
        let none = Settings { jitter: 0.0, ..s };
        assert_eq!(none.jittered(d, 0.9), d);
    }

    #[test]
    fn backoff_doubles_from_the_floor_and_honours_retry_after() {
        let s = settings();
        let floor = s.min;
        assert_eq!(s.backoff(floor, 1, None), Duration::from_secs(1));
        assert_eq!(s.backoff(floor, 2, None), Duration::from_secs(2));
        assert_eq!(s.backoff(floor, 30, None), s.max);
        assert_eq!(
            s.backoff(floor, 1, Some(Duration::from_secs(4))),
            Duration::from_secs(4)
        );
        assert_eq!(s.backoff(floor, 1, Some(Duration::from_secs(600))), s.max);
    }

    #[tokio::test(start_paused = true)]
    async fn pacer_spreads_requests_beyond_the_rate() {
        let mut p = Pacer::new(10);
        let start = Instant::now();
        // One token of burst at 10/s, then one every 100 ms.
        for _ in 0..11 {
            p.acquire().await;
        }
        let elapsed = start.elapsed();
        assert!(
            elapsed >= Duration::from_millis(1000) && elapsed < Duration::from_millis(1100),
            "{elapsed:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn pacer_lets_requests_under_the_rate_through_at_once() {
        let mut p = Pacer::new(50);
        for _ in 0..5 {
            assert_eq!(p.reserve(Instant::now()), Duration::ZERO);
        }
        assert!(p.reserve(Instant::now()) > Duration::ZERO);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(p.reserve(Instant::now()), Duration::ZERO);
    }
}
