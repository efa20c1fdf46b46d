//! Small HTTP helpers every simulated part uses: header and Basic-auth parsing, query and
//! form decoding (through the `percent-encoding` crate), request bodies with a size limit,
//! and plain response builders (JSON, raw JSON-labelled, empty).

use std::borrow::Cow;

use axum::body::{Body, Bytes};
use axum::extract::Query;
use axum::response::Response;
use base64::Engine as _;
use http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

/// Everything but RFC 3986 unreserved characters gets escaped in query values we write.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Query pairs in order, repeated keys kept (`?a=1&a=2` gives two pairs), form-decoded.
/// A malformed query string counts as empty.
pub fn query_pairs(uri: &Uri) -> Vec<(String, String)> {
    match Query::<Vec<(String, String)>>::try_from_uri(uri) {
        Ok(Query(q)) => q,
        Err(_) => Vec::new(),
    }
}

/// The last value of query parameter `name` (a repeated scalar parameter: the last wins).
pub fn query_last<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .rev()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Percent-encodes a query value (for links the simulator writes into its answers).
pub fn encode_query_value(s: &str) -> String {
    utf8_percent_encode(s, QUERY_VALUE).to_string()
}

/// Decodes one `application/x-www-form-urlencoded` component (`+` is a space). `None` on a
/// malformed `%` escape or non-UTF-8: the crate's decoder passes bad escapes through, but a
/// token endpoint must refuse such a body rather than compare a mangled token.
pub fn form_decode(s: &str) -> Option<String> {
    let s = s.replace('+', " ");
    let escapes_ok = s.split('%').skip(1).all(|rest| {
        rest.as_bytes()
            .get(..2)
            .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit))
    });
    if !escapes_ok {
        return None;
    }
    percent_decode_str(&s)
        .decode_utf8()
        .ok()
        .map(Cow::into_owned)
}

/// Parses an `application/x-www-form-urlencoded` body into pairs; `None` when any component
/// does not decode (see [`form_decode`]).
pub fn parse_form(body: &str) -> Option<Vec<(String, String)>> {
    body.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            Some((form_decode(k)?, form_decode(v)?))
        })
        .collect()
}

/// The first value of header `name` as text.
pub fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// `Authorization: Basic` credentials of a request.
pub fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    header_str(headers, header::AUTHORIZATION.as_str()).and_then(parse_basic)
}

/// Parses `Authorization: Basic base64(user:password)`; `None` for anything else.
pub fn parse_basic(value: &str) -> Option<(String, String)> {
    let (scheme, rest) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

/// The request body, at most `limit` bytes; `None` when it is longer or cannot be read.
pub async fn read_body(body: Body, limit: usize) -> Option<Bytes> {
    axum::body::to_bytes(body, limit).await.ok()
}

/// A response with a JSON body.
pub fn json(status: StatusCode, body: &serde_json::Value) -> Response {
    raw_json(status, body.to_string())
}

/// A response with a raw body labelled as JSON (faults may send broken bodies on purpose).
pub fn raw_json(status: StatusCode, body: String) -> Response {
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// An empty response.
pub fn empty(status: StatusCode) -> Response {
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = status;
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_auth_parses_and_rejects() {
        // "user:pa:ss"
        let v = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("user:pa:ss")
        );
        assert_eq!(
            parse_basic(&v),
            Some(("user".to_string(), "pa:ss".to_string()))
        );
        assert_eq!(parse_basic("Bearer abc"), None);
        assert_eq!(parse_basic("Basic !!!"), None);
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(form_decode("a%3Ab%2f").as_deref(), Some("a:b/"));
        assert_eq!(form_decode("bad%2"), None);
        assert_eq!(form_decode("%zz"), None);
        assert_eq!(form_decode("%FF"), None, "not UTF-8");
    }

    #[test]
    fn percent_encoding_round_trips_and_forms_parse() {
        let raw = "(status==running;name==a b),x+y";
        let encoded = encode_query_value(raw);
        assert_eq!(
            encoded,
            "%28status%3D%3Drunning%3Bname%3D%3Da%20b%29%2Cx%2By"
        );
        assert_eq!(form_decode(&encoded).as_deref(), Some(raw));
        assert_eq!(
            parse_form("grant_type=refresh_token&refresh_token=a%2Bb+c"),
            Some(vec![
                ("grant_type".to_string(), "refresh_token".to_string()),
                ("refresh_token".to_string(), "a+b c".to_string()),
            ])
        );
        assert_eq!(parse_form("a=%zz"), None);
    }

    #[test]
    fn last_query_value_wins() {
        let pairs = query_pairs(&Uri::from_static("/x?action=a&b=1&action=list"));
        assert_eq!(query_last(&pairs, "action"), Some("list"));
        assert_eq!(query_last(&pairs, "c"), None);
    }
}
