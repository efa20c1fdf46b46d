//! Resource names (AIP-122): the only place that knows their grammar.
//!
//! `upstreams/{upstream}`, `upstreams/{upstream}/tasks/{task}` and
//! `upstreams/{upstream}/runspaces/{runspace}`, where `{upstream}` may be `-` (AIP-159)
//! and ids are percent-encoded where they hold `/` or `%`. Below every other module: the
//! gRPC face, the upstream adapters and the configuration all use it.

use std::borrow::Cow;

use percent_encoding::{AsciiSet, percent_decode_str, utf8_percent_encode};

use crate::error::{GatewayError, Reason, Result, clip};

/// What an id escapes as one URL path segment: all but RFC 3986 unreserved characters and `:`
/// (Cloud Director URNs keep their colons).
const PATH_SEGMENT: &AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b':');

const MAX_ID_LEN: usize = 1024;

/// The `{upstream}` segment of a name: one configured upstream, or `-` for any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamRef {
    Named(String),
    Any,
}

impl UpstreamRef {
    /// The segment as it appears in names.
    pub fn segment(&self) -> &str {
        match self {
            UpstreamRef::Named(n) => n,
            UpstreamRef::Any => "-",
        }
    }
}

/// A parsed `upstreams/{upstream}/{collection}/{id}` name, with `id` percent-decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceName {
    pub upstream: UpstreamRef,
    pub id: String,
}

/// True for names usable as `{upstream}`: lowercase letters, digits and `-`, starting with a
/// letter, at most 63 characters (the same rule the configuration enforces).
pub fn is_valid_upstream_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_lowercase()
        && !name.ends_with('-')
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

fn bad(field: &str, expected: &str, got: &str) -> GatewayError {
    GatewayError::invalid(
        Reason::InvalidName,
        field,
        format!("expected {expected}, got '{}'", clip(got)),
    )
}

/// The `{upstream}` segment `seg`, if it is one.
fn upstream_segment(seg: &str) -> Option<UpstreamRef> {
    if seg == "-" {
        Some(UpstreamRef::Any)
    } else if is_valid_upstream_name(seg) {
        Some(UpstreamRef::Named(seg.to_string()))
    } else {
        None
    }
}

/// Parses `upstreams/{upstream}` (a `parent`, or an upstream's own name).
pub fn parse_upstream(name: &str, field: &str) -> Result<UpstreamRef> {
    const EXPECTED: &str = "upstreams/{upstream}";
    match name.split('/').collect::<Vec<_>>().as_slice() {
        ["upstreams", seg] => upstream_segment(seg).ok_or_else(|| bad(field, EXPECTED, name)),
        _ => Err(bad(field, EXPECTED, name)),
    }
}

/// Parses `upstreams/{upstream}/{collection}/{id}`, decoding the id.
pub fn parse_resource(name: &str, collection: &str, field: &str) -> Result<ResourceName> {
    // Written out only for an error: this runs on every call.
    let expected = || format!("upstreams/{{upstream}}/{collection}/{{id}}");
    let mut parts = name.split('/');
    let (Some("upstreams"), Some(seg), Some(coll), Some(raw_id), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(bad(field, &expected(), name));
    };
    if coll != collection || raw_id.is_empty() || raw_id.len() > MAX_ID_LEN {
        return Err(bad(field, &expected(), name));
    }
    let upstream = upstream_segment(seg).ok_or_else(|| bad(field, &expected(), name))?;
    let id = percent_decode(raw_id).ok_or_else(|| {
        GatewayError::invalid(
            Reason::InvalidName,
            field,
            format!("the id in '{}' has a malformed percent-escape", clip(name)),
        )
    })?;
    if id.is_empty() || id.chars().any(char::is_control) {
        return Err(bad(field, &expected(), name));
    }
    Ok(ResourceName { upstream, id })
}

/// `Err` saying why when `id` cannot be the id of a name (empty, with control characters,
/// longer than 1024 bytes escaped): an adapter refuses such an upstream id rather than give
/// out a name that no call accepts.
pub fn check_id(id: &str) -> std::result::Result<(), String> {
    if id.is_empty() {
        Err("the id is empty".into())
    } else if id.chars().any(char::is_control) {
        Err(format!(
            "the id '{}' holds control characters",
            clip(id).escape_debug()
        ))
    } else if percent_encode(id).len() > MAX_ID_LEN {
        Err(format!(
            "the id '{}' is longer than {MAX_ID_LEN} bytes escaped",
            clip(id)
        ))
    } else {
        Ok(())
    }
}

// Names are built with `concat` rather than `format!`: a few of them on every call, and the
// formatting machinery costs several times the copying.

/// `upstreams/{upstream}`.
pub fn upstream_name(upstream: &str) -> String {
    ["upstreams/", upstream].concat()
}

/// `upstreams/{upstream}/{collection}/{id}`, escaping `%` and `/` in the id.
pub fn resource_name(upstream: &str, collection: &str, id: &str) -> String {
    [
        "upstreams/",
        upstream,
        "/",
        collection,
        "/",
        &percent_encode(id),
    ]
    .concat()
}

/// Escapes only what would break the name's grammar: `%` and `/` (as `%25` and `%2F`).
pub fn percent_encode(id: &str) -> Cow<'_, str> {
    // Not the crate's encoder: it escapes every byte outside ASCII as well.
    if id.contains(['%', '/']) {
        Cow::Owned(id.replace('%', "%25").replace('/', "%2F"))
    } else {
        Cow::Borrowed(id)
    }
}

/// Percent-encodes an id for use as one URL path segment on an upstream.
pub fn path_segment(id: &str) -> Cow<'_, str> {
    utf8_percent_encode(id, PATH_SEGMENT).into()
}

/// Decodes `%XX` escapes; `None` when an escape is malformed or the result is not UTF-8.
pub fn percent_decode(s: &str) -> Option<String> {
    // The crate passes malformed escapes through as text; a name must not.
    let b = s.as_bytes();
    let well_formed = b.iter().enumerate().all(|(i, c)| {
        *c != b'%' || (b.get(i + 1..i + 3)).is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit))
    });
    if !well_formed {
        return None;
    }
    percent_decode_str(s)
        .decode_utf8()
        .ok()
        .map(|c| c.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_names_round_trip_ids_with_slashes_and_percents() {
        let name = resource_name("vc1", "tasks", "a/b%c");
        assert_eq!(name, "upstreams/vc1/tasks/a%2Fb%25c");
        let parsed = parse_resource(&name, "tasks", "name").unwrap();
        assert_eq!(parsed.upstream, UpstreamRef::Named("vc1".into()));
        assert_eq!(parsed.id, "a/b%c");
    }

    #[test]
    fn names_keep_characters_outside_ascii_as_they_are() {
        // A name a client sends with `é` is the name it gets back, not `%C3%A9`.
        let name = resource_name("vc1", "tasks", "é/€%");
        assert_eq!(name, "upstreams/vc1/tasks/é%2F€%25");
        assert_eq!(parse_resource(&name, "tasks", "name").unwrap().id, "é/€%");
    }

    #[test]
    fn ids_no_name_can_carry_are_told() {
        for id in ["", "a\nb", &"/".repeat(342)] {
            assert!(check_id(id).is_err(), "{id:?}");
            let name = resource_name("vc1", "tasks", id);
            assert!(parse_resource(&name, "tasks", "name").is_err(), "{id:?}");
        }
        assert!(check_id(&"/".repeat(341)).is_ok());
        assert!(check_id("é/%").is_ok());
    }

    #[test]
    fn path_segments_keep_unreserved_characters_and_colons() {
        assert_eq!(path_segment("urn:vcloud:task:a-1"), "urn:vcloud:task:a-1");
        assert_eq!(path_segment("a/b c%"), "a%2Fb%20c%25");
        assert_eq!(percent_decode("a%2fb%3A").as_deref(), Some("a/b:"));
        assert_eq!(percent_decode("%c3%28"), None, "not UTF-8");
    }

    #[test]
    fn dash_means_any_upstream() {
        assert_eq!(
            parse_upstream("upstreams/-", "parent").unwrap(),
            UpstreamRef::Any
        );
        let r = parse_resource("upstreams/-/tasks/t-1", "tasks", "name").unwrap();
        assert_eq!(r.upstream, UpstreamRef::Any);
    }

    #[test]
    fn malformed_names_are_invalid_argument() {
        for bad in [
            "",
            "upstreams",
            "upstreams/",
            "upstreams/VC1/tasks/x",
            "upstreams/vc1/tasks/",
            "upstreams/vc1/runspaces/x",
            "upstreams/vc1/tasks/x/y",
            "tasks/x",
            "upstreams/vc1/tasks/%zz",
            "upstreams/vc1/tasks/%",
        ] {
            let err = parse_resource(bad, "tasks", "name").unwrap_err();
            assert_eq!(err.code(), tonic::Code::InvalidArgument, "{bad}");
        }
    }

    #[test]
    fn upstream_names_follow_the_dns_label_rule() {
        assert!(is_valid_upstream_name("vc1"));
        assert!(is_valid_upstream_name("vcd-prod-2"));
        assert!(!is_valid_upstream_name("1vc"));
        assert!(!is_valid_upstream_name("vc-"));
        assert!(!is_valid_upstream_name("vc_1"));
        assert!(!is_valid_upstream_name(&"a".repeat(64)));
    }
}

#[cfg(test)]
mod proptests;
