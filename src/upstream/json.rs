//! Conversions every adapter needs: upstream JSON to protobuf `Value`/`Struct`, and upstream
//! datetimes (RFC 3339, leniently: Cloud Director's `+0200` offsets too) to `Timestamp`.

use chrono::{DateTime, FixedOffset};
use prost_types::{ListValue, Struct, Timestamp, Value, value::Kind};
use serde_json::Value as Json;

/// JSON to `google.protobuf.Value`, losing nothing but integer precision beyond 2^53
/// (protobuf's `Value` has only doubles).
pub fn to_value(json: &Json) -> Value {
    let kind = match json {
        Json::Null => Kind::NullValue(0),
        Json::Bool(b) => Kind::BoolValue(*b),
        Json::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or_default()),
        Json::String(s) => Kind::StringValue(s.clone()),
        Json::Array(a) => Kind::ListValue(ListValue {
            values: a.iter().map(to_value).collect(),
        }),
        Json::Object(o) => Kind::StructValue(to_struct(o)),
    };
    Value { kind: Some(kind) }
}

pub fn to_struct(map: &serde_json::Map<String, Json>) -> Struct {
    Struct {
        fields: map.iter().map(|(k, v)| (k.clone(), to_value(v))).collect(),
    }
}

/// How deep arrays and objects may nest in an upstream document that a task keeps: each
/// level becomes up to three nested protobuf messages (`Value`, `Struct`, its map entry), and
/// protobuf decoders (prost, C++, Java, Python) refuse messages nested more than 100 deep.
pub const MAX_NESTING: usize = 32;

/// `Err` saying so when arrays and objects in `json` nest deeper than [`MAX_NESTING`]: a
/// task keeping it could not be decoded by its clients.
pub fn check_nesting(json: &Json) -> Result<(), String> {
    if nests_deeper_than(json, MAX_NESTING) {
        Err(format!(
            "arrays and objects nest deeper than {MAX_NESTING} levels, more than protobuf clients decode"
        ))
    } else {
        Ok(())
    }
}

/// Whether arrays and objects nest in `json` more than `levels` deep (`json` itself is one).
pub fn nests_deeper_than(json: &Json, levels: usize) -> bool {
    match json {
        Json::Array(a) => levels == 0 || a.iter().any(|v| nests_deeper_than(v, levels - 1)),
        Json::Object(o) => levels == 0 || o.values().any(|v| nests_deeper_than(v, levels - 1)),
        _ => false,
    }
}

/// Parses an upstream datetime: RFC 3339, or an offset written without a colon (`+0200`).
pub fn parse_time(s: &str) -> Option<DateTime<FixedOffset>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .or_else(|| DateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f%z").ok())
}

/// The seconds a `Timestamp` may hold: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z.
const TIMESTAMP_SECONDS: std::ops::RangeInclusive<i64> = -62_135_596_800..=253_402_300_799;

/// `t` as a `Timestamp`; `None` outside the years 1 to 9999, which a `Timestamp` cannot hold.
/// A leap second (chrono's nanos past a second) becomes the next second's start.
pub fn to_timestamp(t: DateTime<FixedOffset>) -> Option<Timestamp> {
    let mut ts = Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    };
    ts.normalize();
    TIMESTAMP_SECONDS.contains(&ts.seconds).then_some(ts)
}

/// An optional upstream datetime field as a `Timestamp`; `Err` names the field when the
/// upstream sent something that is not a datetime, or one outside the years 1 to 9999.
pub fn timestamp_field(field: &str, value: Option<&str>) -> Result<Option<Timestamp>, String> {
    match value {
        None | Some("") => Ok(None),
        Some(s) => {
            let t = parse_time(s)
                .ok_or_else(|| format!("{field} '{}' is not a datetime", crate::error::clip(s)))?;
            let ts = to_timestamp(t).ok_or_else(|| {
                format!(
                    "{field} '{}' is outside the years 1 to 9999",
                    crate::error::clip(s)
                )
            })?;
            Ok(Some(ts))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datetimes_parse_with_and_without_offset_colons() {
        let z = parse_time("2024-05-02T09:14:03.512Z").unwrap();
        assert_eq!(z.timestamp_subsec_millis(), 512);
        let a = parse_time("2024-03-06T14:11:57.473+0200").unwrap();
        let b = parse_time("2024-03-06T14:11:57.473+02:00").unwrap();
        assert_eq!(a, b);
        let srs = parse_time("2024-05-02T11:20:31.5123456+03:00").unwrap();
        assert_eq!(srs.timestamp_subsec_micros(), 512_345);
        assert!(parse_time("yesterday").is_none());
    }

    #[test]
    fn leap_seconds_carry_into_the_next_second() {
        // chrono reads 23:59:60.5 as 23:59:59 with 1.5 s of nanos: not a valid Timestamp.
        let t = timestamp_field("t", Some("2016-12-31T23:59:60.5Z")).unwrap();
        assert_eq!(
            t,
            Some(Timestamp {
                seconds: 1_483_228_800,
                nanos: 500_000_000
            })
        );
    }

    #[test]
    fn datetimes_a_timestamp_cannot_hold_are_errors() {
        for s in [
            "+10000-01-01T00:00:00+0000",
            "0000-12-31T23:59:59Z",
            "0001-01-01T00:00:00+01:00",
            "9999-12-31T23:59:59-01:00",
            "-0001-01-01T00:00:00+0000",
        ] {
            let e = timestamp_field("start_time", Some(s)).unwrap_err();
            assert!(e.contains("outside the years 1 to 9999"), "{s}: {e}");
        }
        let last = timestamp_field("t", Some("9999-12-31T23:59:59.999999999Z")).unwrap();
        assert_eq!(last.unwrap().seconds, 253_402_300_799);
        let first = timestamp_field("t", Some("0001-01-01T00:00:00Z")).unwrap();
        assert_eq!(first.unwrap().seconds, -62_135_596_800);
    }

    #[test]
    fn json_becomes_protobuf_value_without_loss() {
        let j: Json = serde_json::json!({"a": [1, "x", null, true], "b": {"c": 2.5}});
        let v = to_value(&j);
        let Some(Kind::StructValue(s)) = v.kind else {
            panic!("not a struct")
        };
        assert_eq!(s.fields.len(), 2);
        let Some(Kind::ListValue(l)) = &s.fields["a"].kind else {
            panic!("not a list")
        };
        assert_eq!(l.values.len(), 4);
    }
}

#[cfg(test)]
pub(crate) mod strategies;

#[cfg(test)]
mod proptests;
