//! Properties of the conversions every adapter uses: upstream datetimes to `Timestamp`
//! (the instant they name, or refused; never an invalid `Timestamp`), and JSON to protobuf
//! `Value` (nothing lost but integer precision beyond 2^53).

use proptest::prelude::*;
use prost_types::{Value, value::Kind};
use serde_json::Value as Json;

use super::{strategies::*, *};

fn json_value() -> impl Strategy<Value = Json> {
    let leaf = prop_oneof![
        Just(Json::Null),
        any::<bool>().prop_map(Json::Bool),
        any::<i64>().prop_map(Json::from),
        any::<u64>().prop_map(Json::from),
        any::<f64>()
            .prop_filter("JSON has no NaN or infinity", |f| f.is_finite())
            .prop_map(Json::from),
        any::<String>().prop_map(Json::String),
    ];
    leaf.prop_recursive(8, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Json::Array),
            prop::collection::btree_map(any::<String>(), inner, 0..6)
                .prop_map(|m| Json::Object(m.into_iter().collect())),
        ]
    })
}

/// JSON back from a protobuf `Value`.
fn from_value(v: &Value) -> Json {
    match &v.kind {
        None | Some(Kind::NullValue(_)) => Json::Null,
        Some(Kind::BoolValue(b)) => Json::Bool(*b),
        Some(Kind::NumberValue(n)) => Json::from(*n),
        Some(Kind::StringValue(s)) => Json::String(s.clone()),
        Some(Kind::ListValue(l)) => Json::Array(l.values.iter().map(from_value).collect()),
        Some(Kind::StructValue(s)) => Json::Object(
            s.fields
                .iter()
                .map(|(k, v)| (k.clone(), from_value(v)))
                .collect(),
        ),
    }
}

/// `j` with every number a double, as protobuf's `Value` holds numbers.
fn as_doubles(j: &Json) -> Json {
    match j {
        Json::Number(n) => Json::from(n.as_f64().expect("a finite number")),
        Json::Array(a) => Json::Array(a.iter().map(as_doubles).collect()),
        Json::Object(m) => {
            Json::Object(m.iter().map(|(k, v)| (k.clone(), as_doubles(v))).collect())
        }
        other => other.clone(),
    }
}

proptest! {
    #![proptest_config(config())]

    /// A datetime becomes exactly the instant it names, or an error naming the field: never
    /// a wrong date, never an invalid `Timestamp` (a leap second's nanos past a second, a
    /// year before 1 or after 9999). Every RFC 3339 datetime (four-digit year) naming an
    /// instant a `Timestamp` can hold is read.
    #[test]
    fn datetimes_become_the_instant_they_name_or_an_error(parts in date_parts()) {
        let text = parts.text();
        match timestamp_field("start_time", Some(&text)) {
            Ok(got) => {
                prop_assert!(got.is_some());
                check_timestamp(&got)?;
                prop_assert_eq!(got, parts.instant(), "{}", text);
            }
            Err(message) => {
                prop_assert!(
                    parts.instant().is_none() || !parts.four_digit_year(),
                    "{} refused: {}", text, message
                );
                prop_assert!(message.starts_with("start_time '"), "{}", message);
            }
        }
    }

    /// Any text at all: a valid `Timestamp` or a short error, never a panic.
    #[test]
    fn any_text_is_a_valid_timestamp_or_a_short_error(
        text in prop_oneof![any::<String>(), datetime_text(), huge_string()],
    ) {
        match timestamp_field("end_time", Some(&text)) {
            Ok(t) => check_timestamp(&t)?,
            Err(message) => prop_assert!(message.len() <= 400, "{}", message.len()),
        }
    }

    /// JSON becomes a protobuf `Value` that gives the same JSON back, numbers as doubles.
    #[test]
    fn json_becomes_a_value_without_loss(json in json_value()) {
        prop_assert_eq!(from_value(&to_value(&json)), as_doubles(&json));
    }
}
