//! Properties of the resource-name grammar: any string is a name or a clear INVALID_NAME,
//! accepted names format back, every nameable id round-trips, malformed escapes are refused.

use proptest::prelude::*;

use super::*;
use crate::upstream::json::strategies::config;

/// One `/`-separated piece of a name-like string.
fn piece() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("upstreams".to_string()),
        Just("tasks".to_string()),
        Just("runspaces".to_string()),
        Just("-".to_string()),
        Just(String::new()),
        "[a-z][a-z0-9-]{0,6}",
        "[A-Za-z0-9._~:-]{1,8}",
        // Escapes, well-formed or not, among text.
        "(%[0-9a-fA-Fg%]{0,2}|[a-zé/ ]){1,8}",
        // Control characters, as they are or escaped.
        "([a-z]|%[01][0-9a-fA-F]|%7[fF]|[\\x00-\\x1f\\x7f]){1,6}",
        any::<String>(),
    ]
}

/// Strings that often follow the grammar, so that most reach the id's decoding.
fn name_like() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::collection::vec(piece(), 0..6).prop_map(|p| p.join("/")),
        (piece(), piece()).prop_map(|(u, id)| format!("upstreams/{u}/tasks/{id}")),
        ("[a-z][a-z0-9]{0,4}", piece()).prop_map(|(u, id)| format!("upstreams/{u}/tasks/{id}")),
    ]
}

fn any_name() -> impl Strategy<Value = String> {
    prop_oneof![any::<String>(), name_like()]
}

/// Upstream names the configuration accepts: a DNS label.
fn upstream() -> impl Strategy<Value = String> {
    "[a-z]([a-z0-9-]{0,61}[a-z0-9])?"
}

/// Ids a name can carry: non-empty, no control characters, at most 1024 bytes escaped; with
/// many `%` and `/` and characters outside ASCII.
fn nameable_id() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[%/a-zA-Z0-9 :.~é€😀-]{1,40}",
        "[%/]{1,400}"
    ]
    .prop_filter("a nameable id", |id| {
        !id.is_empty()
            && !id.chars().any(char::is_control)
            && percent_encode(id).len() <= MAX_ID_LEN
    })
}

/// Ids already escaped as names carry them (so `%` only starts `%25` or `%2F`).
fn escaped_id() -> impl Strategy<Value = String> {
    "[%/a-z0-9é]{0,8}".prop_map(|id| percent_encode(&id).into_owned())
}

/// An escape that is not `%` and two hex digits, or decodes to bytes that are not UTF-8.
fn malformed_escape() -> impl Strategy<Value = (String, bool)> {
    // The bool says whether the escape must end the id (a hex digit after it would mend it).
    prop_oneof![
        Just(("%".to_string(), true)),
        "%[0-9a-fA-F]".prop_map(|e| (e, true)),
        "%[g-zG-Z_.~:%/é -][0-9a-zA-Z]?".prop_map(|e| (e, false)),
        "%[0-9a-fA-F][g-zG-Z_.~:%/é -]".prop_map(|e| (e, false)),
        // Not UTF-8: a lone continuation byte, a lead byte without its continuation, FF.
        prop_oneof![Just("%80"), Just("%C3%28"), Just("%FF"), Just("%e2%82")]
            .prop_map(|e| (e.to_string(), false)),
    ]
}

fn is_invalid_name(e: &crate::error::GatewayError) -> bool {
    e.reason() == Reason::InvalidName && e.code() == tonic::Code::InvalidArgument
}

proptest! {
    #![proptest_config(config())]

    /// Any string is a name or an INVALID_NAME error with a short message, never a panic;
    /// what is accepted follows the grammar.
    #[test]
    fn any_string_is_a_name_or_invalid_name(s in any_name()) {
        for collection in ["tasks", "runspaces"] {
            match parse_resource(&s, collection, "name") {
                Ok(r) => {
                    prop_assert!(s.starts_with("upstreams/"));
                    prop_assert!(!r.id.is_empty() && !r.id.chars().any(char::is_control));
                    let upstream_ok = match &r.upstream {
                        UpstreamRef::Any => true,
                        UpstreamRef::Named(n) => is_valid_upstream_name(n),
                    };
                    prop_assert!(upstream_ok, "{:?}", r.upstream);
                }
                Err(e) => {
                    prop_assert!(is_invalid_name(&e), "{e:?}");
                    prop_assert!(e.to_string().len() <= 600, "{}", e.to_string().len());
                }
            }
        }
        match parse_upstream(&s, "parent") {
            Ok(u) => prop_assert_eq!(upstream_name(u.segment()), s),
            Err(e) => prop_assert!(is_invalid_name(&e), "{e:?}"),
        }
    }

    /// An accepted name formats back to the same string when it escapes only `%` and `/`
    /// (as `%25`, `%2F`), and always to a name that parses to the same resource (`%41` and
    /// `%2f` are read, and written back as `A` and `%2F`).
    #[test]
    fn accepted_names_format_back(s in name_like()) {
        if let Ok(r) = parse_resource(&s, "tasks", "name") {
            let formatted = resource_name(r.upstream.segment(), "tasks", &r.id);
            prop_assert_eq!(parse_resource(&formatted, "tasks", "name").ok(), Some(r.clone()));
            let raw_id = s.rsplit('/').next().unwrap_or_default();
            let only_canonical_escapes = raw_id
                .match_indices('%')
                .all(|(i, _)| matches!(raw_id.get(i..i + 3), Some("%25" | "%2F")));
            if only_canonical_escapes {
                prop_assert_eq!(formatted, s);
            }
        }
    }

    /// Every id a name can carry comes back from the name unchanged, whatever it holds.
    #[test]
    fn ids_round_trip_through_names(up in upstream(), any_up in any::<bool>(), id in nameable_id()) {
        let up = if any_up { "-".to_string() } else { up };
        for collection in ["tasks", "runspaces"] {
            let name = resource_name(&up, collection, &id);
            let parsed = parse_resource(&name, collection, "name");
            prop_assert!(parsed.is_ok(), "{name}: {parsed:?}");
            let parsed = parsed.unwrap();
            prop_assert_eq!(parsed.upstream.segment(), up.as_str());
            prop_assert_eq!(parsed.id, id.clone());
        }
    }

    /// A malformed escape anywhere in an id is refused, never read as text.
    #[test]
    fn malformed_escapes_are_refused(
        before in escaped_id(),
        (escape, at_end) in malformed_escape(),
        after in escaped_id(),
    ) {
        let raw_id = if at_end { format!("{before}{escape}") } else { format!("{before}{escape}{after}") };
        prop_assert_eq!(percent_decode(&raw_id), None, "{}", raw_id);
        let name = format!("upstreams/vc1/tasks/{raw_id}");
        let e = parse_resource(&name, "tasks", "name").unwrap_err();
        prop_assert!(is_invalid_name(&e), "{e:?}");
    }

    /// Any id, as one URL path segment, holds only unreserved characters, `:` and escapes,
    /// and decodes back to the id: the upstream is asked for exactly that id.
    #[test]
    fn path_segments_decode_to_the_id(id in any::<String>()) {
        let seg = path_segment(&id);
        prop_assert!(seg.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~:%".contains(&b)), "{}", seg);
        prop_assert_eq!(percent_decode(&seg), Some(id.clone()));
        prop_assert_eq!(percent_decode(&percent_encode(&id)), Some(id));
    }
}
