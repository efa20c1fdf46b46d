//! Properties of the snapshot service's task list answer (`{"items": [{"task", "info"}]}`,
//! UPSTREAM_APIS.md §4.5) and its `Info` conversion, on spoiled documents: tasks or
//! UPSTREAM_BAD_RESPONSE, never a panic; unknown fields lose nothing.

use proptest::prelude::*;
use serde_json::{Value as Json, json};

use super::*;
use crate::{
    proto,
    upstream::{
        json::{strategies::*, to_struct},
        vapi::task_from_info,
    },
};

const UPSTREAM: &str = "snap1";

fn message(id: &str, text: &str) -> Json {
    json!({"id": id, "default_message": text, "args": []})
}

/// List answers as the snapshot service sends them (§4.5).
fn documents() -> Vec<Json> {
    let succeeded = json!({"description": message("com.vmware.snapservice.pg.create", "Create protection group"),
        "service": "com.vmware.snapservice.clusters.protection_groups", "operation": "create",
        "status": "SUCCEEDED", "cancelable": false,
        "start_time": "2024-06-11T07:00:02.118Z", "end_time": "2024-06-11T07:00:09.730Z",
        "user": "VSPHERE.LOCAL\\Administrator", "vc_task": "task-88231",
        "progress": {"total": 100, "completed": 100, "message": message("done", "Done")}});
    let running = json!({"description": message("com.vmware.snapservice.snapshot", "Take snapshot"),
        "service": "com.vmware.snapservice.clusters.protection_groups", "operation": "snapshot",
        "status": "RUNNING", "cancelable": false, "start_time": "2024-06-11T07:05:00.000Z",
        "progress": {"total": 3, "completed": 1, "message": message("vm", "1 of 3 VMs")}});
    vec![
        json!({"items": [{"task": "8d1e0c52-3f0b-4c11-9a8e-5b3f6a7c9d20", "info": succeeded}]}),
        json!({"items": [
            {"task": "8d1e0c52-3f0b-4c11-9a8e-5b3f6a7c9d20", "info": succeeded},
            {"task": "a/b%c", "info": running},
        ]}),
        json!({"items": []}),
    ]
}

fn document() -> impl Strategy<Value = Json> {
    prop::sample::select(documents())
}

type Converted = Vec<(String, Result<proto::Task, UpstreamError>)>;

/// The list answer read as the adapter reads it: items, then each `Info` on its own.
fn convert(body: Json) -> Result<Converted, UpstreamError> {
    let reply = Reply {
        status: 200,
        headers: Default::default(),
        body: serde_json::to_vec(&body).unwrap().into(),
    };
    let items = SnapserviceTasks::list_items(UPSTREAM, &reply, body)?;
    Ok(items
        .into_iter()
        .map(|(id, info)| {
            let task = task_from_info(UPSTREAM, proto::UpstreamKind::Snapservice, &id, info, 200);
            (id, task)
        })
        .collect())
}

fn check(result: Result<Converted, UpstreamError>) -> Result<(), TestCaseError> {
    let resource = format!("upstreams/{UPSTREAM}/tasks/-");
    match result {
        Ok(items) => {
            for (id, task) in items {
                match task {
                    Ok(t) => {
                        prop_assert_eq!(&t.id, &id);
                        check_task(&t, UPSTREAM)?;
                        check_round_trip(&t)?;
                    }
                    Err(e) => check_bad_response(&e, &resource)?,
                }
            }
            Ok(())
        }
        Err(e) => check_bad_response(&e, &resource),
    }
}

#[test]
fn the_documents_convert() {
    for doc in documents() {
        let items = convert(doc.clone()).unwrap();
        assert_eq!(items.len(), doc["items"].as_array().unwrap().len());
        for (_, task) in items {
            let t = task.unwrap();
            assert!(t.vcenter_tasks.len() <= 1);
        }
    }
}

proptest! {
    #![proptest_config(config())]

    /// Any spoiled list answer is a list of tasks and per-item bad responses, or a bad
    /// response, as built and as a session reads it.
    #[test]
    fn spoiled_list_is_tasks_or_bad_responses(doc in document(), spoil in spoil()) {
        let (spoiled, _) = apply(&doc, &spoil);
        check(convert(spoiled.clone()))?;
        match reparsed(&spoiled) {
            Some(read) => check(convert(read))?,
            None => prop_assert!(nesting(&spoiled) > 127),
        }
    }

    /// Unknown fields anywhere change nothing but the payloads, which keep them.
    #[test]
    fn unknown_fields_lose_nothing(
        doc in document(),
        steps in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
        key in "[a-z]{1,8}",
        value in odd_value(),
    ) {
        let spoil = Spoil { steps, mutation: Mutation::AddUnknown(format!("{UNKNOWN_PREFIX}{key}"), value) };
        let (spoiled, _) = apply(&doc, &spoil);
        prop_assume!(nesting(&spoiled) <= 32);
        let original = convert(doc).unwrap();
        let converted = convert(spoiled.clone());
        prop_assert!(converted.is_ok(), "{:?}", converted.err());
        let converted = converted.unwrap();
        prop_assert_eq!(converted.len(), original.len());
        let infos = spoiled["items"].as_array().unwrap();
        for (((id, task), (oid, otask)), item) in converted.into_iter().zip(original).zip(infos) {
            prop_assert_eq!(&id, &oid);
            prop_assert!(task.is_ok(), "{:?}", task.as_ref().err());
            let (task, otask) = (task.unwrap(), otask.unwrap());
            prop_assert_eq!(&task.upstream_payload, &Some(to_struct(item["info"].as_object().unwrap())));
            prop_assert_eq!(without_payload(task), without_payload(otask));
        }
    }
}
