//! The seeded vCenter task mix: every status, fixed ids (so docs and the demo can name them),
//! system tasks without user or target, parents and children, lifecycles that play out
//! within the first minute and long cancelable runners.

use serde_json::json;

use super::{DEMO_CANCELABLE_TASK, DEMO_RUNNING_TASK, SVC_HARDWARE, SVC_LIBRARY_ITEM, SVC_VM};
use crate::simulator::tasks::script::{at, failed, mins, running, secs, succeeded};
use crate::simulator::tasks::{CANCELED_MESSAGE, Phase, TaskSpec, TaskStore};

/// Id of seeded task number `n` (`5eed0000-0000-4000-8000-0000000000nn`).
pub fn seed_task_id(n: u32) -> String {
    format!("5eed0000-0000-4000-8000-{n:012}")
}

const ADMIN: &str = "VSPHERE.LOCAL\\Administrator";
const BACKUP: &str = "VSPHERE.LOCAL\\svc-backup";

/// Seeds the demo mix: ids are fixed so docs and the demo can name them.
pub(super) fn seed_demo_tasks(store: &TaskStore) {
    let vm = |n: u32, op: &str, desc: &str, steps| {
        TaskSpec::new(SVC_VM, op, desc, steps)
            .with_id(&seed_task_id(n))
            .with_user(ADMIN)
    };
    let hw = |n: u32, op: &str, desc: &str, steps| {
        TaskSpec::new(SVC_HARDWARE, op, desc, steps)
            .with_id(&seed_task_id(n))
            .with_user(ADMIN)
    };
    let lib = |n: u32, op: &str, desc: &str, steps| {
        TaskSpec::new(SVC_LIBRARY_ITEM, op, desc, steps)
            .with_id(&seed_task_id(n))
            .with_user(BACKUP)
    };
    let specs = vec![
        // The two demo tasks.
        TaskSpec::new(
            SVC_VM,
            "clone",
            "Clone virtual machine",
            vec![
                at(secs(0), running(0, 100)),
                at(mins(50), succeeded(Some(json!("vm-2050")))),
            ],
        )
        .with_id(DEMO_RUNNING_TASK)
        .with_target("VirtualMachine", "vm-1021")
        .with_user(ADMIN),
        TaskSpec::new(
            SVC_VM,
            "relocate",
            "Relocate virtual machine",
            vec![at(secs(0), running(2, 98)), at(mins(360), succeeded(None))],
        )
        .with_id(DEMO_CANCELABLE_TASK)
        .with_target("VirtualMachine", "vm-1022")
        .with_user(ADMIN)
        .cancelable(),
        // Finished SUCCEEDED, some with a result.
        vm(
            1,
            "create",
            "Create virtual machine",
            vec![
                at(secs(0), running(0, 100)),
                at(secs(95), succeeded(Some(json!("vm-2001")))),
            ],
        )
        .with_target("Folder", "group-v4")
        .aged(mins(120)),
        vm(
            2,
            "clone",
            "Clone virtual machine",
            vec![
                at(secs(0), Phase::Pending),
                at(secs(3), running(0, 100)),
                at(secs(240), succeeded(Some(json!("vm-2002")))),
            ],
        )
        .with_target("VirtualMachine", "vm-1001")
        .aged(mins(60)),
        hw(
            3,
            "upgrade",
            "Upgrade virtual hardware",
            vec![at(secs(0), running(0, 100)), at(secs(20), succeeded(None))],
        )
        .with_target("VirtualMachine", "vm-1002")
        .aged(mins(45)),
        lib(
            4,
            "copy",
            "Copy library item",
            vec![
                at(secs(0), running(0, 100)),
                at(
                    secs(300),
                    succeeded(Some(json!("b1d7c1e0-4a8d-4c6e-9a43-1f0b1c2d3e4f"))),
                ),
            ],
        )
        .with_target("com.vmware.content.library.Item", "item-17")
        .aged(mins(30)),
        lib(
            5,
            "publish",
            "Publish library item",
            vec![at(secs(0), running(0, 100)), at(secs(12), succeeded(None))],
        )
        .with_target("com.vmware.content.library.Item", "item-18")
        .aged(mins(10)),
        // System-started, no user and no target.
        TaskSpec::new(
            SVC_LIBRARY_ITEM,
            "sync",
            "Synchronize subscribed library item",
            vec![
                at(secs(0), running(0, 100)),
                at(
                    secs(40),
                    succeeded(Some(json!({"synced": true, "files": 3}))),
                ),
            ],
        )
        .with_id(&seed_task_id(6))
        .aged(mins(5)),
        // Finished FAILED, each with a two-message stack.
        vm(
            10,
            "relocate",
            "Relocate virtual machine",
            vec![
                at(secs(0), running(0, 60)),
                at(
                    secs(80),
                    failed(
                        "RESOURCE_INACCESSIBLE",
                        "The virtual machine could not be relocated.",
                    ),
                ),
            ],
        )
        .with_target("VirtualMachine", "vm-1003")
        .with_error_cause(
            "com.vmware.vcenter.datastore.inaccessible",
            "Datastore datastore-12 is not accessible from host host-31.",
        )
        .aged(mins(40)),
        hw(
            11,
            "upgrade",
            "Upgrade virtual hardware",
            vec![
                at(secs(0), running(0, 10)),
                at(
                    secs(2),
                    failed(
                        "NOT_ALLOWED_IN_CURRENT_STATE",
                        "The virtual hardware could not be upgraded.",
                    ),
                ),
            ],
        )
        .with_target("VirtualMachine", "vm-1004")
        .with_error_cause("com.vmware.vcenter.vm.powered_on", "The VM is powered on.")
        .aged(mins(25)),
        lib(
            12,
            "copy",
            "Copy library item",
            vec![
                at(secs(0), Phase::Pending),
                at(secs(5), running(0, 80)),
                at(
                    secs(65),
                    failed(
                        "UNABLE_TO_ALLOCATE_RESOURCE",
                        "The library item could not be copied.",
                    ),
                ),
            ],
        )
        .with_target("com.vmware.content.library.Item", "item-19")
        .with_error_cause(
            "com.vmware.content.storage.full",
            "Not enough free space on the library's storage backing.",
        )
        .aged(mins(15)),
        // Already cancelled earlier (FAILED / CANCELED).
        vm(
            13,
            "clone",
            "Clone virtual machine",
            vec![
                at(secs(0), running(0, 100)),
                at(secs(30), failed("CANCELED", CANCELED_MESSAGE)),
            ],
        )
        .with_target("VirtualMachine", "vm-1005")
        .with_error_cause(
            "com.vmware.vcenter.VM.clone.rollback",
            "The partially created clone was removed.",
        )
        .aged(mins(20)),
        // Lifecycles that play out within a minute after start.
        vm(
            14,
            "clone",
            "Clone virtual machine",
            vec![
                at(secs(0), Phase::Pending),
                at(secs(5), running(0, 100)),
                at(secs(35), succeeded(Some(json!("vm-2014")))),
            ],
        )
        .with_target("VirtualMachine", "vm-1006"),
        hw(
            15,
            "upgrade",
            "Upgrade virtual hardware",
            vec![
                at(secs(0), Phase::Pending),
                at(secs(10), running(0, 60)),
                at(
                    secs(40),
                    failed(
                        "INVALID_ARGUMENT",
                        "The requested hardware version is not supported.",
                    ),
                ),
            ],
        )
        .with_target("VirtualMachine", "vm-1007")
        .with_error_cause(
            "com.vmware.vcenter.vm.hardware.version.unsupported",
            "Host host-31 does not support hardware version vmx-99.",
        ),
        lib(
            16,
            "update",
            "Update library item",
            vec![at(secs(0), running(0, 100)), at(secs(20), succeeded(None))],
        )
        .with_target("com.vmware.content.library.Item", "item-20")
        .cancelable(),
        vm(
            17,
            "create",
            "Create virtual machine",
            vec![
                at(secs(0), Phase::Pending),
                at(secs(15), running(0, 50)),
                at(secs(30), Phase::Blocked),
                at(secs(45), running(50, 100)),
                at(secs(60), succeeded(Some(json!("vm-2017")))),
            ],
        )
        .with_target("Folder", "group-v4")
        .cancelable(),
        // BLOCKED indefinitely.
        hw(
            20,
            "upgrade",
            "Upgrade virtual hardware",
            vec![at(secs(0), running(0, 30)), at(secs(60), Phase::Blocked)],
        )
        .with_target("VirtualMachine", "vm-1008")
        .aged(mins(10)),
        // Not yet started: PENDING for minutes, then run.
        vm(
            30,
            "clone",
            "Clone virtual machine",
            vec![
                at(secs(0), Phase::Pending),
                at(mins(5), running(0, 100)),
                at(mins(7), succeeded(Some(json!("vm-2030")))),
            ],
        )
        .with_target("VirtualMachine", "vm-1009")
        .cancelable(),
        lib(
            31,
            "publish",
            "Publish library item",
            vec![
                at(secs(0), Phase::Pending),
                at(mins(2), running(0, 100)),
                at(mins(3), succeeded(None)),
            ],
        )
        .with_target("com.vmware.content.library.Item", "item-21"),
        hw(
            32,
            "upgrade",
            "Upgrade virtual hardware",
            vec![at(secs(0), Phase::Pending), at(mins(20), running(0, 100))],
        )
        .with_target("VirtualMachine", "vm-1010")
        .cancelable()
        .aged(mins(1)),
        // Cancelable long runners, at different points of their run.
        vm(
            40,
            "relocate",
            "Relocate virtual machine",
            vec![at(secs(0), running(0, 100)), at(mins(120), succeeded(None))],
        )
        .with_target("VirtualMachine", "vm-1011")
        .cancelable()
        .aged(mins(30)),
        lib(
            41,
            "copy",
            "Copy library item",
            vec![
                at(secs(0), running(0, 100)),
                at(
                    mins(90),
                    succeeded(Some(json!("c2e8d2f1-5b9e-4d7f-8b54-2a1c2d3e4f50"))),
                ),
            ],
        )
        .with_target("com.vmware.content.library.Item", "item-22")
        .cancelable()
        .aged(mins(60)),
        vm(
            42,
            "clone",
            "Clone virtual machine",
            vec![
                at(secs(0), running(0, 100)),
                at(mins(30), succeeded(Some(json!("vm-2042")))),
            ],
        )
        .with_target("VirtualMachine", "vm-1012")
        .cancelable()
        .aged(mins(3)),
        // Not cancelable, running, and a child of the demo running task.
        hw(
            43,
            "upgrade",
            "Upgrade virtual hardware",
            vec![at(secs(0), running(0, 100)), at(mins(40), succeeded(None))],
        )
        .with_target("VirtualMachine", "vm-1021")
        .with_parent(DEMO_RUNNING_TASK),
        // Another system task, still running.
        TaskSpec::new(
            SVC_LIBRARY_ITEM,
            "sync",
            "Synchronize subscribed library item",
            vec![at(secs(0), running(0, 100)), at(mins(15), succeeded(None))],
        )
        .with_id(&seed_task_id(44))
        .with_target("com.vmware.content.library.Item", "item-23")
        .aged(mins(2)),
    ];
    for spec in specs {
        store.add(spec);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulator::SimClock;
    use crate::simulator::tasks::TaskStatus;
    use crate::simulator::vcenter::{
        DEMO_BLOCKED_TASK, DEMO_FAILED_TASK, DEMO_PENDING_TASK, DEMO_SERVICES, DEMO_SUCCEEDED_TASK,
    };

    #[test]
    fn seeded_tasks_cover_every_status_and_only_declared_services() {
        let clock = SimClock::manual();
        let store = TaskStore::new(clock);
        seed_demo_tasks(&store);
        let snaps = store.snapshots();
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
        assert_eq!(status(DEMO_SUCCEEDED_TASK), Some(TaskStatus::Succeeded));
        assert_eq!(status(DEMO_FAILED_TASK), Some(TaskStatus::Failed));
        assert_eq!(status(DEMO_BLOCKED_TASK), Some(TaskStatus::Blocked));
        assert_eq!(status(DEMO_PENDING_TASK), Some(TaskStatus::Pending));
    }
}
