//! The tower layer at the edge of every call, for the answers the gateway gives before or
//! after its handlers run:
//!
//! - **caller authentication** (with `[auth]`): a call to a service not exempt needs a known
//!   bearer token (`authorization: Bearer …`) or a verified client certificate naming a
//!   `[[clients]]` identity (SAN or subject CN), else `UNAUTHENTICATED`,
//!   and the scope its method needs, else `PERMISSION_DENIED`/`SCOPE_MISSING`; the caller's
//!   [`Grant`] then rides along in the request's extensions (the call context reads it, and
//!   the registry keeps the caller to its upstreams);
//! - **the end of the shutdown grace**: when `cut` fires, a call still waiting for its answer
//!   gets `UNAVAILABLE`/`SHUTTING_DOWN` with RetryInfo, and a stream still open ends with that
//!   status in its trailers, instead of the bare `UNAVAILABLE` of a dropped connection;
//! - **tonic's own size refusal**: a request larger than `server.max_message_bytes` is refused
//!   by tonic's decoder with `OUT_OF_RANGE` before any handler runs; the gateway answers
//!   `RESOURCE_EXHAUSTED`/`LIMIT_REACHED` naming the limit instead (no gateway code returns
//!   `OUT_OF_RANGE`, so that code in an answer's headers can only be that refusal).

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll, ready},
};

use http::{HeaderMap, HeaderValue, Request, Response};
use http_body::{Body, Frame, SizeHint};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tonic::{Code, Status};
use tower::{Layer, Service};

use std::{collections::HashSet, sync::Arc};

use crate::{
    auth::{CallerStore, Grant, Scope},
    config::AuthConfig,
    error::{GatewayError, Reason},
};

/// Who may call: the callers of the tokens file, and the services anyone may call.
pub struct Authenticator {
    store: Arc<CallerStore>,
    exempt: HashSet<String>,
}

impl Authenticator {
    pub fn new(store: Arc<CallerStore>, cfg: &AuthConfig) -> Self {
        Authenticator {
            store,
            exempt: cfg.exempt.iter().cloned().collect(),
        }
    }

    /// Lets the call through with its grant in the extensions, or the status refusing it.
    fn admit<B>(&self, req: &mut Request<B>) -> Result<(), Status> {
        let path = req.uri().path();
        let service = path.trim_start_matches('/').split('/').next().unwrap_or("");
        if self.exempt.contains(service) {
            return Ok(());
        }
        let callers = self.store.callers();
        let client = crate::tls::conn_info(req.extensions()).and_then(|c| c.client.clone());
        let grant = bearer(req.headers())
            .and_then(|token| callers.by_token(token))
            .or_else(|| client.and_then(|c| callers.by_client(&c.identities)))
            .ok_or_else(|| {
                GatewayError::refused(
                    Reason::Unauthenticated,
                    None,
                    "this gateway needs caller credentials: a known bearer token (authorization: Bearer <token>) or a known client certificate",
                )
                .into_status("")
            })?;
        let scope = Scope::of_method(path);
        if !grant.has(scope) {
            let name = scope.as_str();
            return Err(GatewayError::ScopeMissing {
                scope: name.to_string(),
                message: format!("caller '{}' lacks the scope '{name}'", grant.name),
            }
            .into_status(""));
        }
        req.extensions_mut().insert::<Arc<Grant>>(grant);
        Ok(())
    }
}

/// The token of an `authorization: Bearer <token>` header.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Adds [`Edge`] around the gRPC routes.
#[derive(Clone)]
pub struct EdgeLayer {
    cut: CancellationToken,
    max_message_bytes: usize,
    auth: Option<Arc<Authenticator>>,
}

impl EdgeLayer {
    /// `cut` fires at the end of the shutdown grace; `auth` checks callers when set.
    pub fn new(
        cut: CancellationToken,
        max_message_bytes: usize,
        auth: Option<Arc<Authenticator>>,
    ) -> Self {
        Self {
            cut,
            max_message_bytes,
            auth,
        }
    }
}

impl<S> Layer<S> for EdgeLayer {
    type Service = Edge<S>;

    fn layer(&self, inner: S) -> Edge<S> {
        Edge {
            inner,
            cut: self.cut.clone(),
            max_message_bytes: self.max_message_bytes,
            auth: self.auth.clone(),
        }
    }
}

/// See the module docs.
#[derive(Clone)]
pub struct Edge<S> {
    inner: S,
    cut: CancellationToken,
    max_message_bytes: usize,
    auth: Option<Arc<Authenticator>>,
}

impl<S, B, ResBody> Service<Request<B>> for Edge<S>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
{
    type Response = Response<EdgeBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        if let Some(auth) = &self.auth
            && let Err(status) = auth.admit(&mut req)
        {
            return ResponseFuture::Refused {
                status: Some(status),
            };
        }
        ResponseFuture::Running {
            inner: self.inner.call(req),
            cut: self.cut.clone().cancelled_owned(),
            body_cut: Some(self.cut.clone()),
            max_message_bytes: self.max_message_bytes,
        }
    }
}

/// The status of a call cut at the end of the shutdown grace.
fn shutting_down() -> Status {
    GatewayError::ShuttingDown.into_status("")
}

/// A trailers-only answer carrying `status`.
fn trailers_only<B>(status: Status) -> Response<EdgeBody<B>> {
    status.into_http::<()>().map(|()| EdgeBody::Empty)
}

pin_project_lite::pin_project! {
    /// The inner service's future, raced against the cut; or a refusal before it.
    #[project = ResponseFutureProj]
    pub enum ResponseFuture<F> {
        Refused { status: Option<Status> },
        Running {
            #[pin]
            inner: F,
            #[pin]
            cut: WaitForCancellationFutureOwned,
            body_cut: Option<CancellationToken>,
            max_message_bytes: usize,
        },
    }
}

impl<F, ResBody, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
{
    type Output = Result<Response<EdgeBody<ResBody>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let (inner, cut, body_cut, max_message_bytes) = match self.project() {
            ResponseFutureProj::Refused { status } => {
                let status = status.take().unwrap_or_else(shutting_down);
                return Poll::Ready(Ok(trailers_only(status)));
            }
            ResponseFutureProj::Running {
                inner,
                cut,
                body_cut,
                max_message_bytes,
            } => (inner, cut, body_cut, max_message_bytes),
        };
        match inner.poll(cx) {
            Poll::Ready(Ok(response)) => {
                if response.headers().get("grpc-status") == Some(&code_value(Code::OutOfRange)) {
                    let limit = GatewayError::refused(
                        Reason::LimitReached,
                        None,
                        format!(
                            "the request message is too large: the gateway's limit server.max_message_bytes = {} is reached",
                            max_message_bytes
                        ),
                    );
                    return Poll::Ready(Ok(trailers_only(limit.into_status(""))));
                }
                let cut = body_cut.take().unwrap_or_default().cancelled_owned();
                Poll::Ready(Ok(response.map(|inner| EdgeBody::Open { inner, cut })))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                ready!(cut.poll(cx));
                Poll::Ready(Ok(trailers_only(shutting_down())))
            }
        }
    }
}

fn code_value(code: Code) -> HeaderValue {
    HeaderValue::from(code as i32)
}

pin_project_lite::pin_project! {
    /// A response body that ends with SHUTTING_DOWN in its trailers when the cut fires first.
    #[project = EdgeBodyProj]
    pub enum EdgeBody<B> {
        /// A trailers-only answer: nothing follows the headers.
        Empty,
        Open {
            #[pin]
            inner: B,
            #[pin]
            cut: WaitForCancellationFutureOwned,
        },
        /// Cut: its trailers were sent.
        Ended,
    }
}

impl<B: Body> Body for EdgeBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let EdgeBodyProj::Open { inner, cut } = self.as_mut().project() else {
            return Poll::Ready(None);
        };
        if let Poll::Ready(frame) = inner.poll_frame(cx) {
            return Poll::Ready(frame);
        }
        ready!(cut.poll(cx));
        self.set(EdgeBody::Ended);
        let mut trailers = HeaderMap::new();
        // A status tonic built itself always fits in headers.
        let _ = shutting_down().add_header(&mut trailers);
        Poll::Ready(Some(Ok(Frame::trailers(trailers))))
    }

    fn is_end_stream(&self) -> bool {
        match self {
            EdgeBody::Open { inner, .. } => inner.is_end_stream(),
            EdgeBody::Empty | EdgeBody::Ended => true,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            EdgeBody::Open { inner, .. } => inner.size_hint(),
            EdgeBody::Empty | EdgeBody::Ended => SizeHint::with_exact(0),
        }
    }
}
