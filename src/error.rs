//! `GatewayError` and the one mapping from an upstream outcome to a gRPC `Status`.
//!
//! Everything below the gRPC face returns `GatewayError`; it becomes a `Status` only here,
//! with exactly one `ErrorInfo` (domain `vmware-grpc-gateway`, a [`Reason`] from the closed
//! set, which alone decides the code) and, where they apply, `BadRequest`, `RetryInfo`,
//! `ResourceInfo` and the upstream's messages as `LocalizedMessage`.

use std::{collections::HashMap, time::Duration};

use tonic::{Code, Status};
use tonic_types::{ErrorDetail, FieldViolation, StatusExt};

mod reason;
pub use reason::Reason;

/// The `ErrorInfo.domain` of every error this gateway returns.
pub const DOMAIN: &str = "vmware-grpc-gateway";

/// Longest excerpt of a client value or an upstream body echoed in an error.
const ECHO_LIMIT: usize = 256;
/// The longest status message, in bytes.
const MESSAGE_LIMIT: usize = 1024;
/// The upstream messages carried as `LocalizedMessage` details, and the length of each.
const MAX_DETAIL_MESSAGES: usize = 8;
const DETAIL_MESSAGE_LIMIT: usize = 512;

/// Longest `problem` of a bad response, which may quote what the upstream sent (serde quotes
/// a string of the wrong type whole): a longer one would not fit a client's header limit.
const PROBLEM_LIMIT: usize = 1024;

/// How long clients are asked to wait before retrying a transient upstream failure.
const DEFAULT_RETRY_DELAY: Duration = Duration::from_secs(1);

pub type Result<T, E = GatewayError> = std::result::Result<T, E>;

/// One human message of an upstream error (the first describes the error, each next one its cause).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UpstreamMessage {
    pub id: String,
    pub default_message: String,
    pub localized: Option<String>,
}

impl UpstreamMessage {
    /// A message with text only (Cloud Director and SRS errors carry no message ids).
    pub fn plain(text: impl Into<String>) -> Self {
        UpstreamMessage {
            default_message: text.into(),
            ..Default::default()
        }
    }

    pub fn text(&self) -> &str {
        self.localized
            .as_deref()
            .filter(|s| !s.is_empty())
            .unwrap_or(&self.default_message)
    }
}

/// What went wrong talking to an upstream.
#[derive(Debug, Clone)]
pub enum UpstreamFailure {
    /// The upstream answered with an error status. `reason` is its own error kind (vAPI
    /// `error_type`, Cloud Director `minorErrorCode`, `SRS_<code>`) when the body named one.
    Api {
        reason: Option<String>,
        messages: Vec<UpstreamMessage>,
        /// A short excerpt of a body that was not the documented error JSON.
        excerpt: Option<String>,
    },
    /// No HTTP answer: connection refused, reset, TLS failure, DNS...
    Unreachable(String),
    /// No answer within the request timeout or the caller's deadline.
    Timeout,
    /// An answer that is not the documented JSON.
    BadResponse { problem: String, excerpt: String },
    /// No request sent: the service account's login was refused and is backing off;
    /// `refused` says how it was refused.
    LoginBackoff { refused: String },
    /// No request sent: the upstream's circuit breaker is open after consecutive failures.
    CircuitOpen,
    /// No request sent: `max` requests (`limits.max_upstream_requests`) were in flight to
    /// the upstream and none finished before the call's deadline or the request timeout.
    Saturated { max: usize },
    /// No request sent: the upstream acts as the caller, and the call carries no usable
    /// identity for it (why, never quoting a credential).
    NoCallerIdentity(String),
}

/// An upstream outcome, with the configured upstream name and the HTTP status where one came.
#[derive(Debug, Clone)]
pub struct UpstreamError {
    pub upstream: String,
    pub http_status: Option<u16>,
    pub failure: UpstreamFailure,
    /// The upstream's `Retry-After`, when it sent one.
    pub retry_after: Option<Duration>,
    /// The request went with the caller's own identity (pass-through), not the service
    /// account's: a 401 is then the caller's to fix.
    pub as_caller: bool,
}

impl UpstreamError {
    pub fn new(upstream: &str, http_status: Option<u16>, failure: UpstreamFailure) -> Self {
        Self {
            upstream: upstream.to_string(),
            http_status,
            failure,
            retry_after: None,
            as_caller: false,
        }
    }

    /// An answer that is not the documented JSON: `problem` says what is wrong.
    pub fn bad_response(
        upstream: &str,
        status: u16,
        problem: impl Into<String>,
        body: &[u8],
    ) -> Self {
        Self::new(
            upstream,
            Some(status),
            UpstreamFailure::BadResponse {
                problem: clip_middle(&problem.into(), PROBLEM_LIMIT),
                excerpt: excerpt(body),
            },
        )
    }

    /// This error without any excerpt of the answer's body (for answers that carry
    /// credentials, such as a login's).
    pub fn without_excerpt(mut self) -> Self {
        match &mut self.failure {
            UpstreamFailure::Api { excerpt, .. } => *excerpt = None,
            UpstreamFailure::BadResponse { excerpt, .. } => excerpt.clear(),
            _ => {}
        }
        self
    }

    /// The upstream's own error kind, when its body named one (metadata `upstreamReason`).
    pub fn upstream_reason(&self) -> Option<&str> {
        match &self.failure {
            UpstreamFailure::Api { reason, .. } => reason.as_deref(),
            _ => None,
        }
    }

    /// True for failures worth retrying later (5xx, 429, timeouts, connection errors).
    pub fn is_transient(&self) -> bool {
        matches!(
            self.reason(),
            Reason::UpstreamUnavailable
                | Reason::UpstreamUnreachable
                | Reason::UpstreamTimeout
                | Reason::UpstreamRateLimited
                | Reason::UpstreamResourceExhausted
                | Reason::UpstreamCircuitOpen
                | Reason::LimitReached
        )
    }

    /// The gRPC code (that of [`Self::reason`]).
    pub fn code(&self) -> Code {
        self.reason().code()
    }

    /// The mapping table of the contract: a redirect or a 401 decide alone; otherwise the
    /// upstream's own error kind first, the HTTP status only where the body names none. An
    /// authentication failure is the service account's (UPSTREAM_LOGIN_FAILED) unless the
    /// request went as the caller (UPSTREAM_UNAUTHENTICATED).
    pub fn reason(&self) -> Reason {
        match self.service_reason() {
            Reason::UpstreamLoginFailed if self.as_caller => Reason::UpstreamUnauthenticated,
            r => r,
        }
    }

    fn service_reason(&self) -> Reason {
        match &self.failure {
            UpstreamFailure::NoCallerIdentity(_) => Reason::UpstreamUnauthenticated,
            UpstreamFailure::Unreachable(_) => Reason::UpstreamUnreachable,
            UpstreamFailure::Timeout => Reason::UpstreamTimeout,
            UpstreamFailure::BadResponse { .. } => Reason::UpstreamBadResponse,
            UpstreamFailure::LoginBackoff { .. } => Reason::LoginBackoff,
            UpstreamFailure::CircuitOpen => Reason::UpstreamCircuitOpen,
            UpstreamFailure::Saturated { .. } => Reason::LimitReached,
            UpstreamFailure::Api { reason, .. } => {
                let status = self.http_status.unwrap_or(500);
                match status {
                    300..=399 => Reason::UpstreamBadResponse,
                    // A 401 that survived one fresh login (or a refused login) is the
                    // credentials' fault: the service account's, or the caller's (see `reason`).
                    401 => Reason::UpstreamLoginFailed,
                    _ => reason
                        .as_deref()
                        .and_then(reason_for_kind)
                        .unwrap_or_else(|| reason_for_http(status)),
                }
            }
        }
    }

    /// One line for `Upstream.last_error` and logs.
    pub fn to_short_text(&self) -> String {
        match &self.failure {
            UpstreamFailure::Unreachable(why) => format!("unreachable: {why}"),
            UpstreamFailure::Timeout => "timed out".into(),
            UpstreamFailure::BadResponse { problem, .. } => format!("bad response: {problem}"),
            UpstreamFailure::LoginBackoff { refused } => {
                format!("login refused ({refused}), backing off")
            }
            UpstreamFailure::CircuitOpen => "circuit open after consecutive failures".into(),
            UpstreamFailure::Saturated { max } => format!("{max} requests in flight, queue full"),
            UpstreamFailure::NoCallerIdentity(why) => format!("no caller identity: {why}"),
            UpstreamFailure::Api { reason, .. } => format!(
                "HTTP {} {}",
                self.http_status.unwrap_or_default(),
                reason.as_deref().unwrap_or("")
            )
            .trim_end()
            .to_string(),
        }
    }

    fn describe(&self) -> String {
        let status = self
            .http_status
            .map(|s| format!(" (HTTP {s})"))
            .unwrap_or_default();
        match &self.failure {
            UpstreamFailure::Unreachable(why) => {
                format!("upstream '{}' is unreachable: {why}", self.upstream)
            }
            UpstreamFailure::Timeout => {
                format!("upstream '{}' did not answer in time", self.upstream)
            }
            UpstreamFailure::BadResponse { problem, .. } => format!(
                "upstream '{}' sent a response that is not the documented JSON{status}: {problem}",
                self.upstream
            ),
            UpstreamFailure::LoginBackoff { refused } => format!(
                "the service account's login to upstream '{}' was refused ({refused}); the gateway waits {}s before trying again (fix the credentials, or rotate the secret file)",
                self.upstream,
                self.retry_after.map_or(0, |d| d.as_secs().max(1))
            ),
            UpstreamFailure::CircuitOpen => format!(
                "upstream '{}' failed too often in a row: the gateway sends it nothing for {}s (circuit open)",
                self.upstream,
                self.retry_after.map_or(0, |d| d.as_secs().max(1))
            ),
            UpstreamFailure::Saturated { max } => format!(
                "{max} requests to upstream '{}' were in flight and none finished in time: the gateway's limit limits.max_upstream_requests = {max} is reached; nothing was sent",
                self.upstream
            ),
            UpstreamFailure::NoCallerIdentity(why) => format!(
                "upstream '{}' is called with the caller's own identity: {why}",
                self.upstream
            ),
            UpstreamFailure::Api {
                reason, messages, ..
            } => {
                let kind = match (reason, self.http_status) {
                    (Some(kind), _) => kind.as_str(),
                    (None, Some(300..=399)) => "a redirect, which the gateway does not follow",
                    (None, _) => "an error",
                };
                let mut text = format!("upstream '{}' answered {kind}{status}", self.upstream);
                let stack: Vec<&str> = messages.iter().map(UpstreamMessage::text).collect();
                if !stack.is_empty() {
                    text.push_str(": ");
                    text.push_str(&stack.join(" Caused by: "));
                }
                text
            }
        }
    }
}

/// Upstream error kinds (vAPI `error_type`, Cloud Director `minorErrorCode`, `SRS_<code>`)
/// that decide the reason on their own, whatever the HTTP status.
fn reason_for_kind(kind: &str) -> Option<Reason> {
    Some(match kind {
        "INVALID_ARGUMENT"
        | "INVALID_REQUEST"
        | "UNEXPECTED_INPUT"
        | "BAD_REQUEST"
        | "INVALID_ELEMENT_TYPE"
        | "INVALID_ELEMENT_CONFIGURATION" => Reason::UpstreamInvalidArgument,
        "NOT_ALLOWED_IN_CURRENT_STATE" | "ALREADY_IN_DESIRED_STATE" | "SRS_2031" => {
            Reason::UpstreamStateConflict
        }
        "UNSUPPORTED" => Reason::UpstreamUnsupported,
        "ALREADY_EXISTS" | "DUPLICATE_NAME" => Reason::AlreadyExists,
        "UNAUTHENTICATED" | "SRS_401" => Reason::UpstreamLoginFailed,
        "UNAUTHORIZED" | "ACCESS_TO_RESOURCE_IS_FORBIDDEN" => Reason::UpstreamPermissionDenied,
        "NOT_FOUND" | "RESOURCE_NOT_FOUND" | "OPERATION_NOT_FOUND" | "SRS_2030" => Reason::NotFound,
        "CONCURRENT_CHANGE" | "RESOURCE_BUSY" | "BUSY_ENTITY" => Reason::UpstreamBusy,
        "SRS_2020" => Reason::UpstreamResourceExhausted,
        "RESOURCE_INACCESSIBLE" | "SERVICE_UNAVAILABLE" | "INTERNAL_SERVER_ERROR" | "ERROR" => {
            Reason::UpstreamUnavailable
        }
        "TIMED_OUT" => Reason::UpstreamTimeout,
        _ => return None,
    })
}

/// The HTTP status alone, for bodies that name no error kind (or one not in the table).
fn reason_for_http(status: u16) -> Reason {
    match status {
        300..=399 => Reason::UpstreamBadResponse,
        400 | 405 | 406 | 411 | 413..=415 | 422 => Reason::UpstreamInvalidArgument,
        401 => Reason::UpstreamLoginFailed,
        403 => Reason::UpstreamPermissionDenied,
        404 | 410 => Reason::NotFound,
        409 | 423 => Reason::UpstreamBusy,
        412 => Reason::UpstreamStateConflict,
        429 => Reason::UpstreamRateLimited,
        501 => Reason::UpstreamUnsupported,
        408 | 504 => Reason::UpstreamTimeout,
        _ => Reason::UpstreamUnavailable,
    }
}

/// Every failure of a gateway call, before it becomes a `Status`. Each knows its [`Reason`],
/// and the reason alone decides the code.
#[derive(Debug, Clone, thiserror::Error)]
pub enum GatewayError {
    /// A request field is wrong; becomes a `BadRequest` field violation.
    #[error("{field}: {description}")]
    InvalidArgument {
        reason: Reason,
        field: String,
        description: String,
    },
    /// The gateway refused on its own (a done task, an operation the kind lacks, a limit...),
    /// naming the upstream it decided about, if any.
    #[error("{message}")]
    Refused {
        reason: Reason,
        message: String,
        upstream: Option<String>,
    },
    #[error("upstream '{0}' is not configured")]
    UnknownUpstream(String),
    /// `-` was given where exactly one upstream must serve the resource.
    #[error("'-' needs exactly one upstream serving {resource_kind}; these serve it: [{}]", serving.join(", "))]
    AmbiguousUpstream {
        field: &'static str,
        resource_kind: &'static str,
        serving: Vec<String>,
    },
    #[error("the gateway is shutting down")]
    ShuttingDown,
    /// A known caller lacks `scope`, or the upstream it names is outside its grant.
    #[error("{message}")]
    ScopeMissing { scope: String, message: String },
    #[error("{}", .0.describe())]
    Upstream(UpstreamError),
}

impl From<UpstreamError> for GatewayError {
    fn from(e: UpstreamError) -> Self {
        GatewayError::Upstream(e)
    }
}

impl GatewayError {
    /// A wrong request `field`.
    pub fn invalid(reason: Reason, field: &str, description: impl Into<String>) -> Self {
        GatewayError::InvalidArgument {
            reason,
            field: field.to_string(),
            description: description.into(),
        }
    }

    /// The gateway's own refusal, about `upstream` where it names one.
    pub fn refused(reason: Reason, upstream: Option<&str>, message: impl Into<String>) -> Self {
        GatewayError::Refused {
            reason,
            message: message.into(),
            upstream: upstream.map(str::to_string),
        }
    }

    /// RESOURCE_EXHAUSTED (LIMIT_REACHED): `what` passed the `[limits]` key `key` = `max`.
    pub fn limit_reached(key: &str, max: usize, what: &str, upstream: Option<&str>) -> Self {
        GatewayError::refused(
            Reason::LimitReached,
            upstream,
            format!("{what}: the gateway's limit limits.{key} = {max} is reached"),
        )
    }

    /// Why, from the closed set.
    pub fn reason(&self) -> Reason {
        match self {
            GatewayError::InvalidArgument { reason, .. } | GatewayError::Refused { reason, .. } => {
                *reason
            }
            GatewayError::UnknownUpstream(_) => Reason::UnknownUpstream,
            GatewayError::AmbiguousUpstream { .. } => Reason::AmbiguousUpstream,
            GatewayError::ShuttingDown => Reason::ShuttingDown,
            GatewayError::ScopeMissing { .. } => Reason::ScopeMissing,
            GatewayError::Upstream(e) => e.reason(),
        }
    }

    /// The gRPC code of this error: that of its reason.
    pub fn code(&self) -> Code {
        self.reason().code()
    }

    /// The `Status` a client sees for this error on `resource` (the name it asked for).
    pub fn into_status(self, resource: &str) -> Status {
        let reason = self.reason();
        // Refusals at the edge (authentication, size, shutdown) come before any resource.
        let mut metadata = HashMap::new();
        if !resource.is_empty() {
            metadata.insert("resource".to_string(), clip(resource));
        }
        let mut details = Vec::new();
        let mut retry_after = None;
        match &self {
            GatewayError::InvalidArgument {
                field, description, ..
            } => details.push(ErrorDetail::from(tonic_types::BadRequest::new(vec![
                FieldViolation::new(field.clone(), description.clone()),
            ]))),
            GatewayError::AmbiguousUpstream { field, .. } => {
                details.push(ErrorDetail::from(tonic_types::BadRequest::new(vec![
                    FieldViolation::new(*field, self.to_string()),
                ])))
            }
            GatewayError::UnknownUpstream(name) => {
                details.push(ErrorDetail::from(tonic_types::ResourceInfo::new(
                    "vmware.gateway.v1.Upstream",
                    format!("upstreams/{}", clip(name)),
                    "",
                    "no upstream of that name is configured",
                )))
            }
            GatewayError::Refused {
                upstream: Some(u), ..
            } => {
                metadata.insert("upstream".into(), u.clone());
            }
            GatewayError::ScopeMissing { scope, .. } => {
                metadata.insert("scope".into(), clip(scope));
            }
            GatewayError::Upstream(e) => {
                metadata.insert("upstream".into(), e.upstream.clone());
                if let Some(s) = e.http_status {
                    metadata.insert("httpStatus".into(), s.to_string());
                }
                if let Some(kind) = e.upstream_reason() {
                    metadata.insert("upstreamReason".into(), clip(kind));
                }
                match &e.failure {
                    UpstreamFailure::Api {
                        messages, excerpt, ..
                    } => {
                        for m in messages.iter().take(MAX_DETAIL_MESSAGES) {
                            details.push(ErrorDetail::from(tonic_types::LocalizedMessage::new(
                                "en-US",
                                clip_middle(m.text(), DETAIL_MESSAGE_LIMIT),
                            )));
                        }
                        if let Some(x) = excerpt {
                            metadata.insert("excerpt".into(), x.clone());
                        }
                    }
                    UpstreamFailure::BadResponse { excerpt, .. } => {
                        metadata.insert("excerpt".into(), excerpt.clone());
                    }
                    _ => {}
                }
                if reason == Reason::NotFound {
                    details.push(ErrorDetail::from(tonic_types::ResourceInfo::new(
                        "",
                        clip(resource),
                        e.upstream.clone(),
                        "the upstream does not know this resource",
                    )));
                }
                retry_after = e.retry_after;
            }
            _ => {}
        }
        if reason.retry() {
            let delay = retry_after.unwrap_or(DEFAULT_RETRY_DELAY);
            details.push(ErrorDetail::from(tonic_types::RetryInfo::new(Some(delay))));
        }
        details.insert(
            0,
            ErrorDetail::from(tonic_types::ErrorInfo::new(
                reason.as_str(),
                DOMAIN,
                metadata,
            )),
        );
        // Status and details travel in HTTP/2 headers, which clients cap (often at 16 KiB):
        // an upstream's long message must not turn a clear error into a protocol error.
        let message = if resource.is_empty() {
            clip_middle(&self.to_string(), MESSAGE_LIMIT)
        } else {
            clip_middle(&format!("{}: {}", clip(resource), self), MESSAGE_LIMIT)
        };
        Status::with_error_details_vec(reason.code(), message, details)
    }
}

/// Cuts a client- or upstream-supplied text to the echo limit, on a character boundary.
pub fn clip(s: &str) -> String {
    if s.len() <= ECHO_LIMIT {
        return s.to_string();
    }
    let mut end = ECHO_LIMIT;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// `s` cut to at most `limit` bytes (and `…`) by dropping its middle: its start says what was
/// read, its end what was expected.
pub fn clip_middle(s: &str, limit: usize) -> String {
    if s.len() <= limit {
        return s.to_string();
    }
    let mut head = limit / 2;
    while !s.is_char_boundary(head) {
        head -= 1;
    }
    let mut tail = s.len() - limit / 2;
    while !s.is_char_boundary(tail) {
        tail += 1;
    }
    format!("{}…{}", &s[..head], &s[tail..])
}

/// A short, printable excerpt of an upstream body for error metadata.
pub fn excerpt(body: &[u8]) -> String {
    clip(&redact(String::from_utf8_lossy(body).trim()))
}

/// Names whose values are credentials: an answer may carry a session id, a token or a key
/// (a login answer always does), and an excerpt of it goes to callers and logs.
const SECRET_NAMES: &[&str] = &[
    "token",
    "session",
    "password",
    "secret",
    "key",
    "authorization",
    "cookie",
    "credential",
];

fn is_secret_name(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    SECRET_NAMES.iter().any(|s| name.contains(s))
}

/// `text` with the values of secret-looking names replaced by `<redacted>`: in a JSON body
/// every such member at any depth; in other text, whatever follows such a name and `=` or `:`
/// up to the next separator.
pub fn redact(text: &str) -> String {
    if let Ok(mut v) = serde_json::from_str::<serde_json::Value>(text) {
        redact_json(&mut v);
        return v.to_string();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find(['=', ':']) {
        let (before, after) = rest.split_at(pos);
        out.push_str(before);
        out.push_str(&after[..1]);
        let after = &after[1..];
        let name = before
            .rsplit(|c: char| !(c.is_alphanumeric() || c == '_' || c == '-'))
            .next()
            .unwrap_or("");
        if is_secret_name(name) {
            let lead = after.len() - after.trim_start_matches([' ', '"', '\'']).len();
            let value_end = after[lead..]
                .find([' ', '"', '\'', ',', ';', '&', '}', '<', '\n'])
                .map_or(after.len(), |e| lead + e);
            out.push_str(&after[..lead]);
            out.push_str("<redacted>");
            rest = &after[value_end..];
        } else {
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

fn redact_json(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, val) in map.iter_mut() {
                if is_secret_name(k) && !val.is_object() && !val.is_array() {
                    *val = serde_json::Value::String("<redacted>".into());
                } else {
                    redact_json(val);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(redact_json),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpts_hide_credentials() {
        let json = br#"{"value": "4f2e-session-id", "access_token": "eyJ-secret", "nested": {"X-SRS-API-KEY": "k-123"}, "ok": "shown"}"#;
        let e = excerpt(json);
        assert!(!e.contains("eyJ-secret") && !e.contains("k-123"), "{e}");
        assert!(e.contains("shown"), "{e}");
        let text = b"<html>session=abc123; token: xyz789 other=fine</html>";
        let e = excerpt(text);
        assert!(!e.contains("abc123") && !e.contains("xyz789"), "{e}");
        assert!(e.contains("other=fine"), "{e}");
        let header = b"vmware-api-session-id: 0123abcd\nnext";
        assert!(!excerpt(header).contains("0123abcd"));
    }

    #[test]
    fn clip_middle_keeps_both_ends_on_char_boundaries() {
        let s = format!("start {} end", "é".repeat(1000));
        let c = clip_middle(&s, 101);
        assert!(c.len() <= 101 + "…".len(), "{}", c.len());
        assert!(c.starts_with("start é") && c.ends_with("é end"), "{c}");
        assert_eq!(clip_middle("short", 100), "short");
    }

    fn api(status: u16, reason: Option<&str>) -> UpstreamError {
        UpstreamError::new(
            "vc1",
            Some(status),
            UpstreamFailure::Api {
                reason: reason.map(str::to_string),
                messages: vec![],
                excerpt: None,
            },
        )
    }

    #[test]
    fn upstream_error_kind_decides_before_http_status() {
        assert_eq!(api(400, Some("RESOURCE_BUSY")).code(), Code::Aborted);
        assert_eq!(
            api(500, Some("RESOURCE_INACCESSIBLE")).code(),
            Code::Unavailable
        );
        assert_eq!(api(400, Some("UNSUPPORTED")).code(), Code::Unimplemented);
        assert_eq!(api(404, Some("SRS_2030")).reason(), Reason::NotFound);
        assert_eq!(api(404, Some("NOT_FOUND")).reason(), Reason::NotFound);
        assert_eq!(
            api(500, Some("SRS_2020")).reason(),
            Reason::UpstreamResourceExhausted
        );
        assert_eq!(
            api(400, Some("SRS_2031")).reason(),
            Reason::UpstreamStateConflict
        );
    }

    #[test]
    fn a_401_is_the_service_account_and_a_redirect_a_bad_response() {
        let login = api(401, Some("UNAUTHORIZED"));
        assert_eq!(login.reason(), Reason::UpstreamLoginFailed);
        assert_eq!(login.code(), Code::Unavailable);
        assert_eq!(api(302, None).reason(), Reason::UpstreamBadResponse);
        assert_eq!(api(302, None).code(), Code::Internal);
    }

    #[test]
    fn http_status_decides_when_the_body_names_no_kind() {
        assert_eq!(api(429, None).code(), Code::ResourceExhausted);
        assert_eq!(api(502, None).code(), Code::Unavailable);
        assert_eq!(api(504, None).code(), Code::DeadlineExceeded);
        assert_eq!(
            api(403, Some("SOMETHING_NEW")).code(),
            Code::PermissionDenied
        );
    }

    #[test]
    fn every_status_carries_one_error_info_with_the_resource() {
        let status = GatewayError::UnknownUpstream("nope".into()).into_status("upstreams/nope");
        assert_eq!(status.code(), Code::NotFound);
        let info = status.get_details_error_info().expect("ErrorInfo");
        assert_eq!(info.reason, "UNKNOWN_UPSTREAM");
        assert!(status.get_details_retry_info().is_none());
        assert_eq!(info.domain, DOMAIN);
        assert_eq!(info.metadata["resource"], "upstreams/nope");
        assert!(status.message().contains("upstreams/nope"));
    }

    #[test]
    fn upstream_errors_carry_the_upstreams_own_kind_apart() {
        let status = GatewayError::from(api(503, Some("SERVICE_UNAVAILABLE")))
            .into_status("upstreams/vc1/tasks/t");
        let info = status.get_details_error_info().expect("ErrorInfo");
        assert_eq!(info.reason, "UPSTREAM_UNAVAILABLE");
        assert_eq!(info.metadata["upstreamReason"], "SERVICE_UNAVAILABLE");
        assert_eq!(info.metadata["upstream"], "vc1");
        assert_eq!(info.metadata["httpStatus"], "503");
        assert!(status.get_details_retry_info().is_some());
    }

    #[test]
    fn long_values_are_clipped_on_a_char_boundary() {
        let long = "é".repeat(300);
        let c = clip(&long);
        assert!(c.len() <= ECHO_LIMIT + '…'.len_utf8());
        assert!(c.ends_with('…'));
    }
}
