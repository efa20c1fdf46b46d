//! A small OpenAPI 3.0 schema validator for the simulator tests (no extra crate).
//!
//! Supports `$ref` (`#/components/schemas/...`, any local JSON pointer), `type`, `nullable`,
//! `required`, `properties`, `additionalProperties` (bool or schema), `items`, `enum`,
//! `allOf`, `anyOf`, `oneOf` and `format: date-time`. To catch misspelled field names, an
//! object schema that lists `properties` and has no `additionalProperties` is treated as
//! closed; properties named by sibling `allOf` branches count as listed, so composed vAPI
//! error schemas (`Unauthenticated` = `Error` + `challenge`) still validate.
//! Reusable for every upstream spec (vCenter, snapservice and SRS use it): pass the spec
//! document, a schema and a value. [`load_spec`] reads a spec of the vendor folder.

#![allow(dead_code)]

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde_json::Value;

/// Overrides the spec folder.
pub const SPECS_DIR_ENV: &str = "UPSTREAM_SPECS_DIR";

/// The folder of the vendor specs: `UPSTREAM_SPECS_DIR` when set; else the shared folder
/// next to the crate when it is checked out (an update there is tested at once); else the
/// copies in `tests/specs`.
pub fn spec_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os(SPECS_DIR_ENV).filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let shared = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/upstream/specs"
    ));
    if shared.is_dir() {
        return shared;
    }
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/specs"))
}

/// Whether this runs in CI (`CI` set and non-empty, as CI services set it).
fn in_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty())
}

/// A spec of the folder, or `None` (the test skips) only when the folder is absent outside
/// CI. In CI a missing folder fails the test: skipping there would let schema drift pass
/// silently. A missing or broken file inside a present folder always fails.
pub fn load_spec(file: &str) -> Option<Value> {
    let dir = spec_dir();
    if !dir.is_dir() {
        assert!(
            !in_ci(),
            "spec folder {} is absent and CI is set: the schema tests must run in CI \
             (restore tests/specs, check out shared/upstream next to the crate, or set {SPECS_DIR_ENV})",
            dir.display()
        );
        println!("skipping: spec folder {} is absent", dir.display());
        return None;
    }
    let text = std::fs::read_to_string(dir.join(file))
        .unwrap_or_else(|e| panic!("spec folder exists but {file} is unreadable: {e}"));
    Some(serde_json::from_str(&text).unwrap_or_else(|e| panic!("{file} is not JSON: {e}")))
}

/// Validates `value` against `schema` (which may be a `$ref`) of `spec`; returns violations
/// as `"<json path>: <problem>"`. Empty = valid.
pub fn validate(spec: &Value, schema: &Value, value: &Value) -> Vec<String> {
    let mut v = Validator {
        spec,
        errors: Vec::new(),
    };
    v.check(schema, value, "$", &BTreeSet::new(), 0);
    v.errors
}

/// The response schema an operation declares: `paths.<path>.<method>.responses.<status>
/// .content.application/json.schema`. `None` when the spec declares no JSON body there.
pub fn response_schema<'a>(
    spec: &'a Value,
    path: &str,
    method: &str,
    status: u16,
) -> Option<&'a Value> {
    spec.get("paths")?
        .get(path)?
        .get(method.to_ascii_lowercase())?
        .get("responses")?
        .get(status.to_string())?
        .get("content")?
        .get("application/json")?
        .get("schema")
}

/// Whether the operation declares the status at all (e.g. a 204 without body).
pub fn declares_status(spec: &Value, path: &str, method: &str, status: u16) -> bool {
    spec.pointer(&format!(
        "/paths/{}/{}/responses/{}",
        escape(path),
        method.to_ascii_lowercase(),
        status
    ))
    .is_some()
}

/// A named component schema, e.g. `schema(spec, "Cis.Task.Info")`.
pub fn component<'a>(spec: &'a Value, name: &str) -> Option<&'a Value> {
    spec.get("components")?.get("schemas")?.get(name)
}

fn escape(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

struct Validator<'a> {
    spec: &'a Value,
    errors: Vec<String>,
}

const MAX_DEPTH: usize = 64;

impl<'a> Validator<'a> {
    fn resolve(&self, reference: &str) -> Option<&'a Value> {
        let pointer = reference.strip_prefix('#')?;
        self.spec.pointer(pointer)
    }

    /// Property names a schema lists itself or through `$ref` / `allOf`.
    fn listed_properties(&self, schema: &Value, out: &mut BTreeSet<String>, depth: usize) {
        if depth > MAX_DEPTH {
            return;
        }
        if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
            if let Some(target) = self.resolve(r) {
                self.listed_properties(target, out, depth + 1);
            }
            return;
        }
        if let Some(props) = schema.get("properties").and_then(Value::as_object) {
            out.extend(props.keys().cloned());
        }
        if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
            for s in all {
                self.listed_properties(s, out, depth + 1);
            }
        }
    }

    fn fail(&mut self, path: &str, msg: impl Into<String>) {
        self.errors.push(format!("{path}: {}", msg.into()));
    }

    fn sub_errors(
        &self,
        schema: &Value,
        value: &Value,
        path: &str,
        extra: &BTreeSet<String>,
        depth: usize,
    ) -> Vec<String> {
        let mut v = Validator {
            spec: self.spec,
            errors: Vec::new(),
        };
        v.check(schema, value, path, extra, depth);
        v.errors
    }

    /// `extra`: property names that sibling `allOf` branches allow at this object.
    fn check(
        &mut self,
        schema: &Value,
        value: &Value,
        path: &str,
        extra: &BTreeSet<String>,
        depth: usize,
    ) {
        if depth > MAX_DEPTH {
            self.fail(path, "schema nesting too deep (recursive $ref?)");
            return;
        }
        let Some(obj) = schema.as_object() else {
            if schema == &Value::Bool(false) {
                self.fail(path, "no value allowed here");
            }
            return;
        };
        if let Some(r) = obj.get("$ref").and_then(Value::as_str) {
            match self.resolve(r) {
                Some(target) => self.check(target, value, path, extra, depth + 1),
                None => self.fail(path, format!("unresolvable $ref {r}")),
            }
            return;
        }
        if value.is_null() && obj.get("nullable") == Some(&Value::Bool(true)) {
            return;
        }
        if let Some(ty) = obj.get("type").and_then(Value::as_str) {
            let ok = match ty {
                "object" => value.is_object(),
                "array" => value.is_array(),
                "string" => value.is_string(),
                "integer" => value.is_i64() || value.is_u64(),
                "number" => value.is_number(),
                "boolean" => value.is_boolean(),
                other => {
                    self.fail(path, format!("schema has unknown type {other:?}"));
                    true
                }
            };
            if !ok {
                self.fail(path, format!("expected {ty}, got {}", kind(value)));
                return;
            }
        }
        if let Some(options) = obj.get("enum").and_then(Value::as_array)
            && !options.contains(value)
        {
            self.fail(
                path,
                format!("{value} is not one of {}", Value::Array(options.clone())),
            );
        }
        if obj.get("format").and_then(Value::as_str) == Some("date-time")
            && let Some(s) = value.as_str()
            && chrono::DateTime::parse_from_rfc3339(s).is_err()
        {
            self.fail(path, format!("{s:?} is not an RFC 3339 date-time"));
        }

        // Names allowed at this object: own + allOf branches + what the parent allowed.
        let mut allowed = extra.clone();
        self.listed_properties(schema, &mut allowed, depth);

        if let Some(all) = obj.get("allOf").and_then(Value::as_array) {
            for branch in all {
                self.check(branch, value, path, &allowed, depth + 1);
            }
        }
        // How many branches of `anyOf` / `oneOf` the value satisfies on its own.
        let passing = |key: &str| {
            let branches = obj.get(key).and_then(Value::as_array)?;
            let ok = |b: &&Value| {
                self.sub_errors(b, value, path, &allowed, depth + 1)
                    .is_empty()
            };
            Some(branches.iter().filter(ok).count())
        };
        let (any, one) = (passing("anyOf"), passing("oneOf"));
        if any == Some(0) {
            self.fail(path, "matches none of anyOf");
        }
        if let Some(n) = one.filter(|n| *n != 1) {
            self.fail(path, format!("matches {n} of oneOf (need exactly 1)"));
        }

        if let Some(map) = value.as_object() {
            if let Some(required) = obj.get("required").and_then(Value::as_array) {
                for name in required.iter().filter_map(Value::as_str) {
                    if !map.contains_key(name) {
                        self.fail(path, format!("missing required property {name:?}"));
                    }
                }
            }
            let props = obj.get("properties").and_then(Value::as_object);
            for (key, item) in map {
                let child = format!("{path}.{key}");
                if let Some(s) = props.and_then(|p| p.get(key)) {
                    self.check(s, item, &child, &BTreeSet::new(), depth + 1);
                    continue;
                }
                match obj.get("additionalProperties") {
                    Some(Value::Bool(true)) => {}
                    Some(Value::Bool(false)) => {
                        if !allowed.contains(key) {
                            self.fail(&child, "property not allowed (additionalProperties: false)");
                        }
                    }
                    Some(s @ Value::Object(_)) => {
                        if !allowed.contains(key) {
                            self.check(s, item, &child, &BTreeSet::new(), depth + 1);
                        }
                    }
                    Some(_) => {}
                    // Closed by our rule when the schema lists properties.
                    None => {
                        if props.is_some() && !allowed.contains(key) {
                            self.fail(&child, "unknown property (schema lists properties)");
                        }
                    }
                }
            }
        }
        if let (Some(items), Some(arr)) = (obj.get("items"), value.as_array()) {
            for (i, item) in arr.iter().enumerate() {
                self.check(
                    items,
                    item,
                    &format!("{path}[{i}]"),
                    &BTreeSet::new(),
                    depth + 1,
                );
            }
        }
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}
