//! Cloud Director sessions (section 5.2): the credential a request carries (bearer token or
//! the legacy access-token header), Basic `user@org` logins for tenants and the provider, API
//! token exchange through `/oauth`, the current session, logouts (cloudapi and the legacy
//! `DELETE /api/session` pyvcloud uses) and `GET /api/versions`.

use axum::Extension;
use axum::body::Body;
use axum::extract::{FromRequestParts, Path, State};
use axum::response::Response;
use base64::Engine as _;
use http::request::Parts;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde_json::{Value, json};

use super::{
    ACCESS_TOKEN_HEADER, ApiVersion, BODY_LIMIT, CloudDirector, PROVIDER_ORG, ROUTE_PROVIDER_LOGIN,
    SUPPORTED_VERSIONS, TOKEN_TYPE_HEADER, cloudapi_error, legacy_error, oauth_error, vcd_json,
};
use crate::simulator::common::Session;
use crate::simulator::ids::{self, stable_uuid};
use crate::simulator::part::{Authenticated, Ctx, RouteKey, Shared};
use crate::simulator::web::{
    basic_credentials, empty, header_str, parse_form, raw_json, read_body,
};

/// Who a session belongs to (`Session::user` is stored as `name@org`).
#[derive(Debug, Clone)]
pub(super) struct Who {
    pub(super) user: String,
    pub(super) org: String,
}

impl Who {
    pub(super) fn from_session(s: &Session) -> Who {
        let (user, org) = s.user.rsplit_once('@').unwrap_or((s.user.as_str(), ""));
        Who {
            user: user.to_string(),
            org: org.to_string(),
        }
    }

    pub(super) fn provider(&self) -> bool {
        self.org == PROVIDER_ORG
    }

    pub(super) fn sees(&self, org: &str) -> bool {
        self.provider() || self.org.eq_ignore_ascii_case(org)
    }
}

/// The session token of a request: `Authorization: Bearer` or the access-token header.
pub(super) fn credential(headers: &HeaderMap) -> Option<String> {
    let bearer = header_str(headers, header::AUTHORIZATION.as_str()).and_then(|v| {
        let (scheme, token) = v.trim().split_once(' ')?;
        scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| token.trim().to_string())
    });
    bearer.or_else(|| header_str(headers, ACCESS_TOKEN_HEADER).map(str::to_string))
}

/// `POST /cloudapi/1.0.0/sessions` and `.../sessions/provider`.
pub(super) async fn login(
    State(st): State<Shared<CloudDirector>>,
    Extension(RouteKey(route)): Extension<RouteKey>,
    Extension(ApiVersion(version)): Extension<ApiVersion>,
    headers: HeaderMap,
) -> Response {
    basic_login(&st, &headers, route == ROUTE_PROVIDER_LOGIN, &version)
}

/// `POST /oauth/tenant/{org}/token` and `/oauth/provider/token` (no org).
pub(super) async fn token(
    State(st): State<Shared<CloudDirector>>,
    org: Option<Path<String>>,
    body: Body,
) -> Response {
    match read_body(body, BODY_LIMIT).await {
        Some(body) => exchange(&st, org.as_ref().map(|Path(o)| o.as_str()), &body),
        None => oauth_error("invalid_request", "The body could not be read."),
    }
}

/// An authenticated call: its token, who it is and the negotiated API version, from the
/// extensions the guard set.
pub(super) struct Caller {
    pub(super) token: String,
    pub(super) who: Who,
    pub(super) version: String,
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Response> {
        let auth = parts.extensions.get::<Authenticated>();
        match (auth, parts.extensions.get::<ApiVersion>()) {
            (Some(auth), Some(ApiVersion(version))) => Ok(Caller {
                token: auth.id.clone(),
                who: Who::from_session(&auth.session),
                version: version.clone(),
            }),
            // Only a route registered as public could get here: a simulator bug, not a 401.
            _ => Err(legacy_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "INTERNAL_SERVER_ERROR",
                "Internal simulator routing error.",
                None,
            )),
        }
    }
}

/// `GET /cloudapi/1.0.0/sessions/current`.
pub(super) async fn session_current(
    State(st): State<Shared<CloudDirector>>,
    c: Caller,
) -> Response {
    vcd_json(
        StatusCode::OK,
        &session_json(&st, &c.token, &c.who),
        &format!("application/json;version={}", c.version),
    )
}

/// `DELETE /cloudapi/1.0.0/sessions/current` and the legacy `DELETE /api/session`: `204`,
/// and the token is no longer valid.
pub(super) async fn logout(State(st): State<Shared<CloudDirector>>, c: Caller) -> Response {
    st.core.sessions.remove(&c.token);
    empty(StatusCode::NO_CONTENT)
}

fn basic_login(
    st: &Ctx<CloudDirector>,
    headers: &HeaderMap,
    provider: bool,
    version: &str,
) -> Response {
    let denied = |msg: &str| cloudapi_error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", msg, None);
    let Some((login, password)) = basic_credentials(headers) else {
        return denied("Basic credentials user@org:password are required.");
    };
    let Some((user, org)) = login.rsplit_once('@') else {
        return denied("The user name must be given as user@org.");
    };
    let org = if org.eq_ignore_ascii_case(PROVIDER_ORG) {
        if !st.core.credentials_match(user, &password) {
            return denied("Invalid credentials.");
        }
        if !provider {
            return denied("Provider users must log in through /cloudapi/1.0.0/sessions/provider.");
        }
        PROVIDER_ORG.to_string()
    } else {
        match st.tenant(&st.core, org, user, &password) {
            Some(org) if !provider => org.to_string(),
            _ => return denied("Invalid credentials."),
        }
    };
    let (token, who) = open_session(st, user, org);
    let mut resp = vcd_json(
        StatusCode::OK,
        &session_json(st, &token, &who),
        &format!("application/json;version={version}"),
    );
    if let Ok(v) = HeaderValue::from_str(&token) {
        resp.headers_mut().insert(ACCESS_TOKEN_HEADER, v);
    }
    resp.headers_mut()
        .insert(TOKEN_TYPE_HEADER, HeaderValue::from_static("Bearer"));
    resp
}

/// `grant_type=refresh_token&refresh_token=<API token>` → a bearer access token.
fn exchange(st: &Ctx<CloudDirector>, org: Option<&str>, body: &[u8]) -> Response {
    let Some(form) = std::str::from_utf8(body).ok().and_then(parse_form) else {
        return oauth_error("invalid_request", "The body is not a valid form.");
    };
    let field = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    if field("grant_type") != Some("refresh_token") {
        return oauth_error("unsupported_grant_type", "Only refresh_token is supported.");
    }
    if field("refresh_token") != Some(st.api_token.as_str()) {
        return oauth_error("invalid_grant", "The refresh token is invalid or revoked.");
    }
    let org = match org {
        None => PROVIDER_ORG.to_string(),
        Some(o) if o.eq_ignore_ascii_case(&st.org) => st.org.clone(),
        Some(_) => {
            return oauth_error(
                "invalid_grant",
                "The refresh token is not valid for this org.",
            );
        }
    };
    let (access, _) = open_session(st, &st.core.username, org);
    let mut resp = raw_json(
        StatusCode::OK,
        json!({
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": st.idle_timeout.as_secs(),
            "refresh_token": st.api_token,
        })
        .to_string(),
    );
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// Mints a bearer token for `user@org` and opens a session under it, stored as `user@org`
/// (what [`Who::from_session`] reads back): both login flows end here.
fn open_session(st: &Ctx<CloudDirector>, user: &str, org: String) -> (String, Who) {
    let who = Who {
        user: user.to_string(),
        org,
    };
    let token = jwt(st, &who);
    st.core
        .login_with_id(token.clone(), &format!("{}@{}", who.user, who.org));
    (token, who)
}

/// A JWT-shaped bearer token (header.payload.signature, base64url); never verified as one.
fn jwt(st: &Ctx<CloudDirector>, who: &Who) -> String {
    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let now = st.core.clock.wall(st.core.clock.now());
    let header = json!({"alg": "RS256", "typ": "JWT"});
    let payload = json!({
        "iss": format!("{}@{}", stable_uuid("site", "vcd01"), stable_uuid("site", "vcd01")),
        "sub": who.user,
        "org": who.org,
        "iat": now.timestamp(),
        "exp": now.timestamp() + i64::try_from(st.idle_timeout.as_secs()).unwrap_or(1800),
        "jti": ids::uuid(),
    });
    let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(ids::hex(64));
    format!("{}.{}.{sig}", b64(&header), b64(&payload))
}

/// CurrentSessionInfo of section 5.2.
fn session_json(st: &Ctx<CloudDirector>, token: &str, who: &Who) -> Value {
    let role = if who.provider() {
        "System Administrator"
    } else {
        "Organization Administrator"
    };
    json!({
        "id": stable_uuid("session", token),
        "site": {"name": "vcd01", "id": format!("urn:vcloud:site:{}", stable_uuid("site", "vcd01"))},
        "user": {"name": who.user, "id": format!("urn:vcloud:user:{}", stable_uuid("user", &who.user))},
        "org": {"name": who.org, "id": format!("urn:vcloud:org:{}", stable_uuid("org", &who.org))},
        "location": "vcd01",
        "roles": [role],
        "roleRefs": [{"name": role, "id": format!("urn:vcloud:role:{}", stable_uuid("role", role))}],
        "sessionIdleTimeoutMinutes": st.idle_timeout.as_secs() / 60,
    })
}

/// `GET /api/versions` (public, no `Accept` version needed).
pub(super) async fn versions(State(st): State<Shared<CloudDirector>>) -> Response {
    let login = format!("{}/api/sessions", st.base());
    let infos: Vec<Value> = SUPPORTED_VERSIONS
        .iter()
        .map(|v| {
            json!({"otherAttributes": {}, "version": v, "loginUrl": login, "mediaTypeMapping": [],
                   "deprecated": false, "vCloudExtension": []})
        })
        .collect();
    vcd_json(
        StatusCode::OK,
        &json!({"otherAttributes": {}, "versionInfo": infos, "link": [], "vCloudExtension": []}),
        "application/vnd.vmware.vcloud.versions+json",
    )
}
