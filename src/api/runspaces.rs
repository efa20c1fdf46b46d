//! `RunspaceService`: Script Runtime Service runspaces (served once the SRS adapter lands).

use std::pin::Pin;

use futures_util::Stream;
use tonic::{Request, Response, Status};

use super::{not_implemented, unary};
use crate::proto::{
    CreateRunspaceRequest, DeleteRunspaceRequest, GetRunspaceRequest, ListRunspacesRequest,
    ListRunspacesResponse, Runspace, RunspaceEvent, WatchRunspaceRequest,
    runspace_service_server::RunspaceService,
};

/// Answers every runspace RPC with UNIMPLEMENTED (reason NOT_IMPLEMENTED) until the Script
/// Runtime Service adapter lands.
#[derive(Default)]
pub struct RunspaceApi;

type EventStream = Pin<Box<dyn Stream<Item = Result<RunspaceEvent, Status>> + Send>>;

#[tonic::async_trait]
impl RunspaceService for RunspaceApi {
    async fn create_runspace(
        &self,
        r: Request<CreateRunspaceRequest>,
    ) -> Result<Response<Runspace>, Status> {
        let req = r.get_ref();
        unary("CreateRunspace", &req.parent, r.metadata(), async {
            Err(not_implemented("CreateRunspace"))
        })
        .await
    }

    async fn get_runspace(
        &self,
        r: Request<GetRunspaceRequest>,
    ) -> Result<Response<Runspace>, Status> {
        let req = r.get_ref();
        unary("GetRunspace", &req.name, r.metadata(), async {
            Err(not_implemented("GetRunspace"))
        })
        .await
    }

    async fn list_runspaces(
        &self,
        r: Request<ListRunspacesRequest>,
    ) -> Result<Response<ListRunspacesResponse>, Status> {
        let req = r.get_ref();
        unary("ListRunspaces", &req.parent, r.metadata(), async {
            Err(not_implemented("ListRunspaces"))
        })
        .await
    }

    async fn delete_runspace(
        &self,
        r: Request<DeleteRunspaceRequest>,
    ) -> Result<Response<()>, Status> {
        let req = r.get_ref();
        unary("DeleteRunspace", &req.name, r.metadata(), async {
            Err(not_implemented("DeleteRunspace"))
        })
        .await
    }

    type WatchRunspaceStream = EventStream;

    async fn watch_runspace(
        &self,
        r: Request<WatchRunspaceRequest>,
    ) -> Result<Response<Self::WatchRunspaceStream>, Status> {
        let req = r.get_ref();
        unary("WatchRunspace", &req.name, r.metadata(), async {
            Err::<EventStream, _>(not_implemented("WatchRunspace"))
        })
        .await
    }
}
