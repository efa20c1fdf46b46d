//! The seeded Cloud Director task mix of org `acme` (plus one `globex` task): every VCD status,
//! nested subtasks, `vcTaskList` entries, an RDE behavior run; fixed ids so docs and the demo
//! can name them.

use serde_json::json;

use super::{
    VCD_DEMO_ABORTED_TASK, VCD_DEMO_CANCELABLE_TASK, VCD_DEMO_ERROR_TASK, VCD_DEMO_OTHER_ORG_TASK,
    VCD_DEMO_PARENT_TASK, VCD_DEMO_PRE_RUNNING_TASK, VCD_DEMO_QUEUED_TASK, VCD_DEMO_RUNNING_TASK,
    VCD_DEMO_SUCCEEDED_TASK,
};
use crate::simulator::tasks::script::{at, failed, mins, running, secs, succeeded};
use crate::simulator::tasks::{CANCELED_ERROR_TYPE, Phase, TaskSpec, TaskStore};

const NS: &str = "com.vmware.vcloud";

fn vapp(uuid: &str) -> String {
    format!("vapp-{uuid}")
}

/// Seeds the demo mix for org `acme` (plus one `globex` task); ids are fixed so docs and the
/// demo can name them.
pub(super) fn seed_demo_tasks(store: &TaskStore) {
    let task = |id: &str, op: &str, desc: &str, steps| {
        TaskSpec::new(NS, op, desc, steps)
            .with_id(id)
            .with_user("svc-gateway")
    };
    let web = vapp("77a1c0de-5b1e-4f6a-9c3d-2e1f0a9b8c70");
    let db = vapp("77a1c0de-5b1e-4f6a-9c3d-2e1f0a9b8c71");
    let app = vapp("77a1c0de-5b1e-4f6a-9c3d-2e1f0a9b8c72");
    let specs = vec![
        task(
            VCD_DEMO_RUNNING_TASK,
            "vappDeploy",
            "Starting Virtual Application web-01(77a1c0de-5b1e-4f6a-9c3d-2e1f0a9b8c70)",
            vec![at(secs(0), running(0, 100)), at(mins(45), succeeded(None))],
        )
        .with_target("vApp", &web)
        .with_extra("ownerName", json!("web-01")),
        task(
            VCD_DEMO_CANCELABLE_TASK,
            "vdcCopyTemplate",
            "Copying Virtual Application Template ubuntu-22.04",
            vec![at(secs(0), running(2, 98)), at(mins(360), succeeded(None))],
        )
        .with_target("vAppTemplate", "vappTemplate-5c1d2e3f-0a1b-4c2d-8e3f-4a5b6c7d8e90")
        .with_extra("ownerName", json!("ubuntu-22.04"))
        .cancelable(),
        task(
            VCD_DEMO_QUEUED_TASK,
            "vappUndeployPowerOff",
            "Stopping Virtual Application db-01(77a1c0de-5b1e-4f6a-9c3d-2e1f0a9b8c71)",
            vec![
                at(secs(0), Phase::Pending),
                at(mins(10), running(0, 100)),
                at(mins(12), succeeded(None)),
            ],
        )
        .with_target("vApp", &db)
        .with_extra("ownerName", json!("db-01"))
        .cancelable(),
        task(
            VCD_DEMO_PRE_RUNNING_TASK,
            "vdcComposeVapp",
            "Composing Virtual Application app-01 (awaiting approval)",
            vec![at(secs(0), Phase::Blocked)],
        )
        .with_target("vApp", &app)
        .with_extra("ownerName", json!("app-01"))
        .with_extra("noProgress", json!(true))
        .aged(mins(15)),
        task(
            VCD_DEMO_SUCCEEDED_TASK,
            "vappPowerOn",
            "Powering on Virtual Application web-01(77a1c0de-5b1e-4f6a-9c3d-2e1f0a9b8c70)",
            vec![
                at(secs(0), running(0, 100)),
                at(secs(42), succeeded(Some(json!("powered on")))),
            ],
        )
        .with_target("vApp", &web)
        .with_extra("ownerName", json!("web-01"))
        .with_extra(
            "vcTasks",
            json!([
                {"name": "task-88231", "description": "Power On virtual machine", "status": "success",
                 "objectType": "VirtualMachine", "objectName": "web-01-vm1", "objectMoref": "vm-1021"},
                {"name": "task-88232", "description": "Power On virtual machine", "status": "success",
                 "objectType": "VirtualMachine", "objectName": "web-01-vm2", "objectMoref": "vm-1022"},
            ]),
        )
        .aged(mins(60)),
        task(
            VCD_DEMO_ERROR_TASK,
            "vdcUpdateVdc",
            "Updating Virtual Data Center acme-vdc-01",
            vec![
                at(secs(0), running(0, 70)),
                at(
                    secs(35),
                    failed(
                        "INTERNAL_SERVER_ERROR",
                        "[ 7d4c0b1a-2e3f-4a5b-8c6d-9e0f1a2b3c4d ] Unable to update the VDC: the storage policy gold is not available in provider VDC pvdc-01.",
                    ),
                ),
            ],
        )
        .with_target("vdc", "5d6e7f80-1a2b-4c3d-9e4f-5a6b7c8d9e01")
        .with_extra("ownerName", json!("acme-vdc-01"))
        .with_extra("details", json!("Storage policy gold is not available."))
        .with_error_cause(
            "com.vmware.ssdc.library.exceptions.MultipleValidationException",
            "Storage policy gold is not available in provider VDC pvdc-01.",
        )
        .aged(mins(40)),
        task(
            VCD_DEMO_ABORTED_TASK,
            "vappDeploy",
            "Starting Virtual Application db-01(77a1c0de-5b1e-4f6a-9c3d-2e1f0a9b8c71)",
            vec![
                at(secs(0), running(0, 100)),
                at(secs(25), failed(CANCELED_ERROR_TYPE, "The task was canceled by the user.")),
            ],
        )
        .with_target("vApp", &db)
        .with_extra("ownerName", json!("db-01"))
        .aged(mins(30)),
        task(
            VCD_DEMO_PARENT_TASK,
            "vdcInstantiateVapp",
            "Creating Virtual Application app-01(77a1c0de-5b1e-4f6a-9c3d-2e1f0a9b8c72)",
            vec![at(secs(0), running(0, 100)), at(mins(30), succeeded(None))],
        )
        .with_target("vApp", &app)
        .with_extra("ownerName", json!("app-01"))
        .aged(mins(2)),
        task(
            "3c2b9e61-0d5e-4f6b-9a8a-1f7d2c4e5b68",
            "vappUploadOvf",
            "Uploading OVF for Virtual Application app-01",
            vec![at(secs(0), running(0, 100)), at(secs(60), succeeded(None))],
        )
        .with_target("vApp", &app)
        .with_extra("ownerName", json!("app-01"))
        .with_parent(VCD_DEMO_PARENT_TASK)
        .aged(mins(2)),
        task(
            "3c2b9e61-0d5e-4f6b-9a8a-1f7d2c4e5b69",
            "vappDeploy",
            "Starting Virtual Application app-01(77a1c0de-5b1e-4f6a-9c3d-2e1f0a9b8c72)",
            vec![at(secs(0), running(0, 100)), at(mins(20), succeeded(None))],
        )
        .with_target("vApp", &app)
        .with_extra("ownerName", json!("app-01"))
        .with_parent(VCD_DEMO_PARENT_TASK)
        .aged(mins(1)),
        // A defined-entity behavior (RDE) run, as in the extensibility examples.
        task(
            "3c2b9e61-0d5e-4f6b-9a8a-1f7d2c4e5b6a",
            "executeBehavior",
            "Executing behavior urn:vcloud:behavior-interface:backup:acme:backup:1.0.0",
            vec![
                at(secs(0), running(0, 100)),
                at(secs(5), succeeded(Some(json!("{\"backupId\":\"b-17\"}")))),
            ],
        )
        .with_extra("noProgress", json!(true))
        .aged(mins(10)),
        task(
            VCD_DEMO_OTHER_ORG_TASK,
            "vappPowerOn",
            "Powering on Virtual Application shop-01",
            vec![at(secs(0), running(0, 100)), at(secs(30), succeeded(None))],
        )
        .with_target("vApp", &vapp("88b2d1ef-6c2f-4a7b-8d4e-3f2a1b0c9d80"))
        .with_extra("ownerName", json!("shop-01"))
        .with_extra("org", json!("globex"))
        .with_user("globex-admin")
        .aged(mins(50)),
    ];
    for spec in specs {
        store.add(spec);
    }
}
