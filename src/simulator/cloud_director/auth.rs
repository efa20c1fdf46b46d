//! Cloud Director sessions (section 5.2): the credential a request carries (bearer token or
//! the legacy access-token header), Basic `user@org` logins for tenants and the provider, API
//! token exchange through `/oauth`, the current session, logouts (cloudapi and the legacy
//! `DELETE /api/session` pyvcloud uses) and `GET /api/versions`.

use axum::Extension;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::Response;
use base64::Engine as _;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde_json::{Value, json};

use super::tasks::base;
use super::{
    ACCESS_TOKEN_HEADER, ApiVersion, BODY_LIMIT, CloudDirector, PROVIDER_ORG, SUPPORTED_VERSIONS,
    TOKEN_TYPE_HEADER, cloudapi_error, oauth_error, vcd_json,
};
use crate::simulator::common::Session;
use crate::simulator::ids::{self, stable_uuid};
use crate::simulator::part::{Authenticated, Ctx, Shared};
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

/// `POST /cloudapi/1.0.0/sessions`.
pub(super) async fn tenant_login(
    State(st): State<Shared<CloudDirector>>,
    Extension(ApiVersion(version)): Extension<ApiVersion>,
    headers: HeaderMap,
) -> Response {
    login(&st, &headers, false, &version)
}

/// `POST /cloudapi/1.0.0/sessions/provider`.
pub(super) async fn provider_login(
    State(st): State<Shared<CloudDirector>>,
    Extension(ApiVersion(version)): Extension<ApiVersion>,
    headers: HeaderMap,
) -> Response {
    login(&st, &headers, true, &version)
}

/// `POST /oauth/tenant/{org}/token`.
pub(super) async fn tenant_token(
    State(st): State<Shared<CloudDirector>>,
    Path(org): Path<String>,
    body: Body,
) -> Response {
    match read_body(body, BODY_LIMIT).await {
        Some(body) => token(&st, Some(&org), &body),
        None => oauth_error("invalid_request", "The body could not be read."),
    }
}

/// `POST /oauth/provider/token`.
pub(super) async fn provider_token(
    State(st): State<Shared<CloudDirector>>,
    body: Body,
) -> Response {
    match read_body(body, BODY_LIMIT).await {
        Some(body) => token(&st, None, &body),
        None => oauth_error("invalid_request", "The body could not be read."),
    }
}

/// `GET /cloudapi/1.0.0/sessions/current`.
pub(super) async fn session_current(
    State(st): State<Shared<CloudDirector>>,
    Extension(auth): Extension<Authenticated>,
    Extension(ApiVersion(version)): Extension<ApiVersion>,
) -> Response {
    let who = Who::from_session(&auth.session);
    vcd_json(
        StatusCode::OK,
        &session_json(&st, &auth.id, &who),
        &format!("application/json;version={version}"),
    )
}

/// `DELETE /cloudapi/1.0.0/sessions/current` and the legacy `DELETE /api/session`: `204`,
/// and the token is no longer valid.
pub(super) async fn logout(
    State(st): State<Shared<CloudDirector>>,
    Extension(auth): Extension<Authenticated>,
) -> Response {
    st.core.sessions.remove(&auth.id);
    empty(StatusCode::NO_CONTENT)
}

fn login(st: &Ctx<CloudDirector>, headers: &HeaderMap, provider: bool, version: &str) -> Response {
    let denied = |msg: &str| cloudapi_error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", msg, None);
    let Some((login, password)) = basic_credentials(headers) else {
        return denied("Basic credentials user@org:password are required.");
    };
    let Some((user, org)) = login.rsplit_once('@') else {
        return denied("The user name must be given as user@org.");
    };
    if !st.core.credentials_match(user, &password) {
        return denied("Invalid credentials.");
    }
    let org = if org.eq_ignore_ascii_case(PROVIDER_ORG) {
        if !provider {
            return denied("Provider users must log in through /cloudapi/1.0.0/sessions/provider.");
        }
        PROVIDER_ORG.to_string()
    } else if provider || !org.eq_ignore_ascii_case(&st.org) {
        return denied("Invalid credentials.");
    } else {
        st.org.clone()
    };
    let who = Who {
        user: user.to_string(),
        org,
    };
    let token = jwt(st, &who);
    st.core
        .login_with_id(token.clone(), &format!("{}@{}", who.user, who.org));
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
fn token(st: &Ctx<CloudDirector>, org: Option<&str>, body: &[u8]) -> Response {
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
    let who = Who {
        user: st.core.username.clone(),
        org,
    };
    let access = jwt(st, &who);
    st.core
        .login_with_id(access.clone(), &format!("{}@{}", who.user, who.org));
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
    let login = format!("{}/api/sessions", base(&st));
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
