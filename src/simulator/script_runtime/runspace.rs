//! A runspace of the simulated SRS and its wire JSON: state computed from the clock
//! (`creating`, then `ready` or `error`), absent values omitted, .NET round-trip datetimes in
//! the server's local zone; and the two seeded runspaces.

use std::time::Duration;

use chrono::{DateTime, FixedOffset, Offset as _, Utc};
use serde_json::{Map, Value, json};

use super::{SRS_DEMO_ERROR_RUNSPACE, SRS_DEMO_READY_RUNSPACE};
use crate::simulator::clock::SimClock;
use crate::simulator::ids;

/// The server writes local time; a fixed +03:00 keeps the offset visible and the output stable.
fn local_offset() -> FixedOffset {
    FixedOffset::east_opt(3 * 3600).unwrap_or_else(|| Utc.fix())
}

#[derive(Debug, Clone)]
pub(super) struct Runspace {
    pub(super) id: String,
    pub(super) owner: String,
    /// The API key it was created with (`None` for seeded ones); logout deletes by it.
    pub(super) api_key: Option<String>,
    pub(super) name: Option<String>,
    pub(super) run_vc_connection_script: bool,
    /// Ends in `error` instead of `ready`.
    pub(super) fails: bool,
    /// Clock time at which it leaves `creating`.
    pub(super) settles_at: Duration,
    /// Wall time of create (kept apart so seeded runspaces can lie before the clock's epoch).
    pub(super) creation_wall: DateTime<Utc>,
    pub(super) script_id: String,
}

impl Runspace {
    /// The wire JSON at clock time `now`; absent values are omitted, never `null`.
    pub(super) fn render(&self, now: Duration) -> Value {
        let mut out = Map::new();
        if let Some(name) = &self.name {
            out.insert("name".into(), json!(name));
        }
        out.insert("id".into(), json!(self.id));
        let state = match (now >= self.settles_at, self.fails) {
            (false, _) => "creating",
            (true, false) => "ready",
            (true, true) => "error",
        };
        out.insert("state".into(), json!(state));
        if state == "error" {
            out.insert(
                "error_details".into(),
                json!({
                    "code": 500,
                    "error_message": "Failed to start runspace container",
                    "details": format!(
                        "System.Exception: Container for runspace '{}' exited during start-up.\n   at VMware.ScriptRuntimeService.Runspace.Impl.MultiTenantRunspaceProvider.StartCreate()",
                        self.id
                    ),
                }),
            );
        }
        out.insert(
            "run_vc_connection_script".into(),
            json!(self.run_vc_connection_script),
        );
        if state == "ready" && self.run_vc_connection_script {
            out.insert("vc_connection_script_id".into(), json!(self.script_id));
        }
        out.insert(
            "creation_time".into(),
            json!(srs_datetime(self.creation_wall)),
        );
        Value::Object(out)
    }
}

/// .NET round-trip format in the server's local zone: 7 fraction digits and an offset,
/// e.g. `2024-05-02T11:20:31.5123456+03:00`.
pub fn srs_datetime(t: DateTime<Utc>) -> String {
    let local = t.with_timezone(&local_offset());
    format!(
        "{}.{:07}{}",
        local.format("%Y-%m-%dT%H:%M:%S"),
        local.timestamp_subsec_nanos() / 100,
        local.format("%:z")
    )
}

/// The demo runspaces of `owner`, settled at start: one `ready`, one in `error`.
pub(super) fn seeded(clock: &SimClock, owner: &str) -> Vec<Runspace> {
    let now = clock.now();
    let ago = |mins: i64| clock.wall(now) - chrono::Duration::minutes(mins);
    vec![
        Runspace {
            id: SRS_DEMO_READY_RUNSPACE.to_string(),
            owner: owner.to_string(),
            api_key: None,
            name: Some("demo-ready".to_string()),
            run_vc_connection_script: true,
            fails: false,
            settles_at: now,
            creation_wall: ago(60),
            script_id: "7f3e0c2a-91d4-4c0e-bb6f-2e8f1a9d3c55".to_string(),
        },
        Runspace {
            id: SRS_DEMO_ERROR_RUNSPACE.to_string(),
            owner: owner.to_string(),
            api_key: None,
            name: None,
            run_vc_connection_script: false,
            fails: true,
            settles_at: now,
            creation_wall: ago(30),
            script_id: ids::uuid(),
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulator::script_runtime::{
        FAIL_NAME_PREFIX, READY_AFTER, READY_AFTER_WITH_SCRIPT,
    };

    fn runspace(name: Option<&str>, run_script: bool, at: Duration) -> Runspace {
        Runspace {
            id: "a1b2c3d4e5f6".to_string(),
            owner: "u".to_string(),
            api_key: None,
            name: name.map(str::to_string),
            run_vc_connection_script: run_script,
            fails: name.is_some_and(|n| n.starts_with(FAIL_NAME_PREFIX)),
            settles_at: at
                + if run_script {
                    READY_AFTER_WITH_SCRIPT
                } else {
                    READY_AFTER
                },
            creation_wall: Utc::now(),
            script_id: "7f3e0c2a-91d4-4c0e-bb6f-2e8f1a9d3c55".to_string(),
        }
    }

    #[test]
    fn state_moves_from_creating_to_ready_or_error_over_the_clock() {
        let plain = runspace(None, false, Duration::ZERO);
        assert_eq!(
            plain.render(Duration::from_millis(2999))["state"],
            "creating"
        );
        assert_eq!(plain.render(READY_AFTER)["state"], "ready");
        let scripted = runspace(Some("nightly"), true, Duration::ZERO);
        let creating = scripted.render(Duration::from_secs(7));
        assert_eq!(creating["state"], "creating");
        assert!(creating.get("vc_connection_script_id").is_none());
        let ready = scripted.render(READY_AFTER_WITH_SCRIPT);
        assert_eq!(ready["state"], "ready");
        assert_eq!(
            ready["vc_connection_script_id"],
            "7f3e0c2a-91d4-4c0e-bb6f-2e8f1a9d3c55"
        );
        let failing = runspace(Some("fail-x"), false, Duration::ZERO);
        assert!(
            failing
                .render(Duration::ZERO)
                .get("error_details")
                .is_none()
        );
        let err = failing.render(READY_AFTER);
        assert_eq!(err["state"], "error");
        assert_eq!(err["error_details"]["code"], 500);
    }

    #[test]
    fn absent_fields_are_omitted_not_null() {
        let v = runspace(None, false, Duration::ZERO).render(Duration::ZERO);
        let keys: Vec<&str> = v
            .as_object()
            .map(|o| o.keys().map(String::as_str).collect())
            .unwrap_or_default();
        assert_eq!(
            keys,
            ["creation_time", "id", "run_vc_connection_script", "state"]
        );
    }

    #[test]
    fn creation_time_has_seven_fraction_digits_and_a_local_offset() {
        let t = crate::simulator::clock::utc("2024-05-02T08:20:31.512345678Z");
        assert_eq!(srs_datetime(t), "2024-05-02T11:20:31.5123456+03:00");
    }
}
