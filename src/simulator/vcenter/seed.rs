//! The seeded vCenter task mix: the rows of `seed.toml` (every status, fixed ids so docs and
//! the demo can name them, system tasks, parents and children, short lifecycles and long
//! cancelable runners), loaded by [`crate::simulator::seed`].

use crate::simulator::seed;
use crate::simulator::tasks::TaskStore;

/// The seed table; see [`crate::simulator::seed`] for its row format.
const SEED_TABLE: &str = include_str!("seed.toml");

/// Id of seeded task number `n` (`5eed0000-0000-4000-8000-0000000000nn`).
pub fn seed_task_id(n: u32) -> String {
    format!("5eed0000-0000-4000-8000-{n:012}")
}

/// Seeds the demo mix: ids are fixed so docs and the demo can name them.
pub(super) fn seed_demo_tasks(store: &TaskStore) {
    seed::add_all(store, "vCenter", SEED_TABLE);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulator::SimClock;
    use crate::simulator::tasks::TaskStatus;
    use crate::simulator::vcenter::{
        DEMO_BLOCKED_TASK, DEMO_CANCELABLE_TASK, DEMO_FAILED_TASK, DEMO_PENDING_TASK,
        DEMO_QUICK_TASK, DEMO_RUNNING_TASK, DEMO_SERVICES, DEMO_SUCCEEDED_TASK, DEMO_VIEWER_TASK,
        VAPI_VIEWER_PRINCIPAL,
    };

    #[test]
    fn seeded_tasks_cover_every_status_and_only_declared_services() {
        if let Err(e) = seed::specs(SEED_TABLE) {
            panic!("{e}");
        }
        let clock = SimClock::manual();
        let store = TaskStore::new(clock);
        seed_demo_tasks(&store);
        let snaps = store.snapshots();
        assert!(snaps.iter().any(|s| s.id == seed_task_id(1)));
        assert!((25..=40).contains(&snaps.len()), "{} tasks", snaps.len());
        for status in [
            TaskStatus::Pending,
            TaskStatus::Running,
            TaskStatus::Blocked,
            TaskStatus::Succeeded,
            TaskStatus::Failed,
        ] {
            assert!(snaps.iter().any(|s| s.status == status), "{status:?}");
        }
        assert!(
            snaps
                .iter()
                .all(|s| DEMO_SERVICES.contains(&s.service.as_str()))
        );
        let status = |id: &str| store.snapshot(id).map(|s| s.status);
        assert_eq!(status(DEMO_RUNNING_TASK), Some(TaskStatus::Running));
        assert_eq!(status(DEMO_CANCELABLE_TASK), Some(TaskStatus::Running));
        assert_eq!(status(DEMO_QUICK_TASK), Some(TaskStatus::Running));
        assert_eq!(status(DEMO_VIEWER_TASK), Some(TaskStatus::Running));
        let owned: Vec<String> = snaps
            .iter()
            .filter(|s| s.user.as_deref() == Some(VAPI_VIEWER_PRINCIPAL))
            .map(|s| s.id.clone())
            .collect();
        assert_eq!(
            owned,
            [DEMO_VIEWER_TASK],
            "the viewer owns exactly its demo task"
        );
        store.clock().advance(std::time::Duration::from_secs(16));
        assert_eq!(status(DEMO_QUICK_TASK), Some(TaskStatus::Succeeded));
        assert_eq!(status(DEMO_SUCCEEDED_TASK), Some(TaskStatus::Succeeded));
        assert_eq!(status(DEMO_FAILED_TASK), Some(TaskStatus::Failed));
        assert_eq!(status(DEMO_BLOCKED_TASK), Some(TaskStatus::Blocked));
        assert_eq!(status(DEMO_PENDING_TASK), Some(TaskStatus::Pending));
    }
}
