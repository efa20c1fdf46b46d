//! The tower layer that gives every RPC its trace, one span and one log line (method, peer,
//! trace id, code and latency, plus the resource name the handler records into the span: the
//! layer cannot read it from the encoded request) and its metrics. A unary call and a stream
//! are logged the same way, when their status is known: from the headers of a trailers-only
//! answer, from the trailers at the end of the body, or as CANCELLED when the client goes
//! away first.
//!
//! The trace: the caller's W3C `traceparent` is continued in a span of the gateway's, or a
//! new trace starts; the gateway's span rides in the request's extensions, where the call
//! context (`call::Call`) reads it, so every upstream request the call causes carries the
//! same trace id.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll, ready},
};

use http::{HeaderMap, Request, Response};
use http_body::{Body, Frame, SizeHint};
use tokio::time::Instant;
use tonic::Code;
use tower::{Layer, Service};
use tracing::Span;

use crate::{
    telemetry::{self, ServedMethod},
    trace::TraceContext,
};

/// Adds [`RpcLog`] around the gRPC routes.
#[derive(Debug, Clone, Copy, Default)]
pub struct RpcLogLayer;

impl<S> Layer<S> for RpcLogLayer {
    type Service = RpcLog<S>;

    fn layer(&self, inner: S) -> RpcLog<S> {
        RpcLog { inner }
    }
}

/// See the module docs.
#[derive(Debug, Clone)]
pub struct RpcLog<S> {
    inner: S,
}

impl<S, B, ResBody> Service<Request<B>> for RpcLog<S>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
{
    type Response = Response<LoggedBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let trace = req
            .headers()
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .and_then(TraceContext::continue_from)
            .unwrap_or_else(TraceContext::new_root);
        // Handed to the call context as it is (`call::Call::from_request`), not written back
        // as a header for it to parse again.
        req.extensions_mut().insert(trace);
        let method = req.uri().path();
        let peer = crate::tls::peer(req.extensions());
        let span = tracing::info_span!(
            "rpc",
            method = %method.trim_start_matches('/'),
            peer = peer.map(tracing::field::display),
            trace_id = %trace.trace_id_hex(),
            resource = tracing::field::Empty,
            poller_trace_id = tracing::field::Empty,
        );
        let served = telemetry::served_method(method).unwrap_or_else(ServedMethod::other);
        // Health probes come every few seconds from every prober: log them only at debug.
        let quiet = method.starts_with("/grpc.health.");
        let inner = span.in_scope(|| self.inner.call(req));
        ResponseFuture {
            inner,
            log: Some(Pending {
                span,
                started: Instant::now(),
                quiet,
                served,
            }),
        }
    }
}

/// What a call needs to write its line once its status is known.
struct Pending {
    span: Span,
    started: Instant,
    quiet: bool,
    /// Its metrics.
    served: &'static ServedMethod,
}

impl Pending {
    fn finish(self, code: Code, message: &str) {
        let _in = self.span.enter();
        let elapsed = self.started.elapsed();
        self.served.handled(code, elapsed);
        let elapsed_ms = elapsed.as_millis() as u64;
        let code = tracing::field::debug(code);
        if self.quiet {
            tracing::debug!(code, elapsed_ms, error = message, "rpc");
        } else if message.is_empty() {
            tracing::info!(code, elapsed_ms, "rpc");
        } else {
            tracing::info!(code, elapsed_ms, error = message, "rpc");
        }
    }

    /// Logs if `headers` carry the call's status; gives itself back otherwise.
    fn finish_with(self, headers: &HeaderMap) -> Option<Pending> {
        let Some(status) = headers.get("grpc-status") else {
            return Some(self);
        };
        let code = Code::from_bytes(status.as_bytes());
        let message = headers
            .get("grpc-message")
            .map(|m| percent_encoding::percent_decode(m.as_bytes()).decode_utf8_lossy())
            .unwrap_or_default();
        self.finish(code, &message);
        None
    }
}

pin_project_lite::pin_project! {
    /// The inner service's future, inside the call's span.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        log: Option<Pending>,
    }
}

impl<F, ResBody, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
{
    type Output = Result<Response<LoggedBody<ResBody>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = {
            let _in = this.log.as_ref().map(|l| l.span.enter());
            ready!(this.inner.poll(cx))
        };
        let log = this.log.take();
        Poll::Ready(match result {
            Ok(response) => {
                // A trailers-only answer (every error) carries its status in the headers.
                let log = log.and_then(|l| l.finish_with(response.headers()));
                Ok(response.map(|inner| LoggedBody { inner, log }))
            }
            Err(e) => {
                if let Some(l) = log {
                    l.finish(Code::Internal, "the service failed before answering");
                }
                Err(e)
            }
        })
    }
}

pin_project_lite::pin_project! {
    /// A response body that writes the call's line when its trailers pass, or when it is
    /// dropped before them (the client went away).
    pub struct LoggedBody<B> {
        #[pin]
        inner: B,
        log: Option<Pending>,
    }

    impl<B> PinnedDrop for LoggedBody<B> {
        fn drop(this: Pin<&mut Self>) {
            if let Some(l) = this.project().log.take() {
                l.finish(Code::Cancelled, "the client went away before the end");
            }
        }
    }
}

impl<B: Body> Body for LoggedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = {
            let _in = this.log.as_ref().map(|l| l.span.enter());
            ready!(this.inner.poll_frame(cx))
        };
        match &frame {
            Some(Ok(f)) => {
                if let Some(trailers) = f.trailers_ref()
                    && let Some(l) = this.log.take()
                {
                    *this.log = l.finish_with(trailers);
                }
            }
            Some(Err(_)) => {
                if let Some(l) = this.log.take() {
                    l.finish(Code::Internal, "the response body failed");
                }
            }
            None => {
                if let Some(l) = this.log.take() {
                    l.finish(Code::Unknown, "the body ended without a status");
                }
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
