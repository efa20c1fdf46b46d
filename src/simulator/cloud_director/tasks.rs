//! Cloud Director tasks: the legacy `/api/task/{uuid}` resource (get and cancel, scoped to
//! the session's org) and the TaskType JSON of `UPSTREAM_APIS.md` 5.3 rendered from engine
//! snapshots, with VCD's status strings and datetimes.

use axum::extract::{FromRequestParts, Path, State};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, FixedOffset, Offset as _, Utc};
use http::StatusCode;
use http::request::Parts;
use serde_json::{Value, json};

use super::auth::Caller;
use super::{
    CANCEL_DELAY, CloudDirector, MAX_NESTING, TASK_EXPIRY_DAYS, TASK_TYPE, legacy_error, vcd_json,
};
use crate::simulator::ids::{self, stable_uuid};
use crate::simulator::part::Shared;
use crate::simulator::tasks::{CANCELED_ERROR_TYPE, CancelRefusal, TaskSnapshot, TaskStatus};
use crate::simulator::web::empty;

pub(super) fn task_org(st: &CloudDirector, s: &TaskSnapshot) -> String {
    s.extra
        .get("org")
        .and_then(Value::as_str)
        .map_or_else(|| st.org.clone(), str::to_string)
}

/// A call on one legacy task by id: the id and the caller. A task of an org the caller does
/// not see answers like an unknown one (`403`, as VCD does not tell them apart).
pub(super) struct TaskCall {
    id: String,
    caller: Caller,
}

impl<S: Send + Sync> FromRequestParts<S> for TaskCall {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Response> {
        let caller = Caller::from_request_parts(parts, state).await?;
        let Path(id) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        Ok(TaskCall { id, caller })
    }
}

impl TaskCall {
    /// Whether `s` is the task this call names and the caller may see it.
    fn sees(&self, st: &CloudDirector, s: &TaskSnapshot) -> bool {
        s.id == self.id && self.caller.who.sees(&task_org(st, s))
    }

    fn not_visible(&self) -> Response {
        legacy_error(
            StatusCode::FORBIDDEN,
            "ACCESS_TO_RESOURCE_IS_FORBIDDEN",
            &format!(
                "[ {} ] Either you need some or all of the following rights [Task: View] to perform operations [TASK_VIEW] for urn:vcloud:task:{} or the target entity is invalid.",
                ids::uuid(),
                self.id
            ),
            Some(self.caller.version.as_str()),
        )
    }
}

/// `GET /api/task/{task}`.
pub(super) async fn task_get(State(st): State<Shared<CloudDirector>>, call: TaskCall) -> Response {
    let all = st.tasks.snapshots();
    match all.iter().find(|s| call.sees(&st, s)) {
        Some(s) => vcd_json(
            StatusCode::OK,
            &task_json(&st, s, &all, 0),
            &format!("{TASK_TYPE};version={}", call.caller.version),
        ),
        None => call.not_visible(),
    }
}

/// `POST /api/task/{task}/action/cancel`.
pub(super) async fn task_cancel(
    State(st): State<Shared<CloudDirector>>,
    call: TaskCall,
) -> Response {
    let id = call.id.as_str();
    if !st.tasks.snapshot(id).is_some_and(|s| call.sees(&st, &s)) {
        return call.not_visible();
    }
    let refuse = |msg: String| {
        legacy_error(
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
            &format!("[ {} ] {msg}", ids::uuid()),
            Some(call.caller.version.as_str()),
        )
    };
    match st.tasks.cancel_after(id, CANCEL_DELAY) {
        Ok(()) => empty(StatusCode::NO_CONTENT),
        Err(CancelRefusal::NotFound) => call.not_visible(),
        Err(CancelRefusal::Finished) => refuse(format!(
            "Task urn:vcloud:task:{id} has already finished and cannot be canceled."
        )),
        Err(CancelRefusal::NotCancelable) => {
            refuse(format!("Task urn:vcloud:task:{id} cannot be canceled."))
        }
    }
}

pub(super) fn is_aborted(s: &TaskSnapshot) -> bool {
    s.canceled
        || (s.status == TaskStatus::Failed
            && s.error
                .as_ref()
                .is_some_and(|e| e.error_type == CANCELED_ERROR_TYPE))
}

/// The VCD task status string of a snapshot.
pub fn vcd_status(s: &TaskSnapshot) -> &'static str {
    if is_aborted(s) {
        return "aborted";
    }
    match s.status {
        TaskStatus::Pending => "queued",
        TaskStatus::Blocked => "preRunning",
        TaskStatus::Running => "running",
        TaskStatus::Succeeded => "success",
        TaskStatus::Failed => "error",
    }
}

/// Fixed +02:00 zone of the simulated server.
fn zone() -> FixedOffset {
    FixedOffset::east_opt(2 * 3600).unwrap_or_else(|| Utc.fix())
}

/// Task time: milliseconds and a numeric offset without colon, `2024-03-06T14:11:57.473+0200`.
pub fn vcd_datetime(t: DateTime<Utc>) -> String {
    t.with_timezone(&zone())
        .format("%Y-%m-%dT%H:%M:%S%.3f%z")
        .to_string()
}

/// Query-record time: as [`vcd_datetime`] but the offset with colon (`+02:00`).
pub fn vcd_record_datetime(t: DateTime<Utc>) -> String {
    t.with_timezone(&zone())
        .format("%Y-%m-%dT%H:%M:%S%.3f%:z")
        .to_string()
}

fn reference(href: String, id: String, ty: &str, name: &str) -> Value {
    json!({"otherAttributes": {}, "href": href, "id": id, "type": ty, "name": name,
           "vCloudExtension": []})
}

/// href, urn, media type, name and kind of a task's owner (`target` of the spec).
pub(super) struct Owner {
    pub(super) href: String,
    pub(super) urn: String,
    pub(super) media: String,
    pub(super) name: String,
    pub(super) kind: String,
}

pub(super) fn owner(st: &CloudDirector, s: &TaskSnapshot) -> Option<Owner> {
    let (kind, id) = s.target.as_ref()?;
    let lower = kind.to_ascii_lowercase();
    // Real URNs carry the bare uuid: `vappTemplate-5c1d…` → `urn:vcloud:vapptemplate:5c1d…`.
    let bare = match id.split_once('-') {
        Some((prefix, rest)) if prefix.eq_ignore_ascii_case(&lower) => rest,
        _ => id.as_str(),
    };
    let path = match kind.as_str() {
        "vApp" | "vm" => format!("vApp/{id}"),
        "vAppTemplate" => format!("vAppTemplate/{id}"),
        other => format!("{other}/{id}"),
    };
    let name = s
        .extra
        .get("ownerName")
        .and_then(Value::as_str)
        .unwrap_or(id.as_str());
    Some(Owner {
        href: format!("{}/api/{path}", st.base()),
        urn: format!("urn:vcloud:{lower}:{bare}"),
        media: format!("application/vnd.vmware.vcloud.{kind}+xml"),
        name: name.to_string(),
        kind: kind.clone(),
    })
}

pub(super) fn org_href(st: &CloudDirector, org: &str) -> String {
    format!("{}/api/org/{}", st.base(), stable_uuid("org", org))
}

/// The legacy Error object (also used inside `task.error`).
pub(super) fn error_object(major: u16, minor: &str, message: &str, stack: Option<String>) -> Value {
    json!({
        "otherAttributes": {},
        "majorErrorCode": major,
        "minorErrorCode": minor,
        "message": message,
        "vendorSpecificErrorCode": null,
        "stackTrace": stack,
        "tenantError": null,
        "vCloudExtension": [],
    })
}

/// Renders a snapshot as TaskType JSON (section 5.3); `all` supplies nested subtasks.
pub(super) fn task_json(
    st: &CloudDirector,
    s: &TaskSnapshot,
    all: &[TaskSnapshot],
    depth: usize,
) -> Value {
    let href = format!("{}/api/task/{}", st.base(), s.id);
    let status = vcd_status(s);
    let org = task_org(st, s);
    let link = if s.cancelable {
        json!([{"otherAttributes": {}, "href": format!("{href}/action/cancel"), "id": null,
                "type": null, "name": "task", "rel": "task:cancel", "model": null,
                "vCloudExtension": []}])
    } else {
        json!([])
    };
    let owner = owner(st, s).map_or(Value::Null, |o| reference(o.href, o.urn, &o.media, &o.name));
    let user = s.user.as_ref().map_or(Value::Null, |u| {
        reference(
            format!("{}/api/admin/user/{}", st.base(), stable_uuid("user", u)),
            format!("urn:vcloud:user:{}", stable_uuid("user", u)),
            "application/vnd.vmware.admin.user+xml",
            u,
        )
    });
    let organization = reference(
        org_href(st, &org),
        format!("urn:vcloud:org:{}", stable_uuid("org", &org)),
        "application/vnd.vmware.vcloud.org+xml",
        &org,
    );
    let no_progress = s.extra.get("noProgress") == Some(&Value::Bool(true));
    let progress = if no_progress {
        Value::Null
    } else {
        json!(s.progress)
    };
    let error = match (&s.error, status) {
        (Some(e), "error") => {
            let major = s
                .extra
                .get("majorErrorCode")
                .and_then(Value::as_u64)
                .and_then(|m| u16::try_from(m).ok())
                .unwrap_or(500);
            let message = e.messages.first().map_or("", |(_, m)| m.as_str());
            let stack: Vec<String> = e
                .messages
                .iter()
                .skip(1)
                .map(|(id, m)| format!("Caused by: {id}: {m}"))
                .collect();
            let stack = (!stack.is_empty()).then(|| stack.join("\n"));
            error_object(major, &e.error_type, message, stack)
        }
        _ => Value::Null,
    };
    let result = match (&s.result, status) {
        (Some(r), "success") => {
            let content = r.as_str().map_or_else(|| r.to_string(), str::to_string);
            json!({"otherAttributes": {}, "resultContent": content, "resultReference": null,
                   "vCloudExtension": []})
        }
        _ => Value::Null,
    };
    let vc_tasks: Vec<Value> = s
        .extra
        .get("vcTasks")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .map(|t| {
                    let mut t = t.as_object().cloned().unwrap_or_default();
                    t.insert("otherAttributes".into(), json!({}));
                    t.entry("status").or_insert_with(|| json!(status));
                    t.insert(
                        "startTime".into(),
                        s.start_time.map_or(Value::Null, |t| json!(vcd_datetime(t))),
                    );
                    t.insert(
                        "endTime".into(),
                        s.end_time.map_or(Value::Null, |t| json!(vcd_datetime(t))),
                    );
                    t.insert("vCloudExtension".into(), json!([]));
                    Value::Object(t)
                })
                .collect()
        })
        .unwrap_or_default();
    let children: Vec<Value> = if depth < MAX_NESTING {
        all.iter()
            .filter(|c| c.parent.as_deref() == Some(s.id.as_str()))
            .map(|c| task_json(st, c, all, depth + 1))
            .collect()
    } else {
        Vec::new()
    };
    let tasks = if children.is_empty() {
        Value::Null
    } else {
        json!({"otherAttributes": {}, "task": children, "vCloudExtension": []})
    };
    let end = if matches!(status, "success" | "error" | "aborted") {
        s.end_time.map_or(Value::Null, |t| json!(vcd_datetime(t)))
    } else {
        Value::Null
    };
    json!({
        "otherAttributes": {},
        "link": link,
        "href": href,
        "type": TASK_TYPE,
        "id": format!("urn:vcloud:task:{}", s.id),
        "operationKey": null,
        "description": null,
        "tasks": tasks,
        "name": "task",
        "owner": owner,
        "error": error,
        "user": user,
        "organization": organization,
        "progress": progress,
        "params": null,
        "details": s.extra.get("details").and_then(Value::as_str).unwrap_or(""),
        "vcTaskList": {"otherAttributes": {}, "vcTask": vc_tasks, "vCloudExtension": []},
        "result": result,
        "status": status,
        "operation": s.description,
        "operationName": s.operation,
        "serviceNamespace": s.service,
        "startTime": vcd_datetime(s.queued_time),
        "endTime": end,
        "expiryTime": vcd_datetime(s.queued_time + chrono::Duration::days(TASK_EXPIRY_DAYS)),
        "cancelRequested": s.cancel_requested || is_aborted(s),
        "vCloudExtension": [],
    })
}
