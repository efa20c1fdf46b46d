//! What the adapters' property tests share: strategies that spoil a valid upstream JSON
//! document (a field removed, replaced by a value of another type or an absurd one, an
//! unknown field added), absurd datetimes with the instant they name, and the checks every
//! conversion result must pass.

use proptest::{prelude::*, sample::Index, test_runner::TestCaseError};
use prost::Message;
use serde_json::{Value as Json, json};

use crate::{
    error::{GatewayError, Reason, UpstreamError},
    names::parse_resource,
    proto,
};

/// Cases per property: enough to meet every mutation on every field of the small documents
/// again and again, few enough for the whole set to run in seconds in a debug build.
pub fn config() -> ProptestConfig {
    ProptestConfig::with_cases(256)
}

/// The deepest nesting the strategies build (serde_json refuses to parse beyond 128).
pub const MAX_NESTING: usize = 200;
/// The longest string the strategies build, in bytes.
pub const MAX_STRING: usize = 64 * 1024;
/// The prefix of every key the strategies add: no upstream format knows it.
pub const UNKNOWN_PREFIX: &str = "x-unknown-";

/// Up to [`MAX_STRING`] bytes of one repeated character.
pub fn huge_string() -> impl Strategy<Value = String> {
    (0..=MAX_STRING, any::<char>()).prop_map(|(n, c)| c.to_string().repeat(n / c.len_utf8()))
}

/// Arrays and objects nested up to [`MAX_NESTING`] deep around `null`.
pub fn deep_value() -> impl Strategy<Value = Json> {
    prop::collection::vec(any::<bool>(), 1..=MAX_NESTING).prop_map(|levels| {
        levels.into_iter().fold(Json::Null, |inner, array| {
            if array {
                Json::Array(vec![inner])
            } else {
                json!({ "k": inner })
            }
        })
    })
}

/// The parts of a datetime text, each anywhere from valid to absurd.
#[derive(Debug, Clone)]
pub struct DateParts {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    pub fraction: Option<String>,
    /// `None` for `Z`, else (negative, hours, minutes, with a colon).
    pub offset: Option<(bool, u32, u32, bool)>,
}

/// The first second protobuf's `Timestamp` allows (0001-01-01T00:00:00Z) and the last
/// (9999-12-31T23:59:59Z).
pub const TIMESTAMP_SECONDS: std::ops::RangeInclusive<i64> = -62_135_596_800..=253_402_300_799;

/// Days from 1970-01-01 to the proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        4 | 6 | 9 | 11 => 30,
        2 if y.rem_euclid(4) == 0 && (y.rem_euclid(100) != 0 || y.rem_euclid(400) == 0) => 29,
        2 => 28,
        _ => 31,
    }
}

impl DateParts {
    /// Whether the year is written as RFC 3339 has it: four digits.
    pub fn four_digit_year(&self) -> bool {
        (0..=9999).contains(&self.year)
    }

    /// As an upstream would write it: `YYYY-MM-DDTHH:MM:SS[.f]<offset>`, the year signed
    /// when it does not fit four digits.
    pub fn text(&self) -> String {
        let year = if (0..=9999).contains(&self.year) {
            format!("{:04}", self.year)
        } else {
            format!("{:+05}", self.year)
        };
        let frac = self
            .fraction
            .as_ref()
            .map(|f| format!(".{f}"))
            .unwrap_or_default();
        let offset = match self.offset {
            None => "Z".to_string(),
            Some((neg, h, m, colon)) => {
                let sign = if neg { '-' } else { '+' };
                let sep = if colon { ":" } else { "" };
                format!("{sign}{h:02}{sep}{m:02}")
            }
        };
        format!(
            "{year}-{:02}-{:02}T{:02}:{:02}:{:02}{frac}{offset}",
            self.month, self.day, self.hour, self.minute, self.second
        )
    }

    /// The instant the text names, where it is a real one that a `Timestamp` can hold: parts
    /// in their ranges (a second of 60 is a leap second, the next minute's first), an
    /// offset below 24 hours, a result within years 1 to 9999. Fraction digits past the
    /// ninth are dropped.
    pub fn instant(&self) -> Option<prost_types::Timestamp> {
        let valid = (1..=12).contains(&self.month)
            && (1..=days_in_month(self.year, self.month)).contains(&self.day)
            && self.hour <= 23
            && self.minute <= 59
            && self.second <= 60
            && self.offset.is_none_or(|(_, h, m, _)| h <= 23 && m <= 59);
        if !valid {
            return None;
        }
        let offset = self.offset.map_or(0, |(neg, h, m, _)| {
            let secs = i64::from(h * 3600 + m * 60);
            if neg { -secs } else { secs }
        });
        let seconds = days_from_civil(self.year, i64::from(self.month), i64::from(self.day))
            * 86_400
            + i64::from(self.hour * 3600 + self.minute * 60 + self.second)
            - offset;
        let nanos = self.fraction.as_ref().map_or(0, |f| {
            let nine: String = f.chars().chain(std::iter::repeat('0')).take(9).collect();
            nine.parse::<i32>().expect("nine digits")
        });
        TIMESTAMP_SECONDS
            .contains(&seconds)
            .then_some(prost_types::Timestamp { seconds, nanos })
    }
}

/// Datetime parts from valid to absurd: years from -300000 to 300000 (chrono's own range
/// is about ±262143), months 0–13, days 0–32, hours 0–25, minutes and seconds 0–61, up to
/// 20 fraction digits, offsets `Z`, `±HH:MM` or `±HHMM` with hours up to 25.
pub fn date_parts() -> impl Strategy<Value = DateParts> {
    let year = prop_oneof![
        4 => 1i64..=9999,
        1 => prop_oneof![Just(0i64), Just(1), Just(9999), Just(10000), Just(-1)],
        1 => -300_000i64..=300_000,
    ];
    let offset = prop::option::of((any::<bool>(), 0u32..=25, 0u32..=61, any::<bool>()));
    (
        (year, 0u32..=13, 0u32..=32),
        // Seconds 59 to 61 often: 60 is a leap second.
        (
            0u32..=25,
            0u32..=61,
            prop_oneof![3 => 0u32..=61, 1 => 59u32..=61],
        ),
        prop::option::of("[0-9]{1,20}"),
        offset,
    )
        .prop_map(
            |((year, month, day), (hour, minute, second), fraction, offset)| DateParts {
                year,
                month,
                day,
                hour,
                minute,
                second,
                fraction,
                offset,
            },
        )
}

/// Datetime texts from valid to absurd (see [`date_parts`]).
pub fn datetime_text() -> impl Strategy<Value = String> {
    date_parts().prop_map(|p| p.text())
}

/// A value of some JSON type, often absurd: `u64::MAX`, `1e308`, negatives, huge and
/// arbitrary strings, datetimes, deep nesting, small arrays and objects of the same.
pub fn odd_value() -> impl Strategy<Value = Json> {
    let leaf = prop_oneof![
        Just(Json::Null),
        any::<bool>().prop_map(Json::Bool),
        prop_oneof![
            Just(json!(u64::MAX)),
            Just(json!(i64::MIN)),
            Just(json!(i64::MAX)),
            Just(json!(-1)),
            Just(json!(0)),
            Just(json!(1e308)),
            Just(json!(-1e308)),
            Just(json!(0.5)),
            Just(json!(4294967696u64)),
        ],
        any::<i64>().prop_map(Json::from),
        any::<f64>()
            .prop_filter("JSON has no NaN or infinity", |f| f.is_finite())
            .prop_map(Json::from),
        any::<String>().prop_map(Json::String),
        datetime_text().prop_map(Json::String),
        huge_string().prop_map(Json::String),
        Just(json!("")),
        Just(json!({})),
        Just(json!([])),
    ];
    prop_oneof![
        8 => leaf.clone(),
        1 => deep_value(),
        1 => prop::collection::vec(leaf.clone(), 0..4).prop_map(Json::Array),
        1 => prop::collection::btree_map("[a-z_]{1,8}", leaf, 0..4)
            .prop_map(|m| Json::Object(m.into_iter().collect())),
    ]
}

/// What is done to a document at the place a [`Spoil`] picks.
#[derive(Debug, Clone)]
pub enum Mutation {
    /// The node is removed from its object or array (nothing happens at the root).
    Remove,
    /// The node is replaced.
    Replace(Json),
    /// A key no format knows is added to the node, or to its nearest enclosing object.
    AddUnknown(String, Json),
}

/// One spoiling of a document: a place (indices walked down from the root) and a mutation.
#[derive(Debug, Clone)]
pub struct Spoil {
    pub steps: Vec<Index>,
    pub mutation: Mutation,
}

pub fn spoil() -> impl Strategy<Value = Spoil> {
    let mutation = prop_oneof![
        Just(Mutation::Remove),
        odd_value().prop_map(Mutation::Replace),
        ("[a-z]{1,8}", odd_value())
            .prop_map(|(k, v)| Mutation::AddUnknown(format!("{UNKNOWN_PREFIX}{k}"), v)),
    ];
    (prop::collection::vec(any::<Index>(), 0..8), mutation)
        .prop_map(|(steps, mutation)| Spoil { steps, mutation })
}

/// One step of a path in a document.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    Key(String),
    At(usize),
}

/// The path `steps` picks in `doc`: down through objects (keys in order) and arrays until
/// the steps run out or a scalar or empty container is reached.
fn resolve(doc: &Json, steps: &[Index]) -> Vec<Step> {
    let mut path = Vec::new();
    let mut node = doc;
    for step in steps {
        match node {
            Json::Object(m) if !m.is_empty() => {
                let (k, v) = m.iter().nth(step.index(m.len())).expect("index in range");
                path.push(Step::Key(k.clone()));
                node = v;
            }
            Json::Array(a) if !a.is_empty() => {
                let i = step.index(a.len());
                path.push(Step::At(i));
                node = &a[i];
            }
            _ => break,
        }
    }
    path
}

fn node_mut<'a>(doc: &'a mut Json, path: &[Step]) -> &'a mut Json {
    path.iter().fold(doc, |node, step| match (step, node) {
        (Step::Key(k), Json::Object(m)) => m.get_mut(k).expect("resolved key"),
        (Step::At(i), Json::Array(a)) => &mut a[*i],
        _ => unreachable!("a resolved path"),
    })
}

/// `doc` spoiled by `spoil`, and the path where it was.
pub fn apply(doc: &Json, spoil: &Spoil) -> (Json, Vec<Step>) {
    let mut out = doc.clone();
    let mut path = resolve(doc, &spoil.steps);
    match &spoil.mutation {
        Mutation::Remove => {
            if let Some(last) = path.last().cloned() {
                match (node_mut(&mut out, &path[..path.len() - 1]), last) {
                    (Json::Object(m), Step::Key(k)) => {
                        m.remove(&k);
                    }
                    (Json::Array(a), Step::At(i)) => {
                        a.remove(i);
                    }
                    _ => unreachable!("a resolved path"),
                }
            }
        }
        Mutation::Replace(v) => *node_mut(&mut out, &path) = v.clone(),
        Mutation::AddUnknown(k, v) => {
            while !node_mut(&mut out, &path).is_object() && !path.is_empty() {
                path.pop();
            }
            if let Json::Object(m) = node_mut(&mut out, &path) {
                m.insert(k.clone(), v.clone());
            }
        }
    }
    (out, path)
}

/// How deep arrays and objects nest in `v` (a scalar is 0).
pub fn nesting(v: &Json) -> usize {
    match v {
        Json::Array(a) => 1 + a.iter().map(nesting).max().unwrap_or(0),
        Json::Object(m) => 1 + m.values().map(nesting).max().unwrap_or(0),
        _ => 0,
    }
}

/// `v` as a session reads it: written out and parsed again, within serde_json's recursion
/// limit (`None` where it refuses, as it does beyond 128 levels).
pub fn reparsed(v: &Json) -> Option<Json> {
    let bytes = serde_json::to_vec(v).expect("a JSON value serializes");
    serde_json::from_slice(&bytes).ok()
}

/// `t` without what holds the upstream's JSON itself (`upstream_payload`, `result`), in its
/// subtasks too: what an unknown field must not change.
pub fn without_payload(mut t: proto::Task) -> proto::Task {
    t.upstream_payload = None;
    t.result = None;
    t.subtasks = t.subtasks.into_iter().map(without_payload).collect();
    t
}

/// A timestamp a client can use: within years 1 to 9999, nanos below a second.
pub fn check_timestamp(t: &Option<prost_types::Timestamp>) -> Result<(), TestCaseError> {
    if let Some(t) = t {
        prop_assert!(TIMESTAMP_SECONDS.contains(&t.seconds), "{t:?} out of range");
        prop_assert!((0..1_000_000_000).contains(&t.nanos), "{t:?} nanos");
    }
    Ok(())
}

/// `m` encodes and decodes back as it is: a client can read it (protobuf decoders stop at
/// 100 nested messages).
pub fn check_round_trip<M: Message + Default + PartialEq + std::fmt::Debug>(
    m: &M,
) -> Result<(), TestCaseError> {
    let decoded = M::decode(m.encode_to_vec().as_slice());
    prop_assert!(decoded.as_ref() == Ok(m), "{:?}", decoded.err());
    Ok(())
}

/// `name` parses back to `upstream` and `id` in `collection`.
pub fn check_name(
    name: &str,
    collection: &str,
    upstream: &str,
    id: &str,
) -> Result<(), TestCaseError> {
    let parsed = parse_resource(name, collection, "name");
    prop_assert!(parsed.is_ok(), "'{name}' does not parse: {:?}", parsed);
    let parsed = parsed.unwrap();
    prop_assert_eq!(parsed.upstream.segment(), upstream);
    prop_assert_eq!(parsed.id, id);
    Ok(())
}

/// What every converted task must be: named so that its name parses back, its percentage
/// 0–100, its timestamps valid, its subtasks the same (the round trip is checked once, on
/// the whole task).
pub fn check_task(t: &proto::Task, upstream: &str) -> Result<(), TestCaseError> {
    check_name(&t.name, "tasks", upstream, &t.id)?;
    prop_assert_eq!(&t.upstream, &format!("upstreams/{upstream}"));
    if !t.parent.is_empty() {
        let parent = parse_resource(&t.parent, "tasks", "parent");
        prop_assert!(parent.is_ok(), "{parent:?}");
    }
    if let Some(p) = &t.progress {
        prop_assert!((0..=100).contains(&p.percent), "percent {}", p.percent);
    }
    for time in [&t.start_time, &t.end_time, &t.expiry_time] {
        check_timestamp(time)?;
    }
    for sub in &t.subtasks {
        check_task(sub, upstream)?;
    }
    Ok(())
}

/// What a refused document must give: UPSTREAM_BAD_RESPONSE, and a `Status` small enough
/// for a client to receive (its message percent-encoded and its details in base64 within
/// HTTP/2 header lists, which clients cap at 16 KiB).
pub fn check_bad_response(e: &UpstreamError, resource: &str) -> Result<(), TestCaseError> {
    prop_assert_eq!(e.reason(), Reason::UpstreamBadResponse, "{:?}", e);
    let status = GatewayError::from(e.clone()).into_status(resource);
    let on_the_wire = 3 * status.message().len() + 4 * status.details().len() / 3;
    prop_assert!(
        on_the_wire <= 12 * 1024,
        "a status of {on_the_wire} bytes on the wire: {}",
        crate::error::clip(status.message())
    );
    Ok(())
}
