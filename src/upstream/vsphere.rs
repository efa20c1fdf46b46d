//! vCenter CIS tasks (`/api/cis/tasks`): get, list (`POST ?action=list`) and cancel.

use std::sync::Arc;

use futures_util::{FutureExt, future::BoxFuture};
use reqwest::Method;
use serde_json::{Value as Json, json};

use super::{
    TaskSource,
    http::{HttpClient, path_segment},
    session::Session,
    vapi,
};
use crate::{
    config::UpstreamConfig,
    error::{GatewayError, Result, UpstreamError},
    proto::{self, TaskFilter},
};

/// The most tasks one CIS list call may name or return.
pub const LIST_LIMIT: usize = 1000;

pub fn session(http: Arc<HttpClient>, cfg: &UpstreamConfig) -> Session {
    vapi::session(http, cfg, "/api/session")
}

pub struct Vsphere {
    session: Arc<Session>,
}

impl Vsphere {
    pub fn new(session: Arc<Session>) -> Self {
        Self { session }
    }

    fn upstream(&self) -> &str {
        self.session.http().upstream()
    }

    fn failed(&self, reply: &super::http::Reply) -> GatewayError {
        let e = vapi::parse_error(self.upstream(), reply);
        self.session.http().record_error(&e);
        e.into()
    }

    async fn get_task(&self, id: &str) -> Result<proto::Task> {
        let path = format!("/api/cis/tasks/{}", path_segment(id));
        let reply = self.session.send(Method::GET, &path, |rb| rb).await?;
        if !reply.is_success() {
            return Err(self.failed(&reply));
        }
        let body = vapi::json_body(self.upstream(), &reply, "task")?;
        Ok(vapi::task_from_info(
            self.upstream(),
            proto::UpstreamKind::Vsphere,
            id,
            body,
            reply.status,
        )?)
    }

    async fn list_tasks(&self, filter: &TaskFilter) -> Result<Vec<proto::Task>> {
        if filter.task_ids.is_empty() && filter.services.is_empty() {
            return Err(GatewayError::invalid(
                "INVALID_FILTER",
                "filter",
                "vSphere lists tasks only by task ids or services: set filter.task_ids or filter.services",
            ));
        }
        // The upstream takes at most LIST_LIMIT ids per call; more are asked in chunks.
        let chunks: Vec<&[String]> = if filter.task_ids.is_empty() {
            vec![&[]]
        } else {
            filter.task_ids.chunks(LIST_LIMIT).collect()
        };
        let mut statuses: Vec<&str> = filter
            .states()
            .flat_map(vapi::statuses_for)
            .copied()
            .collect();
        statuses.dedup();
        let mut tasks = Vec::new();
        for ids in chunks {
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
            let reply = self
                .session
                .send(Method::POST, "/api/cis/tasks", |rb| {
                    rb.query(&[("action", "list")]).json(&body)
                })
                .await?;
            if !reply.is_success() {
                let e = vapi::parse_error(self.upstream(), &reply);
                self.session.http().record_error(&e);
                return Err(too_many_matches(e));
            }
            let Json::Object(map) = vapi::json_body(self.upstream(), &reply, "task list")? else {
                return Err(UpstreamError::bad_response(
                    self.upstream(),
                    reply.status,
                    "task list: expected an object keyed by task id",
                    &reply.body,
                )
                .into());
            };
            for (id, info) in map {
                tasks.push(vapi::task_from_info(
                    self.upstream(),
                    proto::UpstreamKind::Vsphere,
                    &id,
                    info,
                    reply.status,
                )?);
            }
        }
        Ok(tasks)
    }

    async fn cancel_task(&self, id: &str) -> Result<()> {
        let path = format!("/api/cis/tasks/{}", path_segment(id));
        let reply = self
            .session
            .send(Method::POST, &path, |rb| rb.query(&[("action", "cancel")]))
            .await?;
        if !reply.is_success() {
            return Err(self.failed(&reply));
        }
        Ok(())
    }
}

/// vAPI answers RESOURCE_INACCESSIBLE when a list matches more than 1000 tasks.
pub fn too_many_matches(e: UpstreamError) -> GatewayError {
    if e.reason() == Some("RESOURCE_INACCESSIBLE") {
        GatewayError::FailedPrecondition {
            reason: "TOO_MANY_MATCHES",
            message: format!(
                "upstream '{}' refused the list: more than {LIST_LIMIT} tasks match; narrow the filter (task_ids, services, operations, states, users)",
                e.upstream
            ),
            upstream: Some(e.upstream),
        }
    } else {
        e.into()
    }
}

impl TaskSource for Vsphere {
    fn get<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<proto::Task>> {
        self.get_task(id).boxed()
    }

    fn list<'a>(&'a self, filter: &'a TaskFilter) -> BoxFuture<'a, Result<Vec<proto::Task>>> {
        self.list_tasks(filter).boxed()
    }

    fn cancel<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<()>> {
        self.cancel_task(id).boxed()
    }

    fn get_many<'a>(&'a self, ids: &'a [String]) -> BoxFuture<'a, Result<Vec<proto::Task>>> {
        async move {
            let filter = TaskFilter {
                task_ids: ids.to_vec(),
                ..Default::default()
            };
            self.list_tasks(&filter).await
        }
        .boxed()
    }

    fn batch_limit(&self) -> usize {
        LIST_LIMIT
    }
}
