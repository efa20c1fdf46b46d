//! How an upstream's TCP connections are made: straight to it, or through the HTTP proxy the
//! environment names for it (`HTTPS_PROXY`, `ALL_PROXY`, less the hosts of `NO_PROXY`, read
//! as curl reads them), as an HTTP CONNECT tunnel that TLS then runs through.
//!
//! Only `https` upstreams go through a proxy: a plain `http` upstream (the simulator, a lab)
//! is connected to directly, and the gateway says so at start when a proxy was named for it.

use std::{error::Error, future::Future, pin::Pin, task::Poll, time::Duration};

use http::Uri;
use hyper_util::{
    client::{
        legacy::connect::{HttpConnector, proxy::Tunnel},
        proxy::matcher::Matcher,
    },
    rt::TokioIo,
};
use tokio::net::TcpStream;
use tower::Service;

type BoxError = Box<dyn Error + Send + Sync>;

/// See the module docs.
#[derive(Clone, Debug)]
pub enum Transport {
    Direct(HttpConnector),
    Tunnel(Tunnel<HttpConnector>),
}

impl Transport {
    /// The transport to `base` (the upstream's URL) under the proxy rules of `proxies`;
    /// `Err` when the proxy named for it is not an `http://` one (TLS or SOCKS to the proxy
    /// is not supported).
    pub fn to(base: &Uri, proxies: &Matcher, upstream: &str) -> Result<Transport, String> {
        let mut tcp = HttpConnector::new();
        // The TLS connector wraps this one; it checks the scheme itself.
        tcp.enforce_http(false);
        tcp.set_nodelay(true);
        tcp.set_connect_timeout(Some(Duration::from_secs(10)));
        let Some(proxy) = proxies.intercept(base) else {
            return Ok(Transport::Direct(tcp));
        };
        if base.scheme() != Some(&http::uri::Scheme::HTTPS) {
            tracing::warn!(
                upstream,
                "a proxy is set for plain-http upstreams (HTTP_PROXY or ALL_PROXY), but only https upstreams go through one: connecting directly"
            );
            return Ok(Transport::Direct(tcp));
        }
        if proxy.uri().scheme() != Some(&http::uri::Scheme::HTTP) {
            return Err(format!(
                "the proxy named for it (HTTPS_PROXY or ALL_PROXY) has the scheme {:?}: only http:// proxies are supported",
                proxy.uri().scheme_str().unwrap_or("")
            ));
        }
        // The proxy's address only: its credentials, if any, stay out of the log.
        let authority = proxy.uri().authority().map(|a| a.as_str()).unwrap_or("");
        let address = authority.rsplit('@').next().unwrap_or("");
        tracing::info!(upstream, proxy = %address, "connecting through a proxy (HTTPS_PROXY or ALL_PROXY)");
        let mut tunnel = Tunnel::new(proxy.uri().clone(), tcp);
        if let Some(auth) = proxy.basic_auth() {
            tunnel = tunnel.with_auth(auth.clone());
        }
        Ok(Transport::Tunnel(tunnel))
    }
}

impl Service<Uri> for Transport {
    type Response = TokioIo<TcpStream>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> Poll<Result<(), BoxError>> {
        match self {
            Transport::Direct(c) => c.poll_ready(cx).map_err(Into::into),
            Transport::Tunnel(t) => t.poll_ready(cx).map_err(Into::into),
        }
    }

    fn call(&mut self, dst: Uri) -> Self::Future {
        match self {
            Transport::Direct(c) => {
                let connecting = c.call(dst);
                Box::pin(async move { connecting.await.map_err(Into::into) })
            }
            Transport::Tunnel(t) => {
                let connecting = t.call(dst);
                Box::pin(async move { connecting.await.map_err(Into::into) })
            }
        }
    }
}
