//! FIQL filters over Cloud Director query records: `;` = and (binds tighter), `,` = or,
//! parentheses, `==` / `!=` (with `*` wildcards) on text fields, `=lt=` `=le=` `=gt=` `=ge=`
//! on dates; and the record ordering of `sortAsc` / `sortDesc`.

use std::cmp::Ordering;

use chrono::{DateTime, FixedOffset};
use serde_json::Value;

/// Filterable and sortable record fields (`id` matches the uuid, urn or href).
pub const FIELDS: &[&str] = &[
    "id",
    "href",
    "status",
    "name",
    "operationFull",
    "serviceNamespace",
    "ownerName",
    "objectName",
    "objectType",
    "object",
    "orgName",
    "startDate",
    "endDate",
];
const DATE_FIELDS: &[&str] = &["startDate", "endDate"];

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug)]
pub enum Expr {
    Or(Vec<Expr>),
    And(Vec<Expr>),
    Cmp {
        field: String,
        op: Op,
        value: String,
    },
}

pub fn parse(text: &str) -> Result<Expr, String> {
    let mut p = Parser {
        s: text.as_bytes(),
        text,
        i: 0,
    };
    let e = p.or()?;
    if p.i != p.s.len() {
        return Err(format!("unexpected '{}' at {}", &text[p.i..], p.i));
    }
    Ok(e)
}

struct Parser<'a> {
    s: &'a [u8],
    text: &'a str,
    i: usize,
}

impl Parser<'_> {
    fn or(&mut self) -> Result<Expr, String> {
        self.joined(b',', Self::and, Expr::Or)
    }

    fn and(&mut self) -> Result<Expr, String> {
        self.joined(b';', Self::primary, Expr::And)
    }

    /// `operand (sep operand)*`: one operand stands alone, several are joined by `join`
    /// (`,` and `;` differ only in separator, operand and node, which is how `;` binds tighter).
    fn joined(
        &mut self,
        sep: u8,
        operand: fn(&mut Self) -> Result<Expr, String>,
        join: fn(Vec<Expr>) -> Expr,
    ) -> Result<Expr, String> {
        let mut parts = vec![operand(self)?];
        while self.s.get(self.i) == Some(&sep) {
            self.i += 1;
            parts.push(operand(self)?);
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            join(parts)
        })
    }

    fn primary(&mut self) -> Result<Expr, String> {
        if self.s.get(self.i) == Some(&b'(') {
            self.i += 1;
            let e = self.or()?;
            if self.s.get(self.i) != Some(&b')') {
                return Err("missing ')'".to_string());
            }
            self.i += 1;
            return Ok(e);
        }
        let start = self.i;
        while self
            .s
            .get(self.i)
            .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b'.')
        {
            self.i += 1;
        }
        let field = &self.text[start..self.i];
        if field.is_empty() {
            return Err(format!("expected a field name at {start}"));
        }
        if !FIELDS.contains(&field) {
            return Err(format!("unsupported field '{field}'"));
        }
        let rest = &self.text[self.i..];
        let (op, len) = [
            ("==", Op::Eq),
            ("!=", Op::Ne),
            ("=lt=", Op::Lt),
            ("=le=", Op::Le),
            ("=gt=", Op::Gt),
            ("=ge=", Op::Ge),
        ]
        .iter()
        .find(|(tok, _)| rest.starts_with(tok))
        .map(|(tok, op)| (*op, tok.len()))
        .ok_or_else(|| format!("expected an operator after '{field}'"))?;
        self.i += len;
        let vstart = self.i;
        while self
            .s
            .get(self.i)
            .is_some_and(|c| !matches!(c, b';' | b',' | b'(' | b')'))
        {
            self.i += 1;
        }
        let value = &self.text[vstart..self.i];
        if value.is_empty() {
            return Err(format!("missing value for '{field}'"));
        }
        let is_date = DATE_FIELDS.contains(&field);
        if !matches!(op, Op::Eq | Op::Ne) && !is_date {
            return Err(format!("'{field}' supports only == and !="));
        }
        if is_date && parse_date(value).is_none() {
            return Err(format!("'{value}' is not a date-time"));
        }
        Ok(Expr::Cmp {
            field: field.to_string(),
            op,
            value: value.to_string(),
        })
    }
}

/// RFC 3339, or VCD's offset without colon; a `+` that form-decoding turned into a space
/// is taken back.
pub fn parse_date(s: &str) -> Option<DateTime<FixedOffset>> {
    let s = s.trim().replace(' ', "+");
    DateTime::parse_from_rfc3339(&s)
        .or_else(|_| DateTime::parse_from_str(&s, "%Y-%m-%dT%H:%M:%S%.f%z"))
        .ok()
}

fn glob(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || !text.ends_with(last) || text.len() < first.len() + last.len() {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(pos) => rest = &rest[pos + mid.len()..],
            None => return false,
        }
    }
    true
}

fn text_of<'a>(record: &'a Value, field: &str) -> Option<&'a str> {
    record.get(field).and_then(Value::as_str)
}

impl Expr {
    pub fn matches(&self, record: &Value) -> bool {
        match self {
            Expr::Or(parts) => parts.iter().any(|p| p.matches(record)),
            Expr::And(parts) => parts.iter().all(|p| p.matches(record)),
            Expr::Cmp { field, op, value } => {
                if DATE_FIELDS.contains(&field.as_str()) {
                    let (Some(have), Some(want)) = (
                        text_of(record, field).and_then(parse_date),
                        parse_date(value),
                    ) else {
                        return *op == Op::Ne;
                    };
                    return match op {
                        Op::Eq => have == want,
                        Op::Ne => have != want,
                        Op::Lt => have < want,
                        Op::Le => have <= want,
                        Op::Gt => have > want,
                        Op::Ge => have >= want,
                    };
                }
                let hit = if field == "id" {
                    let href = text_of(record, "href").unwrap_or("");
                    let uuid = href.rsplit('/').next().unwrap_or("");
                    value == uuid || value == href || *value == format!("urn:vcloud:task:{uuid}")
                } else {
                    text_of(record, field).is_some_and(|t| glob(value, t))
                };
                if *op == Op::Ne { !hit } else { hit }
            }
        }
    }
}

/// Orders two records by one field (dates chronologically, nulls first).
pub fn compare_field(a: &Value, b: &Value, field: &str) -> Ordering {
    let (x, y) = (text_of(a, field), text_of(b, field));
    if DATE_FIELDS.contains(&field) {
        return x.and_then(parse_date).cmp(&y.and_then(parse_date));
    }
    x.cmp(&y)
}
