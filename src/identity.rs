//! The caller's own VMware identity (pass-through), as the call's metadata carries it:
//! `x-upstream-authorization: Basic …` (the gateway logs in as that user) or
//! `x-upstream-session: <token>` (a session id, Cloud Director JWT or SRS API key, used as is).
//!
//! Each identity has a [`IdentityKey`]: an HMAC-SHA256 of the credential under a key drawn
//! at start, so sessions and pollers are shared per identity without the credential itself
//! ever being a map key, and without a key that could be reversed offline.

use std::{
    fmt,
    sync::{Arc, OnceLock},
};

use base64::Engine as _;
use tonic::metadata::MetadataMap;

use crate::config::Secret;

/// The metadata key of a caller's Basic credentials for the upstream.
pub const AUTHORIZATION_HEADER: &str = "x-upstream-authorization";
/// The metadata key of a caller's ready-made upstream session or token.
pub const SESSION_HEADER: &str = "x-upstream-session";

/// The longest credential value read (a Cloud Director JWT is a few KiB).
const MAX_CREDENTIAL_BYTES: usize = 16 * 1024;

/// What a caller sent to be known to the upstream as.
pub enum Credentials {
    /// A user and password: the gateway logs in (and caches the session).
    Basic { user: String, password: Secret },
    /// A session or token the caller made itself: used as is, never cached.
    Token(Secret),
    /// Something that cannot be used, and why (the why never quotes the value).
    Unusable(&'static str),
}

/// The keyed hash of a credential: equal for the same credential within one process.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct IdentityKey([u8; 32]);

impl fmt::Debug for IdentityKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A prefix of a keyed hash tells nothing about the credential; it tells identities apart.
        write!(
            f,
            "IdentityKey({:02x}{:02x}{:02x}{:02x}…)",
            self.0[0], self.0[1], self.0[2], self.0[3]
        )
    }
}

/// A caller's identity for the upstreams that take one.
pub struct CallerIdentity {
    credentials: Credentials,
    key: IdentityKey,
}

impl fmt::Debug for CallerIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.credentials {
            Credentials::Basic { .. } => "basic",
            Credentials::Token(_) => "token",
            Credentials::Unusable(_) => "unusable",
        };
        f.debug_struct("CallerIdentity")
            .field("kind", &kind)
            .field("key", &self.key)
            .finish()
    }
}

impl PartialEq for CallerIdentity {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}

impl Eq for CallerIdentity {}

impl CallerIdentity {
    /// The identity a call's metadata carries, if it carries one (usable or not).
    pub fn from_metadata(metadata: &MetadataMap) -> Option<Arc<CallerIdentity>> {
        let basic = metadata.get(AUTHORIZATION_HEADER);
        let token = metadata.get(SESSION_HEADER);
        let credentials = match (basic, token) {
            (None, None) => return None,
            (Some(_), Some(_)) => Credentials::Unusable(
                "send either x-upstream-authorization or x-upstream-session, not both",
            ),
            (Some(v), None) => basic_credentials(v.as_bytes()),
            (None, Some(v)) => match std::str::from_utf8(v.as_bytes()).map(str::trim) {
                Ok(t) if !t.is_empty() && t.len() <= MAX_CREDENTIAL_BYTES => {
                    Credentials::Token(Secret::new(t))
                }
                _ => Credentials::Unusable("x-upstream-session is empty, too long or not text"),
            },
        };
        Some(Arc::new(Self::new(credentials)))
    }

    pub fn new(credentials: Credentials) -> Self {
        let key = match &credentials {
            Credentials::Basic { user, password } => keyed_hash(&[
                b"basic",
                &(user.len() as u64).to_le_bytes(),
                user.as_bytes(),
                password.expose().as_bytes(),
            ]),
            Credentials::Token(t) => keyed_hash(&[b"token", t.expose().as_bytes()]),
            Credentials::Unusable(why) => keyed_hash(&[b"unusable", why.as_bytes()]),
        };
        CallerIdentity { credentials, key }
    }

    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }

    pub fn key(&self) -> IdentityKey {
        self.key
    }
}

/// `Basic base64(user:password)`, as HTTP's Basic scheme (RFC 7617) writes it.
fn basic_credentials(raw: &[u8]) -> Credentials {
    const MALFORMED: &str =
        "x-upstream-authorization must be 'Basic ' and base64 of 'user:password'";
    if raw.len() > MAX_CREDENTIAL_BYTES {
        return Credentials::Unusable("x-upstream-authorization is too long");
    }
    let Ok(text) = std::str::from_utf8(raw) else {
        return Credentials::Unusable(MALFORMED);
    };
    let Some((scheme, encoded)) = text.trim().split_once(' ') else {
        return Credentials::Unusable(MALFORMED);
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return Credentials::Unusable(MALFORMED);
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok());
    match decoded.as_deref().and_then(|d| d.split_once(':')) {
        Some((user, password)) if !user.is_empty() => Credentials::Basic {
            user: user.to_string(),
            password: Secret::new(password),
        },
        _ => Credentials::Unusable(MALFORMED),
    }
}

/// HMAC-SHA256 of `parts` under this process's key.
fn keyed_hash(parts: &[&[u8]]) -> IdentityKey {
    static KEY: OnceLock<ring::hmac::Key> = OnceLock::new();
    let key = KEY.get_or_init(|| {
        ring::hmac::Key::generate(ring::hmac::HMAC_SHA256, &ring::rand::SystemRandom::new())
            .expect("the system's random source works")
    });
    let mut ctx = ring::hmac::Context::with_key(key);
    for p in parts {
        ctx.update(p);
    }
    let mut out = [0; 32];
    out.copy_from_slice(ctx.sign().as_ref());
    IdentityKey(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(pairs: &[(&'static str, &str)]) -> Option<Arc<CallerIdentity>> {
        let mut m = MetadataMap::new();
        for (k, v) in pairs {
            m.insert(*k, v.parse().unwrap());
        }
        CallerIdentity::from_metadata(&m)
    }

    fn basic(user_password: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(user_password)
        )
    }

    #[test]
    fn basic_credentials_parse_and_key_by_user_and_password() {
        let a = identity(&[(AUTHORIZATION_HEADER, &basic("viewer@vsphere.local:pa:ss"))]).unwrap();
        match a.credentials() {
            Credentials::Basic { user, password } => {
                assert_eq!(user, "viewer@vsphere.local");
                assert_eq!(password.expose(), "pa:ss");
            }
            _ => panic!("not read as Basic credentials"),
        }
        let again = identity(&[(AUTHORIZATION_HEADER, &basic("viewer@vsphere.local:pa:ss"))]);
        assert_eq!(again.unwrap().key(), a.key());
        let other = identity(&[(AUTHORIZATION_HEADER, &basic("viewer@vsphere.local:pass"))]);
        assert_ne!(other.unwrap().key(), a.key());
        // The length prefix keeps "ab" + "c" apart from "a" + "bc".
        let shifted = identity(&[(AUTHORIZATION_HEADER, &basic("viewer@vsphere.loca:lpa:ss"))]);
        assert_ne!(shifted.unwrap().key(), a.key());
    }

    #[test]
    fn tokens_are_taken_as_sent_and_keyed_apart_from_basic() {
        let t = identity(&[(SESSION_HEADER, " abc123 ")]).unwrap();
        assert!(matches!(t.credentials(), Credentials::Token(s) if s.expose() == "abc123"));
        let b = identity(&[(AUTHORIZATION_HEADER, &basic("abc123:"))]).unwrap();
        assert_ne!(t.key(), b.key());
    }

    #[test]
    fn unusable_credentials_say_why_without_the_value() {
        for pairs in [
            vec![(AUTHORIZATION_HEADER, "Bearer s3cr3t-value")],
            vec![(AUTHORIZATION_HEADER, "Basic !!!s3cr3t-value")],
            vec![(AUTHORIZATION_HEADER, &*basic("no-colon-s3cr3t-value"))],
            vec![(AUTHORIZATION_HEADER, &*basic(":s3cr3t-value"))],
            vec![(SESSION_HEADER, "  ")],
            vec![
                (SESSION_HEADER, "s3cr3t-value"),
                (AUTHORIZATION_HEADER, &*basic("u:s3cr3t-value")),
            ],
        ] {
            let id = identity(&pairs).unwrap();
            let Credentials::Unusable(why) = id.credentials() else {
                panic!("{pairs:?} was accepted");
            };
            assert!(!why.contains("s3cr3t"), "{why}");
            assert!(!format!("{id:?}").contains("s3cr3t"));
        }
        assert!(identity(&[]).is_none());
    }
}
