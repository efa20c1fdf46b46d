//! The gRPC face: one file per service. Each RPC validates its request, resolves the name,
//! calls the upstream (or the watch engine) through the registry and converts; no HTTP here.

/// Writes a tonic service impl. Each RPC listed under `unary` runs `self.handler(req)`
/// through [`unary`] (the call in scope, its error a `Status` naming the resource); each
/// listed under `stream` opens `self.handler(req, metadata)` (a validated watch) as a server
/// stream of `to_msg(event)` through [`streams::open`].
macro_rules! service {
    (
        impl $service:ident for $api:ty {
            unary {
                $( $rpc:ident($req:ident: $req_ty:ty) -> $resp:ty { $resource:expr => $handler:ident } )*
            }
            $(stream {
                $( $srpc:ident($sreq:ident: $sreq_ty:ty) -> $stream:ident<$msg:ty> {
                    $sresource:expr => $shandler:ident, $to_msg:ident
                } )*
            })?
        }
    ) => {
        #[tonic::async_trait]
        impl $service for $api {
            $(
                async fn $rpc(
                    &self,
                    request: tonic::Request<$req_ty>,
                ) -> std::result::Result<tonic::Response<$resp>, tonic::Status> {
                    let $req = request.get_ref();
                    let call = $crate::call::Call::from_request(request.metadata(), request.extensions());
                    $crate::api::rpc::unary($resource, call, self.$handler($req)).await
                }
            )*
            $($(
                type $stream = $crate::api::streams::EventStream<$msg>;

                async fn $srpc(
                    &self,
                    request: tonic::Request<$sreq_ty>,
                ) -> std::result::Result<tonic::Response<Self::$stream>, tonic::Status> {
                    let $sreq = request.get_ref();
                    let call = $crate::call::Call::from_request(request.metadata(), request.extensions());
                    let watch = $crate::call::sync_scope(call, || self.$shandler($sreq, request.metadata()));
                    let to_msg = $crate::api::streams::$to_msg;
                    let peer = $crate::tls::peer(request.extensions());
                    $crate::api::streams::open(&self.ctx, peer, $sresource, watch, to_msg).await
                }
            )*)?
        }
    };
}

pub mod edge;
pub mod paging;
pub mod rpc;
pub mod rpc_log;
pub mod runspaces;
pub mod streams;
pub mod tasks;
pub mod upstreams;

pub use rpc::Shared;
