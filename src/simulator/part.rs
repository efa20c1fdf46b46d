//! The skeleton every simulated part shares, written once: a part is a [`Kind`] (its own
//! state, its routes and its wire [`Rules`]) served as an axum [`Router`] behind one middleware,
//! [`guard`], and handed out as a [`Part`] (the kind's state plus the [`SimHandle`] it
//! dereferences to).
//!
//! Route keys are the routes themselves: a kind registers each handler under its route-key
//! constant, `"METHOD /path/{param}"` in axum 0.8 path syntax (plus `?action=name` for vAPI
//! action routes), so the key the guard counts a request under is the matched path and the
//! method, never a second hand-kept table. For every request the guard
//! 1. resolves the key (unmatched paths and methods count as [`ROUTE_OTHER`]),
//! 2. counts it and applies a queued fault (so refused calls are counted and faults beat auth),
//! 3. applies the standing [faults](super::faults): holds it while `blackhole` is on, waits
//!    `latency`, answers the kind's `unavailable` 503 at `error_rate`,
//! 4. answers unmatched requests with the kind's `not_found`,
//! 5. runs the kind's `admit` check (Cloud Director's `Accept` negotiation),
//! 6. authenticates non-public routes with the kind's credential header (sessions older than
//!    `session_expiry` are gone), answering its `unauthenticated` body on failure and handing
//!    the session to the handler otherwise,
//! 7. breaks the successful answer of a non-public route at `malformed_rate`, and waits
//!    `delay_after_handling` (and a queued [`Fault::DelayAfter`]) before answering,
//!
//! so handlers only do their own work.
//!
//! [`Fault::DelayAfter`]: super::common::Fault::DelayAfter

use std::collections::HashMap;
use std::ops::Deref;
use std::sync::Arc;

use axum::Router;
use axum::extract::{MatchedPath, OriginalUri, Request, State};
use axum::handler::Handler;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{MethodFilter, on};
use http::uri::PathAndQuery;
use http::{HeaderMap, Method, StatusCode, Uri};

use super::SimOptions;
use super::common::{Entered, Session, SimCore, SimHandle};
use super::tasks::TaskStore;
use super::web::{query_last, query_pairs};

/// Route key of requests that match no route of their part (including unknown vAPI actions).
pub const ROUTE_OTHER: &str = "OTHER";

/// How one kind of upstream differs on the wire where the guard acts.
pub struct Rules {
    /// For logs, e.g. `"vCenter"`.
    pub name: &'static str,
    /// The session id (token, API key) a request carries, if any.
    pub credential: fn(&HeaderMap) -> Option<String>,
    /// The answer to a non-public route without a live session.
    pub unauthenticated: fn(&Request) -> Response,
    /// The answer to a request no route matches: method and the path as sent.
    pub not_found: fn(&Method, &str) -> Response,
    /// The `503` the `error_rate` fault answers, in the kind's own server-error body.
    pub unavailable: fn(&Request) -> Response,
    /// A check every matched route passes before authentication, given the route key: `Some`
    /// answers the request instead (an `Option`, as the refusal is much larger than the
    /// success). It may add request extensions for the handlers. [`admit_all`] for none.
    pub admit: fn(&'static str, &mut Request) -> Option<Response>,
}

/// The [`Rules::admit`] of kinds without a pre-authentication check.
pub fn admit_all(_route: &'static str, _req: &mut Request) -> Option<Response> {
    None
}

/// One kind of simulated upstream.
pub trait Kind: Sized + Send + Sync + 'static {
    const RULES: Rules;

    /// The kind's own state for `opts` (seeded when `opts.seed_demo_tasks`).
    fn new(opts: &SimOptions) -> Self;

    /// Every route of the kind, each under its route-key constant.
    fn routes() -> Routes<Self>;

    /// Called once the listener is bound (Cloud Director writes its URL into `href`s).
    fn started(&self, _url: &str) {}
}

/// The router state of a part: the shared core, the kind's own state (reachable through
/// `Deref`) and the route table the guard resolves keys with.
pub struct Ctx<K> {
    pub core: Arc<SimCore>,
    pub kind: K,
    table: RouteTable,
}

impl<K> Deref for Ctx<K> {
    type Target = K;

    fn deref(&self) -> &K {
        &self.kind
    }
}

/// What handlers extract as `State`.
pub type Shared<K> = Arc<Ctx<K>>;

/// The live session of a request to a non-public route (a request extension set by the guard).
#[derive(Debug, Clone)]
pub struct Authenticated {
    /// The session id, token or API key the request carried.
    pub id: String,
    pub session: Session,
}

/// The route key a request was counted under; set on the request for handlers that dispatch
/// on it (vAPI actions) and on the response for tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteKey(pub &'static str);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    Public,
    Session,
}

/// One registered method and path.
struct Entry {
    access: Access,
    /// The route key, for routes not selected by action.
    key: &'static str,
    /// `(action, route key)` for vAPI routes that select the operation by `?action=`.
    actions: Vec<(&'static str, &'static str)>,
}

/// `"METHOD /path/{param}"` to its entry.
#[derive(Default)]
struct RouteTable {
    entries: HashMap<String, Entry>,
}

impl RouteTable {
    /// The route key and access of a request; `None` access for unmatched requests.
    fn resolve(
        &self,
        method: &Method,
        matched: Option<&str>,
        uri: &Uri,
    ) -> (&'static str, Option<Access>) {
        let Some(entry) = matched.and_then(|p| self.entries.get(&format!("{method} {p}"))) else {
            return (ROUTE_OTHER, None);
        };
        if entry.actions.is_empty() {
            return (entry.key, Some(entry.access));
        }
        // An unknown or missing action still reaches the dispatcher (which refuses it after
        // authentication), counted as OTHER.
        let pairs = query_pairs(uri);
        let action = query_last(&pairs, "action").unwrap_or("");
        let key = entry
            .actions
            .iter()
            .find(|(a, _)| *a == action)
            .map_or(ROUTE_OTHER, |(_, k)| *k);
        (key, Some(entry.access))
    }
}

/// A route key split into method, axum path and vAPI action.
fn split_key(key: &'static str) -> Option<(Method, &'static str, Option<&'static str>)> {
    let (method, target) = key.split_once(' ')?;
    let (path, action) = match target.split_once("?action=") {
        Some((path, action)) => (path, Some(action)),
        None => (target, None),
    };
    Some((Method::from_bytes(method.as_bytes()).ok()?, path, action))
}

/// A kind's routes while they are being declared.
pub struct Routes<K> {
    router: Router<Shared<K>>,
    table: RouteTable,
}

impl<K: Kind> Default for Routes<K> {
    fn default() -> Self {
        Routes {
            router: Router::new(),
            table: RouteTable::default(),
        }
    }
}

impl<K: Kind> Routes<K> {
    pub fn new() -> Self {
        Self::default()
    }

    /// A route anyone may call (login, version discovery).
    pub fn public<H, T>(self, key: &'static str, handler: H) -> Self
    where
        H: Handler<T, Shared<K>>,
        T: 'static,
    {
        self.add(&[key], Access::Public, handler)
    }

    /// A route that needs a live session; the handler may extract [`Authenticated`].
    pub fn session<H, T>(self, key: &'static str, handler: H) -> Self
    where
        H: Handler<T, Shared<K>>,
        T: 'static,
    {
        self.add(&[key], Access::Session, handler)
    }

    /// vAPI: the `?action=` keys of one method and path (all needing a session), served by
    /// one dispatcher that matches on the request's [`RouteKey`].
    pub fn actions<H, T>(self, keys: &[&'static str], handler: H) -> Self
    where
        H: Handler<T, Shared<K>>,
        T: 'static,
    {
        self.add(keys, Access::Session, handler)
    }

    fn add<H, T>(mut self, keys: &[&'static str], access: Access, handler: H) -> Self
    where
        H: Handler<T, Shared<K>>,
        T: 'static,
    {
        let Some((method, path, _)) = keys.first().and_then(|k| split_key(k)) else {
            return self.misdeclared(keys);
        };
        let Ok(filter) = MethodFilter::try_from(method.clone()) else {
            return self.misdeclared(keys);
        };
        let mut entry = Entry {
            access,
            key: ROUTE_OTHER,
            actions: Vec::new(),
        };
        for key in keys {
            match split_key(key) {
                Some((m, p, None)) if m == method && p == path => entry.key = key,
                Some((m, p, Some(action))) if m == method && p == path => {
                    entry.actions.push((action, key));
                }
                _ => return self.misdeclared(keys),
            }
        }
        self.router = self.router.route(path, on(filter, handler));
        self.table.entries.insert(format!("{method} {path}"), entry);
        self
    }

    /// A route-key constant that is not `"METHOD /path"`: a programming error that each
    /// kind's route tests catch (the route would answer as unmatched).
    fn misdeclared(self, keys: &[&'static str]) -> Self {
        tracing::error!(
            ?keys,
            part = K::RULES.name,
            "malformed route keys; route skipped"
        );
        self
    }
}

/// A running part: the kind's state and the [`SimHandle`] it dereferences to. Cheap to
/// clone; it stops when the last clone is dropped.
pub struct Part<K> {
    handle: SimHandle,
    ctx: Shared<K>,
}

impl<K> Clone for Part<K> {
    fn clone(&self) -> Self {
        Part {
            handle: self.handle.clone(),
            ctx: Arc::clone(&self.ctx),
        }
    }
}

impl<K> Deref for Part<K> {
    type Target = SimHandle;

    fn deref(&self) -> &SimHandle {
        &self.handle
    }
}

impl<K: Kind> std::fmt::Debug for Part<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Part")
            .field("kind", &K::RULES.name)
            .field("url", &self.url())
            .finish()
    }
}

impl<K: Kind> Part<K> {
    /// Binds an ephemeral port on 127.0.0.1 and starts serving.
    pub async fn start(opts: &SimOptions) -> std::io::Result<Part<K>> {
        let (ctx, app) = app::<K>(opts);
        let handle = SimHandle::start(Arc::clone(&ctx.core), app, opts.tls, K::RULES.name).await?;
        ctx.kind.started(&handle.url());
        Ok(Part { handle, ctx })
    }

    /// The kind's own state (task store, runspaces, ...).
    pub fn kind(&self) -> &K {
        &self.ctx.kind
    }
}

impl<K: Kind + AsRef<TaskStore>> Part<K> {
    /// The part's tasks (vCenter, snapshot service, Cloud Director): add, inspect, remove.
    pub fn tasks(&self) -> &TaskStore {
        self.kind().as_ref()
    }
}

/// The kind's state and its complete service: routes behind the guard, behind the
/// trailing-slash normalization.
fn app<K: Kind>(opts: &SimOptions) -> (Shared<K>, Router) {
    let Routes { router, table } = K::routes();
    let ctx = Arc::new(Ctx {
        core: Arc::new(SimCore::new(opts)),
        kind: K::new(opts),
        table,
    });
    let routed = router
        // Never reached: the guard answers unmatched requests itself, with the kind's body.
        .fallback(|| async { StatusCode::NOT_FOUND })
        .layer(middleware::from_fn_with_state(Arc::clone(&ctx), guard::<K>))
        .with_state(Arc::clone(&ctx));
    // Routing sees the path without a trailing slash; this layer runs before routing because
    // it wraps the whole routed service.
    let app = Router::new()
        .fallback_service(routed)
        .layer(middleware::map_request(strip_trailing_slash));
    (ctx, app)
}

/// `/a/b/` is `/a/b` on every simulated upstream (the original URI stays available for
/// error messages as [`OriginalUri`]).
async fn strip_trailing_slash(mut req: Request) -> Request {
    let path = req.uri().path();
    let Some(trimmed) = path.strip_suffix('/').filter(|t| !t.is_empty()) else {
        return req;
    };
    let target = match req.uri().query() {
        Some(q) => format!("{trimmed}?{q}"),
        None => trimmed.to_string(),
    };
    let mut parts = req.uri().clone().into_parts();
    let Ok(pq) = PathAndQuery::try_from(target) else {
        return req;
    };
    parts.path_and_query = Some(pq);
    if let Ok(uri) = Uri::from_parts(parts) {
        if req.extensions().get::<OriginalUri>().is_none() {
            let original = OriginalUri(req.uri().clone());
            req.extensions_mut().insert(original);
        }
        *req.uri_mut() = uri;
    }
    req
}

/// The one middleware of every part (see the module docs).
async fn guard<K: Kind>(State(ctx): State<Shared<K>>, req: Request, next: Next) -> Response {
    let matched = req
        .extensions()
        .get::<MatchedPath>()
        .map(MatchedPath::as_str);
    let (key, access) = ctx.table.resolve(req.method(), matched, req.uri());
    tracing::debug!(part = K::RULES.name, route = key, "sim request");
    if let Some(tp) = req
        .headers()
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
    {
        ctx.core.saw_traceparent(tp);
    }
    let mut resp = admit(&ctx, key, access, req, next).await;
    resp.extensions_mut().insert(RouteKey(key));
    resp
}

async fn admit<K: Kind>(
    ctx: &Ctx<K>,
    key: &'static str,
    access: Option<Access>,
    req: Request,
    next: Next,
) -> Response {
    let delay_after = match ctx.core.enter(key).await {
        Entered::Answer(resp) => return resp,
        Entered::Handle { delay_after } => delay_after,
    };
    let standing = &ctx.core.standing;
    standing.hold_while_blackholed().await;
    let faults = standing.get();
    if !faults.latency.is_zero() {
        tokio::time::sleep(faults.latency).await;
    }
    if standing.draw_error(&faults) {
        return (K::RULES.unavailable)(&req);
    }
    let mut resp = route(ctx, key, access, req, next).await;
    if access == Some(Access::Session) {
        resp = standing.maybe_malform(&faults, resp).await;
    }
    let delay_after = delay_after.saturating_add(faults.delay_after_handling);
    if !delay_after.is_zero() {
        tokio::time::sleep(delay_after).await;
    }
    resp
}

/// The request's own answer: the kind's `not_found`, `admit` refusal or `unauthenticated`
/// body, or its handler's.
async fn route<K: Kind>(
    ctx: &Ctx<K>,
    key: &'static str,
    access: Option<Access>,
    mut req: Request,
    next: Next,
) -> Response {
    let Some(access) = access else {
        let path = match req.extensions().get::<OriginalUri>() {
            Some(original) => original.path(),
            None => req.uri().path(),
        };
        return (K::RULES.not_found)(req.method(), path);
    };
    if let Some(resp) = (K::RULES.admit)(key, &mut req) {
        return resp;
    }
    if access == Access::Session {
        let auth = (K::RULES.credential)(req.headers()).and_then(|id| {
            let session = ctx.core.authenticate(&id)?;
            Some(Authenticated { id, session })
        });
        match auth {
            Some(auth) => {
                req.extensions_mut().insert(auth);
            }
            None => return (K::RULES.unauthenticated)(&req),
        }
    }
    req.extensions_mut().insert(RouteKey(key));
    next.run(req).await
}

/// Requests straight into a kind's service, without a listener: the route key each request
/// was counted under, its status and its body.
#[cfg(test)]
pub(crate) mod probe {
    use axum::body::{Body, Bytes};
    use tower::ServiceExt as _;

    use super::*;

    pub struct Probe<K> {
        pub ctx: Shared<K>,
        app: Router,
    }

    impl<K: Kind> Probe<K> {
        pub fn new() -> Self {
            let opts = SimOptions {
                clock: crate::simulator::SimClock::manual(),
                ..SimOptions::default()
            };
            let (ctx, app) = app::<K>(&opts);
            Probe { ctx, app }
        }

        /// A live session id for the credential header.
        pub fn login(&self) -> String {
            self.ctx.core.login("u")
        }

        pub async fn send(&self, req: http::Request<Body>) -> (&'static str, StatusCode, Bytes) {
            let resp = match self.app.clone().oneshot(req).await {
                Ok(resp) => resp,
                Err(never) => match never {},
            };
            let key = resp.extensions().get::<RouteKey>().map_or("", |k| k.0);
            let status = resp.status();
            let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
                .await
                .unwrap_or_default();
            (key, status, body)
        }

        /// Sends `method uri` with an empty body, and `header: session` when given.
        pub async fn call(
            &self,
            method: Method,
            uri: &str,
            session: Option<(&str, &str)>,
        ) -> (&'static str, StatusCode, Bytes) {
            let mut req = http::Request::builder().method(method).uri(uri);
            if let Some((name, value)) = session {
                req = req.header(name, value);
            }
            self.send(req.body(Body::empty()).unwrap_or_default()).await
        }

        /// [`Probe::call`] with a JSON answer (`Null` when the body is not JSON).
        pub async fn call_json(
            &self,
            method: Method,
            uri: &str,
            session: Option<(&str, &str)>,
        ) -> (&'static str, StatusCode, serde_json::Value) {
            let (key, status, body) = self.call(method, uri, session).await;
            (
                key,
                status,
                serde_json::from_slice(&body).unwrap_or_default(),
            )
        }

        /// The route key of `method uri`, sent with `header: session` when given.
        pub async fn key(
            &self,
            method: Method,
            uri: &str,
            session: Option<(&str, &str)>,
        ) -> &'static str {
            self.call(method, uri, session).await.0
        }

        /// A kind's route table test: every key of `keys` is counted under itself
        /// ([`Probe::assert_routes`]) and every request of `unmatched` under [`ROUTE_OTHER`]
        /// ([`Probe::assert_unmatched`]), each with a live session in `header`.
        pub async fn assert_table(
            &self,
            header: &str,
            keys: &[&'static str],
            unmatched: &[(Method, &str)],
        ) {
            self.assert_routes(header, keys).await;
            self.assert_unmatched(header, unmatched).await;
        }

        /// Asserts that each route key, requested as itself (`{param}`s filled in, the action
        /// as a query parameter, a fresh session in `header`), is counted under itself.
        pub async fn assert_routes(&self, header: &str, keys: &[&'static str]) {
            for key in keys {
                let Some((method, path, action)) = split_key(key) else {
                    panic!("malformed route key {key}");
                };
                let mut uri = String::new();
                let mut in_param = false;
                for c in path.chars() {
                    match c {
                        '{' => {
                            in_param = true;
                            uri.push('x');
                        }
                        '}' => in_param = false,
                        c if !in_param => uri.push(c),
                        _ => {}
                    }
                }
                if let Some(action) = action {
                    uri = format!("{uri}?action={action}");
                }
                let sid = self.login();
                let got = self.key(method, &uri, Some((header, &sid))).await;
                assert_eq!(got, *key, "{uri}");
            }
        }

        /// Asserts that each request, sent with a live session in `header`, is unmatched.
        pub async fn assert_unmatched(&self, header: &str, requests: &[(Method, &str)]) {
            let sid = self.login();
            for (method, uri) in requests {
                let got = self.key(method.clone(), uri, Some((header, &sid))).await;
                assert_eq!(got, ROUTE_OTHER, "{method} {uri}");
            }
        }
    }
}
