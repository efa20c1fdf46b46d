//! `TaskService`: tasks of every task upstream in one shape.

use std::sync::Arc;

use prost::Message;
use tonic::metadata::MetadataMap;

use super::{
    paging::{self, NewestFirstKey, PageRequest, newest_first_key},
    rpc::{Shared, duration_field, enum_field, limit_reached, list_parent},
    streams,
};
use crate::{
    error::{GatewayError, Reason, Result},
    names::{self, UpstreamRef},
    proto::{
        CancelTaskRequest, GetTaskRequest, ListTasksRequest, ListTasksResponse, Task, TaskEvent,
        TaskFilter, TaskState, TaskView, WaitTaskRequest, WatchTaskRequest,
        task_service_server::TaskService,
    },
    upstream::{TaskSource, Tasks, Upstream},
    watch::{self, Target},
};

pub struct TaskApi {
    ctx: Shared,
}

impl TaskApi {
    pub fn new(ctx: Shared) -> Self {
        Self { ctx }
    }

    /// A task name → its upstream, source and the source's canonical id of the task (so
    /// `urn:vcloud:task:{uuid}` and the bare uuid share one poller).
    fn resolve(&self, name: &str) -> Result<(&Arc<Upstream>, &Arc<dyn TaskSource>, String)> {
        let name = names::parse_resource(name, "tasks", "name")?;
        let (upstream, source) = self.ctx.registry.one::<Tasks>(&name.upstream, "name")?;
        let id = source.canonical_id(&name.id);
        Ok((upstream, source, id))
    }

    async fn get(&self, req: &GetTaskRequest) -> Result<Task> {
        let view = enum_field::<TaskView>(req.view, "view")?;
        let (upstream, source, id) = self.resolve(&req.name)?;
        let tasks = &self.ctx.watch.tasks;
        let poller = upstream.sessions.poller_key();
        // The payload is built for the FULL view, or for the task's watchers (one may see the
        // FULL view) when it is watched as the answer arrives.
        let payload = || view == TaskView::Full || tasks.is_watched(&upstream.name, poller, &id);
        let task = source.get_payload_if(&id, &payload).await?;
        // Without it, the read is no news for watchers: a watch started since polls after it.
        if task.upstream_payload.is_some() {
            tasks.observe(&upstream.name, poller, &id, &task);
        }
        Ok(with_view(task, view))
    }

    async fn list(&self, req: &ListTasksRequest) -> Result<ListTasksResponse> {
        let parent = names::parse_upstream(&req.parent, "parent")?;
        let view = enum_field::<TaskView>(req.view, "view")?;
        let filter = req.filter.clone().unwrap_or_default();
        for s in &filter.states {
            enum_field::<TaskState>(*s, "filter.states")?;
        }
        let max_ids = self.ctx.limits.max_task_ids;
        if filter.task_ids.len() > max_ids {
            let what = format!("filter.task_ids holds {} ids", filter.task_ids.len());
            return Err(limit_reached("max_task_ids", max_ids, &what));
        }
        let fingerprint = filter_fingerprint(&filter);
        let page = PageRequest::<NewestFirstKey>::new(
            &req.page_token,
            req.page_size,
            &req.parent,
            &fingerprint,
        )?;
        let merged = parent == UpstreamRef::Any;
        let mut tasks =
            list_parent::<Tasks, _, _>(&self.ctx.registry, &parent, |s| s.list(&filter)).await?;
        // Upstreams filter by their own statuses; the exact normalized states are kept here.
        if !filter.states.is_empty() {
            tasks.retain(|t| filter.states.contains(&t.state));
        }
        let (tasks, next_page_token) = page.take(tasks, |t| task_key(t, merged));
        Ok(ListTasksResponse {
            tasks: tasks.into_iter().map(|t| with_view(t, view)).collect(),
            next_page_token,
        })
    }

    async fn cancel(&self, req: &CancelTaskRequest) -> Result<Task> {
        let (upstream, source, id) = self.resolve(&req.name)?;
        if !source.supports_cancel() {
            return Err(GatewayError::refused(
                Reason::NotSupportedByUpstream,
                Some(&upstream.name),
                format!(
                    "upstream '{}' is of kind {} which has no cancel operation",
                    upstream.name,
                    crate::proto::UpstreamKind::from(upstream.kind).as_str_name()
                ),
            ));
        }
        let before = source.get(&id).await?;
        if before.done {
            return Err(GatewayError::refused(
                Reason::TaskDone,
                Some(&upstream.name),
                format!(
                    "task is already done ({}); there is nothing to cancel",
                    before.state().as_str_name()
                ),
            ));
        }
        source.cancel(&id).await?;
        // The upstream accepted the cancel: from here on the call succeeds, whatever the
        // read-back meets.
        let after = read_back(source.as_ref(), &id, before).await;
        let poller = upstream.sessions.poller_key();
        self.ctx
            .watch
            .tasks
            .observe(&upstream.name, poller, &id, &after);
        Ok(with_view(after, TaskView::Basic))
    }

    fn watch(&self, req: &WatchTaskRequest, metadata: &MetadataMap) -> Result<watch::Watch<Task>> {
        let view = enum_field::<TaskView>(req.view, "view")?;
        let (upstream, source, id) = self.resolve(&req.name)?;
        let opts = streams::watch_options(
            req.min_poll_interval.as_ref(),
            req.heartbeat_interval.as_ref(),
            metadata,
        )?;
        self.ctx.watch.tasks.watch(
            task_target(upstream, source, id)?,
            opts,
            self.ctx.stopping.clone(),
            move |t: &Task| with_view(t.clone(), view),
        )
    }

    async fn wait(&self, req: &WaitTaskRequest) -> Result<Task> {
        let view = enum_field::<TaskView>(req.view, "view")?;
        let (upstream, source, id) = self.resolve(&req.name)?;
        let timeout = duration_field(req.timeout.as_ref(), "timeout")?;
        let until = streams::wait_until(
            crate::call::current().timeout,
            timeout,
            self.ctx.watch.settings().max_wait,
        );
        // Zero means "the current state now": a read, not a wait that may end before it.
        let latest = if timeout.is_some_and(|t| t.is_zero()) {
            None
        } else {
            let target = task_target(upstream, source, id.clone())?;
            let stopping = self.ctx.stopping.clone();
            self.ctx.watch.tasks.wait(target, until, stopping).await?
        };
        let task = match latest {
            Some(task) => task,
            // Nothing read yet when the time ran out: read it now, under the call's deadline.
            None => source.get(&id).await?,
        };
        Ok(with_view(task, view))
    }
}

/// How often a cancel's read-back is tried, and the pause before the second try (doubling).
const READ_BACK_TRIES: u32 = 3;
const READ_BACK_PAUSE: std::time::Duration = std::time::Duration::from_millis(50);

/// The task as read after an accepted cancel: read again on transient failures while the
/// call's time allows; if no read succeeds, the task as read before, marked cancel-requested.
async fn read_back(source: &dyn TaskSource, id: &str, before: Task) -> Task {
    let mut pause = READ_BACK_PAUSE;
    for attempt in 1..=READ_BACK_TRIES {
        match source.get(id).await {
            Ok(task) => return task,
            Err(e) => {
                let transient = matches!(&e, GatewayError::Upstream(u) if u.is_transient());
                let time_left = crate::call::current_deadline()
                    .is_none_or(|d| d > tokio::time::Instant::now() + pause);
                if !transient || !time_left || attempt == READ_BACK_TRIES {
                    tracing::warn!(error = %e, "cancel accepted, read-back failed: answering the task as read before");
                    break;
                }
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
        }
    }
    Task {
        cancel_requested: true,
        ..before
    }
}

/// Drops the upstream payload unless the FULL view was asked for.
pub fn with_view(mut task: Task, view: TaskView) -> Task {
    if view != TaskView::Full {
        task.upstream_payload = None;
    }
    task
}

/// Order of task lists: not yet started first, then `start_time` descending, ties by id
/// (by name in a merged list).
fn task_key(t: &Task, merged: bool) -> NewestFirstKey {
    let tie = if merged { t.name.clone() } else { t.id.clone() };
    newest_first_key(t.start_time.as_ref(), tie)
}

/// Fingerprint of a filter, independent of the order of its values.
fn filter_fingerprint(f: &TaskFilter) -> String {
    let mut c = f.clone();
    c.task_ids.sort();
    c.services.sort();
    c.operations.sort();
    c.states.sort();
    c.users.sort();
    paging::fingerprint(&c.encode_to_vec())
}

service! {
    impl TaskService for TaskApi {
        unary {
            get_task(req: GetTaskRequest) -> Task { &req.name => get }
            list_tasks(req: ListTasksRequest) -> ListTasksResponse { &req.parent => list }
            cancel_task(req: CancelTaskRequest) -> Task { &req.name => cancel }
            wait_task(req: WaitTaskRequest) -> Task { &req.name => wait }
        }
        stream {
            watch_task(req: WatchTaskRequest) -> WatchTaskStream<TaskEvent> {
                &req.name => watch, task_event
            }
        }
    }
}

/// The watch engine's target for a resolved task, as the call being served may watch it.
fn task_target(
    upstream: &Upstream,
    source: &Arc<dyn TaskSource>,
    id: String,
) -> Result<Target<Task>> {
    Target::of_call(upstream, id, Arc::new(watch::Tasks(source.clone())))
}
