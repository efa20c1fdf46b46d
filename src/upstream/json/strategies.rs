//! What the property tests share: absurd datetimes with the instant they name, huge strings,
//! the number of cases, and the checks of what conversions give.

use proptest::{prelude::*, test_runner::TestCaseError};

/// Cases per property: enough to meet every mutation on every field of the small documents
/// again and again, few enough for the whole set to run in seconds in a debug build.
pub fn config() -> ProptestConfig {
    ProptestConfig::with_cases(256)
}

/// The longest string the strategies build, in bytes.
pub const MAX_STRING: usize = 64 * 1024;
/// Up to [`MAX_STRING`] bytes of one repeated character.
pub fn huge_string() -> impl Strategy<Value = String> {
    (0..=MAX_STRING, any::<char>()).prop_map(|(n, c)| c.to_string().repeat(n / c.len_utf8()))
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
        (0u32..=25, 0u32..=61, 0u32..=61),
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

/// A timestamp a client can use: within years 1 to 9999, nanos below a second.
pub fn check_timestamp(t: &Option<prost_types::Timestamp>) -> Result<(), TestCaseError> {
    if let Some(t) = t {
        prop_assert!(TIMESTAMP_SECONDS.contains(&t.seconds), "{t:?} out of range");
        prop_assert!((0..1_000_000_000).contains(&t.nanos), "{t:?} nanos");
    }
    Ok(())
}
