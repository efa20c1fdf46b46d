//! Properties of the vCenter CIS task `Info` conversion (`task_from_info`), on the documents
//! of UPSTREAM_APIS.md §2.5 spoiled every way (fields removed, of another type, absurd, huge,
//! nested 200 deep, unknown ones added): a task or UPSTREAM_BAD_RESPONSE, never a panic;
//! unknown fields lose nothing; absurd datetimes are errors.

use proptest::prelude::*;
use serde_json::{Value as Json, json};

use super::*;
use crate::upstream::json::{strategies::*, to_struct};

const UPSTREAM: &str = "vc1";
const ID: &str = "52f6c7a4-7c8e-4d39-9b0b-3a1c8f0e2d11";

fn message(id: &str, text: &str) -> Json {
    json!({"id": id, "default_message": text, "args": []})
}

/// `Cis.Task.Info` as vCenter sends it, one per status shape (§2.5).
fn documents() -> Vec<Json> {
    let progress = json!({"total": 100, "completed": 40,
        "message": message("com.vmware.vcenter.VM.clone.copy", "Copying disks")});
    vec![
        json!({"description": message("com.vmware.vcenter.VM.clone", "Clone virtual machine"),
            "service": "com.vmware.vcenter.VM", "operation": "clone",
            "target": {"type": "VirtualMachine", "id": "vm-1021"},
            "status": "RUNNING", "cancelable": true, "start_time": "2024-05-02T09:14:03.512Z",
            "user": "VSPHERE.LOCAL\\svc-gateway", "progress": progress}),
        json!({"description": message("x", "Queued"), "service": "com.vmware.vcenter.VM",
            "operation": "clone", "status": "PENDING", "cancelable": true}),
        json!({"description": message("x", "Clone"), "service": "com.vmware.vcenter.VM",
            "operation": "clone", "parent": "parent-1", "status": "SUCCEEDED", "cancelable": false,
            "start_time": "2024-05-02T09:14:03.512Z", "end_time": "2024-05-02T09:16:40.001Z",
            "progress": {"total": 100, "completed": 100, "message": message("done", "Done")},
            "result": {"vm": "vm-1022", "disks": [1, 2.5, null, true, "x"]}}),
        json!({"description": message("x", "Power on"), "service": "com.vmware.vcenter.VM.power",
            "operation": "start", "status": "FAILED", "cancelable": false,
            "start_time": "2024-05-02T09:14:03.512Z", "end_time": "2024-05-02T09:16:40.001Z",
            "progress": {"total": 10, "completed": 3, "message": message("p", "Powering on")},
            "error": {"error_type": "NOT_ALLOWED_IN_CURRENT_STATE", "messages": [
                {"id": "com.vmware.vcenter.vm.powered_on", "default_message": "The VM is powered on.",
                 "args": ["vm-1021"], "localized": "Die VM ist an."}]}}),
    ]
}

fn document() -> impl Strategy<Value = Json> {
    prop::sample::select(documents())
}

fn convert(raw: Json) -> Result<proto::Task, UpstreamError> {
    task_from_info(UPSTREAM, proto::UpstreamKind::Vsphere, ID, raw, 200)
}

/// A conversion result as the properties want it: a task that passes [`check_task`] and
/// reads back from protobuf, or UPSTREAM_BAD_RESPONSE that a client can receive.
fn check(result: Result<proto::Task, UpstreamError>) -> Result<(), TestCaseError> {
    match result {
        Ok(t) => {
            check_task(&t, UPSTREAM)?;
            check_round_trip(&t)
        }
        Err(e) => check_bad_response(&e, &format!("upstreams/{UPSTREAM}/tasks/{ID}")),
    }
}

#[test]
fn the_documents_convert() {
    for doc in documents() {
        let t = convert(doc.clone()).unwrap();
        assert_eq!(
            t.upstream_payload,
            Some(to_struct(doc.as_object().unwrap()))
        );
    }
}

/// The BASIC view as the general path gives it: the bytes parsed into a `Value` first.
fn general_basic(bytes: &[u8]) -> Result<proto::Task, String> {
    let raw: Json = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    task_from_info_with(UPSTREAM, proto::UpstreamKind::Vsphere, ID, raw, 200, false)
        .map_err(|e| e.to_short_text())
}

fn fast_basic(bytes: &[u8]) -> Option<proto::Task> {
    basic_task(UPSTREAM, proto::UpstreamKind::Vsphere, ID, bytes)
}

#[test]
fn the_fast_path_takes_the_documents_as_vcenter_sends_them() {
    for doc in documents() {
        let bytes = serde_json::to_vec(&doc).unwrap();
        let fast = fast_basic(&bytes).expect("a plain Info is read straight into its struct");
        assert_eq!(Ok(fast), general_basic(&bytes));
    }
    // vSphere 7.0+ messages carry `params`: still the fast path.
    let mut doc = documents().remove(0);
    doc["description"]["params"] = json!({"vm": {"s": "vm-1021"}});
    assert!(fast_basic(&serde_json::to_vec(&doc).unwrap()).is_some());
}

#[test]
fn the_fast_path_leaves_what_it_does_not_check_to_the_general_path() {
    let doc = serde_json::to_vec(&documents().remove(2)).unwrap();
    // `doc` with `field` put first.
    let with = |field: &[u8]| [&b"{"[..], field, b",", &doc[1..]].concat();
    let deep = |levels: usize| (0..levels).fold(json!(1), |inner, _| json!([inner]));
    let deep_result = |levels| {
        serde_json::to_vec(
            &json!({"service": "s", "operation": "o", "status": "SUCCEEDED",
            "cancelable": false, "result": deep(levels)}),
        )
        .unwrap()
    };
    // An unknown field, which a typed parse skips unchecked: bytes that are not UTF-8, a
    // control character.
    let not_utf8 = with(b"\"x\":\"\xff\"");
    let control = with(b"\"x\":\"\x01\"");
    // A result as deep as clients decode (with the `Info` object, 32 levels), then deeper.
    let (deepest, too_deep) = (deep_result(31), deep_result(32));
    // A field twice, an array, bytes after the document.
    let twice = with(b"\"status\":\"FAILED\"");
    let trailing = [&doc[..], b" x"].concat();
    for bytes in [
        &not_utf8,
        &control,
        &deepest,
        &too_deep,
        &twice,
        &b"[1]".to_vec(),
        &trailing,
    ] {
        if let Some(fast) = fast_basic(bytes) {
            assert_eq!(
                Ok(fast),
                general_basic(bytes),
                "{}",
                String::from_utf8_lossy(bytes)
            );
        }
    }
    assert!(general_basic(&not_utf8).is_err() && fast_basic(&not_utf8).is_none());
    assert!(general_basic(&control).is_err() && fast_basic(&control).is_none());
    assert!(
        fast_basic(&deepest).is_some(),
        "31 levels in result are within the limit"
    );
    assert!(general_basic(&too_deep).is_err() && fast_basic(&too_deep).is_none());
}

proptest! {
    #![proptest_config(config())]

    /// Whenever the fast path reads a spoiled `Info` (unknown fields added anywhere, fields
    /// removed, of another type, absurd, nested deep), it gives what the general path gives.
    #[test]
    fn the_fast_path_agrees_with_the_general_path(doc in document(), spoil in spoil()) {
        let (spoiled, _) = apply(&doc, &spoil);
        let bytes = serde_json::to_vec(&spoiled).unwrap();
        if let Some(fast) = fast_basic(&bytes) {
            prop_assert_eq!(Ok(fast), general_basic(&bytes));
        }
    }

    /// Any spoiled `Info` is a task or UPSTREAM_BAD_RESPONSE, as built (nested up to 200
    /// deep) and as a session reads it (serde_json refuses beyond 128).
    #[test]
    fn spoiled_info_is_a_task_or_a_bad_response(doc in document(), spoil in spoil()) {
        let (spoiled, _) = apply(&doc, &spoil);
        check(convert(spoiled.clone()))?;
        match reparsed(&spoiled) {
            Some(read) => check(convert(read))?,
            None => prop_assert!(nesting(&spoiled) > 127),
        }
    }

    /// Unknown fields anywhere change nothing but the payload, which keeps them (within the
    /// nesting a protobuf client decodes: deeper is a bad response, as above).
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
        prop_assert_eq!(&converted.upstream_payload, &Some(to_struct(spoiled.as_object().unwrap())));
        prop_assert_eq!(&converted.result, &spoiled.get("result").map(to_value));
        prop_assert_eq!(without_payload(converted), without_payload(original));
    }

    /// A datetime is the instant it names or a bad response; never a wrong date.
    #[test]
    fn datetimes_are_exact_or_a_bad_response(
        doc in document(),
        field in prop::sample::select(vec!["start_time", "end_time"]),
        parts in date_parts(),
    ) {
        let mut doc = doc;
        doc[field] = Json::String(parts.text());
        match convert(doc) {
            Ok(t) => {
                let got = if field == "start_time" { t.start_time } else { t.end_time };
                prop_assert!(got.is_some(), "{} read as absent", parts.text());
                prop_assert_eq!(got, parts.instant(), "{}", parts.text());
            }
            Err(e) => {
                prop_assert!(parts.instant().is_none() || !parts.four_digit_year(), "{}: {e:?}", parts.text());
                check_bad_response(&e, ID)?;
            }
        }
    }

    /// Progress of any size: the percentage is `completed * 100 / total` rounded down,
    /// clamped to 0–100, never an overflow.
    #[test]
    fn progress_of_any_size_gives_a_percentage(total in any::<i64>(), completed in any::<i64>()) {
        let p = percent(total, completed);
        prop_assert!((0..=100).contains(&p));
        if total > 0 {
            let exact = i128::from(completed.clamp(0, total)) * 100 / i128::from(total);
            prop_assert_eq!(i128::from(p), exact);
        }
    }
}
