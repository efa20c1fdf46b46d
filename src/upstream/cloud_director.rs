//! VMware Cloud Director tasks: login through `/cloudapi/1.0.0/sessions[/provider]` (or an
//! API token at the OAuth endpoint), the versioned `Accept` header, `GET /api/task/{uuid}`,
//! `POST /api/task/{uuid}/action/cancel`, and listing through the query service
//! (`/api/query?type=task|adminTask`, the gateway's filter as FIQL, the upstream's pages
//! walked with its own `page`/`pageSize`).
//!
//! The watch engine's batched poll goes through the query service too: one query for many
//! watched tasks, and a full `GET /api/task` only for those whose query record changed
//! (records lack fields of the full task, so they only tell what to re-read). Where the
//! query service refuses an `id` filter, polls fall back to one GET per task.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use futures_util::{FutureExt, future::BoxFuture};
use http::Method;
use serde::Deserialize;
use serde_json::Value as Json;

use super::{
    http::{Endpoint, HttpClient, Reply},
    json::{check_nesting, timestamp_field, to_struct, to_value},
    session::{Credential, LoginFlow, Session, TokenSource, api_error, password_of},
    sessions::{CallerLogin, Sessions},
    source::{Batch, TaskSource},
};
use crate::{
    config::{CloudDirectorConfig, UpstreamConfig},
    error::{GatewayError, Reason, Result, UpstreamError, UpstreamMessage},
    names::{check_id, path_segment, resource_name, upstream_name},
    proto::{self, TaskFilter, TaskState},
};

const URN_PREFIX: &str = "urn:vcloud:task:";
/// The query service's largest page (documented for cloudapi; assumed for the legacy query).
const QUERY_PAGE_SIZE: usize = 128;
/// The most tasks one list may gather, as for vSphere: beyond it the filter must narrow.
const LIST_LIMIT: usize = 1000;
/// Task ids per batched poll query (keeps the FIQL filter, and the URL, short).
const POLL_BATCH: usize = 50;
/// How long a polled task is remembered without being polled again.
const POLL_MEMORY: Duration = Duration::from_secs(600);

/// The organization of the provider (System): its users log in at the provider endpoint.
const PROVIDER_ORG: &str = "System";

/// The service account's org: the configured tenant, or System for a provider.
fn account_org(vcd: &CloudDirectorConfig) -> String {
    match &vcd.org {
        Some(org) if !org.is_empty() && !vcd.provider => org.clone(),
        _ => PROVIDER_ORG.to_string(),
    }
}

pub fn session(
    http: Arc<HttpClient>,
    cfg: &UpstreamConfig,
    vcd: &CloudDirectorConfig,
) -> Arc<Session> {
    let org = account_org(vcd);
    let (login_path, token_source, refresh_token) = if !vcd.api_token.is_empty() {
        let path = if vcd.provider {
            "/oauth/provider/token".to_string()
        } else {
            format!("/oauth/tenant/{}/token", path_segment(&org))
        };
        (
            path,
            TokenSource::OAuthAccessToken,
            Some(Credential::new(
                vcd.api_token.clone(),
                vcd.api_token_file.clone(),
            )),
        )
    } else {
        let path = if vcd.provider {
            "/cloudapi/1.0.0/sessions/provider"
        } else {
            "/cloudapi/1.0.0/sessions"
        };
        (
            path.to_string(),
            TokenSource::Header("X-VMWARE-VCLOUD-ACCESS-TOKEN"),
            None,
        )
    };
    // Cloud Director's Basic user is `user@org` (the user part may itself hold an `@`).
    let user = format!("{}@{org}", cfg.username.as_deref().unwrap_or_default());
    let flow = LoginFlow {
        token_source,
        refresh_token,
        ..login_flow(&vcd.api_version, login_path)
    };
    Session::new(http, flow, cfg, user, password_of(cfg))
}

/// A Basic login at `login_path` answering the bearer token in a header, as every user logs
/// in (the service account's API token changes where and how).
fn login_flow(version: &str, login_path: String) -> LoginFlow {
    LoginFlow {
        login_path,
        token_source: TokenSource::Header("X-VMWARE-VCLOUD-ACCESS-TOKEN"),
        auth_header: "Authorization",
        auth_prefix: "Bearer ",
        login_headers: vec![("Accept", format!("application/json;version={version}"))],
        extra_headers: vec![("Accept", format!("application/*+json;version={version}"))],
        // The cloudapi logout path is not confirmed by the reference; this is the documented
        // "current session" resource.
        logout: Some((Method::DELETE, "/cloudapi/1.0.0/sessions/current".into())),
        refresh_token: None,
        parse_error,
    }
}

/// How a caller's own user logs in: as `user@org` (a user without `@` belongs to the
/// configured org); users of the System org log in as the provider.
pub fn caller_login(vcd: &CloudDirectorConfig) -> CallerLogin {
    let tenant = Arc::new(login_flow(
        &vcd.api_version,
        "/cloudapi/1.0.0/sessions".into(),
    ));
    let provider = Arc::new(login_flow(
        &vcd.api_version,
        "/cloudapi/1.0.0/sessions/provider".into(),
    ));
    let default_org = account_org(vcd);
    Box::new(move |user: &str| {
        let user = match user.rsplit_once('@') {
            Some((_, org)) if !org.is_empty() => user.to_string(),
            _ => format!("{}@{default_org}", user.trim_end_matches('@')),
        };
        let flow = if is_provider_user(&user) {
            provider.clone()
        } else {
            tenant.clone()
        };
        (flow, user)
    })
}

/// True for a `user@System` login.
fn is_provider_user(user: &str) -> bool {
    user.rsplit_once('@')
        .is_some_and(|(_, org)| org.eq_ignore_ascii_case(PROVIDER_ORG))
}

/// The Cloud Director error object (legacy `/api` and cloudapi share these fields).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct VcdError {
    #[serde(default)]
    minor_error_code: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

pub fn parse_error(upstream: &str, reply: &Reply) -> UpstreamError {
    let named = serde_json::from_slice::<VcdError>(&reply.body)
        .ok()
        .and_then(|e| {
            let messages = e.message.map(UpstreamMessage::plain).into_iter().collect();
            Some((e.minor_error_code?, messages))
        });
    api_error(upstream, reply, named)
}

pub fn state_of(status: &str) -> TaskState {
    match status {
        "queued" | "preRunning" => TaskState::Queued,
        "running" | "postRunning" => TaskState::Running,
        "success" => TaskState::Succeeded,
        "error" => TaskState::Failed,
        "aborted" | "canceled" => TaskState::Cancelled,
        _ => TaskState::Unspecified,
    }
}

fn statuses_for(state: TaskState) -> &'static [&'static str] {
    match state {
        TaskState::Queued => &["queued", "preRunning"],
        TaskState::Running => &["running", "postRunning"],
        TaskState::Succeeded => &["success"],
        TaskState::Failed => &["error"],
        TaskState::Cancelled => &["aborted", "canceled"],
        TaskState::Blocked | TaskState::Unspecified => &[],
    }
}

/// `urn:vcloud:task:{uuid}` or a bare uuid → the bare uuid.
pub fn bare_id(id: &str) -> &str {
    id.strip_prefix(URN_PREFIX).unwrap_or(id)
}

fn str_field<'a>(o: &'a serde_json::Map<String, Json>, key: &str) -> Option<&'a str> {
    o.get(key)?.as_str().filter(|s| !s.is_empty())
}

/// The URN of an object a query record names by href, as `GET /api/task` names a task's
/// owner: `…/api/vApp/vapp-77a1…` of type `vApp` → `urn:vcloud:vapp:77a1…`. The last path
/// segment is the id, less a `{type}-` prefix; an href without a segment stays as it is.
fn urn_of(href: &str, kind: &str) -> String {
    let kind = kind.to_ascii_lowercase();
    match href.trim_end_matches('/').rsplit('/').next() {
        Some(segment) if !segment.is_empty() && !kind.is_empty() => {
            let id = match segment.split_once('-') {
                Some((prefix, rest)) if prefix.eq_ignore_ascii_case(&kind) => rest,
                _ => segment,
            };
            format!("urn:vcloud:{kind}:{id}")
        }
        _ => href.to_string(),
    }
}

/// `application/vnd.vmware.vcloud.vApp+xml` → `vApp`.
fn short_type(media: &str) -> String {
    media
        .rsplit('.')
        .next()
        .and_then(|t| t.split('+').next())
        .filter(|t| !t.is_empty() && media.contains("vnd."))
        .unwrap_or(media)
        .to_string()
}

fn reference_name(o: &serde_json::Map<String, Json>, key: &str) -> String {
    o.get(key)
        .and_then(Json::as_object)
        .and_then(|r| str_field(r, "name"))
        .unwrap_or_default()
        .to_string()
}

fn times(
    o: &serde_json::Map<String, Json>,
    keys: [&str; 3],
) -> std::result::Result<[Option<prost_types::Timestamp>; 3], String> {
    Ok([
        timestamp_field(keys[0], str_field(o, keys[0]))?,
        timestamp_field(keys[1], str_field(o, keys[1]))?,
        timestamp_field(keys[2], str_field(o, keys[2]))?,
    ])
}

fn progress(o: &serde_json::Map<String, Json>) -> Option<proto::TaskProgress> {
    let p = o.get("progress")?.as_i64()?.clamp(0, 100);
    Some(proto::TaskProgress {
        total: 100,
        completed: p,
        percent: p as i32,
        message: None,
    })
}

/// A JSON object of an upstream answer being converted, and how to say it is not what the
/// documentation promises.
#[derive(Clone, Copy)]
struct Answer<'a> {
    upstream: &'a str,
    http_status: u16,
    raw: &'a Json,
    /// What the object is, for errors ("task", "task record").
    what: &'static str,
}

impl Answer<'_> {
    fn bad(&self, problem: impl std::fmt::Display) -> UpstreamError {
        UpstreamError::bad_response(
            self.upstream,
            self.http_status,
            format!("{}: {problem}", self.what),
            self.raw.to_string().as_bytes(),
        )
    }
}

/// What every Cloud Director task shape has, as the start of a `Task`: the object, its uuid
/// (from `id` or the last segment of `href`, tried in the order of `keys`), its status and
/// state, progress, service, and the whole object as `upstream_payload`.
fn task_head<'a>(
    bad: &Answer<'a>,
    keys: [&str; 2],
) -> std::result::Result<(&'a serde_json::Map<String, Json>, proto::Task), UpstreamError> {
    let o = bad
        .raw
        .as_object()
        .ok_or_else(|| bad.bad("is not a JSON object"))?;
    check_nesting(bad.raw).map_err(|p| bad.bad(p))?;
    let id_from = |key: &str| match key {
        "id" => str_field(o, "id").map(bare_id),
        _ => str_field(o, "href").and_then(|h| h.rsplit('/').next()),
    };
    let id = id_from(keys[0])
        .or_else(|| id_from(keys[1]))
        .ok_or_else(|| bad.bad(format!("has neither {} nor {}", keys[0], keys[1])))?
        .to_string();
    check_id(&id).map_err(|p| bad.bad(p))?;
    let status = str_field(o, "status").ok_or_else(|| bad.bad("has no status"))?;
    let state = state_of(status);
    let head = proto::Task {
        name: resource_name(bad.upstream, "tasks", &id),
        upstream: upstream_name(bad.upstream),
        kind: proto::UpstreamKind::CloudDirector as i32,
        id,
        state: state as i32,
        done: matches!(
            state,
            TaskState::Succeeded | TaskState::Failed | TaskState::Cancelled
        ),
        upstream_status: status.to_string(),
        progress: progress(o),
        service: str_field(o, "serviceNamespace")
            .unwrap_or_default()
            .to_string(),
        upstream_payload: Some(to_struct(o)),
        ..Default::default()
    };
    Ok((o, head))
}

/// A Cloud Director `TaskType` as a `Task` (kept whole in `upstream_payload`).
fn task_from_json(answer: Answer<'_>) -> std::result::Result<proto::Task, UpstreamError> {
    let (o, head) = task_head(&answer, ["id", "href"])?;
    let [start_time, end_time, expiry_time] =
        times(o, ["startTime", "endTime", "expiryTime"]).map_err(|p| answer.bad(p))?;
    let cancelable = o.get("link").and_then(Json::as_array).is_some_and(|links| {
        links
            .iter()
            .any(|l| l.get("rel").and_then(Json::as_str) == Some("task:cancel"))
    });
    let target = o
        .get("owner")
        .and_then(Json::as_object)
        .map(|r| proto::TaskTarget {
            r#type: str_field(r, "type").map(short_type).unwrap_or_default(),
            id: str_field(r, "id").unwrap_or_default().to_string(),
            name: str_field(r, "name").unwrap_or_default().to_string(),
        });
    let error = o.get("error").and_then(Json::as_object).map(|e| {
        let message = str_field(e, "message").unwrap_or_default().to_string();
        proto::TaskError {
            r#type: str_field(e, "minorErrorCode")
                .unwrap_or_default()
                .to_string(),
            messages: vec![proto::LocalizableMessage {
                default_message: message.clone(),
                ..Default::default()
            }],
            message,
            // A code past i32 is left out like one of another type (the payload keeps it).
            http_code: e
                .get("majorErrorCode")
                .and_then(Json::as_i64)
                .and_then(|c| i32::try_from(c).ok())
                .unwrap_or_default(),
        }
    });
    let vcenter_tasks = o
        .get("vcTaskList")
        .and_then(|l| l.get("vcTask"))
        .and_then(Json::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(Json::as_object)
                .map(|t| proto::VcenterTaskRef {
                    id: ["id", "moref", "value"]
                        .iter()
                        .find_map(|k| str_field(t, k))
                        .unwrap_or_default()
                        .to_string(),
                    name: str_field(t, "name").unwrap_or_default().to_string(),
                    status: str_field(t, "status").unwrap_or_default().to_string(),
                    vcenter: ["vcenter", "vcName", "vc"]
                        .iter()
                        .find_map(|k| str_field(t, k))
                        .unwrap_or_default()
                        .to_string(),
                })
                .collect()
        })
        .unwrap_or_default();
    let subtasks = match o
        .get("tasks")
        .and_then(|t| t.get("task"))
        .and_then(Json::as_array)
    {
        Some(items) => items
            .iter()
            .map(|raw| task_from_json(Answer { raw, ..answer }))
            .collect::<std::result::Result<_, _>>()?,
        None => vec![],
    };
    Ok(proto::Task {
        description: str_field(o, "description").map(|d| proto::LocalizableMessage {
            default_message: d.to_string(),
            ..Default::default()
        }),
        operation: str_field(o, "operation").unwrap_or_default().to_string(),
        operation_name: str_field(o, "operationName")
            .unwrap_or_default()
            .to_string(),
        parent: String::new(),
        target,
        cancelable,
        cancel_requested: o
            .get("cancelRequested")
            .and_then(Json::as_bool)
            .unwrap_or(false),
        start_time,
        end_time,
        expiry_time,
        user: reference_name(o, "user"),
        organization: reference_name(o, "organization"),
        details: str_field(o, "details").unwrap_or_default().to_string(),
        vcenter_tasks,
        subtasks,
        error,
        result: o.get("result").filter(|r| !r.is_null()).map(to_value),
        ..head
    })
}

/// A query-service task record (`QueryResultTaskRecordType`) as a `Task`: fewer fields than
/// `GET /api/task` gives (no error detail, no links), the record kept in `upstream_payload`.
fn task_from_record(answer: Answer<'_>) -> std::result::Result<proto::Task, UpstreamError> {
    let (o, head) = task_head(&answer, ["href", "id"])?;
    let [start_time, end_time, _] =
        times(o, ["startDate", "endDate", "_"]).map_err(|p| answer.bad(p))?;
    Ok(proto::Task {
        operation: str_field(o, "operationFull")
            .unwrap_or_default()
            .to_string(),
        operation_name: str_field(o, "name").unwrap_or_default().to_string(),
        target: str_field(o, "object").map(|href| {
            let kind = str_field(o, "objectType").unwrap_or_default();
            proto::TaskTarget {
                r#type: kind.to_string(),
                id: urn_of(href, kind),
                name: str_field(o, "objectName").unwrap_or_default().to_string(),
            }
        }),
        start_time,
        end_time,
        organization: str_field(o, "orgName").unwrap_or_default().to_string(),
        details: str_field(o, "message").unwrap_or_default().to_string(),
        ..head
    })
}

/// The gateway's filter as a FIQL expression (`;` = and, `,` = or).
fn fiql(filter: &TaskFilter, upstream: &str) -> Result<Option<String>> {
    if !filter.users.is_empty() {
        return Err(GatewayError::invalid(
            Reason::InvalidFilter,
            "filter.users",
            format!(
                "upstream '{upstream}' is of kind UPSTREAM_KIND_CLOUD_DIRECTOR, whose query service cannot filter tasks by user"
            ),
        ));
    }
    let any_of = |key: &str, values: Vec<String>| -> Option<String> {
        (!values.is_empty()).then(|| {
            let terms: Vec<String> = values
                .iter()
                .map(|v| format!("{key}=={}", fiql_escape(v)))
                .collect();
            format!("({})", terms.join(","))
        })
    };
    let states: Vec<String> = filter
        .states()
        .flat_map(statuses_for)
        .map(|s| s.to_string())
        .collect();
    let parts: Vec<String> = [
        any_of(
            "id",
            filter
                .task_ids
                .iter()
                .map(|i| format!("{URN_PREFIX}{}", bare_id(i)))
                .collect(),
        ),
        any_of("serviceNamespace", filter.services.clone()),
        any_of("name", filter.operations.clone()),
        any_of("status", states),
    ]
    .into_iter()
    .flatten()
    .collect();
    Ok((!parts.is_empty()).then(|| parts.join(";")))
}

/// FIQL reserves `,;()=` and friends: escape them with `\` as the query service expects.
fn fiql_escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        if matches!(
            c,
            ',' | ';' | '(' | ')' | '=' | '!' | '<' | '>' | '\\' | '"' | '\''
        ) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[derive(Deserialize)]
struct QueryPage {
    #[serde(default)]
    record: Vec<Json>,
    #[serde(default)]
    total: Option<u64>,
}

/// A task as last polled: the query record it was read for, and the full task.
struct Polled {
    record: Json,
    task: proto::Task,
    at: tokio::time::Instant,
}

pub struct CloudDirector {
    sessions: Arc<Sessions>,
    provider: bool,
    polled: Mutex<HashMap<String, Polled>>,
    /// Set once the query service refused an `id` filter: batched polls use GETs.
    no_id_filter: AtomicBool,
}

impl CloudDirector {
    pub fn new(sessions: Arc<Sessions>, vcd: &CloudDirectorConfig) -> Self {
        Self {
            sessions,
            provider: vcd.provider,
            polled: Mutex::new(HashMap::new()),
            no_id_filter: AtomicBool::new(false),
        }
    }

    /// The query type the session may use: a provider sees every org's tasks as
    /// `adminTask`; a tenant its org's as `task`. A caller is a provider only when it logged
    /// in as `user@System` (a caller's token is assumed a tenant's: nothing tells).
    fn query_type(&self, session: &Session) -> &'static str {
        let provider = if session.is_caller() {
            is_provider_user(session.user())
        } else {
            self.provider
        };
        if provider { "adminTask" } else { "task" }
    }

    /// One page of the query service.
    async fn query_page(&self, fiql: Option<&str>, page: usize) -> Result<(QueryPage, u16)> {
        let page_s = page.to_string();
        let size_s = QUERY_PAGE_SIZE.to_string();
        let session = self.sessions.current()?;
        let mut query = vec![
            ("type", self.query_type(&session)),
            ("format", "records"),
            ("page", page_s.as_str()),
            ("pageSize", size_s.as_str()),
            ("sortDesc", "startDate"),
        ];
        if let Some(f) = fiql {
            query.push(("filter", f));
        }
        let reply = session
            .read(Method::GET, &Endpoint::fixed("/api/query"), |rb| {
                rb.query(&query)
            })
            .await?;
        let body = serde_json::from_value(session.json(&reply, "query result")?).map_err(|e| {
            UpstreamError::bad_response(
                self.upstream(),
                reply.status,
                format!("query result: {e}"),
                &reply.body,
            )
        })?;
        Ok((body, reply.status))
    }

    /// The watch engine's batched poll: one query for up to POLL_BATCH ids, then a full GET
    /// only for tasks whose record changed since the last poll (or that are new to it).
    async fn poll_many(&self, ids: &[String]) -> Result<Batch<proto::Task>> {
        if self.no_id_filter.load(Ordering::Relaxed) {
            return super::source::get_each(ids, |id| self.get_task(id)).await;
        }
        let terms: Vec<String> = ids
            .iter()
            .map(|i| format!("id=={URN_PREFIX}{}", fiql_escape(bare_id(i))))
            .collect();
        let fiql = format!("({})", terms.join(","));
        let (page, _) = match self.query_page(Some(&fiql), 1).await {
            Ok(p) => p,
            Err(e) if e.code() == tonic::Code::InvalidArgument => {
                tracing::warn!(upstream = %self.upstream(), "the query service refused an id filter; watching Cloud Director tasks with one GET each");
                self.no_id_filter.store(true, Ordering::Relaxed);
                return super::source::get_each(ids, |id| self.get_task(id)).await;
            }
            Err(e) => return Err(e),
        };
        let mut batch = Batch::default();
        for record in page.record {
            let Some(id) = record
                .get("href")
                .and_then(Json::as_str)
                .and_then(|h| h.rsplit('/').next())
                .map(str::to_string)
            else {
                continue;
            };
            let unchanged = self.remembered(&id, &record);
            let task = match unchanged {
                Some(t) => t,
                // A failed read of one changed task fails only that task's watchers.
                None => match self.get_task(&id).await {
                    Ok(t) => t,
                    Err(e) => {
                        batch.failed.push((id, e));
                        continue;
                    }
                },
            };
            self.remember(&id, record, &task);
            batch.found.push(task);
        }
        Ok(batch)
    }

    fn remembered(&self, id: &str, record: &Json) -> Option<proto::Task> {
        let polled = self.polled.lock().ok()?;
        polled
            .get(id)
            .filter(|p| &p.record == record)
            .map(|p| p.task.clone())
    }

    fn remember(&self, id: &str, record: Json, task: &proto::Task) {
        if let Ok(mut polled) = self.polled.lock() {
            let now = tokio::time::Instant::now();
            polled.retain(|_, p| now.duration_since(p.at) < POLL_MEMORY);
            polled.insert(
                id.to_string(),
                Polled {
                    record,
                    task: task.clone(),
                    at: now,
                },
            );
        }
    }

    fn upstream(&self) -> &str {
        self.sessions.service().http().upstream()
    }

    async fn get_task(&self, id: &str) -> Result<proto::Task> {
        let at = Endpoint::with_id("/api/task/{task}", bare_id(id));
        let session = self.sessions.current()?;
        let reply = session.read(Method::GET, &at, |rb| rb).await?;
        let raw = session.json(&reply, "task")?;
        Ok(task_from_json(Answer {
            upstream: self.upstream(),
            http_status: reply.status,
            raw: &raw,
            what: "task",
        })?)
    }

    async fn cancel_task(&self, id: &str) -> Result<()> {
        let at = Endpoint::with_id("/api/task/{task}/action/cancel", bare_id(id));
        self.sessions
            .current()?
            .call(Method::POST, &at, |rb| rb)
            .await?;
        Ok(())
    }

    async fn list_tasks(&self, filter: &TaskFilter) -> Result<Vec<proto::Task>> {
        let fiql = fiql(filter, self.upstream())?;
        let mut tasks = Vec::new();
        for page in 1.. {
            let (body, status) = self.query_page(fiql.as_deref(), page).await?;
            if body.total.is_some_and(|t| t as usize > LIST_LIMIT)
                || tasks.len() + body.record.len() > LIST_LIMIT
            {
                return Err(GatewayError::refused(
                    Reason::TooManyMatches,
                    Some(self.upstream()),
                    format!(
                        "upstream '{}' has more than {LIST_LIMIT} matching tasks; narrow the filter (task_ids, services, operations, states)",
                        self.upstream()
                    ),
                ));
            }
            let n = body.record.len();
            for r in &body.record {
                tasks.push(task_from_record(Answer {
                    upstream: self.upstream(),
                    http_status: status,
                    raw: r,
                    what: "task record",
                })?);
            }
            let seen = (page - 1) * QUERY_PAGE_SIZE + n;
            if n < QUERY_PAGE_SIZE || body.total.is_some_and(|t| seen as u64 >= t) {
                break;
            }
        }
        Ok(tasks)
    }
}

impl TaskSource for CloudDirector {
    fn get<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<proto::Task>> {
        self.get_task(id).boxed()
    }

    fn list<'a>(&'a self, filter: &'a TaskFilter) -> BoxFuture<'a, Result<Vec<proto::Task>>> {
        self.list_tasks(filter).boxed()
    }

    fn cancel<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<()>> {
        self.cancel_task(id).boxed()
    }

    fn canonical_id(&self, id: &str) -> String {
        bare_id(id).to_string()
    }

    fn get_many<'a>(&'a self, ids: &'a [String]) -> BoxFuture<'a, Result<Batch<proto::Task>>> {
        self.poll_many(ids).boxed()
    }

    fn batch_limit(&self) -> usize {
        if self.no_id_filter.load(Ordering::Relaxed) {
            1
        } else {
            POLL_BATCH
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cloud_director_statuses_map_to_states() {
        assert_eq!(state_of("preRunning"), TaskState::Queued);
        assert_eq!(state_of("postRunning"), TaskState::Running);
        assert_eq!(state_of("aborted"), TaskState::Cancelled);
        assert_eq!(state_of("canceled"), TaskState::Cancelled);
        assert_eq!(state_of("error"), TaskState::Failed);
        assert_eq!(state_of("brandNew"), TaskState::Unspecified);
    }

    #[test]
    fn task_json_converts_with_lenient_offsets_links_and_nested_tasks() {
        let raw = serde_json::json!({
            "otherAttributes": {}, "href": "https://vcd/api/task/3c2b", "id": "urn:vcloud:task:3c2b",
            "status": "running", "operation": "Starting web-01", "operationName": "vappDeploy",
            "serviceNamespace": "com.vmware.vcloud", "startTime": "2024-03-06T14:11:57.473+0200",
            "endTime": null, "cancelRequested": false, "progress": 35, "details": "",
            "link": [{"rel": "task:cancel", "href": "https://vcd/api/task/3c2b/action/cancel"}],
            "owner": {"type": "application/vnd.vmware.vcloud.vApp+xml", "id": "urn:vcloud:vapp:77", "name": "web-01"},
            "user": {"name": "svc"}, "organization": {"name": "acme"},
            "error": null, "tasks": {"task": [{"id": "urn:vcloud:task:child", "status": "success"}]},
            "vcTaskList": {"vcTask": []}
        });
        let t = task_from_json(Answer {
            upstream: "vcd1",
            http_status: 200,
            raw: &raw,
            what: "task",
        })
        .unwrap();
        assert_eq!(t.name, "upstreams/vcd1/tasks/3c2b");
        assert_eq!(t.state(), TaskState::Running);
        assert!(t.cancelable);
        assert_eq!(t.progress.unwrap().percent, 35);
        assert_eq!(t.target.unwrap().r#type, "vApp");
        assert_eq!(t.organization, "acme");
        assert_eq!(t.subtasks.len(), 1);
        assert_eq!(t.start_time.unwrap().seconds, 1709727117);
    }

    fn task(raw: &Json) -> std::result::Result<proto::Task, UpstreamError> {
        task_from_json(Answer {
            upstream: "vcd1",
            http_status: 200,
            raw,
            what: "task",
        })
    }

    #[test]
    fn an_error_code_past_i32_is_left_out_not_cut() {
        // `as i32` made 2147483648 into -2147483648 and 4294967696 into 400.
        for (code, expected) in [(2147483648i64, 0), (4294967696, 0), (503, 503)] {
            let raw = serde_json::json!({"id": "urn:vcloud:task:1", "status": "error",
                "error": {"majorErrorCode": code, "minorErrorCode": "X"}});
            assert_eq!(
                task(&raw).unwrap().error.unwrap().http_code,
                expected,
                "{code}"
            );
        }
    }

    #[test]
    fn ids_no_name_can_carry_and_deep_nesting_are_bad_responses() {
        // `urn:vcloud:task:` and an href ending in `/` gave a task with an empty id; a
        // subtask list nested 12 deep a task no protobuf client could decode.
        for raw in [
            serde_json::json!({"id": "urn:vcloud:task:", "status": "running"}),
            serde_json::json!({"href": "https://vcd/api/task/", "status": "running"}),
        ] {
            let e = task(&raw).unwrap_err();
            assert_eq!(e.reason(), Reason::UpstreamBadResponse, "{raw}");
        }
        let deep = (0..12).fold(
            serde_json::json!({"id": "urn:vcloud:task:leaf", "status": "success"}),
            |inner, i| {
                serde_json::json!({"id": format!("urn:vcloud:task:{i}"), "status": "running",
                "tasks": {"task": [inner]}})
            },
        );
        assert_eq!(
            task(&deep).unwrap_err().reason(),
            Reason::UpstreamBadResponse
        );
    }

    #[test]
    fn record_objects_are_named_by_urn_like_task_owners() {
        let vapp = "https://vcd/api/vApp/vapp-77a1c0de-5b1e-4f6a-9c3d-2e1f0a9b8c70";
        assert_eq!(
            urn_of(vapp, "vApp"),
            "urn:vcloud:vapp:77a1c0de-5b1e-4f6a-9c3d-2e1f0a9b8c70"
        );
        let template = "https://vcd/api/vAppTemplate/vappTemplate-5c1d2e3f";
        assert_eq!(
            urn_of(template, "vAppTemplate"),
            "urn:vcloud:vapptemplate:5c1d2e3f"
        );
        assert_eq!(
            urn_of("https://vcd/api/vdc/5d6e7f80", "vdc"),
            "urn:vcloud:vdc:5d6e7f80"
        );
        assert_eq!(urn_of("odd", ""), "odd");
    }

    #[test]
    fn filters_become_fiql_and_users_are_refused() {
        let f = TaskFilter {
            services: vec!["com.vmware.vcloud".into()],
            states: vec![TaskState::Queued as i32],
            ..Default::default()
        };
        assert_eq!(
            fiql(&f, "vcd1").unwrap().unwrap(),
            "(serviceNamespace==com.vmware.vcloud);(status==queued,status==preRunning)"
        );
        let users = TaskFilter {
            users: vec!["bob".into()],
            ..Default::default()
        };
        assert!(fiql(&users, "vcd1").is_err());
        assert_eq!(fiql_escape("a,b;c"), "a\\,b\\;c");
    }
}

#[cfg(test)]
mod proptests;
