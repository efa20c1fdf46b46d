//! Script Runtime Service runspaces (`/api/runspaces`): login through `/api/auth/login`
//! (`X-SRS-API-KEY`), create (202, state `creating`), get, list (no upstream paging) and
//! delete, with the SRS `ErrorDetails` body in errors.

use std::sync::Arc;

use futures_util::{FutureExt, future::BoxFuture};
use http::Method;
use serde::Deserialize;
use serde_json::{Value as Json, json};

use super::{
    http::{Endpoint, HttpClient, Reply},
    json::timestamp_field,
    session::{LoginFlow, Session, TokenSource, api_error},
    sessions::Sessions,
    source::RunspaceSource,
};
use crate::{
    config::UpstreamConfig,
    error::{Reason, Result, UpstreamError, UpstreamMessage},
    names::{check_id, resource_name},
    proto::{self, RunspaceState},
};

const KEY_HEADER: &str = "X-SRS-API-KEY";
const RUNSPACES: &str = "/api/runspaces";
const RUNSPACE: &str = "/api/runspaces/{id}";
/// SRS code for a failed delete, which the server also answers for unknown ids.
const DELETE_FAILED_CODE: i64 = 2040;

pub fn session(http: Arc<HttpClient>, cfg: &UpstreamConfig) -> Arc<Session> {
    let flow = LoginFlow {
        logout: Some((Method::POST, "/api/auth/logout".into())),
        ..LoginFlow::new(
            "/api/auth/login",
            TokenSource::Header(KEY_HEADER),
            KEY_HEADER,
            parse_error,
        )
    };
    Session::service_account(http, flow, cfg)
}

/// SRS `ErrorDetails`: `{"code", "error_message", "details"}`.
#[derive(Debug, Default, Deserialize)]
struct ErrorDetails {
    code: Option<i64>,
    #[serde(default)]
    error_message: String,
    #[serde(default)]
    details: Option<String>,
}

/// A non-2xx SRS answer; the reason is `SRS_<code>`. 401s usually come with no body.
pub fn parse_error(upstream: &str, reply: &Reply) -> UpstreamError {
    let named = serde_json::from_slice::<ErrorDetails>(&reply.body)
        .ok()
        .and_then(|e| {
            let mut messages = vec![UpstreamMessage::plain(e.error_message)];
            if let Some(d) = e.details.filter(|d| !d.is_empty()) {
                messages.push(UpstreamMessage::plain(crate::error::clip(&d)));
            }
            Some((format!("SRS_{}", e.code?), messages))
        });
    api_error(upstream, reply, named)
}

#[derive(Debug, Deserialize)]
struct Runspace {
    id: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    error_details: Option<ErrorDetails>,
    #[serde(default)]
    run_vc_connection_script: Option<bool>,
    #[serde(default)]
    vc_connection_script_id: Option<String>,
    #[serde(default)]
    creation_time: Option<String>,
}

pub fn state_of(s: &str) -> RunspaceState {
    match s {
        "creating" => RunspaceState::Creating,
        "ready" => RunspaceState::Ready,
        "active" => RunspaceState::Active,
        "error" => RunspaceState::Error,
        _ => RunspaceState::Unspecified,
    }
}

fn convert(
    upstream: &str,
    raw: Json,
    reply: &Reply,
) -> std::result::Result<proto::Runspace, UpstreamError> {
    let bad = |p: String| {
        UpstreamError::bad_response(
            upstream,
            reply.status,
            format!("runspace: {p}"),
            raw.to_string().as_bytes(),
        )
    };
    let r: Runspace = serde_json::from_value(raw.clone()).map_err(|e| bad(e.to_string()))?;
    check_id(&r.id).map_err(bad)?;
    let create_time = timestamp_field("creation_time", r.creation_time.as_deref()).map_err(bad)?;
    let error = match r.error_details {
        None => None,
        Some(e) => Some(proto::RunspaceError {
            code: match e.code {
                None => 0,
                Some(c) => i32::try_from(c)
                    .map_err(|_| bad(format!("error_details.code {c} is not a 32-bit integer")))?,
            },
            message: e.error_message,
            details: e.details.unwrap_or_default(),
        }),
    };
    Ok(proto::Runspace {
        name: resource_name(upstream, "runspaces", &r.id),
        id: r.id,
        display_name: r.name.unwrap_or_default(),
        state: r.state.as_deref().map(state_of).unwrap_or_default() as i32,
        create_time,
        error,
        run_vc_connection_script: r.run_vc_connection_script.unwrap_or(false),
        vc_connection_script_id: r.vc_connection_script_id.unwrap_or_default(),
    })
}

pub struct ScriptRuntime {
    sessions: Arc<Sessions>,
}

impl ScriptRuntime {
    pub fn new(sessions: Arc<Sessions>) -> Self {
        Self { sessions }
    }

    fn upstream(&self) -> &str {
        self.sessions.service().http().upstream()
    }

    async fn create_runspace(
        &self,
        display_name: &str,
        run_script: bool,
    ) -> Result<proto::Runspace> {
        let mut body = json!({"run_vc_connection_script": run_script});
        if !display_name.is_empty() {
            body["name"] = json!(display_name);
        }
        let session = self.sessions.current()?;
        let reply = session
            .call(Method::POST, &Endpoint::fixed(RUNSPACES), |rb| {
                rb.json(&body)
            })
            .await?;
        Ok(convert(
            self.upstream(),
            session.json(&reply, "runspace")?,
            &reply,
        )?)
    }

    async fn get_runspace(&self, id: &str) -> Result<proto::Runspace> {
        let at = Endpoint::with_id(RUNSPACE, id);
        let session = self.sessions.current()?;
        let reply = session.read(Method::GET, &at, |rb| rb).await?;
        Ok(convert(
            self.upstream(),
            session.json(&reply, "runspace")?,
            &reply,
        )?)
    }

    async fn list_runspaces(&self) -> Result<Vec<proto::Runspace>> {
        let session = self.sessions.current()?;
        let reply = session
            .read(Method::GET, &Endpoint::fixed(RUNSPACES), |rb| rb)
            .await?;
        let Json::Array(items) = session.json(&reply, "runspace list")? else {
            return Err(UpstreamError::bad_response(
                self.upstream(),
                reply.status,
                "runspace list: expected an array",
                &reply.body,
            )
            .into());
        };
        items
            .into_iter()
            .map(|r| convert(self.upstream(), r, &reply).map_err(Into::into))
            .collect()
    }

    async fn delete_runspace(&self, id: &str) -> Result<()> {
        let at = Endpoint::with_id(RUNSPACE, id);
        let Err(e) = self
            .sessions
            .current()?
            .call(Method::DELETE, &at, |rb| rb)
            .await
        else {
            return Ok(());
        };
        // SRS answers 500/2040 for unknown ids too; a GET tells a missing runspace (404/2030)
        // from a real failure, which stays the error it was.
        if e.upstream_reason() == Some(&format!("SRS_{DELETE_FAILED_CODE}"))
            && let Err(crate::error::GatewayError::Upstream(get_err)) = self.get_runspace(id).await
            && get_err.reason() == Reason::NotFound
        {
            return Err(get_err.into());
        }
        Err(e.into())
    }
}

impl RunspaceSource for ScriptRuntime {
    fn create<'a>(
        &'a self,
        display_name: &'a str,
        run_vc_connection_script: bool,
    ) -> BoxFuture<'a, Result<proto::Runspace>> {
        self.create_runspace(display_name, run_vc_connection_script)
            .boxed()
    }

    fn get<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<proto::Runspace>> {
        self.get_runspace(id).boxed()
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<proto::Runspace>>> {
        self.list_runspaces().boxed()
    }

    fn delete<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<()>> {
        self.delete_runspace(id).boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(status: u16, body: &str) -> Reply {
        Reply {
            status,
            headers: Default::default(),
            body: bytes::Bytes::copy_from_slice(body.as_bytes()),
        }
    }

    #[test]
    fn srs_error_details_become_srs_reasons() {
        let e = parse_error(
            "srs1",
            &reply(
                404,
                r#"{"code":2030,"error_message":"Runspace with id 'x' not found"}"#,
            ),
        );
        assert_eq!(e.upstream_reason(), Some("SRS_2030"));
        assert_eq!(e.reason(), Reason::NotFound);
        let e = parse_error("srs1", &reply(401, ""));
        assert_eq!(e.reason(), Reason::UpstreamLoginFailed);
    }

    #[test]
    fn an_empty_id_or_an_error_code_past_i32_is_a_bad_response() {
        // An empty id gave the name `upstreams/srs1/runspaces/`, which every call refuses;
        // `as i32` made the code 2147483648 into -2147483648.
        for raw in [
            serde_json::json!({"id": "", "state": "ready"}),
            serde_json::json!({"id": "a1", "state": "error",
                "error_details": {"code": 2147483648u64, "error_message": "x"}}),
        ] {
            let e = convert("srs1", raw.clone(), &reply(200, "")).unwrap_err();
            assert_eq!(e.reason(), Reason::UpstreamBadResponse, "{raw}");
        }
    }

    #[test]
    fn runspaces_convert_with_local_offsets_and_omitted_fields() {
        let raw = serde_json::json!({"id": "a1", "state": "error", "creation_time": "2024-05-02T11:20:31.5123456+03:00",
            "error_details": {"code": 500, "error_message": "Failed", "details": "System.Exception"}});
        let r = convert("srs1", raw, &reply(200, "")).unwrap();
        assert_eq!(r.name, "upstreams/srs1/runspaces/a1");
        assert_eq!(r.state(), RunspaceState::Error);
        assert_eq!(r.error.unwrap().code, 500);
        assert!(r.display_name.is_empty());
        assert_eq!(r.create_time.unwrap().seconds, 1714638031);
    }
}

#[cfg(test)]
mod proptests;
