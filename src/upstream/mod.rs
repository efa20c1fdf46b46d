//! The REST side: one adapter per upstream kind behind small traits, and the registry of
//! configured upstreams by name.

pub mod cloud_director;
pub mod http;
pub mod json;
pub mod script_runtime;
pub mod session;
pub mod snapservice;
pub mod vapi;
pub mod vsphere;

use std::{collections::BTreeMap, sync::Arc};

use futures_util::future::BoxFuture;

use crate::{
    config::{Config, ConfigError, KindConfig, UpstreamConfig, UpstreamKind},
    error::{GatewayError, Reason, Result},
    names::{UpstreamRef, upstream_name},
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
    /// Several tasks in as few upstream requests as the API allows (the watch engine's batched
    /// poll). Ids the upstream does not know are absent from the answer, not an error.
    fn get_many<'a>(&'a self, ids: &'a [String]) -> BoxFuture<'a, Result<Vec<proto::Task>>> {
        Box::pin(get_each(ids, move |id| self.get(id)))
    }
    /// How many ids one `get_many` request can carry (1 = no batching upstream).
    fn batch_limit(&self) -> usize {
        1
    }
    /// The one spelling of a task id this upstream's answers use (Cloud Director accepts
    /// `urn:vcloud:task:{uuid}` on input but names tasks by the bare uuid).
    fn canonical_id(&self, id: &str) -> String {
        id.to_string()
    }
}

/// `get_many` without a batch API: one `get` per id, in turn; unknown ids are left out.
pub async fn get_each<'a, T, F>(ids: &'a [String], get: impl Fn(&'a str) -> F) -> Result<Vec<T>>
where
    F: std::future::Future<Output = Result<T>>,
{
    let mut found = Vec::with_capacity(ids.len());
    for id in ids {
        match get(id).await {
            Ok(t) => found.push(t),
            Err(e) if e.code() == tonic::Code::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(found)
}

/// A source of runspaces: the Script Runtime Service.
pub trait RunspaceSource: Send + Sync {
    /// Creates a runspace (it starts CREATING).
    fn create<'a>(
        &'a self,
        display_name: &'a str,
        run_vc_connection_script: bool,
    ) -> BoxFuture<'a, Result<proto::Runspace>>;
    fn get<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<proto::Runspace>>;
    /// Every runspace of the service account (the gateway pages and orders them).
    fn list(&self) -> BoxFuture<'_, Result<Vec<proto::Runspace>>>;
    fn delete<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<()>>;
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
    pub runspaces: Option<Arc<dyn RunspaceSource>>,
}

impl Upstream {
    fn new(cfg: &UpstreamConfig) -> Result<Self, ConfigError> {
        let http = http::HttpClient::new(cfg)?;
        let mut tasks: Option<Arc<dyn TaskSource>> = None;
        let mut runspaces: Option<Arc<dyn RunspaceSource>> = None;
        let session = match &cfg.kind {
            KindConfig::Vsphere {} => {
                let session = Arc::new(vsphere::session(http, cfg));
                tasks = Some(Arc::new(vapi::VapiTasks::<vsphere::CisTasks>::new(
                    session.clone(),
                )));
                session
            }
            KindConfig::Snapservice {} => {
                let session = Arc::new(snapservice::session(http, cfg));
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
