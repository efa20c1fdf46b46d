//! The seeded snapshot-service task mix: every status, with and without `vc_task`, fixed ids
//! (so docs and the demo can name them), none cancelable (the service has no cancel).

use serde_json::json;

use super::{
    SNAP_DEMO_BLOCKED_TASK, SNAP_DEMO_FAILED_TASK, SNAP_DEMO_PENDING_TASK, SNAP_DEMO_RUNNING_TASK,
    SNAP_DEMO_SUCCEEDED_TASK, SVC_PG, SVC_PG_SNAPSHOTS, SVC_VM_SNAPSHOTS,
};
use crate::simulator::tasks::script::{at, failed, mins, running, secs, succeeded};
use crate::simulator::tasks::{Phase, TaskSpec, TaskStore};

const ADMIN: &str = "VSPHERE.LOCAL\\Administrator";
const BACKUP: &str = "VSPHERE.LOCAL\\svc-backup";
const PG_TYPE: &str = "com.vmware.snapservice.protection_group";
const VM_TYPE: &str = "VirtualMachine";

/// Id of seeded task number `n` (`8d1e0c52-3f0b-4c11-9a8e-5b3f6a7c9dnn`).
fn seed_id(n: u32) -> String {
    format!("8d1e0c52-3f0b-4c11-9a8e-5b3f6a7c9d{n:02}")
}

/// Seeds the demo mix: ids are fixed so docs and the demo can name them.
pub(super) fn seed_demo_tasks(store: &TaskStore) {
    let pg = |id: &str, op: &str, desc: &str, steps| {
        TaskSpec::new(SVC_PG, op, desc, steps)
            .with_id(id)
            .with_user(ADMIN)
    };
    let pg_snap = |id: &str, op: &str, desc: &str, steps| {
        TaskSpec::new(SVC_PG_SNAPSHOTS, op, desc, steps)
            .with_id(id)
            .with_user(BACKUP)
    };
    let vm_snap = |id: &str, op: &str, desc: &str, steps| {
        TaskSpec::new(SVC_VM_SNAPSHOTS, op, desc, steps)
            .with_id(id)
            .with_user(ADMIN)
    };
    let specs = vec![
        pg_snap(
            SNAP_DEMO_RUNNING_TASK,
            "create",
            "Create protection group snapshot",
            vec![at(secs(0), running(0, 100)), at(mins(40), succeeded(None))],
        )
        .with_target(PG_TYPE, "pg-7b1c2d3e")
        .with_vc_task("task-88240"),
        pg(
            SNAP_DEMO_SUCCEEDED_TASK,
            "create",
            "Create protection group",
            vec![
                at(secs(0), running(0, 100)),
                at(secs(8), succeeded(Some(json!("pg-7b1c2d3e")))),
            ],
        )
        .with_target(PG_TYPE, "pg-7b1c2d3e")
        .with_vc_task("task-88231")
        .aged(mins(60)),
        pg(
            &seed_id(21),
            "update",
            "Update protection group",
            vec![at(secs(0), running(0, 100)), at(secs(3), succeeded(None))],
        )
        .with_target(PG_TYPE, "pg-7b1c2d3e")
        .aged(mins(45)),
        vm_snap(
            &seed_id(22),
            "delete",
            "Delete virtual machine snapshot",
            vec![at(secs(0), running(0, 100)), at(secs(20), succeeded(None))],
        )
        .with_target(VM_TYPE, "vm-1021")
        .with_vc_task("task-88235")
        .aged(mins(30)),
        pg_snap(
            SNAP_DEMO_FAILED_TASK,
            "create",
            "Create protection group snapshot",
            vec![
                at(secs(0), running(0, 60)),
                at(
                    secs(90),
                    failed(
                        "RESOURCE_INACCESSIBLE",
                        "The protection group snapshot could not be created.",
                    ),
                ),
            ],
        )
        .with_target(PG_TYPE, "pg-8c2d3e4f")
        .with_error_cause(
            "com.vmware.snapservice.vsan.datastore.inaccessible",
            "The vSAN datastore of cluster domain-c9 is not accessible.",
        )
        .with_vc_task("task-88237")
        .aged(mins(20)),
        vm_snap(
            &seed_id(31),
            "revert",
            "Revert virtual machine to snapshot",
            vec![
                at(secs(0), running(0, 10)),
                at(
                    secs(2),
                    failed(
                        "NOT_ALLOWED_IN_CURRENT_STATE",
                        "The virtual machine could not be reverted.",
                    ),
                ),
            ],
        )
        .with_target(VM_TYPE, "vm-1022")
        .with_error_cause("com.vmware.vcenter.vm.powered_on", "The VM is powered on.")
        .aged(mins(10)),
        pg(
            SNAP_DEMO_BLOCKED_TASK,
            "delete",
            "Delete protection group",
            vec![at(secs(0), running(0, 40)), at(secs(30), Phase::Blocked)],
        )
        .with_target(PG_TYPE, "pg-9d3e4f50")
        .aged(mins(5)),
        pg_snap(
            SNAP_DEMO_PENDING_TASK,
            "create",
            "Create protection group snapshot",
            vec![
                at(secs(0), Phase::Pending),
                at(mins(3), running(0, 100)),
                at(mins(5), succeeded(None)),
            ],
        )
        .with_target(PG_TYPE, "pg-9d3e4f50"),
        // A short lifecycle that plays out within the first minute.
        vm_snap(
            &seed_id(51),
            "create",
            "Create virtual machine snapshot",
            vec![
                at(secs(0), Phase::Pending),
                at(secs(5), running(0, 100)),
                at(secs(35), succeeded(Some(json!("snapshot-412")))),
            ],
        )
        .with_target(VM_TYPE, "vm-1023")
        .with_vc_task("task-88241"),
        // System-started (no user), child of the running snapshot.
        TaskSpec::new(
            SVC_VM_SNAPSHOTS,
            "create",
            "Create virtual machine snapshot",
            vec![at(secs(0), running(0, 100)), at(mins(20), succeeded(None))],
        )
        .with_id(&seed_id(52))
        .with_target(VM_TYPE, "vm-1024")
        .with_parent(SNAP_DEMO_RUNNING_TASK),
    ];
    for spec in specs {
        store.add(spec);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulator::SimClock;
    use crate::simulator::snapservice::{SNAP_DEMO_SERVICES, task_info};
    use crate::simulator::tasks::TaskStatus;

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
