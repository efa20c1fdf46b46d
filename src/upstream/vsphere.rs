//! vCenter CIS tasks (`/api/cis/tasks`): what differs from the snapshot service — the list
//! call (`POST ?action=list` with a JSON filter, answered by an object keyed by task id)
//! and cancel (`POST /api/cis/tasks/{task}?action=cancel`). The rest is in `vapi`.

use http::Method;
use serde_json::{Value as Json, json};

use super::{
    http::{Endpoint, Reply},
    session::Session,
    vapi::Dialect,
};
use crate::{
    error::UpstreamError,
    proto::{TaskFilter, UpstreamKind},
};

/// The `com.vmware.cis.tasks` dialect of vAPI.
pub struct CisTasks;

impl Dialect for CisTasks {
    const KIND: UpstreamKind = UpstreamKind::Vsphere;
    const SESSION_PATH: &'static str = "/api/session";
    const TASKS_PATH: &'static str = "/api/cis/tasks";
    const TASK_PATH: &'static str = "/api/cis/tasks/{task}";
    const CAN_CANCEL: bool = true;

    /// One list call for `ids` (empty = by the other filter fields).
    async fn list_call(
        session: &Session,
        ids: &[String],
        filter: &TaskFilter,
        statuses: &[&str],
    ) -> Result<Reply, UpstreamError> {
        let body = json!({
            "filter_spec": {
                "tasks": ids,
                "services": filter.services,
                "operations": filter.operations,
                "status": statuses,
                "users": filter.users,
            },
            "result_spec": {"return_all": false, "exclude_result": false},
        });
        session
            // A list is a read, though vAPI sends it as a POST.
            .read(Method::POST, &Endpoint::fixed(CisTasks::TASKS_PATH), |rb| {
                rb.query(&[("action", "list")]).json(&body)
            })
            .await
    }

    /// The list answer: an object keyed by task id.
    fn list_items(
        upstream: &str,
        reply: &Reply,
        body: Json,
    ) -> Result<Vec<(String, Json)>, UpstreamError> {
        match body {
            Json::Object(map) => Ok(map.into_iter().collect()),
            _ => Err(UpstreamError::bad_response(
                upstream,
                reply.status,
                "task list: expected an object keyed by task id",
                &reply.body,
            )),
        }
    }
}
