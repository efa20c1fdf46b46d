//! The configured upstreams by name: each [`Upstream`] with its session and the sources it
//! serves, built from its configuration by kind, and the [`Registry`] that resolves names.

use std::{collections::BTreeMap, sync::Arc};

use super::{
    cloud_director, http, script_runtime, session, snapservice,
    source::{RunspaceSource, TaskSource},
    vapi, vsphere,
};
use crate::{
    config::{Config, ConfigError, KindConfig, UpstreamConfig, UpstreamKind},
    error::{GatewayError, Reason, Result},
    names::{UpstreamRef, upstream_name},
    proto,
};

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
    pub runspaces: Option<Arc<dyn RunspaceSource>>,
}

impl Upstream {
    fn new(cfg: &UpstreamConfig) -> Result<Self, ConfigError> {
        let http = http::HttpClient::new(cfg)?;
        let mut tasks: Option<Arc<dyn TaskSource>> = None;
        let mut runspaces: Option<Arc<dyn RunspaceSource>> = None;
        let session = match &cfg.kind {
            KindConfig::Vsphere {} => {
                let session = Arc::new(vapi::session::<vsphere::CisTasks>(http, cfg));
                tasks = Some(Arc::new(vapi::VapiTasks::<vsphere::CisTasks>::new(
                    session.clone(),
                )));
                session
            }
            KindConfig::Snapservice {} => {
                let session = Arc::new(vapi::session::<snapservice::SnapserviceTasks>(http, cfg));
                tasks = Some(Arc::new(
                    vapi::VapiTasks::<snapservice::SnapserviceTasks>::new(session.clone()),
                ));
                session
            }
            KindConfig::CloudDirector(vcd) => {
                let session = Arc::new(cloud_director::session(http, cfg, vcd));
                tasks = Some(Arc::new(cloud_director::CloudDirector::new(
                    session.clone(),
                    vcd,
                )));
                session
            }
            KindConfig::ScriptRuntime {} => {
                let session = Arc::new(script_runtime::session(http, cfg));
                runspaces = Some(Arc::new(script_runtime::ScriptRuntime::new(
                    session.clone(),
                )));
                session
            }
        };
        Ok(Self {
            name: cfg.name.clone(),
            kind: cfg.kind(),
            session,
            tasks,
            runspaces,
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
        self.serving(|u| u.tasks.as_ref())
    }

    /// The task source for one named upstream, or for `-` when exactly one serves tasks;
    /// `field` is the request field that named it.
    pub fn task_source(
        &self,
        r: &UpstreamRef,
        field: &'static str,
    ) -> Result<(&Arc<Upstream>, &Arc<dyn TaskSource>)> {
        self.source(r, field, "tasks", |u| u.tasks.as_ref())
    }

    /// The runspace source for one named upstream, or for `-` when exactly one serves them.
    pub fn runspace_source(
        &self,
        r: &UpstreamRef,
        field: &'static str,
    ) -> Result<(&Arc<Upstream>, &Arc<dyn RunspaceSource>)> {
        self.source(r, field, "runspaces", |u| u.runspaces.as_ref())
    }

    /// Upstreams that serve runspaces, ordered by name.
    pub fn runspace_sources(&self) -> Vec<(&Arc<Upstream>, &Arc<dyn RunspaceSource>)> {
        self.serving(|u| u.runspaces.as_ref())
    }

    /// Upstreams whose `pick` serves a resource type, ordered by name.
    fn serving<'a, S: ?Sized>(
        &'a self,
        pick: impl Fn(&'a Upstream) -> Option<&'a Arc<S>>,
    ) -> Vec<(&'a Arc<Upstream>, &'a Arc<S>)> {
        self.all().filter_map(|u| pick(u).map(|s| (u, s))).collect()
    }

    /// The one source of a resource type that `r` names.
    fn source<'a, S: ?Sized>(
        &'a self,
        r: &UpstreamRef,
        field: &'static str,
        resource_kind: &'static str,
        pick: impl Fn(&'a Upstream) -> Option<&'a Arc<S>>,
    ) -> Result<(&'a Arc<Upstream>, &'a Arc<S>)> {
        match r {
            UpstreamRef::Named(name) => {
                let u = self.get(name)?;
                let source = pick(u).ok_or_else(|| {
                    GatewayError::invalid(
                        Reason::WrongUpstreamKind,
                        field,
                        format!(
                            "upstream '{name}' is of kind {} and serves no {resource_kind}",
                            u.kind
                        ),
                    )
                })?;
                Ok((u, source))
            }
            UpstreamRef::Any => match self.serving(pick).as_slice() {
                [one] => Ok(*one),
                many => Err(GatewayError::AmbiguousUpstream {
                    field,
                    resource_kind,
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
