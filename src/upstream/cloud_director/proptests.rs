//! Properties of the Cloud Director conversions: `TaskType` from `GET /api/task`
//! (`task_from_json`) and query-service records (`QueryPage`, `task_from_record`), on the
//! documents of UPSTREAM_APIS.md §5.3 and §5.5 spoiled every way: tasks or
//! UPSTREAM_BAD_RESPONSE, never a panic; unknown fields lose nothing; absurd datetimes are
//! errors; numbers are kept or left out, never cut to another value.

use proptest::prelude::*;
use serde_json::{Value as Json, json};

use super::*;
use crate::upstream::json::strategies::*;

const UPSTREAM: &str = "vcd1";
const HREF: &str = "https://vcd.example.com/api/task/3c2b9e61-0d5e-4f6b-9a8a-1f7d2c4e5b60";

fn reference(kind: &str, name: &str) -> Json {
    json!({"otherAttributes": {}, "href": "https://vcd.example.com/api/x/1", "id": "urn:vcloud:x:1",
        "type": format!("application/vnd.vmware.vcloud.{kind}+xml"), "name": name, "vCloudExtension": []})
}

/// `TaskType` documents as Cloud Director sends them (§5.3).
fn tasks() -> Vec<Json> {
    let running = json!({
        "otherAttributes": {},
        "link": [{"otherAttributes": {}, "href": format!("{HREF}/action/cancel"), "id": null,
            "type": null, "name": "task", "rel": "task:cancel", "model": null, "vCloudExtension": []}],
        "href": HREF, "type": "application/vnd.vmware.vcloud.task+json",
        "id": "urn:vcloud:task:3c2b9e61-0d5e-4f6b-9a8a-1f7d2c4e5b60",
        "operationKey": null, "description": null, "tasks": null, "name": "task",
        "owner": reference("vApp", "web-01"), "error": null,
        "user": reference("admin.user", "svc-gateway"), "organization": reference("org", "acme"),
        "progress": 35, "params": null, "details": "",
        "vcTaskList": {"otherAttributes": {}, "vcTask": [], "vCloudExtension": []},
        "result": null, "status": "running",
        "operation": "Starting Virtual Application web-01(77a1...)", "operationName": "vappDeploy",
        "serviceNamespace": "com.vmware.vcloud", "startTime": "2024-03-06T14:11:57.473+0200",
        "endTime": null, "expiryTime": "2024-06-04T14:11:57.473+0300", "cancelRequested": false,
        "vCloudExtension": []
    });
    let mut failed = running.clone();
    failed["status"] = json!("error");
    failed["link"] = json!([]);
    failed["endTime"] = json!("2024-03-06T14:12:30.001+02:00");
    failed["error"] = json!({"majorErrorCode": 400, "minorErrorCode": "BUSY_ENTITY",
        "message": "The entity is busy", "stackTrace": "at ..."});
    failed["vcTaskList"] = json!({"vcTask": [
        {"moref": "task-101", "name": "PowerOnVM_Task", "status": "error", "vcName": "vc-a"}]});
    failed["tasks"] = json!({"task": [
        {"id": "urn:vcloud:task:child-1", "status": "success", "startTime": "2024-03-06T14:11:58Z"},
        {"href": "https://vcd.example.com/api/task/child-2", "status": "error",
         "error": {"majorErrorCode": 500, "minorErrorCode": "INTERNAL_SERVER_ERROR", "message": "x"}},
    ]});
    let mut succeeded = running.clone();
    succeeded["status"] = json!("success");
    succeeded["progress"] = json!(100);
    succeeded["result"] = json!({"resultContent": "done", "resultReference": null});
    vec![running, failed, succeeded]
}

/// A query-service page of task records (§5.5).
fn pages() -> Vec<Json> {
    let record = json!({"_type": "QueryResultTaskRecordType", "link": [], "metadata": null,
        "otherAttributes": {}, "href": HREF, "id": null, "type": null,
        "org": "https://vcd.example.com/api/org/a93c", "orgName": "acme", "name": "vappDeploy",
        "operationFull": "Starting Virtual Application web-01", "message": "",
        "startDate": "2024-03-06T14:11:57.473+02:00", "endDate": null, "status": "running",
        "progress": 35, "ownerName": "web-01",
        "object": "https://vcd.example.com/api/vApp/vapp-77a1c0de", "objectType": "vApp",
        "objectName": "web-01", "serviceNamespace": "com.vmware.vcloud"});
    let mut done = record.clone();
    done["href"] = json!("https://vcd.example.com/api/task/5d6e7f80");
    done["status"] = json!("success");
    done["endDate"] = json!("2024-03-06T14:20:01.000+0200");
    vec![
        json!({"otherAttributes": {}, "link": [], "name": "task", "page": 1, "pageSize": 25,
        "total": 2, "record": [record, done]}),
    ]
}

fn answer<'a>(raw: &'a Json, what: &'static str) -> Answer<'a> {
    Answer {
        upstream: UPSTREAM,
        http_status: 200,
        raw,
        what,
    }
}

fn convert_task(raw: &Json) -> Result<proto::Task, UpstreamError> {
    task_from_json(answer(raw, "task"))
}

type Records = Vec<Result<proto::Task, UpstreamError>>;

/// A query page read as `list_tasks` reads it: the page, then each record.
fn convert_page(raw: Json) -> Result<Records, UpstreamError> {
    let page: QueryPage = serde_json::from_value(raw).map_err(|e| {
        UpstreamError::bad_response(UPSTREAM, 200, format!("query result: {e}"), b"")
    })?;
    Ok(page
        .record
        .iter()
        .map(|r| task_from_record(answer(r, "task record")))
        .collect())
}

fn check(result: Result<proto::Task, UpstreamError>) -> Result<(), TestCaseError> {
    match result {
        Ok(t) => {
            check_task(&t, UPSTREAM)?;
            check_round_trip(&t)
        }
        Err(e) => check_bad_response(&e, &format!("upstreams/{UPSTREAM}/tasks/3c2b")),
    }
}

fn check_page(result: Result<Records, UpstreamError>) -> Result<(), TestCaseError> {
    match result {
        Ok(records) => records.into_iter().try_for_each(check),
        Err(e) => check_bad_response(&e, &format!("upstreams/{UPSTREAM}")),
    }
}

/// A spoiling with only unknown fields added.
fn unknown_field() -> impl Strategy<Value = Spoil> {
    (
        prop::collection::vec(any::<prop::sample::Index>(), 0..8),
        "[a-z]{1,8}",
        odd_value(),
    )
        .prop_map(|(steps, key, value)| Spoil {
            steps,
            mutation: Mutation::AddUnknown(format!("{UNKNOWN_PREFIX}{key}"), value),
        })
}

#[test]
fn the_documents_convert() {
    for doc in tasks() {
        let t = convert_task(&doc).unwrap();
        assert_eq!(t.id, "3c2b9e61-0d5e-4f6b-9a8a-1f7d2c4e5b60");
    }
    for page in pages() {
        for r in convert_page(page).unwrap() {
            r.unwrap();
        }
    }
}

proptest! {
    #![proptest_config(config())]

    /// Any spoiled `TaskType` is a task or UPSTREAM_BAD_RESPONSE, as built (nested up to
    /// 200 deep) and as a session reads it.
    #[test]
    fn spoiled_task_is_a_task_or_a_bad_response(doc in prop::sample::select(tasks()), spoil in spoil()) {
        let (spoiled, _) = apply(&doc, &spoil);
        check(convert_task(&spoiled))?;
        match reparsed(&spoiled) {
            Some(read) => check(convert_task(&read))?,
            None => prop_assert!(nesting(&spoiled) > 127),
        }
    }

    /// Any spoiled query page is a list of records, each a task or a bad response, or a bad
    /// response.
    #[test]
    fn spoiled_query_page_is_tasks_or_bad_responses(doc in prop::sample::select(pages()), spoil in spoil()) {
        let (spoiled, _) = apply(&doc, &spoil);
        check_page(convert_page(spoiled.clone()))?;
        if let Some(read) = reparsed(&spoiled) {
            check_page(convert_page(read))?;
        }
    }

    /// Unknown fields anywhere in a task change nothing but the payloads, which keep them.
    #[test]
    fn unknown_task_fields_lose_nothing(doc in prop::sample::select(tasks()), spoil in unknown_field()) {
        let (spoiled, _) = apply(&doc, &spoil);
        prop_assume!(nesting(&spoiled) <= 32);
        let original = convert_task(&doc).unwrap();
        let converted = convert_task(&spoiled);
        prop_assert!(converted.is_ok(), "{:?}", converted.err());
        let converted = converted.unwrap();
        prop_assert_eq!(&converted.upstream_payload, &Some(to_struct(spoiled.as_object().unwrap())));
        prop_assert_eq!(&converted.result, &spoiled.get("result").filter(|r| !r.is_null()).map(to_value));
        prop_assert_eq!(without_payload(converted), without_payload(original));
    }

    /// Unknown fields anywhere in a query page change no record's task but its payload.
    #[test]
    fn unknown_record_fields_lose_nothing(doc in prop::sample::select(pages()), spoil in unknown_field()) {
        let (spoiled, _) = apply(&doc, &spoil);
        prop_assume!(nesting(&spoiled) <= 32);
        let original = convert_page(doc).unwrap();
        let converted = convert_page(spoiled).unwrap();
        prop_assert_eq!(converted.len(), original.len());
        for (t, o) in converted.into_iter().zip(original) {
            prop_assert!(t.is_ok(), "{:?}", t.as_ref().err());
            prop_assert_eq!(without_payload(t.unwrap()), without_payload(o.unwrap()));
        }
    }

    /// A datetime is the instant it names or a bad response; never a wrong date.
    #[test]
    fn datetimes_are_exact_or_a_bad_response(
        doc in prop::sample::select(tasks()),
        field in prop::sample::select(vec!["startTime", "endTime", "expiryTime"]),
        parts in date_parts(),
    ) {
        let mut doc = doc;
        doc[field] = Json::String(parts.text());
        match convert_task(&doc) {
            Ok(t) => {
                let got = match field {
                    "startTime" => t.start_time,
                    "endTime" => t.end_time,
                    _ => t.expiry_time,
                };
                prop_assert!(got.is_some(), "{} read as absent", parts.text());
                prop_assert_eq!(got, parts.instant(), "{}", parts.text());
            }
            Err(e) => {
                prop_assert!(parts.instant().is_none() || !parts.four_digit_year(), "{}: {e:?}", parts.text());
                check_bad_response(&e, "upstreams/vcd1/tasks/3c2b")?;
            }
        }
    }

    /// Record datetimes likewise.
    #[test]
    fn record_datetimes_are_exact_or_a_bad_response(
        field in prop::sample::select(vec!["startDate", "endDate"]),
        parts in date_parts(),
    ) {
        let mut page = pages().remove(0);
        page["record"][0][field] = Json::String(parts.text());
        let first = convert_page(page).unwrap().remove(0);
        match first {
            Ok(t) => {
                let got = if field == "startDate" { t.start_time } else { t.end_time };
                prop_assert!(got.is_some(), "{} read as absent", parts.text());
                prop_assert_eq!(got, parts.instant(), "{}", parts.text());
            }
            Err(e) => {
                prop_assert!(parts.instant().is_none() || !parts.four_digit_year(), "{}: {e:?}", parts.text());
                check_bad_response(&e, "upstreams/vcd1")?;
            }
        }
    }

    /// `majorErrorCode` of any size is the HTTP code where it fits an int32, and left out
    /// (0, as for a code of another type; the payload keeps it) where it does not: never
    /// cut to another number. `progress` likewise is 0–100.
    #[test]
    fn numbers_are_kept_or_left_out_never_cut(code in prop_oneof![any::<i64>(), 100i64..600], progress in any::<i64>()) {
        let mut doc = tasks().remove(1);
        doc["error"]["majorErrorCode"] = json!(code);
        doc["progress"] = json!(progress);
        let t = convert_task(&doc).unwrap();
        prop_assert_eq!(i64::from(t.error.unwrap().http_code), i64::from(i32::try_from(code).unwrap_or(0)));
        prop_assert_eq!(i64::from(t.progress.unwrap().percent), progress.clamp(0, 100));
    }
}
