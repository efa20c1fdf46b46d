//! The task engine shared by every simulated upstream.
//!
//! A task is a script: a list of [`Step`]s on a timeline, each switching the task into a
//! [`Phase`]. The engine answers "what does task X look like at clock time T" as a
//! [`TaskSnapshot`] (status, progress, times, result/error, cancelability) and applies
//! cancels. It knows nothing about JSON: each upstream (vCenter, snapshot service, Cloud
//! Director) renders a snapshot in its own wire format.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::clock::SimClock;
use super::ids;

/// Error type and message of the task that was cancelled.
pub const CANCELED_ERROR_TYPE: &str = "CANCELED";
/// `messages[0].default_message` of a cancelled task's error.
pub const CANCELED_MESSAGE: &str = "The operation was canceled by the user.";

/// What a task does over time; `TaskStore::add` turns it into a live task.
#[derive(Debug, Clone)]
pub struct TaskSpec {
    /// `None` = generate a UUID-like id (8-4-4-4-12 hex).
    pub id: Option<String>,
    /// vAPI service id, e.g. `com.vmware.vcenter.VM`.
    pub service: String,
    /// Operation id, e.g. `clone`.
    pub operation: String,
    /// Human description (the `default_message` of the description message).
    pub description: String,
    /// Target object `(type, id)`.
    pub target: Option<(String, String)>,
    pub user: Option<String>,
    pub parent: Option<String>,
    /// Cancelable while Pending/Running/Blocked.
    pub cancelable: bool,
    /// The script's t=0 is `now - age`, for tasks that started in the past.
    pub age: Duration,
    /// Sorted by `at`; the last step's phase lasts forever.
    pub steps: Vec<Step>,
    /// Further messages of a failure, each the cause of the previous one: `(id, message)`.
    /// Rendered after the `Failed` phase's message (vAPI `messages[1..]`).
    pub error_causes: Vec<(String, String)>,
    /// Id of the vCenter task behind this one (snapservice `vc_task`).
    pub vc_task: Option<String>,
    /// Upstream-specific data the engine carries without interpreting it (e.g. Cloud
    /// Director's owner name or `vcTaskList`); each upstream documents the keys it reads.
    pub extra: Map<String, Value>,
}

/// At script time `at`, the task enters `phase`.
#[derive(Debug, Clone)]
pub struct Step {
    pub at: Duration,
    pub phase: Phase,
}

impl Step {
    pub fn new(at: Duration, phase: Phase) -> Self {
        Step { at, phase }
    }
}

#[derive(Debug, Clone)]
pub enum Phase {
    Pending,
    /// Percent; progress rises linearly from `from` to `to` until the next step (if this is the
    /// last step there is no end to interpolate towards, so progress stays at `from`).
    Running {
        from: u32,
        to: u32,
    },
    Blocked,
    Succeeded {
        result: Option<Value>,
    },
    /// `message` becomes `messages[0].default_message`.
    Failed {
        error_type: String,
        message: String,
    },
}

impl Phase {
    fn is_terminal(&self) -> bool {
        matches!(self, Phase::Succeeded { .. } | Phase::Failed { .. })
    }
}

impl TaskSpec {
    pub fn new(service: &str, operation: &str, description: &str, steps: Vec<Step>) -> Self {
        let mut steps = steps;
        steps.sort_by_key(|s| s.at);
        TaskSpec {
            id: None,
            service: service.to_string(),
            operation: operation.to_string(),
            description: description.to_string(),
            target: None,
            user: None,
            parent: None,
            cancelable: false,
            age: Duration::ZERO,
            steps,
            error_causes: Vec::new(),
            vc_task: None,
            extra: Map::new(),
        }
    }

    pub fn with_id(mut self, id: &str) -> Self {
        self.id = Some(id.to_string());
        self
    }

    pub fn with_target(mut self, kind: &str, id: &str) -> Self {
        self.target = Some((kind.to_string(), id.to_string()));
        self
    }

    pub fn with_user(mut self, user: &str) -> Self {
        self.user = Some(user.to_string());
        self
    }

    pub fn with_parent(mut self, parent: &str) -> Self {
        self.parent = Some(parent.to_string());
        self
    }

    pub fn cancelable(mut self) -> Self {
        self.cancelable = true;
        self
    }

    /// The script started `age` before now.
    pub fn aged(mut self, age: Duration) -> Self {
        self.age = age;
        self
    }

    /// The associated vCenter task id (snapservice `vc_task`).
    pub fn with_vc_task(mut self, vc_task: &str) -> Self {
        self.vc_task = Some(vc_task.to_string());
        self
    }

    /// Sets one upstream-specific value (see [`TaskSpec::extra`]).
    pub fn with_extra(mut self, key: &str, value: Value) -> Self {
        self.extra.insert(key.to_string(), value);
        self
    }

    /// Adds a cause message after the failure message.
    pub fn with_error_cause(mut self, id: &str, message: &str) -> Self {
        self.error_causes
            .push((id.to_string(), message.to_string()));
        self
    }
}

/// Status of a task at one moment; upstreams map it to their own enum strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaskStatus {
    Pending,
    Running,
    Blocked,
    Succeeded,
    Failed,
}

impl TaskStatus {
    pub fn is_terminal(self) -> bool {
        matches!(self, TaskStatus::Succeeded | TaskStatus::Failed)
    }

    /// The vAPI (vSphere / snapservice) spelling.
    pub fn as_vapi(self) -> &'static str {
        match self {
            TaskStatus::Pending => "PENDING",
            TaskStatus::Running => "RUNNING",
            TaskStatus::Blocked => "BLOCKED",
            TaskStatus::Succeeded => "SUCCEEDED",
            TaskStatus::Failed => "FAILED",
        }
    }

    /// Parses the vAPI spelling (exact, case-sensitive like the server).
    pub fn from_vapi(s: &str) -> Option<Self> {
        Some(match s {
            "PENDING" => TaskStatus::Pending,
            "RUNNING" => TaskStatus::Running,
            "BLOCKED" => TaskStatus::Blocked,
            "SUCCEEDED" => TaskStatus::Succeeded,
            "FAILED" => TaskStatus::Failed,
            _ => return None,
        })
    }
}

/// A failure: the type and the message stack (first = the error, then its causes).
#[derive(Debug, Clone, PartialEq)]
pub struct TaskError {
    pub error_type: String,
    /// `(id, default_message)` pairs.
    pub messages: Vec<(String, String)>,
}

/// One task as it looks at one clock time. Rendering per upstream starts from this.
#[derive(Debug, Clone)]
pub struct TaskSnapshot {
    pub id: String,
    pub service: String,
    pub operation: String,
    pub description: String,
    pub target: Option<(String, String)>,
    pub user: Option<String>,
    pub parent: Option<String>,
    pub status: TaskStatus,
    /// Cancelable right now (the spec's flag and not finished).
    pub cancelable: bool,
    /// Percent completed, 0..=100; never decreases over a task's life.
    pub progress: u32,
    /// Wall time of the script's t=0 (when the task was queued).
    pub queued_time: DateTime<Utc>,
    /// When the task left PENDING; `None` while pending.
    pub start_time: Option<DateTime<Utc>>,
    /// When it reached SUCCEEDED/FAILED; `None` until then.
    pub end_time: Option<DateTime<Utc>>,
    pub result: Option<Value>,
    pub error: Option<TaskError>,
    /// Ended by a user cancel (then `status == Failed`, error type `CANCELED`).
    pub canceled: bool,
    /// A cancel was accepted (the task may still be winding down, see
    /// [`TaskStore::cancel_after`]).
    pub cancel_requested: bool,
    pub vc_task: Option<String>,
    pub extra: Map<String, Value>,
}

/// Why a cancel was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelRefusal {
    /// No such task.
    NotFound,
    /// Already finished (or already cancelled).
    Finished,
    /// The task is not cancelable.
    NotCancelable,
}

impl std::fmt::Display for CancelRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CancelRefusal::NotFound => "task not found",
            CancelRefusal::Finished => "task already finished",
            CancelRefusal::NotCancelable => "task is not cancelable",
        })
    }
}

impl std::error::Error for CancelRefusal {}

struct Task {
    id: String,
    spec: TaskSpec,
    /// Clock time of `add()`; script time at clock `t` is `t - added + age`.
    added: Duration,
    /// Script time at which an accepted cancel takes effect.
    canceled_at: Option<Duration>,
}

/// The live tasks of one simulated upstream. Cheap to clone; clones share the tasks.
#[derive(Clone)]
pub struct TaskStore {
    inner: Arc<Mutex<Vec<Task>>>,
    clock: SimClock,
}

impl TaskStore {
    pub fn new(clock: SimClock) -> Self {
        TaskStore {
            inner: Arc::new(Mutex::new(Vec::new())),
            clock,
        }
    }

    /// A part's store: on `clock`, with the part's demo mix added by `seed` when `seeded`.
    pub fn seeded(clock: &SimClock, seeded: bool, seed: fn(&TaskStore)) -> Self {
        let store = TaskStore::new(clock.clone());
        if seeded {
            seed(&store);
        }
        store
    }

    pub fn clock(&self) -> &SimClock {
        &self.clock
    }

    /// Adds a task (replacing one with the same id) and returns its id.
    pub fn add(&self, spec: TaskSpec) -> String {
        let mut spec = spec;
        spec.steps.sort_by_key(|s| s.at);
        let id = spec.id.clone().unwrap_or_else(ids::uuid);
        let task = Task {
            id: id.clone(),
            spec,
            added: self.clock.now(),
            canceled_at: None,
        };
        let mut tasks = self.lock();
        tasks.retain(|t| t.id != id);
        tasks.push(task);
        id
    }

    /// Removes a task; afterwards it is unknown (GET answers 404).
    pub fn remove(&self, id: &str) -> bool {
        let mut tasks = self.lock();
        let before = tasks.len();
        tasks.retain(|t| t.id != id);
        tasks.len() != before
    }

    /// All ids, in insertion order.
    pub fn ids(&self) -> Vec<String> {
        self.lock().iter().map(|t| t.id.clone()).collect()
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The task as it looks now.
    pub fn snapshot(&self, id: &str) -> Option<TaskSnapshot> {
        self.snapshot_at(id, self.clock.now())
    }

    /// The task as it looks at clock time `now`.
    pub fn snapshot_at(&self, id: &str, now: Duration) -> Option<TaskSnapshot> {
        let tasks = self.lock();
        let task = tasks.iter().find(|t| t.id == id)?;
        Some(render(task, now, &self.clock))
    }

    /// Every task as it looks now, in insertion order.
    pub fn snapshots(&self) -> Vec<TaskSnapshot> {
        let now = self.clock.now();
        self.lock()
            .iter()
            .map(|t| render(t, now, &self.clock))
            .collect()
    }

    /// Cancels a task now.
    pub fn cancel(&self, id: &str) -> Result<(), CancelRefusal> {
        self.cancel_at(id, self.clock.now())
    }

    /// Cancels a task at clock time `now`: it ends immediately as FAILED / CANCELED.
    pub fn cancel_at(&self, id: &str, now: Duration) -> Result<(), CancelRefusal> {
        self.cancel_after_at(id, now, Duration::ZERO)
    }

    /// Accepts a cancel now that takes effect `delay` later (Cloud Director marks
    /// `cancelRequested` first and aborts the task a moment later). Until then the task keeps
    /// running and is no longer cancelable; if its script finishes first, that result stands.
    pub fn cancel_after(&self, id: &str, delay: Duration) -> Result<(), CancelRefusal> {
        self.cancel_after_at(id, self.clock.now(), delay)
    }

    fn cancel_after_at(
        &self,
        id: &str,
        now: Duration,
        delay: Duration,
    ) -> Result<(), CancelRefusal> {
        let mut tasks = self.lock();
        let task = tasks
            .iter_mut()
            .find(|t| t.id == id)
            .ok_or(CancelRefusal::NotFound)?;
        let snap = render(task, now, &self.clock);
        if snap.status.is_terminal() {
            return Err(CancelRefusal::Finished);
        }
        if !snap.cancelable {
            return Err(CancelRefusal::NotCancelable);
        }
        task.canceled_at = Some(script_time(task, now).saturating_add(delay));
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Task>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl std::fmt::Debug for TaskStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskStore")
            .field("tasks", &self.len())
            .finish()
    }
}

fn script_time(task: &Task, now: Duration) -> Duration {
    now.saturating_sub(task.added).saturating_add(task.spec.age)
}

/// Evaluates the script at clock time `now`.
fn render(task: &Task, now: Duration, clock: &SimClock) -> TaskSnapshot {
    let spec = &task.spec;
    // Wall time of script t=0; computed as a chrono value because it may lie before the
    // clock's epoch (tasks seeded as hours old).
    let origin = clock.wall(task.added)
        - chrono::Duration::from_std(spec.age).unwrap_or(chrono::Duration::zero());
    let wall = |s: Duration| origin + chrono::Duration::from_std(s).unwrap_or_default();

    // A cancel that took effect freezes the script at the cancel time.
    let now_script = script_time(task, now);
    let effective_cancel = task.canceled_at.filter(|c| *c <= now_script);
    let t = match effective_cancel {
        Some(c) => c,
        None => now_script,
    };

    let mut status = TaskStatus::Pending;
    let mut progress: u32 = 0;
    let mut start = None;
    let mut end = None;
    let mut result = None;
    let mut error = None;

    for (i, step) in spec.steps.iter().enumerate() {
        if step.at > t {
            break;
        }
        let next_at = spec.steps.get(i + 1).map(|n| n.at);
        if !matches!(step.phase, Phase::Pending) && start.is_none() {
            start = Some(wall(step.at));
        }
        match &step.phase {
            Phase::Pending => status = TaskStatus::Pending,
            Phase::Running { from, to } => {
                status = TaskStatus::Running;
                let value = match next_at {
                    Some(n) if n > step.at => {
                        let span = (n - step.at).as_millis();
                        let done = (t.min(n) - step.at).as_millis();
                        let (from, to) = (u128::from(*from), u128::from(*to));
                        let v = if to >= from {
                            from + (to - from) * done / span
                        } else {
                            from - (from - to) * done / span
                        };
                        u32::try_from(v).unwrap_or(100)
                    }
                    Some(_) => *to,
                    None => *from,
                };
                progress = progress.max(value.min(100));
            }
            Phase::Blocked => status = TaskStatus::Blocked,
            Phase::Succeeded { result: r } => {
                status = TaskStatus::Succeeded;
                progress = 100;
                result = r.clone();
            }
            Phase::Failed {
                error_type,
                message,
            } => {
                status = TaskStatus::Failed;
                let mut messages = vec![(
                    format!("{}.{}.failed", spec.service, spec.operation),
                    message.clone(),
                )];
                messages.extend(spec.error_causes.iter().cloned());
                error = Some(TaskError {
                    error_type: error_type.clone(),
                    messages,
                });
            }
        }
        if step.phase.is_terminal() {
            end = Some(wall(step.at));
            break;
        }
    }

    let mut canceled = false;
    if let Some(c) = effective_cancel
        && !status.is_terminal()
    {
        canceled = true;
        status = TaskStatus::Failed;
        // A task cancelled while still queued never started; FAILED still carries a
        // start_time on the wire, so it starts and ends at the cancel.
        start = start.or(Some(wall(c)));
        end = Some(wall(c));
        result = None;
        error = Some(TaskError {
            error_type: CANCELED_ERROR_TYPE.to_string(),
            messages: vec![(
                "com.vmware.vapi.std.errors.canceled".to_string(),
                CANCELED_MESSAGE.to_string(),
            )],
        });
    }

    TaskSnapshot {
        id: task.id.clone(),
        service: spec.service.clone(),
        operation: spec.operation.clone(),
        description: spec.description.clone(),
        target: spec.target.clone(),
        user: spec.user.clone(),
        parent: spec.parent.clone(),
        status,
        cancelable: spec.cancelable && !status.is_terminal() && task.canceled_at.is_none(),
        progress,
        queued_time: origin,
        start_time: start,
        end_time: end,
        result,
        error,
        canceled,
        cancel_requested: task.canceled_at.is_some(),
        vc_task: spec.vc_task.clone(),
        extra: spec.extra.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn lifecycle() -> TaskSpec {
        TaskSpec::new(
            "com.vmware.vcenter.VM",
            "clone",
            "Clone virtual machine",
            vec![
                Step::new(secs(0), Phase::Pending),
                Step::new(secs(10), Phase::Running { from: 0, to: 100 }),
                Step::new(secs(110), Phase::Succeeded { result: None }),
            ],
        )
        .with_id("t-1")
    }

    #[test]
    fn progress_rises_linearly_with_the_manual_clock() {
        let clock = SimClock::manual();
        let store = TaskStore::new(clock.clone());
        store.add(lifecycle());
        let s = store.snapshot("t-1").unwrap();
        assert_eq!(s.status, TaskStatus::Pending);
        assert!(s.start_time.is_none());
        clock.advance(secs(10));
        let s = store.snapshot("t-1").unwrap();
        assert_eq!((s.status, s.progress), (TaskStatus::Running, 0));
        let started = s.start_time.unwrap();
        clock.advance(secs(25));
        assert_eq!(store.snapshot("t-1").unwrap().progress, 25);
        clock.advance(secs(50));
        let s = store.snapshot("t-1").unwrap();
        assert_eq!(s.progress, 75);
        assert_eq!(s.start_time, Some(started));
        assert!(s.end_time.is_none());
    }

    #[test]
    fn last_phase_lasts_forever() {
        let clock = SimClock::manual();
        let store = TaskStore::new(clock.clone());
        store.add(lifecycle());
        clock.advance(secs(110));
        let s = store.snapshot("t-1").unwrap();
        assert_eq!((s.status, s.progress), (TaskStatus::Succeeded, 100));
        let end = s.end_time.unwrap();
        clock.advance(secs(100_000));
        let s = store.snapshot("t-1").unwrap();
        assert_eq!(s.status, TaskStatus::Succeeded);
        assert_eq!(s.end_time, Some(end));
        assert!(!s.cancelable);
    }

    #[test]
    fn aged_task_started_in_the_past() {
        let clock = SimClock::manual();
        let store = TaskStore::new(clock.clone());
        store.add(lifecycle().aged(secs(60)));
        let s = store.snapshot("t-1").unwrap();
        assert_eq!((s.status, s.progress), (TaskStatus::Running, 50));
        assert_eq!(
            s.start_time.unwrap(),
            clock.wall(Duration::ZERO) - chrono::Duration::seconds(50)
        );
    }

    #[test]
    fn cancel_ends_a_cancelable_task_as_failed_canceled() {
        let clock = SimClock::manual();
        let store = TaskStore::new(clock.clone());
        store.add(lifecycle().cancelable());
        clock.advance(secs(30));
        assert!(store.snapshot("t-1").unwrap().cancelable);
        store.cancel("t-1").unwrap();
        let cancel_wall = clock.wall(clock.now());
        clock.advance(secs(500));
        let s = store.snapshot("t-1").unwrap();
        assert_eq!(s.status, TaskStatus::Failed);
        assert!(s.canceled);
        assert!(!s.cancelable);
        assert_eq!(s.progress, 20);
        assert_eq!(s.end_time, Some(cancel_wall));
        let err = s.error.unwrap();
        assert_eq!(err.error_type, "CANCELED");
        assert_eq!(err.messages[0].1, CANCELED_MESSAGE);
        assert_eq!(store.cancel("t-1"), Err(CancelRefusal::Finished));
    }

    #[test]
    fn cancel_of_a_pending_task_gives_it_a_start_time() {
        let clock = SimClock::manual();
        let store = TaskStore::new(clock.clone());
        store.add(lifecycle().cancelable());
        store.cancel("t-1").unwrap();
        let s = store.snapshot("t-1").unwrap();
        assert_eq!(s.status, TaskStatus::Failed);
        assert_eq!(s.start_time, s.end_time);
        assert!(s.start_time.is_some());
    }

    #[test]
    fn delayed_cancel_marks_first_and_ends_later() {
        let clock = SimClock::manual();
        let store = TaskStore::new(clock.clone());
        store.add(lifecycle().cancelable());
        clock.advance(secs(30));
        store.cancel_after("t-1", secs(1)).unwrap();
        let s = store.snapshot("t-1").unwrap();
        assert_eq!(s.status, TaskStatus::Running);
        assert!(s.cancel_requested && !s.cancelable && !s.canceled);
        assert_eq!(store.cancel("t-1"), Err(CancelRefusal::NotCancelable));
        clock.advance(secs(1));
        let s = store.snapshot("t-1").unwrap();
        assert_eq!(s.status, TaskStatus::Failed);
        assert!(s.canceled && s.cancel_requested);
        assert_eq!(s.end_time, Some(clock.wall(clock.now())));
    }

    #[test]
    fn cancel_refusals() {
        let clock = SimClock::manual();
        let store = TaskStore::new(clock.clone());
        store.add(lifecycle());
        assert_eq!(store.cancel("nope"), Err(CancelRefusal::NotFound));
        clock.advance(secs(20));
        assert_eq!(store.cancel("t-1"), Err(CancelRefusal::NotCancelable));
        clock.advance(secs(200));
        assert_eq!(store.cancel("t-1"), Err(CancelRefusal::Finished));
        assert_eq!(store.snapshot("t-1").unwrap().status, TaskStatus::Succeeded);
    }

    #[test]
    fn failed_phase_carries_the_message_stack_and_remove_forgets() {
        let clock = SimClock::manual();
        let store = TaskStore::new(clock.clone());
        let id = store.add(
            TaskSpec::new(
                "s",
                "op",
                "d",
                vec![
                    Step::new(secs(0), Phase::Running { from: 10, to: 50 }),
                    Step::new(
                        secs(10),
                        Phase::Failed {
                            error_type: "NOT_FOUND".into(),
                            message: "gone".into(),
                        },
                    ),
                ],
            )
            .with_error_cause("x.cause", "because"),
        );
        assert_eq!(id.len(), 36);
        clock.advance(secs(10));
        let s = store.snapshot(&id).unwrap();
        assert_eq!((s.status, s.progress), (TaskStatus::Failed, 50));
        let e = s.error.unwrap();
        assert_eq!(e.messages.len(), 2);
        assert_eq!(e.messages[1].1, "because");
        assert!(store.remove(&id));
        assert!(store.snapshot(&id).is_none());
        assert!(!store.remove(&id));
    }
}
