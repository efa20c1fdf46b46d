//! The configured upstreams by name: each [`Upstream`] with its session and the sources it
//! serves, built from its configuration by kind, and the [`Registry`] that resolves names.

use std::{collections::BTreeMap, sync::Arc};

use super::{
    cloud_director, http, script_runtime,
    sessions::{CallerLogin, Sessions},
    snapservice,
    source::{RunspaceSource, TaskSource},
    vapi, vsphere,
};
use crate::{
    call,
    config::{Config, ConfigError, KindConfig, LimitsConfig, UpstreamConfig, UpstreamKind},
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

/// One configured upstream with its sessions and the sources it serves.
pub struct Upstream {
    pub name: String,
    pub kind: UpstreamKind,
    pub sessions: Arc<Sessions>,
    pub tasks: Option<Arc<dyn TaskSource>>,
    pub runspaces: Option<Arc<dyn RunspaceSource>>,
}

impl Upstream {
    fn new(cfg: &UpstreamConfig, limits: &LimitsConfig) -> Result<Self, ConfigError> {
        let http = http::HttpClient::new(cfg, limits)?;
        let service = match &cfg.kind {
            KindConfig::Vsphere {} => vapi::session::<vsphere::CisTasks>(http, cfg),
            KindConfig::Snapservice {} => vapi::session::<snapservice::SnapserviceTasks>(http, cfg),
            KindConfig::CloudDirector(vcd) => cloud_director::session(http, cfg, vcd),
            KindConfig::ScriptRuntime {} => script_runtime::session(http, cfg),
        };
        // A caller logs in where the service account would, except on Cloud Director, where
        // the caller's org decides (and an API token is the service account's alone).
        let caller_login: CallerLogin = match &cfg.kind {
            KindConfig::CloudDirector(vcd) => cloud_director::caller_login(vcd),
            _ => {
                let flow = service.flow().clone();
                Box::new(move |user: &str| (flow.clone(), user.to_string()))
            }
        };
        let sessions = Sessions::new(service, cfg.auth, limits, caller_login);
        let mut tasks: Option<Arc<dyn TaskSource>> = None;
        let mut runspaces: Option<Arc<dyn RunspaceSource>> = None;
        match &cfg.kind {
            KindConfig::Vsphere {} => {
                tasks = Some(Arc::new(vapi::VapiTasks::<vsphere::CisTasks>::new(
                    sessions.clone(),
                )))
            }
            KindConfig::Snapservice {} => {
                tasks = Some(Arc::new(
                    vapi::VapiTasks::<snapservice::SnapserviceTasks>::new(sessions.clone()),
                ))
            }
            KindConfig::CloudDirector(vcd) => {
                tasks = Some(Arc::new(cloud_director::CloudDirector::new(
                    sessions.clone(),
                    vcd,
                )))
            }
            KindConfig::ScriptRuntime {} => {
                runspaces = Some(Arc::new(script_runtime::ScriptRuntime::new(
                    sessions.clone(),
                )))
            }
        }
        Ok(Self {
            name: cfg.name.clone(),
            kind: cfg.kind(),
            sessions,
            tasks,
            runspaces,
        })
    }

    /// The upstream as `UpstreamService` shows it.
    pub fn info(&self) -> proto::Upstream {
        let service = self.sessions.service();
        let health = service.http().health();
        proto::Upstream {
            name: upstream_name(&self.name),
            kind: proto::UpstreamKind::from(self.kind) as i32,
            base_url: service.http().base_url().to_string(),
            reachable: health.reachable,
            last_error: health.last_error,
            session_state: service.state() as i32,
        }
    }
}

/// A resource collection upstreams may serve, and where an upstream keeps its source of it.
pub trait Collection {
    type Source: ?Sized;
    /// The collection's segment in names (`tasks`).
    const NAME: &'static str;
    fn of(u: &Upstream) -> Option<&Arc<Self::Source>>;
}

/// An upstream with its source of collection `C`.
pub type Served<'a, C> = (&'a Arc<Upstream>, &'a Arc<<C as Collection>::Source>);

/// Tasks: vCenter, the snapshot service and Cloud Director serve them.
pub enum Tasks {}

impl Collection for Tasks {
    type Source = dyn TaskSource;
    const NAME: &'static str = "tasks";
    fn of(u: &Upstream) -> Option<&Arc<dyn TaskSource>> {
        u.tasks.as_ref()
    }
}

/// Runspaces: the Script Runtime Service serves them.
pub enum Runspaces {}

impl Collection for Runspaces {
    type Source = dyn RunspaceSource;
    const NAME: &'static str = "runspaces";
    fn of(u: &Upstream) -> Option<&Arc<dyn RunspaceSource>> {
        u.runspaces.as_ref()
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
            upstreams.insert(u.name.clone(), Arc::new(Upstream::new(u, &cfg.limits)?));
        }
        Ok(Self { upstreams })
    }

    /// Every upstream, ordered by name.
    pub fn all(&self) -> impl Iterator<Item = &Arc<Upstream>> {
        self.upstreams.values()
    }

    /// The upstream `name`, if the caller may use it (whether or not it exists, a name
    /// outside the caller's grant is SCOPE_MISSING: the answer reveals nothing).
    pub fn get(&self, name: &str) -> Result<&Arc<Upstream>> {
        if let Some(grant) = call::current_grant()
            && !grant.may_use(name)
        {
            return Err(GatewayError::ScopeMissing {
                scope: format!("upstreams/{name}"),
                message: format!(
                    "caller '{}' may not use upstream '{}'",
                    grant.name,
                    crate::error::clip(name)
                ),
            });
        }
        self.upstreams
            .get(name)
            .ok_or_else(|| GatewayError::UnknownUpstream(name.to_string()))
    }

    /// Every upstream the caller may use (all of them without caller authentication),
    /// ordered by name.
    pub fn visible(&self) -> impl Iterator<Item = &Arc<Upstream>> {
        let grant = call::current_grant();
        self.all()
            .filter(move |u| grant.as_ref().is_none_or(|g| g.may_use(&u.name)))
    }

    /// Upstreams that serve collection `C` and the caller may use, ordered by name.
    pub fn serving<C: Collection>(&self) -> Vec<Served<'_, C>> {
        self.visible()
            .filter_map(|u| C::of(u).map(|s| (u, s)))
            .collect()
    }

    /// The sources a List's `parent` names: its one upstream, or for `-` every upstream
    /// serving `C`.
    pub fn listed<C: Collection>(&self, parent: &UpstreamRef) -> Result<Vec<Served<'_, C>>> {
        match parent {
            UpstreamRef::Named(_) => Ok(vec![self.one::<C>(parent, "parent")?]),
            UpstreamRef::Any => Ok(self.serving::<C>()),
        }
    }

    /// The source of collection `C` that `r` names: a named upstream's, or for `-` the one
    /// upstream serving `C`; `field` is the request field that named it.
    pub fn one<C: Collection>(
        &self,
        r: &UpstreamRef,
        field: &'static str,
    ) -> Result<Served<'_, C>> {
        let resource_kind = C::NAME;
        match r {
            UpstreamRef::Named(name) => {
                let u = self.get(name)?;
                let source = C::of(u).ok_or_else(|| {
                    GatewayError::invalid(
                        Reason::WrongUpstreamKind,
                        field,
                        format!(
                            "upstream '{name}' is of kind {} and serves no {resource_kind}",
                            proto::UpstreamKind::from(u.kind).as_str_name()
                        ),
                    )
                })?;
                Ok((u, source))
            }
            UpstreamRef::Any => match self.serving::<C>().as_slice() {
                [one] => Ok(*one),
                many => Err(GatewayError::AmbiguousUpstream {
                    field,
                    resource_kind,
                    serving: many.iter().map(|(u, _)| u.name.clone()).collect(),
                }),
            },
        }
    }

    /// Logs every session out, the service accounts' and the callers' (shutdown).
    pub async fn logout_all(&self) {
        futures_util::future::join_all(self.all().map(|u| u.sessions.logout_all())).await;
    }
}
