//! The seeded snapshot-service task mix: the rows of `seed.toml` (every status, with and
//! without `vc_task`, fixed ids so docs and the demo can name them, none cancelable: the
//! service has no cancel), loaded by [`crate::simulator::seed`].

use crate::simulator::seed;
use crate::simulator::tasks::TaskStore;

/// The seed table; see [`crate::simulator::seed`] for its row format.
const SEED_TABLE: &str = include_str!("seed.toml");

/// Seeds the demo mix: ids are fixed so docs and the demo can name them.
pub(super) fn seed_demo_tasks(store: &TaskStore) {
    seed::add_all(store, "snapshot service", SEED_TABLE);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulator::SimClock;
    use crate::simulator::snapservice::{
        SNAP_DEMO_BLOCKED_TASK, SNAP_DEMO_FAILED_TASK, SNAP_DEMO_PENDING_TASK,
        SNAP_DEMO_RUNNING_TASK, SNAP_DEMO_SERVICES, SNAP_DEMO_SUCCEEDED_TASK,
        SNAP_DEMO_VIEWER_TASK, VAPI_VIEWER_PRINCIPAL, task_info,
    };
    use crate::simulator::tasks::TaskStatus;

    fn mins(m: u64) -> std::time::Duration {
        std::time::Duration::from_secs(m * 60)
    }

    #[test]
    fn seeded_tasks_cover_every_status_over_the_clock() {
        let clock = SimClock::manual();
        let store = TaskStore::new(clock.clone());
        seed_demo_tasks(&store);
        let status = |id: &str| store.snapshot(id).map(|s| s.status);
        assert_eq!(status(SNAP_DEMO_RUNNING_TASK), Some(TaskStatus::Running));
        assert_eq!(
            status(SNAP_DEMO_SUCCEEDED_TASK),
            Some(TaskStatus::Succeeded)
        );
        assert_eq!(status(SNAP_DEMO_FAILED_TASK), Some(TaskStatus::Failed));
        assert_eq!(status(SNAP_DEMO_BLOCKED_TASK), Some(TaskStatus::Blocked));
        assert_eq!(status(SNAP_DEMO_PENDING_TASK), Some(TaskStatus::Pending));
        assert_eq!(status(SNAP_DEMO_VIEWER_TASK), Some(TaskStatus::Running));
        let owned: Vec<String> = store
            .snapshots()
            .into_iter()
            .filter(|s| s.user.as_deref() == Some(VAPI_VIEWER_PRINCIPAL))
            .map(|s| s.id)
            .collect();
        assert_eq!(
            owned,
            [SNAP_DEMO_VIEWER_TASK],
            "the viewer owns exactly its demo task"
        );
        assert!(
            store
                .snapshots()
                .iter()
                .all(|s| SNAP_DEMO_SERVICES.contains(&s.service.as_str()) && !s.cancelable)
        );
        let before = store.snapshot(SNAP_DEMO_RUNNING_TASK).map(|s| s.progress);
        clock.advance(mins(4));
        assert_eq!(status(SNAP_DEMO_PENDING_TASK), Some(TaskStatus::Running));
        assert!(store.snapshot(SNAP_DEMO_RUNNING_TASK).map(|s| s.progress) > before);
        clock.advance(mins(40));
        assert_eq!(status(SNAP_DEMO_RUNNING_TASK), Some(TaskStatus::Succeeded));
        assert_eq!(status(SNAP_DEMO_PENDING_TASK), Some(TaskStatus::Succeeded));
    }

    #[test]
    fn info_carries_vc_task_only_when_there_is_one() {
        let clock = SimClock::manual();
        let store = TaskStore::new(clock);
        seed_demo_tasks(&store);
        let info = |id: &str| store.snapshot(id).map(|s| task_info(&s));
        let ok = info(SNAP_DEMO_SUCCEEDED_TASK).unwrap_or_default();
        assert_eq!(ok["vc_task"], "task-88231");
        assert_eq!(ok["result"], "pg-7b1c2d3e");
        assert!(ok.get("end_time").is_some());
        let blocked = info(SNAP_DEMO_BLOCKED_TASK).unwrap_or_default();
        assert!(blocked.get("vc_task").is_none());
        assert!(blocked.get("end_time").is_none());
    }
}
