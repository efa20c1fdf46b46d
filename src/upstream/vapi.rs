//! What vCenter CIS tasks and the snapshot service share: the vAPI task `Info` wire shape,
//! its conversion to `Task`, the vAPI error body, the vAPI session login, and the one task
//! adapter (`VapiTasks`) that serves both, generic over the small [`Dialect`] trait that
//! `vsphere` and `snapservice` implement for what differs (paths, the list call, cancel).

use std::{future::Future, marker::PhantomData, sync::Arc};

use futures_util::{FutureExt, future::BoxFuture};
use http::Method;
use serde::Deserialize;
use serde_json::Value as Json;

use super::{
    http::{Endpoint, HttpClient, Reply},
    json::{MAX_NESTING, check_nesting, nests_deeper_than, timestamp_field, to_struct, to_value},
    session::{LoginFlow, Session, TokenSource, api_error},
    sessions::Sessions,
    source::{Batch, TaskSource},
};
use crate::{
    config::UpstreamConfig,
    error::{GatewayError, Reason, Result as GwResult, UpstreamError, UpstreamMessage},
    names::{check_id, resource_name, upstream_name},
    proto::{self, TaskFilter, TaskState},
};

/// The most tasks one vAPI list call may name or return.
pub const LIST_LIMIT: usize = 1000;

/// What one vAPI task API (vCenter CIS tasks, the snapshot service's tasks) does its own way;
/// everything else is [`VapiTasks`].
pub trait Dialect: Send + Sync + 'static {
    /// The upstream kind that speaks it.
    const KIND: proto::UpstreamKind;
    /// Where the service account logs in (`POST`) and out (`DELETE`).
    const SESSION_PATH: &'static str;
    /// `GET {TASKS_PATH}/{task}` reads a task.
    const TASKS_PATH: &'static str;
    /// One task, `{task}` standing for its id.
    const TASK_PATH: &'static str;
    /// False where the API has no cancel operation.
    const CAN_CANCEL: bool;

    /// One list call for `ids` (empty = by the other filter fields) and the vAPI `statuses`.
    fn list_call<'a>(
        session: &'a Session,
        ids: &'a [String],
        filter: &'a TaskFilter,
        statuses: &'a [&'a str],
    ) -> impl Future<Output = Result<Reply, UpstreamError>> + Send + 'a;

    /// The list answer as `(task id, Info)` pairs.
    fn list_items(
        upstream: &str,
        reply: &Reply,
        body: Json,
    ) -> Result<Vec<(String, Json)>, UpstreamError>;
}

/// The task adapter of every vAPI dialect.
pub struct VapiTasks<D> {
    sessions: Arc<Sessions>,
    dialect: PhantomData<D>,
}

impl<D: Dialect> VapiTasks<D> {
    pub fn new(sessions: Arc<Sessions>) -> Self {
        Self {
            sessions,
            dialect: PhantomData,
        }
    }

    fn upstream(&self) -> &str {
        self.sessions.service().http().upstream()
    }

    /// One task, its `upstream_payload` built only if `payload()` says so.
    async fn read(&self, id: &str, payload: impl Fn() -> bool) -> GwResult<proto::Task> {
        let at = Endpoint::with_id(D::TASK_PATH, id);
        let session = self.sessions.current()?;
        let reply = session.read(Method::GET, &at, |rb| rb).await?;
        let payload = payload();
        if !payload && let Some(task) = basic_task(self.upstream(), D::KIND, id, &reply.body) {
            return Ok(task);
        }
        let body = session.json(&reply, "task")?;
        let task = task_from_info_with(self.upstream(), D::KIND, id, body, reply.status, payload)?;
        Ok(task)
    }

    async fn list_tasks(&self, filter: &TaskFilter) -> GwResult<Vec<proto::Task>> {
        if filter.task_ids.is_empty() && filter.services.is_empty() {
            return Err(GatewayError::invalid(
                Reason::InvalidFilter,
                "filter",
                format!(
                    "{} lists tasks only by task ids or services: set filter.task_ids or filter.services",
                    D::KIND.as_str_name()
                ),
            ));
        }
        let session = self.sessions.current()?;
        let items = self
            .list_each(&session, filter)
            .await
            .map_err(too_many_matches)?;
        // A caller's list is all or nothing: one bad item fails it, named.
        Ok(items
            .into_iter()
            .map(|(_, task)| task)
            .collect::<Result<_, _>>()?)
    }

    /// The list calls for `filter` (in chunks of LIST_LIMIT ids), each item converted on its
    /// own so a batched poll can tell a bad item from a bad answer.
    async fn list_each(
        &self,
        session: &Session,
        filter: &TaskFilter,
    ) -> Result<Vec<(String, Result<proto::Task, UpstreamError>)>, UpstreamError> {
        let mut statuses: Vec<&str> = filter.states().flat_map(statuses_for).copied().collect();
        statuses.sort_unstable();
        statuses.dedup();
        // The upstream takes at most LIST_LIMIT ids per call; more are asked in chunks.
        let chunks: Vec<&[String]> = if filter.task_ids.is_empty() {
            vec![&[]]
        } else {
            filter.task_ids.chunks(LIST_LIMIT).collect()
        };
        let mut items = Vec::new();
        for ids in chunks {
            let reply = D::list_call(session, ids, filter, &statuses).await?;
            let body = session.json(&reply, "task list")?;
            for (id, info) in D::list_items(self.upstream(), &reply, body)? {
                let task = task_from_info(self.upstream(), D::KIND, &id, info, reply.status);
                items.push((id, task));
            }
        }
        Ok(items)
    }
}

/// vAPI answers RESOURCE_INACCESSIBLE when a list matches more than 1000 tasks.
fn too_many_matches(e: UpstreamError) -> GatewayError {
    if e.upstream_reason() == Some("RESOURCE_INACCESSIBLE") {
        GatewayError::refused(
            Reason::TooManyMatches,
            Some(&e.upstream),
            format!(
                "upstream '{}' refused the list: more than {LIST_LIMIT} tasks match; narrow the filter (task_ids, services, operations, states, users)",
                e.upstream
            ),
        )
    } else {
        e.into()
    }
}

impl<D: Dialect> TaskSource for VapiTasks<D> {
    fn get<'a>(&'a self, id: &'a str) -> BoxFuture<'a, GwResult<proto::Task>> {
        self.read(id, || true).boxed()
    }

    fn get_payload_if<'a>(
        &'a self,
        id: &'a str,
        payload: &'a (dyn Fn() -> bool + Send + Sync),
    ) -> BoxFuture<'a, GwResult<proto::Task>> {
        self.read(id, payload).boxed()
    }

    fn list<'a>(&'a self, filter: &'a TaskFilter) -> BoxFuture<'a, GwResult<Vec<proto::Task>>> {
        self.list_tasks(filter).boxed()
    }

    fn cancel<'a>(&'a self, id: &'a str) -> BoxFuture<'a, GwResult<()>> {
        async move {
            if !D::CAN_CANCEL {
                return Err(GatewayError::refused(
                    Reason::NotSupportedByUpstream,
                    Some(self.upstream()),
                    format!(
                        "upstream '{}' is of kind {} which has no cancel operation",
                        self.upstream(),
                        D::KIND.as_str_name()
                    ),
                ));
            }
            let at = Endpoint::with_id(D::TASK_PATH, id);
            self.sessions
                .current()?
                .call(Method::POST, &at, |rb| rb.query(&[("action", "cancel")]))
                .await?;
            Ok(())
        }
        .boxed()
    }

    fn supports_cancel(&self) -> bool {
        D::CAN_CANCEL
    }

    fn get_many<'a>(&'a self, ids: &'a [String]) -> BoxFuture<'a, GwResult<Batch<proto::Task>>> {
        async move {
            let filter = TaskFilter {
                task_ids: ids.to_vec(),
                ..Default::default()
            };
            let mut batch = Batch::default();
            let session = self.sessions.current()?;
            for (id, task) in self.list_each(&session, &filter).await? {
                match task {
                    Ok(t) => batch.found.push(t),
                    Err(e) => {
                        session.record_error(&e);
                        batch.failed.push((id, e.into()));
                    }
                }
            }
            Ok(batch)
        }
        .boxed()
    }

    fn batch_limit(&self) -> usize {
        LIST_LIMIT
    }
}

/// The session header of vAPI endpoints.
pub const SESSION_HEADER: &str = "vmware-api-session-id";

/// The vAPI session of dialect `D`: Basic login at its session path, logout by DELETE.
pub fn session<D: Dialect>(http: Arc<HttpClient>, cfg: &UpstreamConfig) -> Arc<Session> {
    let flow = LoginFlow {
        logout: Some((Method::DELETE, D::SESSION_PATH.to_string())),
        ..LoginFlow::new(
            D::SESSION_PATH,
            TokenSource::JsonStringBody,
            SESSION_HEADER,
            parse_error,
        )
    };
    Session::service_account(http, flow, cfg)
}

#[derive(Debug, Default, Deserialize)]
pub struct LocalizableMessage {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub default_message: String,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub localized: Option<String>,
    /// Named arguments (vSphere 7.0+); read so that a message carrying them is not an
    /// ignored field (see [`basic_task`]), otherwise unused.
    #[serde(default)]
    pub params: Option<Json>,
}

impl From<LocalizableMessage> for proto::LocalizableMessage {
    fn from(m: LocalizableMessage) -> Self {
        proto::LocalizableMessage {
            id: m.id,
            default_message: m.default_message,
            args: m.args,
            localized: m.localized.unwrap_or_default(),
        }
    }
}

impl From<&LocalizableMessage> for UpstreamMessage {
    fn from(m: &LocalizableMessage) -> Self {
        UpstreamMessage {
            id: m.id.clone(),
            default_message: m.default_message.clone(),
            localized: m.localized.clone(),
        }
    }
}

#[derive(Debug, Deserialize)]
struct DynamicId {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    id: String,
}

#[derive(Debug, Deserialize)]
struct Progress {
    total: i64,
    completed: i64,
    #[serde(default)]
    message: Option<LocalizableMessage>,
}

/// A vAPI error value (`Vapi.Std.Errors.Error`), in a task or as an error body.
#[derive(Debug, Default, Deserialize)]
struct VapiError {
    #[serde(default)]
    error_type: Option<String>,
    #[serde(default)]
    messages: Vec<LocalizableMessage>,
}

/// `Cis.Task.Info` / `Snapservice.Tasks.Info` (the latter adds `vc_task`).
#[derive(Debug, Deserialize)]
struct Info {
    #[serde(default)]
    description: Option<LocalizableMessage>,
    service: String,
    operation: String,
    #[serde(default)]
    parent: Option<String>,
    #[serde(default)]
    target: Option<DynamicId>,
    status: String,
    #[serde(default)]
    cancelable: bool,
    #[serde(default)]
    error: Option<VapiError>,
    #[serde(default)]
    start_time: Option<String>,
    #[serde(default)]
    end_time: Option<String>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    progress: Option<Progress>,
    #[serde(default)]
    vc_task: Option<String>,
    /// `result`, `null` included (an absent one is `None`).
    #[serde(default, deserialize_with = "present")]
    result: Option<Json>,
}

/// A field that is present, whatever its value (`null` too).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Json>, D::Error> {
    Json::deserialize(d).map(Some)
}

impl Info {
    /// The JSON values `Info` holds whole, each with the levels of arrays and objects above
    /// it (the `Info` object included) at most.
    fn json_values(&self) -> impl Iterator<Item = (usize, &Json)> {
        let messages = self
            .description
            .iter()
            .map(|m| (2, m))
            .chain(
                self.progress
                    .iter()
                    .flat_map(|p| p.message.iter().map(|m| (3, m))),
            )
            .chain(
                self.error
                    .iter()
                    .flat_map(|e| e.messages.iter().map(|m| (4, m))),
            );
        let params = messages.filter_map(|(above, m)| Some((above, m.params.as_ref()?)));
        self.result.iter().map(|r| (1, r)).chain(params)
    }
}

/// vAPI status → normalized state; FAILED with error type CANCELED is a cancellation.
pub fn state_of(status: &str, error_type: Option<&str>) -> TaskState {
    match status {
        "PENDING" => TaskState::Queued,
        "RUNNING" => TaskState::Running,
        "BLOCKED" => TaskState::Blocked,
        "SUCCEEDED" => TaskState::Succeeded,
        "FAILED" if error_type == Some("CANCELED") => TaskState::Cancelled,
        "FAILED" => TaskState::Failed,
        _ => TaskState::Unspecified,
    }
}

/// The vAPI statuses that can hold tasks of a normalized state (for upstream-side filtering;
/// the gateway filters the exact states afterwards).
pub fn statuses_for(state: TaskState) -> &'static [&'static str] {
    match state {
        TaskState::Queued => &["PENDING"],
        TaskState::Running => &["RUNNING"],
        TaskState::Blocked => &["BLOCKED"],
        TaskState::Succeeded => &["SUCCEEDED"],
        TaskState::Failed | TaskState::Cancelled => &["FAILED"],
        TaskState::Unspecified => &[],
    }
}

pub fn percent(total: i64, completed: i64) -> i32 {
    if total <= 0 {
        0
    } else {
        // In i128: `completed * 100` overflows i64 from 2^63 / 100 on.
        (i128::from(completed.clamp(0, total)) * 100 / i128::from(total)) as i32
    }
}

/// Converts one vAPI task `Info` (kept whole in `upstream_payload`) to a `Task`.
pub fn task_from_info(
    upstream: &str,
    kind: proto::UpstreamKind,
    id: &str,
    raw: Json,
    http_status: u16,
) -> Result<proto::Task, UpstreamError> {
    task_from_info_with(upstream, kind, id, raw, http_status, true)
}

/// [`task_from_info`], keeping the `Info` in `upstream_payload` only if `payload`.
fn task_from_info_with(
    upstream: &str,
    kind: proto::UpstreamKind,
    id: &str,
    raw: Json,
    http_status: u16,
    payload: bool,
) -> Result<proto::Task, UpstreamError> {
    let bad = |problem: String| {
        UpstreamError::bad_response(
            upstream,
            http_status,
            format!("task '{id}': {problem}"),
            raw.to_string().as_bytes(),
        )
    };
    let Json::Object(map) = &raw else {
        return Err(bad("is not a JSON object".into()));
    };
    check_nesting(&raw).map_err(bad)?;
    check_id(id).map_err(bad)?;
    let info = Info::deserialize(&raw).map_err(|e| bad(e.to_string()))?;
    task_of(upstream, kind, id, info, payload.then_some(map)).map_err(bad)
}

/// The BASIC view of a task (no `upstream_payload`) read from the answer's bytes straight
/// into `Info`, without the `serde_json::Value` that [`task_from_info_with`] builds first:
/// only when the answer is one JSON object of which `Info` reads every field (an ignored
/// field would go unchecked), nested no deeper than the general path allows, and a task
/// [`task_of`] accepts. `None` for anything else; the general path then reads the answer
/// and names the problem, so both paths give the same task or the same error.
fn basic_task(
    upstream: &str,
    kind: proto::UpstreamKind,
    id: &str,
    body: &[u8],
) -> Option<proto::Task> {
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') || check_id(id).is_err() {
        return None;
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let mut whole = true;
    let info: Info = serde_ignored::deserialize(&mut de, |_| whole = false).ok()?;
    de.end().ok()?;
    let shallow = info
        .json_values()
        .all(|(above, v)| !nests_deeper_than(v, MAX_NESTING - above));
    if !(whole && shallow) {
        return None;
    }
    task_of(upstream, kind, id, info, None).ok()
}

/// The `Task` of a task's `Info`, keeping `payload` (the whole `Info`) when given; `Err` is
/// the problem, for the caller to put in its error.
fn task_of(
    upstream: &str,
    kind: proto::UpstreamKind,
    id: &str,
    info: Info,
    payload: Option<&serde_json::Map<String, Json>>,
) -> Result<proto::Task, String> {
    // An empty parent is none; one that no name can carry is an error.
    let parent = match info.parent.as_deref() {
        None | Some("") => String::new(),
        Some(p) => {
            check_id(p).map_err(|e| format!("parent: {e}"))?;
            resource_name(upstream, "tasks", p)
        }
    };
    let error_type = info.error.as_ref().and_then(|e| e.error_type.clone());
    let state = state_of(&info.status, error_type.as_deref());
    let start_time = timestamp_field("start_time", info.start_time.as_deref())?;
    let end_time = timestamp_field("end_time", info.end_time.as_deref())?;
    let error = info.error.map(|e| proto::TaskError {
        r#type: e.error_type.unwrap_or_default(),
        message: e
            .messages
            .first()
            .map(|m| UpstreamMessage::from(m).text().to_string())
            .unwrap_or_default(),
        messages: e.messages.into_iter().map(Into::into).collect(),
        http_code: 0,
    });
    let progress = info.progress.map(|p| proto::TaskProgress {
        total: p.total,
        completed: p.completed,
        percent: percent(p.total, p.completed),
        message: p.message.map(Into::into),
    });
    Ok(proto::Task {
        name: resource_name(upstream, "tasks", id),
        upstream: upstream_name(upstream),
        kind: kind as i32,
        id: id.to_string(),
        state: state as i32,
        done: matches!(
            state,
            TaskState::Succeeded | TaskState::Failed | TaskState::Cancelled
        ),
        upstream_status: info.status,
        progress,
        description: info.description.map(Into::into),
        service: info.service,
        operation: info.operation,
        operation_name: String::new(),
        parent,
        target: info.target.map(|t| proto::TaskTarget {
            r#type: t.kind,
            id: t.id,
            name: String::new(),
        }),
        cancelable: info.cancelable,
        cancel_requested: false,
        start_time,
        end_time,
        expiry_time: None,
        user: info.user.unwrap_or_default(),
        organization: String::new(),
        details: String::new(),
        vcenter_tasks: info
            .vc_task
            .map(|id| proto::VcenterTaskRef {
                id,
                ..Default::default()
            })
            .into_iter()
            .collect(),
        subtasks: vec![],
        error,
        result: info.result.as_ref().map(to_value),
        upstream_payload: payload.map(to_struct),
    })
}

/// A non-2xx vAPI answer: `{"error_type", "messages"}` on `/api`, or the legacy `/rest`
/// `{"type": "com.vmware.vapi.std.errors.not_found", "value": {...}}`.
pub fn parse_error(upstream: &str, reply: &Reply) -> UpstreamError {
    #[derive(Deserialize)]
    struct Legacy {
        #[serde(rename = "type")]
        kind: String,
        #[serde(default)]
        value: VapiError,
    }
    let parsed = serde_json::from_slice::<VapiError>(&reply.body)
        .ok()
        .filter(|e| e.error_type.is_some())
        .or_else(|| {
            let l: Legacy = serde_json::from_slice(&reply.body).ok()?;
            let short = l.kind.rsplit('.').next()?.to_ascii_uppercase();
            Some(VapiError {
                error_type: Some(short),
                messages: l.value.messages,
            })
        });
    let named = parsed.and_then(|e| {
        let messages = e.messages.iter().map(Into::into).collect();
        Some((e.error_type?, messages))
    });
    api_error(upstream, reply, named)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_with_canceled_error_is_cancelled() {
        assert_eq!(state_of("FAILED", Some("CANCELED")), TaskState::Cancelled);
        assert_eq!(state_of("FAILED", Some("ERROR")), TaskState::Failed);
        assert_eq!(state_of("BLOCKED", None), TaskState::Blocked);
        assert_eq!(state_of("EXPLODED", None), TaskState::Unspecified);
    }

    #[test]
    fn unknown_status_is_kept_not_an_error() {
        let raw = serde_json::json!({"service": "s", "operation": "o", "status": "PAUSED", "cancelable": false,
            "description": {"id": "x", "default_message": "X", "args": []}});
        let t = task_from_info("vc1", proto::UpstreamKind::Vsphere, "t1", raw, 200).unwrap();
        assert_eq!(t.state(), TaskState::Unspecified);
        assert_eq!(t.upstream_status, "PAUSED");
        assert!(!t.done);
    }

    #[test]
    fn info_missing_required_fields_is_a_bad_response() {
        let raw = serde_json::json!({"status": "RUNNING"});
        let e = task_from_info("vc1", proto::UpstreamKind::Vsphere, "t1", raw, 200).unwrap_err();
        assert_eq!(e.code(), tonic::Code::Internal);
    }

    #[test]
    fn percent_rounds_down_and_survives_zero_total() {
        assert_eq!(percent(3, 2), 66);
        assert_eq!(percent(0, 5), 0);
        assert_eq!(percent(100, 150), 100);
    }

    #[test]
    fn percent_of_huge_counts_does_not_overflow() {
        // `completed * 100` overflowed i64: a panic in debug builds, a wrong value in release.
        assert_eq!(percent(92233720368547759, 92233720368547759), 100);
        assert_eq!(percent(i64::MAX, i64::MAX), 100);
        assert_eq!(percent(i64::MAX, i64::MAX / 2), 49);
    }

    #[test]
    fn a_huge_value_of_the_wrong_type_gives_an_error_a_client_can_receive() {
        // serde quoted the whole string in the message: past the 16 KiB a client takes in
        // headers, it saw "h2 protocol error" instead of UPSTREAM_BAD_RESPONSE.
        let raw = serde_json::json!({"service": "s", "operation": "o", "status": "RUNNING",
            "cancelable": "é".repeat(32 * 1024)});
        let e = task_from_info("vc1", proto::UpstreamKind::Vsphere, "t1", raw, 200).unwrap_err();
        let status = GatewayError::from(e).into_status("upstreams/vc1/tasks/t1");
        assert_eq!(status.code(), tonic::Code::Internal);
        assert!(status.message().len() < 1500, "{}", status.message().len());
        assert!(
            status
                .message()
                .contains("task 't1': invalid type: string \"éé")
        );
        assert!(status.message().ends_with("éé\", expected a boolean"));
    }

    #[test]
    fn ids_no_name_can_carry_are_a_bad_response() {
        // A list answer keyed by such an id gave a task whose name every call refused.
        let raw = serde_json::json!({"service": "s", "operation": "o", "status": "RUNNING",
            "cancelable": false});
        for id in ["", "a\u{7}b", &"a".repeat(1025)] {
            let e = task_from_info(
                "snap1",
                proto::UpstreamKind::Snapservice,
                id,
                raw.clone(),
                200,
            )
            .unwrap_err();
            assert_eq!(e.reason(), Reason::UpstreamBadResponse, "{id:?}");
        }
        let mut with_parent = raw;
        with_parent["parent"] = serde_json::json!("p\n1");
        let e = task_from_info(
            "vc1",
            proto::UpstreamKind::Vsphere,
            "t1",
            with_parent.clone(),
            200,
        );
        assert_eq!(e.unwrap_err().reason(), Reason::UpstreamBadResponse);
        with_parent["parent"] = serde_json::json!("");
        let t = task_from_info("vc1", proto::UpstreamKind::Vsphere, "t1", with_parent, 200);
        assert_eq!(t.unwrap().parent, "", "an empty parent is none");
    }

    #[test]
    fn info_nested_deeper_than_clients_decode_is_a_bad_response() {
        // A result nested 40 objects deep made a Task that prost (and C++, Java, Python
        // clients) refuse to decode: past 100 nested messages.
        let deep = (0..40).fold(
            serde_json::json!(1),
            |inner, _| serde_json::json!({"a": inner}),
        );
        let raw = serde_json::json!({"service": "s", "operation": "o", "status": "SUCCEEDED",
            "cancelable": false, "result": deep});
        let e = task_from_info("vc1", proto::UpstreamKind::Vsphere, "t1", raw, 200).unwrap_err();
        assert_eq!(e.reason(), Reason::UpstreamBadResponse);
        let text = GatewayError::from(e).to_string();
        assert!(text.contains("deeper than 32"), "{text}");
    }
}

#[cfg(test)]
mod proptests;
