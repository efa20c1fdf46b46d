//! Snapshot service tasks (`/api/snapservice/tasks`): what differs from vCenter — the login
//! path, and the list call (`GET` with repeated query keys, answered by
//! `{"items": [{"task", "info"}]}`). The API has no cancel. The rest is in `vapi`.

use http::Method;
use serde::Deserialize;
use serde_json::Value as Json;

use super::{
    http::{Endpoint, Reply},
    session::Session,
    vapi::Dialect,
};
use crate::{
    error::UpstreamError,
    proto::{TaskFilter, UpstreamKind},
};

/// The `com.vmware.snapservice.tasks` dialect of vAPI: read-only, no cancel.
pub struct SnapserviceTasks;

impl Dialect for SnapserviceTasks {
    const KIND: UpstreamKind = UpstreamKind::Snapservice;
    const SESSION_PATH: &'static str = "/api/snapservice/sessions";
    const TASKS_PATH: &'static str = "/api/snapservice/tasks";
    const TASK_PATH: &'static str = "/api/snapservice/tasks/{task}";
    const CAN_CANCEL: bool = false;

    /// One list call for `ids` (empty = by the other filter fields), each value its own key.
    async fn list_call(
        session: &Session,
        ids: &[String],
        filter: &TaskFilter,
        statuses: &[&str],
    ) -> Result<Reply, UpstreamError> {
        let mut query: Vec<(&str, &str)> = Vec::new();
        query.extend(ids.iter().map(|v| ("tasks", v.as_str())));
        query.extend(filter.services.iter().map(|v| ("services", v.as_str())));
        query.extend(filter.operations.iter().map(|v| ("operations", v.as_str())));
        query.extend(statuses.iter().map(|v| ("status", *v)));
        query.extend(filter.users.iter().map(|v| ("users", v.as_str())));
        session
            .read(
                Method::GET,
                &Endpoint::fixed(SnapserviceTasks::TASKS_PATH),
                |rb| rb.query(&query),
            )
            .await
    }

    /// The list answer: `{"items": [{"task": id, "info": Info}]}`.
    fn list_items(
        upstream: &str,
        reply: &Reply,
        body: Json,
    ) -> Result<Vec<(String, Json)>, UpstreamError> {
        let list: ListResult = serde_json::from_value(body).map_err(|e| {
            UpstreamError::bad_response(
                upstream,
                reply.status,
                format!("task list: {e}"),
                &reply.body,
            )
        })?;
        Ok(list.items.into_iter().map(|i| (i.task, i.info)).collect())
    }
}

#[derive(Deserialize)]
struct ListResult {
    items: Vec<ListItem>,
}

#[derive(Deserialize)]
struct ListItem {
    task: String,
    info: Json,
}

#[cfg(test)]
mod proptests;
