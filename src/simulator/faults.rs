//! Standing fault settings: failure a part keeps up until told otherwise, switched from
//! `simulate` (flags and the [control](super::control) endpoint) and from tests
//! ([`SimHandle::set_faults`](super::SimHandle::set_faults)), all through one struct,
//! [`FaultSettings`].
//!
//! A part holds its settings in [`StandingFaults`]. The guard middleware applies them to
//! every request after the queued one-shot faults: hold while `blackhole`, wait `latency`,
//! answer 503 at `error_rate`, handle the request (sessions older than `session_expiry`
//! refused), break the body of a successful answer at `malformed_rate`, wait
//! `delay_after_handling`. `refuse_connections` and `blackhole` also act on connections, in
//! the part's [listener](super::listener).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use http::{HeaderValue, header};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

/// The longest `latency` or `delay_after_handling`: each holds a request that long.
pub const MAX_DELAY: Duration = Duration::from_secs(3600);

/// The body of a malformed answer that is not JSON at all.
pub const NOT_JSON_BODY: &str = "<html>oops</html>";

/// A part's standing faults; the default is none. In JSON (the control endpoint) every field
/// is optional and durations are written as `humantime` reads them (`"100ms"`, `"10s"`;
/// `"0s"` is off); a `PUT` replaces all settings, so a field left out is off.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FaultSettings {
    /// This fraction of requests (0–1, chosen at random) is answered 503 with the kind's own
    /// server-error body.
    pub error_rate: f64,
    /// Added before every answer.
    #[serde(with = "humantime_serde")]
    pub latency: Duration,
    /// Every session expires this long after its login, however much it is used (on the
    /// part's clock); `0s` leaves only the idle timeout.
    #[serde(with = "humantime_serde")]
    pub session_expiry: Duration,
    /// This fraction of successful JSON answers of authenticated routes (not logins) is
    /// broken, in turn: truncated, not JSON ([`NOT_JSON_BODY`]), valid JSON of the wrong
    /// shape (the answer wrapped in `{"value": ...}`).
    pub malformed_rate: f64,
    /// New connections are closed at once, and open ones at their next request.
    pub refuse_connections: bool,
    /// Connections are accepted and requests never answered, until this is turned off (they
    /// then go on) or the part stops.
    pub blackhole: bool,
    /// Each request is handled in full (its side effects done) and only then answered, this
    /// much later.
    #[serde(with = "humantime_serde")]
    pub delay_after_handling: Duration,
}

/// Settings that cannot be applied; the message names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidFaults(pub String);

impl FaultSettings {
    /// Parses and validates settings sent as JSON.
    pub fn from_json(body: &[u8]) -> Result<FaultSettings, InvalidFaults> {
        let settings: FaultSettings = serde_json::from_slice(body)
            .map_err(|e| InvalidFaults(format!("the body is not fault settings: {e}")))?;
        settings.validate()?;
        Ok(settings)
    }

    /// Rates between 0 and 1, delays at most [`MAX_DELAY`], and not both
    /// `refuse_connections` and `blackhole`.
    pub fn validate(&self) -> Result<(), InvalidFaults> {
        for (field, rate) in [
            ("error_rate", self.error_rate),
            ("malformed_rate", self.malformed_rate),
        ] {
            if !(0.0..=1.0).contains(&rate) {
                return Err(InvalidFaults(format!(
                    "{field} must be between 0 and 1 (a fraction of requests), got {rate}"
                )));
            }
        }
        for (field, delay) in [
            ("latency", self.latency),
            ("delay_after_handling", self.delay_after_handling),
        ] {
            if delay > MAX_DELAY {
                return Err(InvalidFaults(format!(
                    "{field} must be at most {}, got {}",
                    humantime::format_duration(MAX_DELAY),
                    humantime::format_duration(delay)
                )));
            }
        }
        if self.refuse_connections && self.blackhole {
            return Err(InvalidFaults(
                "refuse_connections and blackhole exclude each other: set one".to_string(),
            ));
        }
        Ok(())
    }

    /// Whether any fault is on.
    pub fn any(&self) -> bool {
        *self != FaultSettings::default()
    }
}

/// What the standing faults did to a part so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct FaultCounts {
    /// Requests answered 503 by `error_rate`.
    pub errors: u64,
    /// Answers broken by `malformed_rate`.
    pub malformed: u64,
    /// Sessions refused because they were older than `session_expiry`.
    pub sessions_expired: u64,
    /// Connections closed by `refuse_connections` (new ones at once, open ones at their next
    /// request).
    pub connections_refused: u64,
    /// Connections and requests held by `blackhole`.
    pub blackholed: u64,
}

#[derive(Default)]
struct Counters {
    errors: AtomicU64,
    malformed: AtomicU64,
    sessions_expired: AtomicU64,
    connections_refused: AtomicU64,
    blackholed: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

struct Inner {
    settings: watch::Sender<FaultSettings>,
    /// `settings.refuse_connections`, read on every read and write of every connection.
    refusing: AtomicBool,
    counters: Counters,
    /// Which kind of broken body comes next.
    malformed_turn: AtomicU64,
}

/// A part's standing faults: its current [`FaultSettings`] and what they did. Cheap to clone;
/// clones share the settings.
#[derive(Clone)]
pub struct StandingFaults {
    inner: Arc<Inner>,
}

impl Default for StandingFaults {
    fn default() -> Self {
        StandingFaults {
            inner: Arc::new(Inner {
                settings: watch::Sender::new(FaultSettings::default()),
                refusing: AtomicBool::new(false),
                counters: Counters::default(),
                malformed_turn: AtomicU64::new(0),
            }),
        }
    }
}

impl StandingFaults {
    /// The settings now.
    pub fn get(&self) -> FaultSettings {
        self.inner.settings.borrow().clone()
    }

    /// Replaces the settings after validating them (invalid ones change nothing).
    pub fn set(&self, settings: FaultSettings) -> Result<(), InvalidFaults> {
        settings.validate()?;
        self.inner
            .refusing
            .store(settings.refuse_connections, Ordering::Relaxed);
        self.inner.settings.send_replace(settings);
        Ok(())
    }

    pub fn counts(&self) -> FaultCounts {
        let c = &self.inner.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        FaultCounts {
            errors: get(&c.errors),
            malformed: get(&c.malformed),
            sessions_expired: get(&c.sessions_expired),
            connections_refused: get(&c.connections_refused),
            blackholed: get(&c.blackholed),
        }
    }

    /// Whether open connections are to be closed now.
    pub fn refusing(&self) -> bool {
        self.inner.refusing.load(Ordering::Relaxed)
    }

    pub(super) fn count_refused(&self) {
        bump(&self.inner.counters.connections_refused);
    }

    pub(super) fn count_expired(&self) {
        bump(&self.inner.counters.sessions_expired);
    }

    /// A new connection: `Err` when it is to be refused; held while `blackhole` is on.
    pub(super) async fn admit_connection(&self) -> std::io::Result<()> {
        let mut rx = self.inner.settings.subscribe();
        let mut held = false;
        loop {
            let (refuse, hole) = {
                let s = rx.borrow_and_update();
                (s.refuse_connections, s.blackhole)
            };
            if refuse {
                self.count_refused();
                return Err(std::io::ErrorKind::ConnectionRefused.into());
            }
            if !hole {
                return Ok(());
            }
            if !held {
                held = true;
                bump(&self.inner.counters.blackholed);
            }
            if rx.changed().await.is_err() {
                // The part is gone.
                return Err(std::io::ErrorKind::ConnectionAborted.into());
            }
        }
    }

    /// Holds a request while `blackhole` is on (the part stopping drops it).
    pub(super) async fn hold_while_blackholed(&self) {
        let mut rx = self.inner.settings.subscribe();
        if !rx.borrow_and_update().blackhole {
            return;
        }
        bump(&self.inner.counters.blackholed);
        let _ = rx.wait_for(|s| !s.blackhole).await;
    }

    /// Whether this request is answered 503 (counted when it is).
    pub(super) fn draw_error(&self, settings: &FaultSettings) -> bool {
        let hit = draw(settings.error_rate);
        if hit {
            bump(&self.inner.counters.errors);
        }
        hit
    }

    /// `resp` broken at `malformed_rate` when it is a successful answer with a JSON body.
    pub(super) async fn maybe_malform(&self, settings: &FaultSettings, resp: Response) -> Response {
        let json = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.contains("json"));
        if !resp.status().is_success() || !json || !draw(settings.malformed_rate) {
            return resp;
        }
        let (mut parts, body) = resp.into_parts();
        let Ok(body) = axum::body::to_bytes(body, usize::MAX).await else {
            return Response::from_parts(parts, Body::empty());
        };
        if body.is_empty() {
            return Response::from_parts(parts, Body::from(body));
        }
        bump(&self.inner.counters.malformed);
        let turn = self.inner.malformed_turn.fetch_add(1, Ordering::Relaxed);
        let broken = malformed(turn, &body);
        parts.headers.remove(header::CONTENT_LENGTH);
        if broken.starts_with(b"<") {
            parts
                .headers
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
        }
        Response::from_parts(parts, Body::from(broken))
    }
}

/// True with probability `rate` (never at 0, always at 1).
fn draw(rate: f64) -> bool {
    rate > 0.0 && fastrand::f64() < rate
}

/// The `turn`-th kind of broken body for a JSON answer `body`: its first half, a page that is
/// not JSON, or the answer wrapped in `{"value": ...}` (valid JSON, wrong shape).
pub fn malformed(turn: u64, body: &[u8]) -> Vec<u8> {
    match turn % 3 {
        0 => body[..body.len() / 2].to_vec(),
        1 => NOT_JSON_BODY.as_bytes().to_vec(),
        _ => [br#"{"value":"#.as_slice(), body, b"}"].concat(),
    }
}

#[cfg(test)]
mod tests {
    use http::{Method, StatusCode};
    use serde_json::json;

    use super::*;
    use crate::simulator::part::probe::Probe;
    use crate::simulator::vapi::{Endpoint, SESSION_HEADER};
    use crate::simulator::{Fault, SimOptions, VcenterSim, cloud_director, script_runtime};

    type Vcenter = Endpoint<crate::simulator::vcenter::Vcenter>;

    fn on<K: crate::simulator::part::Kind>(p: &Probe<K>, settings: FaultSettings) {
        p.ctx.core.standing.set(settings).unwrap();
    }

    fn errors_at(rate: f64) -> FaultSettings {
        FaultSettings {
            error_rate: rate,
            ..FaultSettings::default()
        }
    }

    #[tokio::test]
    async fn the_error_rate_answers_503_in_each_kinds_own_error_body_after_queued_faults() {
        let vc = Probe::<Vcenter>::new();
        on(&vc, errors_at(1.0));
        let (_, status, body) = vc.call_json(Method::POST, "/api/session", None).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["error_type"], "SERVICE_UNAVAILABLE");
        // A queued one-shot fault comes first.
        vc.ctx.core.faults.push(
            "*",
            Fault::Status {
                status: 418,
                body: "{}".into(),
            },
        );
        let (_, status, _) = vc.call(Method::POST, "/api/session", None).await;
        assert_eq!(status, StatusCode::IM_A_TEAPOT);
        assert_eq!(vc.ctx.core.standing.counts().errors, 1);

        let vcd = Probe::<cloud_director::CloudDirector>::new();
        on(&vcd, errors_at(1.0));
        let (_, status, body) = vcd.call_json(Method::GET, "/api/task/x", None).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["majorErrorCode"], 503);
        assert_eq!(body["minorErrorCode"], "SERVICE_UNAVAILABLE");
        let (_, _, body) = vcd
            .call_json(Method::POST, "/cloudapi/1.0.0/sessions", None)
            .await;
        assert_eq!(body["minorErrorCode"], "SERVICE_UNAVAILABLE");
        assert!(
            body.get("majorErrorCode").is_none(),
            "cloudapi body: {body}"
        );

        let srs = Probe::<script_runtime::ScriptRuntime>::new();
        on(&srs, errors_at(1.0));
        let (_, status, body) = srs.call_json(Method::GET, "/api/runspaces", None).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["code"], 503);
        assert!(body["error_message"].is_string());
        on(&srs, errors_at(0.0));
        let (_, status, _) = srs.call(Method::GET, "/api/runspaces", None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "off again");
    }

    #[tokio::test]
    async fn malformed_answers_take_turns_on_authenticated_routes_only() {
        let p = Probe::<Vcenter>::new();
        let sid = p.login();
        let session = Some((SESSION_HEADER, sid.as_str()));
        let (_, _, good) = p.call(Method::GET, "/api/session", session).await;
        on(
            &p,
            FaultSettings {
                malformed_rate: 1.0,
                ..FaultSettings::default()
            },
        );
        let mut broken = Vec::new();
        for _ in 0..3 {
            let (_, status, body) = p.call(Method::GET, "/api/session", session).await;
            assert_eq!(status, StatusCode::OK);
            broken.push(body);
        }
        assert_eq!(broken[0], good[..good.len() / 2]);
        assert_eq!(broken[1], NOT_JSON_BODY.as_bytes());
        let wrapped: serde_json::Value = serde_json::from_slice(&broken[2]).unwrap();
        let good: serde_json::Value = serde_json::from_slice(&good).unwrap();
        assert_eq!(wrapped, json!({ "value": good }));
        // Logins (public) and errors stay whole.
        let (_, status, login) = p.call_json(Method::POST, "/api/session", None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(login["error_type"], "UNAUTHENTICATED");
        let (_, status, missing) = p
            .call_json(Method::GET, "/api/cis/tasks/nope", session)
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(missing["error_type"], "NOT_FOUND");
        assert_eq!(p.ctx.core.standing.counts().malformed, 3);
    }

    #[tokio::test]
    async fn sessions_expire_through_the_guard() {
        let p = Probe::<Vcenter>::new();
        let sid = p.login();
        let session = Some((SESSION_HEADER, sid.as_str()));
        on(
            &p,
            FaultSettings {
                session_expiry: Duration::from_secs(10),
                ..FaultSettings::default()
            },
        );
        p.ctx.core.clock.advance(Duration::from_secs(9));
        let (_, status, _) = p.call(Method::GET, "/api/session", session).await;
        assert_eq!(status, StatusCode::OK);
        p.ctx.core.clock.advance(Duration::from_secs(1));
        let (_, status, body) = p.call_json(Method::GET, "/api/session", session).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(body["error_type"], "UNAUTHENTICATED");
    }

    #[tokio::test(start_paused = true)]
    async fn latency_and_delay_after_handling_hold_the_answer() {
        let p = Probe::<Vcenter>::new();
        on(
            &p,
            FaultSettings {
                latency: Duration::from_secs(3),
                delay_after_handling: Duration::from_secs(4),
                ..FaultSettings::default()
            },
        );
        p.ctx
            .core
            .faults
            .push("*", Fault::DelayAfter(Duration::from_secs(5)));
        let started = tokio::time::Instant::now();
        let (_, status, _) = p.call(Method::POST, "/api/session", None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(started.elapsed(), Duration::from_secs(12), "paused time");
    }

    /// A vCenter part with a manual clock and its login request.
    async fn vcenter() -> (VcenterSim, reqwest::RequestBuilder) {
        let opts = SimOptions {
            clock: crate::simulator::SimClock::manual(),
            ..SimOptions::default()
        };
        let sim = VcenterSim::start(&opts).await.unwrap();
        let login = reqwest::Client::new()
            .post(format!("{}/api/session", sim.url()))
            .basic_auth(sim.username(), Some(sim.password()));
        (sim, login)
    }

    fn send(rb: &reqwest::RequestBuilder) -> impl Future<Output = reqwest::Result<u16>> + use<> {
        let rb = rb.try_clone().expect("no streaming body");
        async move { rb.send().await.map(|r| r.status().as_u16()) }
    }

    #[tokio::test]
    async fn refused_connections_close_new_and_open_ones_until_turned_off() {
        let (sim, login) = vcenter().await;
        assert_eq!(send(&login).await.unwrap(), 201, "a pooled connection now");
        let refuse = FaultSettings {
            refuse_connections: true,
            ..FaultSettings::default()
        };
        sim.set_faults(refuse).unwrap();
        // The open connection ends at its next request, a new one at once.
        assert!(send(&login).await.is_err());
        assert!(send(&login).await.is_err());
        let mut raw = tokio::net::TcpStream::connect(sim.url().trim_start_matches("http://"))
            .await
            .unwrap();
        let mut buf = [0u8; 16];
        let read = tokio::io::AsyncReadExt::read(&mut raw, &mut buf).await;
        assert!(matches!(read, Ok(0) | Err(_)), "closed: {read:?}");
        assert!(sim.fault_counts().connections_refused >= 3);
        sim.set_faults(FaultSettings::default()).unwrap();
        assert_eq!(send(&login).await.unwrap(), 201);
    }

    #[tokio::test]
    async fn a_blackhole_holds_new_and_open_connections_until_turned_off() {
        let (sim, login) = vcenter().await;
        assert_eq!(send(&login).await.unwrap(), 201, "a pooled connection now");
        let hole = FaultSettings {
            blackhole: true,
            ..FaultSettings::default()
        };
        sim.set_faults(hole).unwrap();
        let on_open = tokio::spawn(send(&login));
        let fresh = reqwest::Client::new()
            .post(format!("{}/api/session", sim.url()))
            .basic_auth(sim.username(), Some(sim.password()));
        let on_new = tokio::spawn(send(&fresh));
        // Both reach the part and are held: nothing answers them.
        for _ in 0..500 {
            if sim.fault_counts().blackholed >= 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(sim.fault_counts().blackholed, 2);
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!on_open.is_finished() && !on_new.is_finished());
        // Turned off, they go on.
        sim.set_faults(FaultSettings::default()).unwrap();
        assert_eq!(on_open.await.unwrap().unwrap(), 201);
        assert_eq!(on_new.await.unwrap().unwrap(), 201);
        assert_eq!(sim.logins(), 3);
    }

    #[test]
    fn settings_read_humantime_json_and_refuse_bad_values() {
        let s = FaultSettings::from_json(
            br#"{"error_rate":0.2,"latency":"100ms","session_expiry":"10s","blackhole":true}"#,
        )
        .unwrap();
        assert_eq!(
            s,
            FaultSettings {
                error_rate: 0.2,
                latency: Duration::from_millis(100),
                session_expiry: Duration::from_secs(10),
                blackhole: true,
                ..FaultSettings::default()
            }
        );
        // What GET answers is what PUT takes.
        let written = serde_json::to_vec(&s).unwrap();
        assert_eq!(FaultSettings::from_json(&written).unwrap(), s);
        assert_eq!(
            FaultSettings::from_json(b"{}").unwrap(),
            FaultSettings::default()
        );

        let refused = |body: &str| match FaultSettings::from_json(body.as_bytes()) {
            Err(InvalidFaults(msg)) => msg,
            Ok(s) => panic!("{body} was taken: {s:?}"),
        };
        assert!(refused(r#"{"error_rate":1.5}"#).contains("error_rate must be between 0 and 1"));
        assert!(refused(r#"{"malformed_rate":-0.1}"#).contains("malformed_rate"));
        assert!(refused(r#"{"latency":"2h"}"#).contains("latency must be at most 1h"));
        assert!(refused(r#"{"delay_after_handling":"2h"}"#).contains("delay_after_handling"));
        assert!(refused(r#"{"latency":100}"#).contains("the body is not fault settings"));
        assert!(refused(r#"{"latency":"soon"}"#).contains("the body is not fault settings"));
        assert!(refused(r#"{"eror_rate":0.1}"#).contains("unknown field `eror_rate`"));
        assert!(refused(r#"{"refuse_connections":true,"blackhole":true}"#).contains("exclude"));
        assert!(refused("not json").contains("the body is not fault settings"));
        assert!(refused(r#"{"latency":"99999999999999999999y"}"#).contains("not fault settings"));
        // NaN cannot come as JSON but can from a flag.
        let nan = FaultSettings {
            error_rate: f64::NAN,
            ..FaultSettings::default()
        };
        assert!(nan.validate().is_err());
    }

    #[test]
    fn invalid_settings_change_nothing() {
        let faults = StandingFaults::default();
        let good = FaultSettings {
            refuse_connections: true,
            ..FaultSettings::default()
        };
        faults.set(good.clone()).unwrap();
        assert!(faults.refusing());
        let bad = FaultSettings {
            error_rate: 2.0,
            ..FaultSettings::default()
        };
        assert!(faults.set(bad).is_err());
        assert_eq!(faults.get(), good);
        assert!(faults.refusing());
    }

    #[test]
    fn the_error_rate_is_the_fraction_of_requests_hit() {
        let faults = StandingFaults::default();
        let at = |rate: f64| FaultSettings {
            error_rate: rate,
            ..FaultSettings::default()
        };
        let hits = |s: &FaultSettings| (0..1000).filter(|_| faults.draw_error(s)).count();
        assert_eq!(hits(&at(0.0)), 0);
        assert_eq!(hits(&at(1.0)), 1000);
        // 200 expected; 6 standard deviations either side.
        let fifth = hits(&at(0.2));
        assert!((120..=280).contains(&fifth), "{fifth} of 1000");
        assert_eq!(faults.counts().errors, 1000 + fifth as u64);
    }

    #[test]
    fn broken_bodies_take_turns_and_none_is_the_answer() {
        let body = br#"{"a":[1,2,3]}"#;
        let kinds: Vec<Vec<u8>> = (0..3).map(|t| malformed(t, body)).collect();
        assert_eq!(kinds[0], br#"{"a":["#);
        assert_eq!(kinds[1], NOT_JSON_BODY.as_bytes());
        assert_eq!(kinds[2], br#"{"value":{"a":[1,2,3]}}"#);
        assert!(serde_json::from_slice::<serde_json::Value>(&kinds[0]).is_err());
        assert!(serde_json::from_slice::<serde_json::Value>(&kinds[1]).is_err());
        assert!(serde_json::from_slice::<serde_json::Value>(&kinds[2]).is_ok());
        assert_eq!(malformed(3, body), kinds[0]);
        assert_eq!(malformed(0, b"7"), b"");
    }
}
