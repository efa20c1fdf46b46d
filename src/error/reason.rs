//! The closed set of `ErrorInfo.reason`s this gateway returns: one table, each reason with
//! exactly one gRPC code, whether clients get a `RetryInfo`, and what it means.
//!
//! The same cause gives the same reason on every upstream kind; the upstream's own error kind
//! travels apart, in the `upstreamReason` metadata.

use tonic::Code;

/// Why a call failed, as `ErrorInfo.reason` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    InvalidName,
    InvalidPageToken,
    InvalidPageSize,
    InvalidFilter,
    InvalidDuration,
    InvalidEnum,
    InvalidArgument,
    AmbiguousUpstream,
    RequestIdReused,
    WrongUpstreamKind,
    UnknownUpstream,
    TaskDone,
    TooManyMatches,
    NotSupportedByUpstream,
    NotImplemented,
    LimitReached,
    ShuttingDown,
    Unauthenticated,
    ScopeMissing,
    NotFound,
    AlreadyExists,
    UpstreamInvalidArgument,
    UpstreamStateConflict,
    UpstreamUnsupported,
    UpstreamUnauthenticated,
    UpstreamPermissionDenied,
    UpstreamBusy,
    UpstreamRateLimited,
    UpstreamUnavailable,
    UpstreamUnreachable,
    UpstreamTimeout,
    UpstreamBadResponse,
    UpstreamCircuitOpen,
    UpstreamResourceExhausted,
    UpstreamLoginFailed,
    LoginBackoff,
    Internal,
}

/// One row of the table.
struct Row {
    name: &'static str,
    code: Code,
    /// The status carries a `RetryInfo`: waiting and retrying is the remedy.
    retry: bool,
    meaning: &'static str,
}

const fn row(name: &'static str, code: Code, retry: bool, meaning: &'static str) -> Row {
    Row {
        name,
        code,
        retry,
        meaning,
    }
}

impl Reason {
    /// Every reason, in the order the documentation lists them.
    pub const ALL: [Reason; 37] = [
        Reason::InvalidName,
        Reason::InvalidPageToken,
        Reason::InvalidPageSize,
        Reason::InvalidFilter,
        Reason::InvalidDuration,
        Reason::InvalidEnum,
        Reason::InvalidArgument,
        Reason::AmbiguousUpstream,
        Reason::RequestIdReused,
        Reason::WrongUpstreamKind,
        Reason::UnknownUpstream,
        Reason::TaskDone,
        Reason::TooManyMatches,
        Reason::NotSupportedByUpstream,
        Reason::NotImplemented,
        Reason::LimitReached,
        Reason::ShuttingDown,
        Reason::Unauthenticated,
        Reason::ScopeMissing,
        Reason::NotFound,
        Reason::AlreadyExists,
        Reason::UpstreamInvalidArgument,
        Reason::UpstreamStateConflict,
        Reason::UpstreamUnsupported,
        Reason::UpstreamUnauthenticated,
        Reason::UpstreamPermissionDenied,
        Reason::UpstreamBusy,
        Reason::UpstreamRateLimited,
        Reason::UpstreamUnavailable,
        Reason::UpstreamUnreachable,
        Reason::UpstreamTimeout,
        Reason::UpstreamBadResponse,
        Reason::UpstreamCircuitOpen,
        Reason::UpstreamResourceExhausted,
        Reason::UpstreamLoginFailed,
        Reason::LoginBackoff,
        Reason::Internal,
    ];

    /// The table: the one place that says what each reason is.
    fn row(self) -> Row {
        use Code::*;
        match self {
            Reason::InvalidName => row(
                "INVALID_NAME",
                InvalidArgument,
                false,
                "a resource name or parent does not follow the name grammar",
            ),
            Reason::InvalidPageToken => row(
                "INVALID_PAGE_TOKEN",
                InvalidArgument,
                false,
                "the page token is malformed or belongs to another parent or filter",
            ),
            Reason::InvalidPageSize => row(
                "INVALID_PAGE_SIZE",
                InvalidArgument,
                false,
                "page_size is negative",
            ),
            Reason::InvalidFilter => row(
                "INVALID_FILTER",
                InvalidArgument,
                false,
                "the filter cannot be applied by this upstream kind",
            ),
            Reason::InvalidDuration => row(
                "INVALID_DURATION",
                InvalidArgument,
                false,
                "a Duration is negative or beyond what google.protobuf.Duration may hold",
            ),
            Reason::InvalidEnum => row(
                "INVALID_ENUM",
                InvalidArgument,
                false,
                "an enum field holds an unknown number",
            ),
            Reason::InvalidArgument => row(
                "INVALID_ARGUMENT",
                InvalidArgument,
                false,
                "another request field is wrong",
            ),
            Reason::AmbiguousUpstream => row(
                "AMBIGUOUS_UPSTREAM",
                InvalidArgument,
                false,
                "'-' was given where exactly one upstream must serve the resource",
            ),
            Reason::RequestIdReused => row(
                "REQUEST_ID_REUSED",
                InvalidArgument,
                false,
                "a create's request_id was used before with a different body",
            ),
            Reason::WrongUpstreamKind => row(
                "WRONG_UPSTREAM_KIND",
                InvalidArgument,
                false,
                "the named upstream does not serve that resource type",
            ),
            Reason::UnknownUpstream => row(
                "UNKNOWN_UPSTREAM",
                NotFound,
                false,
                "no upstream of that name is configured",
            ),
            Reason::TaskDone => row(
                "TASK_DONE",
                FailedPrecondition,
                false,
                "the task is already done; there is nothing to cancel",
            ),
            Reason::TooManyMatches => row(
                "TOO_MANY_MATCHES",
                FailedPrecondition,
                false,
                "more tasks match than the upstream lists at once; narrow the filter",
            ),
            Reason::NotSupportedByUpstream => row(
                "NOT_SUPPORTED_BY_UPSTREAM",
                Unimplemented,
                false,
                "the upstream kind has no such operation (snapshot service cancel)",
            ),
            Reason::NotImplemented => row(
                "NOT_IMPLEMENTED",
                Unimplemented,
                false,
                "this gateway version does not implement the call",
            ),
            Reason::LimitReached => row(
                "LIMIT_REACHED",
                ResourceExhausted,
                true,
                "a limit of this gateway is reached",
            ),
            Reason::ShuttingDown => row(
                "SHUTTING_DOWN",
                Unavailable,
                true,
                "the gateway is shutting down; retry on another instance",
            ),
            Reason::Unauthenticated => row(
                "UNAUTHENTICATED",
                Code::Unauthenticated,
                false,
                "the caller presented no valid gateway credentials",
            ),
            Reason::ScopeMissing => row(
                "SCOPE_MISSING",
                PermissionDenied,
                false,
                "the caller lacks the scope or the upstream in its grant",
            ),
            Reason::NotFound => row(
                "NOT_FOUND",
                Code::NotFound,
                false,
                "the upstream does not know the resource",
            ),
            Reason::AlreadyExists => row(
                "ALREADY_EXISTS",
                Code::AlreadyExists,
                false,
                "the upstream says the resource already exists",
            ),
            Reason::UpstreamInvalidArgument => row(
                "UPSTREAM_INVALID_ARGUMENT",
                InvalidArgument,
                false,
                "the upstream refused the request as invalid",
            ),
            Reason::UpstreamStateConflict => row(
                "UPSTREAM_STATE_CONFLICT",
                FailedPrecondition,
                false,
                "the resource's current state does not allow the operation",
            ),
            Reason::UpstreamUnsupported => row(
                "UPSTREAM_UNSUPPORTED",
                Unimplemented,
                false,
                "the upstream does not support the operation on this resource",
            ),
            Reason::UpstreamUnauthenticated => row(
                "UPSTREAM_UNAUTHENTICATED",
                Code::Unauthenticated,
                false,
                "the upstream refused the caller's own identity (pass-through)",
            ),
            Reason::UpstreamPermissionDenied => row(
                "UPSTREAM_PERMISSION_DENIED",
                PermissionDenied,
                false,
                "the upstream denied the operation to the identity used",
            ),
            Reason::UpstreamBusy => row(
                "UPSTREAM_BUSY",
                Aborted,
                false,
                "the resource is busy or changed concurrently; retry the operation",
            ),
            Reason::UpstreamRateLimited => row(
                "UPSTREAM_RATE_LIMITED",
                ResourceExhausted,
                true,
                "the upstream asks for fewer requests (HTTP 429)",
            ),
            Reason::UpstreamUnavailable => row(
                "UPSTREAM_UNAVAILABLE",
                Unavailable,
                true,
                "the upstream answered with a server error",
            ),
            Reason::UpstreamUnreachable => row(
                "UPSTREAM_UNREACHABLE",
                Unavailable,
                true,
                "no HTTP answer: connection refused or reset, TLS or DNS failure",
            ),
            Reason::UpstreamTimeout => row(
                "UPSTREAM_TIMEOUT",
                DeadlineExceeded,
                false,
                "the upstream did not answer within the request timeout or the call's deadline",
            ),
            Reason::UpstreamBadResponse => row(
                "UPSTREAM_BAD_RESPONSE",
                Code::Internal,
                false,
                "the upstream's answer is not the documented JSON, or a redirect",
            ),
            Reason::UpstreamCircuitOpen => row(
                "UPSTREAM_CIRCUIT_OPEN",
                Unavailable,
                true,
                "the upstream failed too often; calls are refused for a while",
            ),
            Reason::UpstreamResourceExhausted => row(
                "UPSTREAM_RESOURCE_EXHAUSTED",
                ResourceExhausted,
                false,
                "an upstream limit is reached (SRS: too many runspaces)",
            ),
            Reason::UpstreamLoginFailed => row(
                "UPSTREAM_LOGIN_FAILED",
                Unavailable,
                true,
                "the gateway's service account cannot log in to the upstream (operator's credentials)",
            ),
            Reason::LoginBackoff => row(
                "LOGIN_BACKOFF",
                Unavailable,
                true,
                "the service account's login is backing off after a refused login",
            ),
            Reason::Internal => row(
                "INTERNAL",
                Code::Internal,
                false,
                "a fault of the gateway itself",
            ),
        }
    }

    /// The text of `ErrorInfo.reason`.
    pub fn as_str(self) -> &'static str {
        self.row().name
    }

    /// The one gRPC code of this reason.
    pub fn code(self) -> Code {
        self.row().code
    }

    /// True when the status carries a `RetryInfo`.
    pub fn retry(self) -> bool {
        self.row().retry
    }

    /// One line for documentation.
    pub fn meaning(self) -> &'static str {
        self.row().meaning
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_is_listed_once_with_a_distinct_name() {
        let mut names: Vec<&str> = Reason::ALL.iter().map(|r| r.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Reason::ALL.len());
    }

    #[test]
    fn retry_info_goes_only_with_codes_a_retry_can_cure() {
        for r in Reason::ALL {
            if r.retry() {
                assert!(
                    matches!(r.code(), Code::Unavailable | Code::ResourceExhausted),
                    "{r}"
                );
            }
        }
    }
}
