//! Properties of the SRS runspace conversion (`convert`), on the documents of
//! UPSTREAM_APIS.md §6.3 spoiled every way: a runspace or UPSTREAM_BAD_RESPONSE, never a
//! panic; unknown fields change nothing; absurd datetimes are errors; error codes are kept
//! or refused, never cut to another number.

use proptest::prelude::*;
use serde_json::{Value as Json, json};

use super::*;
use crate::upstream::json::strategies::*;

const UPSTREAM: &str = "srs1";

/// Runspaces as SRS sends them (§6.3).
fn documents() -> Vec<Json> {
    vec![
        json!({"name": "nightly-report", "id": "a1b2c3d4e5f6", "state": "creating",
            "run_vc_connection_script": true, "creation_time": "2024-05-02T11:20:31.5123456+03:00"}),
        json!({"name": "nightly-report", "id": "a1b2c3d4e5f6", "state": "ready",
            "run_vc_connection_script": true,
            "vc_connection_script_id": "7f3e0c2a-91d4-4c0e-bb6f-2e8f1a9d3c55",
            "creation_time": "2024-05-02T11:20:31.5123456+03:00"}),
        json!({"id": "0f9e8d7c6b5a", "state": "error", "run_vc_connection_script": false,
            "error_details": {"code": 500, "error_message": "Failed to start runspace container",
                "details": "System.Exception: ..."},
            "creation_time": "2024-05-02T11:22:03.0000000+03:00"}),
    ]
}

fn document() -> impl Strategy<Value = Json> {
    prop::sample::select(documents())
}

fn reply() -> Reply {
    Reply {
        status: 200,
        headers: Default::default(),
        body: Default::default(),
    }
}

fn check(result: std::result::Result<proto::Runspace, UpstreamError>) -> Result<(), TestCaseError> {
    match result {
        Ok(r) => {
            check_name(&r.name, "runspaces", UPSTREAM, &r.id)?;
            check_timestamp(&r.create_time)?;
            check_round_trip(&r)
        }
        Err(e) => check_bad_response(&e, &format!("upstreams/{UPSTREAM}/runspaces/a1b2c3d4e5f6")),
    }
}

#[test]
fn the_documents_convert() {
    for doc in documents() {
        convert(UPSTREAM, doc, &reply()).unwrap();
    }
}

proptest! {
    #![proptest_config(config())]

    /// Any spoiled runspace is a runspace or UPSTREAM_BAD_RESPONSE, as built (nested up to
    /// 200 deep) and as a session reads it.
    #[test]
    fn spoiled_runspace_is_a_runspace_or_a_bad_response(doc in document(), spoil in spoil()) {
        let (spoiled, _) = apply(&doc, &spoil);
        check(convert(UPSTREAM, spoiled.clone(), &reply()))?;
        match reparsed(&spoiled) {
            Some(read) => check(convert(UPSTREAM, read, &reply()))?,
            None => prop_assert!(nesting(&spoiled) > 127),
        }
    }

    /// Unknown fields anywhere, nested as deep as they like, change nothing.
    #[test]
    fn unknown_fields_change_nothing(
        doc in document(),
        steps in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
        key in "[a-z]{1,8}",
        value in odd_value(),
    ) {
        let spoil = Spoil { steps, mutation: Mutation::AddUnknown(format!("{UNKNOWN_PREFIX}{key}"), value) };
        let (spoiled, _) = apply(&doc, &spoil);
        let original = convert(UPSTREAM, doc, &reply()).unwrap();
        let converted = convert(UPSTREAM, spoiled, &reply());
        prop_assert!(converted.is_ok(), "{:?}", converted.err());
        prop_assert_eq!(converted.unwrap(), original);
    }

    /// `creation_time` is the instant it names or a bad response; never a wrong date.
    #[test]
    fn creation_time_is_exact_or_a_bad_response(doc in document(), parts in date_parts()) {
        let mut doc = doc;
        doc["creation_time"] = Json::String(parts.text());
        match convert(UPSTREAM, doc, &reply()) {
            Ok(r) => {
                prop_assert!(r.create_time.is_some(), "{} read as absent", parts.text());
                prop_assert_eq!(r.create_time, parts.instant(), "{}", parts.text());
            }
            Err(e) => {
                prop_assert!(parts.instant().is_none() || !parts.four_digit_year(), "{}: {e:?}", parts.text());
                check_bad_response(&e, "upstreams/srs1/runspaces/a1b2c3d4e5f6")?;
            }
        }
    }

    /// An error code of any size is kept where it fits an int32 and a bad response where it
    /// does not: never cut to another number.
    #[test]
    fn error_codes_are_kept_or_refused_never_cut(code in prop_oneof![any::<i64>(), 0i64..10_000]) {
        let mut doc = documents().remove(2);
        doc["error_details"]["code"] = json!(code);
        match convert(UPSTREAM, doc, &reply()) {
            Ok(r) => prop_assert_eq!(i64::from(r.error.unwrap().code), code),
            Err(e) => {
                prop_assert!(i32::try_from(code).is_err(), "{code}: {e:?}");
                check_bad_response(&e, "upstreams/srs1/runspaces/0f9e8d7c6b5a")?;
            }
        }
    }
}
