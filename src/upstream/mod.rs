//! The REST side: one adapter per upstream kind behind small traits, and the registry of
//! configured upstreams by name.

pub mod http;
pub mod json;
pub mod session;
pub mod vapi;
pub mod vsphere;

use std::{collections::BTreeMap, sync::Arc};

use futures_util::future::BoxFuture;

use crate::{
    api::names::{UpstreamRef, upstream_name},
    config::{Config, ConfigError, UpstreamConfig, UpstreamKind},
    error::{GatewayError, Result},
    proto,
};

/// A source of tasks: vCenter, the snapshot service or Cloud Director.
pub trait TaskSource: Send + Sync {
    /// One task by the upstream's id.
    fn get<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<proto::Task>>;
    /// Every task matching the filter (the gateway pages and orders them).
    fn list<'a>(&'a self, filter: &'a proto::TaskFilter)
    -> BoxFuture<'a, Result<Vec<proto::Task>>>;
    /// Asks the upstream to cancel the task.
    fn cancel<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<()>>;
    /// False where the upstream API has no cancel at all.
    fn supports_cancel(&self) -> bool {
        true
    }
}

impl From<UpstreamKind> for proto::UpstreamKind {
    fn from(k: UpstreamKind) -> Self {
        match k {
            UpstreamKind::Vsphere => proto::UpstreamKind::Vsphere,
            UpstreamKind::Snapservice => proto::UpstreamKind::Snapservice,
            UpstreamKind::CloudDirector => proto::UpstreamKind::CloudDirector,
            UpstreamKind::ScriptRuntime => proto::UpstreamKind::ScriptRuntime,
        }
    }
}

/// One configured upstream with its session and the sources it serves.
pub struct Upstream {
    pub name: String,
    pub kind: UpstreamKind,
    pub session: Arc<session::Session>,
    pub tasks: Option<Arc<dyn TaskSource>>,
}

impl Upstream {
    fn new(cfg: &UpstreamConfig) -> Result<Self, ConfigError> {
        let http = http::HttpClient::new(cfg)?;
        let (session, tasks): (_, Option<Arc<dyn TaskSource>>) = match cfg.kind {
            UpstreamKind::Vsphere => {
                let session = Arc::new(vsphere::session(http, cfg));
                let tasks = Arc::new(vsphere::Vsphere::new(session.clone()));
                (session, Some(tasks))
            }
            other => {
                return Err(ConfigError::new(
                    format!("upstreams.{}.kind", cfg.name),
                    format!("{other:?} is not served by this build yet"),
                ));
            }
        };
        Ok(Self {
            name: cfg.name.clone(),
            kind: cfg.kind,
            session,
            tasks,
        })
    }

    /// The upstream as `UpstreamService` shows it.
    pub fn info(&self) -> proto::Upstream {
        let health = self.session.http().health();
        proto::Upstream {
            name: upstream_name(&self.name),
            kind: proto::UpstreamKind::from(self.kind) as i32,
            base_url: self.session.http().base_url().to_string(),
            reachable: health.reachable,
            last_error: health.last_error,
            session_state: self.session.state() as i32,
        }
    }
}

/// The configured upstreams by name.
pub struct Registry {
    upstreams: BTreeMap<String, Arc<Upstream>>,
}

impl Registry {
    pub fn new(cfg: &Config) -> Result<Self, ConfigError> {
        let mut upstreams = BTreeMap::new();
        for u in &cfg.upstreams {
            upstreams.insert(u.name.clone(), Arc::new(Upstream::new(u)?));
        }
        Ok(Self { upstreams })
    }

    /// Every upstream, ordered by name.
    pub fn all(&self) -> impl Iterator<Item = &Arc<Upstream>> {
        self.upstreams.values()
    }

    pub fn get(&self, name: &str) -> Result<&Arc<Upstream>> {
        self.upstreams
            .get(name)
            .ok_or_else(|| GatewayError::UnknownUpstream(name.to_string()))
    }

    /// Upstreams that serve tasks, ordered by name.
    pub fn task_sources(&self) -> Vec<(&Arc<Upstream>, &Arc<dyn TaskSource>)> {
        self.all()
            .filter_map(|u| u.tasks.as_ref().map(|t| (u, t)))
            .collect()
    }

    /// The task source for one named upstream, or for `-` when exactly one serves tasks.
    pub fn task_source(&self, r: &UpstreamRef) -> Result<(&Arc<Upstream>, &Arc<dyn TaskSource>)> {
        match r {
            UpstreamRef::Named(name) => {
                let u = self.get(name)?;
                let tasks = u.tasks.as_ref().ok_or_else(|| {
                    GatewayError::invalid(
                        "NOT_SUPPORTED_BY_UPSTREAM",
                        "name",
                        format!("upstream '{name}' ({:?}) serves no tasks", u.kind),
                    )
                })?;
                Ok((u, tasks))
            }
            UpstreamRef::Any => match self.task_sources().as_slice() {
                [one] => Ok(*one),
                many => Err(GatewayError::AmbiguousUpstream {
                    resource_kind: "tasks",
                    serving: many.iter().map(|(u, _)| u.name.clone()).collect(),
                }),
            },
        }
    }

    /// Logs every session out (shutdown).
    pub async fn logout_all(&self) {
        futures_util::future::join_all(self.all().map(|u| u.session.logout())).await;
    }
}
