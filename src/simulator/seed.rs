//! Seed task mixes as data. Each kind keeps its demo tasks as rows of a TOML table (`seed.toml`
//! next to the kind's code, one `[[task]]` per task) and this one loader turns the rows into
//! [`TaskSpec`]s, so a seed file says *which* tasks exist and never repeats *how* a spec is
//! built.
//!
//! A row's keys are the [`TaskSpec`] fields (`id`, `service`, `operation`, `description`,
//! `target = [type, id]`, `user`, `parent`, `cancelable`, `age`, `vc_task`, `extra`) plus:
//! - `steps`: the script, one string a step: `"<at> <phase>"` where `<at>` is a humantime
//!   duration (`0s`, `95s`, `2h`) and `<phase>` is `pending`, `running <from>-<to>`,
//!   `blocked`, `succeeded` or `failed`;
//! - `result`: what a `succeeded` step carries (any TOML value, rendered as JSON);
//! - `error = [type, message]`: what a `failed` step carries; `causes = [[id, message], ..]`:
//!   the further messages of the failure.

use std::time::Duration;

use serde::Deserialize;
use serde_json::{Map, Value};

use super::tasks::{Phase, Step, TaskSpec, TaskStore};

/// One `[[task]]` row.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Row {
    id: String,
    service: String,
    operation: String,
    description: String,
    steps: Vec<String>,
    result: Option<Value>,
    error: Option<(String, String)>,
    #[serde(default)]
    causes: Vec<(String, String)>,
    target: Option<(String, String)>,
    user: Option<String>,
    parent: Option<String>,
    #[serde(default)]
    cancelable: bool,
    #[serde(default, with = "humantime_serde")]
    age: Duration,
    vc_task: Option<String>,
    #[serde(default)]
    extra: Map<String, Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Table {
    task: Vec<Row>,
}

/// Adds every task of the seed table `toml` to `store`. The tables are compiled in and each
/// kind's tests load its own, so a broken table fails the tests; at run time it is logged and
/// the simulator runs without seed tasks rather than refusing to start.
pub fn add_all(store: &TaskStore, kind: &str, toml: &str) {
    match specs(toml) {
        Ok(specs) => {
            for spec in specs {
                store.add(spec);
            }
        }
        Err(e) => tracing::error!("the {kind} seed table is broken: {e}"),
    }
}

/// The specs of the seed table `toml`, in row order.
pub fn specs(toml: &str) -> Result<Vec<TaskSpec>, String> {
    let table: Table = toml::from_str(toml).map_err(|e| e.to_string())?;
    table.task.into_iter().map(spec).collect()
}

fn spec(row: Row) -> Result<TaskSpec, String> {
    let steps = row
        .steps
        .iter()
        .map(|s| step(s, &row).map_err(|e| format!("task {}: step '{s}': {e}", row.id)))
        .collect::<Result<Vec<_>, _>>()?;
    let mut spec = TaskSpec::new(&row.service, &row.operation, &row.description, steps)
        .with_id(&row.id)
        .aged(row.age);
    spec.target = row.target;
    spec.user = row.user;
    spec.parent = row.parent;
    spec.cancelable = row.cancelable;
    spec.vc_task = row.vc_task;
    spec.error_causes = row.causes;
    spec.extra = row.extra;
    Ok(spec)
}

/// Parses `"<at> <phase>"`; a terminal phase takes its payload from the row.
fn step(text: &str, row: &Row) -> Result<Step, String> {
    let mut words = text.split_whitespace();
    let at = words.next().ok_or("empty step")?;
    let at = humantime::parse_duration(at).map_err(|e| e.to_string())?;
    let phase = match (words.next(), words.next()) {
        (Some("pending"), None) => Phase::Pending,
        (Some("blocked"), None) => Phase::Blocked,
        (Some("running"), Some(range)) => {
            let (from, to) = range.split_once('-').ok_or("running needs <from>-<to>")?;
            let percent = |p: &str| p.parse::<u32>().map_err(|e| e.to_string());
            Phase::Running {
                from: percent(from)?,
                to: percent(to)?,
            }
        }
        (Some("succeeded"), None) => Phase::Succeeded {
            result: row.result.clone(),
        },
        (Some("failed"), None) => {
            let (error_type, message) = row.error.clone().ok_or("failed needs the row's error")?;
            Phase::Failed {
                error_type,
                message,
            }
        }
        _ => return Err("unknown phase".into()),
    };
    match words.next() {
        Some(extra) => Err(format!("unexpected '{extra}'")),
        None => Ok(Step::new(at, phase)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROW: &str = r#"
        [[task]]
        id = "t-1"
        service = "s"
        operation = "op"
        description = "d"
        steps = ["0s pending", "1m running 10-90", "2m failed"]
        error = ["NOT_FOUND", "gone"]
        causes = [["x.cause", "because"]]
        target = ["VirtualMachine", "vm-1"]
        age = "30s"
        extra = { owner = "o" }
    "#;

    #[test]
    fn a_row_becomes_a_spec() {
        let specs = specs(ROW).unwrap_or_default();
        let [spec] = specs.as_slice() else {
            panic!("{specs:?}")
        };
        assert_eq!(spec.id.as_deref(), Some("t-1"));
        assert_eq!(spec.steps.len(), 3);
        assert!(matches!(
            spec.steps[1].phase,
            Phase::Running { from: 10, to: 90 }
        ));
        assert_eq!(spec.steps[2].at, Duration::from_secs(120));
        assert!(
            matches!(&spec.steps[2].phase, Phase::Failed { error_type, .. } if error_type == "NOT_FOUND")
        );
        assert_eq!(spec.error_causes.len(), 1);
        assert_eq!(spec.age, Duration::from_secs(30));
        assert_eq!(spec.extra["owner"], "o");
        assert!(!spec.cancelable && spec.user.is_none());
    }

    #[test]
    fn broken_rows_are_named() {
        for (bad, why) in [
            ("\"2m failed\"", "error"),
            ("\"1m running 10\"", "running needs"),
            ("\"1m sleeping\"", "unknown phase"),
            ("\"1m running 1-2 now\"", "unexpected"),
            ("\"soon blocked\"", "step 'soon blocked'"),
        ] {
            let toml = format!(
                "[[task]]\nid = \"t-9\"\nservice = \"s\"\noperation = \"o\"\n\
                 description = \"d\"\nsteps = [{bad}]\n"
            );
            let err = specs(&toml).err().unwrap_or_default();
            assert!(
                err.contains("task t-9") && err.contains(why),
                "{bad}: {err}"
            );
        }
        assert!(specs("[[task]]\nid = 1\n").is_err());
    }
}
