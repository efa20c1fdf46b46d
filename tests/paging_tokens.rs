//! Properties of AIP-158 page tokens, through the public `PageRequest`: any token is read or
//! refused with INVALID_PAGE_TOKEN (never a panic), a token resumes right after the key it was
//! issued for, and is refused for another parent or filter.

use std::collections::BTreeSet;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use proptest::prelude::*;
use serde_json::{Value as Json, json};
use vmware_grpc_gateway::{
    api::paging::{MAX_PAGE_SIZE, NewestFirstKey, PageRequest},
    error::{GatewayError, Reason},
};

type Key = NewestFirstKey;

fn config() -> ProptestConfig {
    ProptestConfig::with_cases(256)
}

fn key() -> impl Strategy<Value = Key> {
    (0u8..=1, any::<i64>(), prop_oneof![".{0,12}", "[ab]{0,3}"])
}

fn keys() -> impl Strategy<Value = BTreeSet<Key>> {
    prop::collection::btree_set(key(), 1..40)
}

fn parent() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("upstreams/-".to_string()),
        "upstreams/[a-z]{1,3}",
        ".{0,8}"
    ]
}

fn fingerprint() -> impl Strategy<Value = String> {
    prop_oneof![Just(String::new()), "[0-9a-f]{16}", ".{0,8}"]
}

/// JSON that looks somewhat like a token, nested up to 200 deep (serde_json stops at 128).
fn token_json() -> impl Strategy<Value = Json> {
    let scalar = prop_oneof![
        Just(Json::Null),
        any::<bool>().prop_map(Json::Bool),
        any::<i64>().prop_map(Json::from),
        Just(json!(u64::MAX)),
        Just(json!(1e308)),
        ".{0,8}".prop_map(Json::String),
    ];
    let deep = (1usize..=200).prop_map(|n| {
        (0..n).fold(json!(0), |inner, i| {
            if i % 2 == 0 {
                json!([inner])
            } else {
                json!({"k": inner})
            }
        })
    });
    prop_oneof![
        scalar.clone(),
        deep,
        (
            parent(),
            fingerprint(),
            prop_oneof![
                key().prop_map(|k| json!(k)),
                scalar.clone(),
                prop::collection::vec(scalar, 0..5).prop_map(Json::Array),
            ]
        )
            .prop_map(|(p, f, k)| json!({"p": p, "f": f, "k": k})),
    ]
}

/// Tokens from garbage to nearly right: any text, base64 of any bytes, base64 of JSON of
/// every shape, a real token cut short or with one character changed.
fn token() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        prop::collection::vec(any::<u8>(), 0..64).prop_map(|b| URL_SAFE_NO_PAD.encode(b)),
        token_json().prop_map(|j| URL_SAFE_NO_PAD.encode(j.to_string())),
        (keys(), any::<prop::sample::Index>(), any::<char>()).prop_map(|(keys, at, c)| {
            let token = issue(&keys, 1, "upstreams/vc1", "f");
            let mut chars: Vec<char> = token.chars().collect();
            let i = at.index(chars.len().max(1));
            if i < chars.len() {
                chars[i] = c;
            }
            chars.into_iter().collect()
        }),
        (keys(), any::<prop::sample::Index>()).prop_map(|(keys, at)| {
            let token = issue(&keys, 1, "upstreams/vc1", "f");
            token[..at.index(token.len() + 1)].to_string()
        }),
    ]
}

/// The token after the first page of `keys`, `size` a page (empty when there is no next page).
fn issue(keys: &BTreeSet<Key>, size: i32, parent: &str, fp: &str) -> String {
    let first = PageRequest::<Key>::new("", size, parent, fp).expect("no token is valid");
    first.take(keys.iter().cloned().collect(), Clone::clone).1
}

/// Keys right around `k`: equal, just after, just before and at the ends of each part.
fn neighbours(k: &Key) -> Vec<Key> {
    let (a, b, s) = k.clone();
    vec![
        (a, b, s.clone()),
        (a, b, format!("{s}\0")),
        (a, b, String::new()),
        (a, b.saturating_add(1), s.clone()),
        (a, b.saturating_sub(1), s.clone()),
        (a.saturating_add(1), b, s.clone()),
        (a.saturating_sub(1), b, s),
    ]
}

fn is_invalid_token(e: &GatewayError) -> bool {
    e.reason() == Reason::InvalidPageToken && e.code() == tonic::Code::InvalidArgument
}

proptest! {
    #![proptest_config(config())]

    /// Any token is read or refused with INVALID_PAGE_TOKEN, whatever the key type.
    #[test]
    fn any_token_is_read_or_invalid_page_token(token in token(), parent in parent(), fp in fingerprint()) {
        if let Err(e) = PageRequest::<Key>::new(&token, 0, &parent, &fp) {
            prop_assert!(is_invalid_token(&e), "{e:?}");
            prop_assert!(e.to_string().len() <= 700, "{}", e.to_string().len());
        }
        if let Err(e) = PageRequest::<String>::new(&token, 0, &parent, &fp) {
            prop_assert!(is_invalid_token(&e), "{e:?}");
        }
    }

    /// A token resumes right after the last key of the page that issued it, in whatever the
    /// list holds by then (items gone, new ones before and after): nothing repeated or
    /// skipped. A listing walked page by page gives every key once, in order.
    #[test]
    fn tokens_resume_right_after_their_key(
        keys in keys(),
        size in 1i32..10,
        later in prop::collection::btree_set(key(), 0..40),
        parent in parent(),
        fp in fingerprint(),
    ) {
        let first = PageRequest::<Key>::new("", size, &parent, &fp).unwrap();
        let (page, token) = first.take(keys.iter().cloned().collect(), Clone::clone);
        prop_assert_eq!(token.is_empty(), keys.len() <= size as usize);
        if let Some(last) = page.last().filter(|_| !token.is_empty()) {
            let mut now: BTreeSet<Key> = later.clone();
            now.extend(neighbours(last));
            now.extend(keys.iter().cloned());
            let next = PageRequest::<Key>::new(&token, MAX_PAGE_SIZE as i32, &parent, &fp).unwrap();
            let (rest, _) = next.take(now.iter().cloned().collect(), Clone::clone);
            let expected: Vec<Key> = now.into_iter().filter(|k| k > last).collect();
            prop_assert_eq!(rest, expected);
        }
        // Walking the whole listing.
        let (mut seen, mut token, mut ended) = (Vec::new(), String::new(), false);
        for _ in 0..=keys.len() {
            let req = PageRequest::<Key>::new(&token, size, &parent, &fp).unwrap();
            let (page, next) = req.take(keys.iter().cloned().collect(), Clone::clone);
            prop_assert!(page.len() <= size as usize);
            seen.extend(page);
            if next.is_empty() {
                ended = true;
                break;
            }
            token = next;
        }
        prop_assert!(ended, "the listing did not end");
        prop_assert_eq!(seen, keys.into_iter().collect::<Vec<_>>());
    }

    /// A token is refused for another parent or another filter.
    #[test]
    fn tokens_are_refused_for_another_parent_or_filter(
        keys in prop::collection::btree_set(key(), 2..10),
        (parent, other_parent) in (parent(), parent()).prop_filter("two parents", |(a, b)| a != b),
        (fp, other_fp) in (fingerprint(), fingerprint()).prop_filter("two filters", |(a, b)| a != b),
    ) {
        let token = issue(&keys, 1, &parent, &fp);
        prop_assert!(!token.is_empty());
        prop_assert!(PageRequest::<Key>::new(&token, 0, &parent, &fp).is_ok());
        let e = PageRequest::<Key>::new(&token, 0, &other_parent, &fp).err();
        prop_assert!(e.as_ref().is_some_and(is_invalid_token), "{e:?}");
        let e = PageRequest::<Key>::new(&token, 0, &parent, &other_fp).err();
        prop_assert!(e.as_ref().is_some_and(is_invalid_token), "{e:?}");
    }
}
