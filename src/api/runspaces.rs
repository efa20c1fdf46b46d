//! `RunspaceService`: Script Runtime Service runspaces, with AIP-155 idempotent creates.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::{sync::OnceCell, time::Instant};
use tonic::metadata::MetadataMap;

use super::{
    paging::{self, NewestFirstKey, PageRequest, newest_first_key},
    rpc::{Shared, limit_reached, list_parent},
    streams,
};
use crate::{
    call,
    error::{GatewayError, Reason, Result, UpstreamError, UpstreamFailure, clip},
    identity::IdentityKey,
    names::{self, UpstreamRef},
    proto::{
        CreateRunspaceRequest, DeleteRunspaceRequest, GetRunspaceRequest, ListRunspacesRequest,
        ListRunspacesResponse, Runspace, RunspaceEvent, WatchRunspaceRequest,
        runspace_service_server::RunspaceService,
    },
    upstream::{RunspaceSource, Runspaces},
    watch,
};

/// How long a create's `request_id` is remembered (the contract says at least 10 minutes).
const REQUEST_ID_TTL: Duration = Duration::from_secs(15 * 60);
const MAX_REQUEST_ID_LEN: usize = 256;

type CreateKey = (String, Option<IdentityKey>, String);

/// One remembered create: what was asked, and the runspace it made (once it is made).
struct Remembered {
    fingerprint: String,
    at: Instant,
    made: Arc<OnceCell<Runspace>>,
}

pub struct RunspaceApi {
    ctx: Shared,
    /// Creates by (upstream, the caller's own identity if it sent one, request_id); a retry
    /// joins the first attempt instead of creating twice, and one caller's request_id never
    /// answers with another identity's runspace.
    creates: Mutex<HashMap<CreateKey, Remembered>>,
}

impl RunspaceApi {
    pub fn new(ctx: Shared) -> Self {
        Self {
            ctx,
            creates: Mutex::new(HashMap::new()),
        }
    }

    async fn create(&self, req: &CreateRunspaceRequest) -> Result<Runspace> {
        let parent = names::parse_upstream(&req.parent, "parent")?;
        let (upstream, source) = self.ctx.registry.one::<Runspaces>(&parent, "parent")?;
        let spec = req.runspace.clone().unwrap_or_default();
        if req.request_id.is_empty() {
            return create_detached(source, &upstream.name, &spec, Arc::default()).await;
        }
        if req.request_id.len() > MAX_REQUEST_ID_LEN {
            return Err(GatewayError::invalid(
                Reason::InvalidArgument,
                "request_id",
                format!(
                    "longer than {MAX_REQUEST_ID_LEN} characters: '{}'",
                    clip(&req.request_id)
                ),
            ));
        }
        // A digest of what was asked, not the body itself: memory per id stays small.
        let fingerprint = paging::fingerprint(
            format!(
                "{}\u{0}{}",
                spec.display_name, spec.run_vc_connection_script
            )
            .as_bytes(),
        );
        let cell = {
            let mut creates = self
                .creates
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            creates.retain(|_, r| r.at.elapsed() < REQUEST_ID_TTL);
            let identity = call::current_identity().map(|i| i.key());
            let key = (upstream.name.clone(), identity, req.request_id.clone());
            // At capacity new ids are refused: evicting one early could create twice.
            let max = self.ctx.limits.max_request_ids;
            if creates.len() >= max && !creates.contains_key(&key) {
                return Err(limit_reached(
                    "max_request_ids",
                    max,
                    "request_ids remembered for idempotent creates",
                ));
            }
            let entry = creates.entry(key).or_insert_with(|| Remembered {
                fingerprint: fingerprint.clone(),
                at: Instant::now(),
                made: Arc::new(OnceCell::new()),
            });
            if entry.fingerprint != fingerprint {
                return Err(GatewayError::invalid(
                    Reason::RequestIdReused,
                    "request_id",
                    format!(
                        "'{}' was used for a create with a different runspace; use a new request_id",
                        clip(&req.request_id)
                    ),
                ));
            }
            entry.made.clone()
        };
        // A failed create leaves the cell empty, so a retry tries again.
        let made = create_detached(source, &upstream.name, &spec, cell).await?;
        // A retry sees the runspace as it is now, or as created when it is gone.
        match source.get(&made.id).await {
            Ok(now) => Ok(now),
            Err(e) if e.code() == tonic::Code::NotFound => Ok(made.clone()),
            Err(e) => Err(e),
        }
    }

    async fn get(&self, req: &GetRunspaceRequest) -> Result<Runspace> {
        let name = names::parse_resource(&req.name, "runspaces", "name")?;
        let (_, source) = self.ctx.registry.one::<Runspaces>(&name.upstream, "name")?;
        source.get(&name.id).await
    }

    async fn list(&self, req: &ListRunspacesRequest) -> Result<ListRunspacesResponse> {
        let parent = names::parse_upstream(&req.parent, "parent")?;
        let page =
            PageRequest::<NewestFirstKey>::new(&req.page_token, req.page_size, &req.parent, "")?;
        let merged = parent == UpstreamRef::Any;
        let runspaces =
            list_parent::<Runspaces, _, _>(&self.ctx.registry, &parent, |s| s.list()).await?;
        let (runspaces, next_page_token) = page.take(runspaces, |r| runspace_key(r, merged));
        Ok(ListRunspacesResponse {
            runspaces,
            next_page_token,
        })
    }

    fn watch(
        &self,
        req: &WatchRunspaceRequest,
        metadata: &MetadataMap,
    ) -> Result<watch::Watch<Runspace>> {
        let name = names::parse_resource(&req.name, "runspaces", "name")?;
        let opts = streams::watch_options(
            req.min_poll_interval.as_ref(),
            req.heartbeat_interval.as_ref(),
            metadata,
        )?;
        let (upstream, source) = self.ctx.registry.one::<Runspaces>(&name.upstream, "name")?;
        let target = watch::Target::of_call(
            upstream,
            name.id,
            Arc::new(watch::Runspaces(source.clone())),
        )?;
        self.ctx
            .watch
            .runspaces
            .watch(target, opts, self.ctx.stopping.clone(), Runspace::clone)
    }

    async fn delete(&self, req: &DeleteRunspaceRequest) -> Result<()> {
        let name = names::parse_resource(&req.name, "runspaces", "name")?;
        let (_, source) = self.ctx.registry.one::<Runspaces>(&name.upstream, "name")?;
        source.delete(&name.id).await
    }
}

/// Order of runspace lists: `create_time` descending, ties by id (by name when merged).
fn runspace_key(r: &Runspace, merged: bool) -> NewestFirstKey {
    let tie = if merged { r.name.clone() } else { r.id.clone() };
    newest_first_key(r.create_time.as_ref(), tie)
}

/// Runs the upstream create into `made` on a task of its own, under the request timeout rather
/// than the caller's deadline, so that it finishes even when the caller goes away or runs out
/// of time: a retry with the same `request_id` then finds the runspace it made instead of
/// creating a second one. The caller waits for it within its own deadline.
async fn create_detached(
    source: &Arc<dyn RunspaceSource>,
    upstream: &str,
    spec: &Runspace,
    made: Arc<OnceCell<Runspace>>,
) -> Result<Runspace> {
    let work = {
        let source = source.clone();
        let (name, script) = (spec.display_name.clone(), spec.run_vc_connection_script);
        // The create goes on as the caller (its trace and identity), without its deadline.
        let call = call::Call {
            timeout: None,
            deadline: None,
            ..call::current()
        };
        tokio::spawn(call::scope(call, async move {
            made.get_or_try_init(|| source.create(&name, script))
                .await
                .cloned()
        }))
    };
    let joined = match call::current_deadline() {
        Some(deadline) => tokio::time::timeout_at(deadline, work)
            .await
            .map_err(|_| UpstreamError::new(upstream, None, UpstreamFailure::Timeout))?,
        None => work.await,
    };
    joined.unwrap_or_else(|e| {
        Err(GatewayError::refused(
            Reason::Internal,
            Some(upstream),
            format!("the create on upstream '{upstream}' ended unexpectedly: {e}"),
        ))
    })
}

service! {
    impl RunspaceService for RunspaceApi {
        unary {
            create_runspace(req: CreateRunspaceRequest) -> Runspace { &req.parent => create }
            get_runspace(req: GetRunspaceRequest) -> Runspace { &req.name => get }
            list_runspaces(req: ListRunspacesRequest) -> ListRunspacesResponse { &req.parent => list }
            delete_runspace(req: DeleteRunspaceRequest) -> () { &req.name => delete }
        }
        stream {
            watch_runspace(req: WatchRunspaceRequest) -> WatchRunspaceStream<RunspaceEvent> {
                &req.name => watch, runspace_event
            }
        }
    }
}
