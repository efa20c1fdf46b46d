//! The Cloud Director query service, `GET /api/query?type=task|adminTask` (section 5.5):
//! task records, org scoping, FIQL filters ([`super::fiql`]), sorting, paging with links.

use axum::extract::State;
use axum::response::Response;
use http::{StatusCode, Uri};
use serde_json::{Value, json};

use super::auth::Caller;
use super::tasks::{org_href, owner, task_org, vcd_record_datetime, vcd_status};
use super::{
    CloudDirector, QUERY_DEFAULT_PAGE_SIZE, QUERY_MAX_PAGE_SIZE, RECORDS_TYPE, fiql, legacy_error,
    vcd_json,
};
use crate::simulator::part::Shared;
use crate::simulator::tasks::TaskSnapshot;
use crate::simulator::web::{encode_query_value, query_last, query_pairs};

/// A `QueryResultTaskRecordType` (or admin) record.
fn task_record(st: &CloudDirector, s: &TaskSnapshot, admin: bool) -> Value {
    let org = task_org(st, s);
    let owner = owner(st, s);
    let status = vcd_status(s);
    let message = match (&s.error, status) {
        (Some(e), "error") => e.messages.first().map_or("", |(_, m)| m.as_str()),
        _ => "",
    };
    json!({
        "_type": if admin { "QueryResultAdminTaskRecordType" } else { "QueryResultTaskRecordType" },
        "link": [],
        "metadata": null,
        "otherAttributes": {},
        "href": format!("{}/api/task/{}", st.base(), s.id),
        "id": null,
        "type": null,
        "org": org_href(st, &org),
        "orgName": org,
        "name": s.operation,
        "operationFull": s.description,
        "message": message,
        "startDate": vcd_record_datetime(s.queued_time),
        "endDate": if matches!(status, "success" | "error" | "aborted") {
            s.end_time.map_or(Value::Null, |t| json!(vcd_record_datetime(t)))
        } else {
            Value::Null
        },
        "status": status,
        "progress": if s.extra.get("noProgress") == Some(&Value::Bool(true)) {
            Value::Null
        } else {
            json!(s.progress)
        },
        "ownerName": owner.as_ref().map_or(Value::Null, |o| json!(o.name)),
        "object": owner.as_ref().map_or(Value::Null, |o| json!(o.href)),
        "objectType": owner.as_ref().map_or(Value::Null, |o| json!(o.kind)),
        "objectName": owner.as_ref().map_or(Value::Null, |o| json!(o.name)),
        "serviceNamespace": s.service,
    })
}

/// `GET /api/query?type=task|adminTask` with paging, FIQL `filter` and sorting.
pub(super) async fn query(
    State(st): State<Shared<CloudDirector>>,
    Caller { who, version, .. }: Caller,
    uri: Uri,
) -> Response {
    let (st, version): (&CloudDirector, &str) = (&st, &version);
    let q = query_pairs(&uri);
    let bad = |msg: &str| legacy_error(StatusCode::BAD_REQUEST, "BAD_REQUEST", msg, Some(version));
    let param = |k: &str| query_last(&q, k);
    let admin = match param("type") {
        Some("task") => false,
        Some("adminTask") => true,
        Some(other) => return bad(&format!("Unsupported query type: {other}.")),
        None => return bad("The query type must be given (type=task or type=adminTask)."),
    };
    if admin && !who.provider() {
        return legacy_error(
            StatusCode::FORBIDDEN,
            "ACCESS_TO_RESOURCE_IS_FORBIDDEN",
            "This operation is denied: type adminTask needs a provider (System) session.",
            Some(version),
        );
    }
    match param("format") {
        None | Some("records") => {}
        Some(other) => return bad(&format!("Unsupported query format: {other}.")),
    }
    let number = |k: &str, default: usize| -> Result<usize, String> {
        match param(k) {
            None => Ok(default),
            Some(v) => match v.parse::<usize>() {
                Ok(n) if n >= 1 => Ok(n),
                _ => Err(format!("Invalid value '{v}' for {k}.")),
            },
        }
    };
    let page = match number("page", 1) {
        Ok(n) => n,
        Err(msg) => return bad(&msg),
    };
    let page_size = match number("pageSize", QUERY_DEFAULT_PAGE_SIZE) {
        Ok(n) => n.min(QUERY_MAX_PAGE_SIZE),
        Err(msg) => return bad(&msg),
    };
    let filter = match param("filter").filter(|f| !f.trim().is_empty()) {
        None => None,
        Some(f) => match fiql::parse(f) {
            Ok(e) => Some(e),
            Err(msg) => return bad(&format!("Bad filter '{f}': {msg}")),
        },
    };
    let sort = match (param("sortAsc"), param("sortDesc")) {
        (Some(_), Some(_)) => return bad("Give only one of sortAsc and sortDesc."),
        (Some(f), None) => Some((f, false)),
        (None, Some(f)) => Some((f, true)),
        (None, None) => None,
    };
    if let Some((field, _)) = sort
        && !fiql::FIELDS.contains(&field)
    {
        return bad(&format!("Cannot sort by unknown field '{field}'."));
    }

    let mut records: Vec<Value> = st
        .tasks
        .snapshots()
        .iter()
        .filter(|s| {
            let org = task_org(st, s);
            if admin {
                true
            } else {
                org.eq_ignore_ascii_case(&who.org)
            }
        })
        .map(|s| task_record(st, s, admin))
        .filter(|r| filter.as_ref().is_none_or(|f| f.matches(r)))
        .collect();
    if let Some((field, desc)) = sort {
        records.sort_by(|a, b| {
            let ord = fiql::compare_field(a, b, field);
            if desc { ord.reverse() } else { ord }
        });
    }
    let total = records.len();
    let last_page = total.div_ceil(page_size).max(1);
    let page_records: Vec<Value> = records
        .into_iter()
        .skip((page - 1).saturating_mul(page_size))
        .take(page_size)
        .collect();

    let name = if admin { "adminTask" } else { "task" };
    let mut extra = String::new();
    for key in ["filter", "sortAsc", "sortDesc"] {
        if let Some(v) = param(key) {
            extra.push_str(&format!("&{key}={}", encode_query_value(v)));
        }
    }
    let page_href = |p: usize| {
        format!(
            "{}/api/query?type={name}&page={p}&pageSize={page_size}&format=records{extra}",
            st.base()
        )
    };
    let link = |rel: &str, p: usize| {
        json!({"otherAttributes": {}, "href": page_href(p), "id": null, "type": RECORDS_TYPE,
               "name": name, "rel": rel, "model": null, "vCloudExtension": []})
    };
    let mut links = Vec::new();
    if page > 1 {
        links.push(link("firstPage", 1));
        links.push(link("previousPage", (page - 1).min(last_page)));
    }
    if page < last_page {
        links.push(link("nextPage", page + 1));
        links.push(link("lastPage", last_page));
    }
    vcd_json(
        StatusCode::OK,
        &json!({
            "otherAttributes": {},
            "link": links,
            "href": page_href(page),
            "type": RECORDS_TYPE,
            "name": name,
            "page": page,
            "pageSize": page_size,
            "total": total,
            "record": page_records,
            "vCloudExtension": [],
        }),
        &format!("{RECORDS_TYPE};version={version}"),
    )
}
