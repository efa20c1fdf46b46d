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

/// Parses an upstream datetime: RFC 3339, or an offset written without a colon (`+0200`).
pub fn parse_time(s: &str) -> Option<DateTime<FixedOffset>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .or_else(|| DateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f%z").ok())
}

pub fn to_timestamp(t: DateTime<FixedOffset>) -> Timestamp {
    Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}

/// An optional upstream datetime field as a `Timestamp`; `Err` names the field when the
/// upstream sent something that is not a datetime.
pub fn timestamp_field(field: &str, value: Option<&str>) -> Result<Option<Timestamp>, String> {
    match value {
        None | Some("") => Ok(None),
        Some(s) => parse_time(s)
            .map(|t| Some(to_timestamp(t)))
            .ok_or_else(|| format!("{field} '{}' is not a datetime", crate::error::clip(s))),
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
