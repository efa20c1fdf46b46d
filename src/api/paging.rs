//! AIP-158 paging shared by every List RPC: page sizes, and opaque keyset page tokens.
//!
//! A token carries the parent, a fingerprint of the filter and the last key returned, so a
//! page continues after that key whatever appeared or finished meanwhile: no item is
//! duplicated or skipped. A token used with another parent or filter is refused.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::error::{GatewayError, Reason, Result};

pub const DEFAULT_PAGE_SIZE: usize = 100;
pub const MAX_PAGE_SIZE: usize = 1000;

/// `page_size` as AIP-158 says: 0 is the default, above the maximum is coerced down.
fn page_size(raw: i32) -> Result<usize> {
    match raw {
        0 => Ok(DEFAULT_PAGE_SIZE),
        n if n < 0 => Err(GatewayError::invalid(
            Reason::InvalidPageSize,
            "page_size",
            format!("must not be negative, got {n}"),
        )),
        n => Ok((n as usize).min(MAX_PAGE_SIZE)),
    }
}

/// One List request's paging, validated: where it continues, how many it wants, and the
/// parent and filter fingerprint the next token is tied to.
pub struct PageRequest<K> {
    after: Option<K>,
    size: usize,
    parent: String,
    fingerprint: String,
}

impl<K: Ord + Serialize + DeserializeOwned> PageRequest<K> {
    /// Reads `page_token` and `page_size` of a List on `parent` with a filter of `fingerprint`.
    pub fn new(page_token: &str, page_size: i32, parent: &str, fingerprint: &str) -> Result<Self> {
        Ok(PageRequest {
            size: self::page_size(page_size)?,
            after: decode_token(page_token, parent, fingerprint)?,
            parent: parent.to_string(),
            fingerprint: fingerprint.to_string(),
        })
    }

    /// The page of `items` (in `key` order) and the next page's token.
    pub fn take<T>(&self, items: Vec<T>, key: impl Fn(&T) -> K) -> (Vec<T>, String) {
        paginate(
            items,
            key,
            self.after.as_ref(),
            self.size,
            &self.parent,
            &self.fingerprint,
        )
    }
}

#[derive(Serialize, Deserialize)]
struct Token<K> {
    /// Parent the listing belongs to.
    p: String,
    /// Fingerprint of the filter.
    f: String,
    /// Last key returned.
    k: K,
}

/// Reads a page token: `None` for the first page, else the last key of the previous page.
fn decode_token<K: DeserializeOwned>(
    token: &str,
    parent: &str,
    filter_fingerprint: &str,
) -> Result<Option<K>> {
    if token.is_empty() {
        return Ok(None);
    }
    let invalid =
        |why: &str| GatewayError::invalid(Reason::InvalidPageToken, "page_token", why.to_string());
    let bytes = URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| invalid("not a token this gateway issued"))?;
    let t: Token<K> =
        serde_json::from_slice(&bytes).map_err(|_| invalid("not a token this gateway issued"))?;
    if t.p != parent {
        return Err(invalid(&format!(
            "the token belongs to parent '{}', not '{}'",
            crate::error::clip(&t.p),
            crate::error::clip(parent)
        )));
    }
    if t.f != filter_fingerprint {
        return Err(invalid(
            "the filter changed since the token was issued; start again without a token",
        ));
    }
    Ok(Some(t.k))
}

fn encode_token<K: Serialize>(parent: &str, filter_fingerprint: &str, key: &K) -> String {
    let t = Token {
        p: parent.to_string(),
        f: filter_fingerprint.to_string(),
        k: key,
    };
    // Serializing strings and integers into a Vec cannot fail.
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(&t).unwrap_or_default())
}

/// A stable fingerprint (FNV-1a, 64 bits) of a filter's canonical bytes.
pub fn fingerprint(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// The key of lists ordered by a time descending with "not yet" first (tasks by
/// `start_time`, runspaces by `create_time`), ties by `tie` ascending.
pub type NewestFirstKey = (u8, i64, String);

pub fn newest_first_key(time: Option<&prost_types::Timestamp>, tie: String) -> NewestFirstKey {
    match time {
        None => (0, 0, tie),
        Some(t) => (
            1,
            -(t.seconds.saturating_mul(1_000_000) + i64::from(t.nanos / 1000)),
            tie,
        ),
    }
}

/// One page of `items` in key order, after `after`; the token is empty on the last page.
fn paginate<T, K>(
    mut items: Vec<T>,
    key: impl Fn(&T) -> K,
    after: Option<&K>,
    size: usize,
    parent: &str,
    filter_fingerprint: &str,
) -> (Vec<T>, String)
where
    K: Ord + Serialize,
{
    items.sort_by_cached_key(&key);
    let start = match after {
        Some(a) => items.partition_point(|i| key(i) <= *a),
        None => 0,
    };
    let rest = items.len() - start;
    let page: Vec<T> = items.into_iter().skip(start).take(size).collect();
    let next = if rest > size {
        page.last()
            .map(|last| encode_token(parent, filter_fingerprint, &key(last)))
            .unwrap_or_default()
    } else {
        String::new()
    };
    (page, next)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(items: &[u32], token: &str, size: usize) -> (Vec<u32>, String) {
        let after: Option<u32> = decode_token(token, "p", "f").unwrap();
        paginate(items.to_vec(), |i| *i, after.as_ref(), size, "p", "f")
    }

    #[test]
    fn pages_cover_every_item_once_in_key_order() {
        let items: Vec<u32> = (0..25).rev().collect();
        let (mut token, mut seen) = (String::new(), vec![]);
        loop {
            let (p, next) = page(&items, &token, 10);
            seen.extend(p);
            if next.is_empty() {
                break;
            }
            token = next;
        }
        assert_eq!(seen, (0..25).collect::<Vec<_>>());
    }

    #[test]
    fn items_appearing_mid_listing_never_duplicate_or_skip() {
        let (first, token) = page(&[1, 3, 5, 7], "", 2);
        assert_eq!(first, vec![1, 3]);
        // 2 appeared before the cursor (not repeated), 6 after it (seen), 5 finished (gone).
        let (second, _) = page(&[1, 2, 3, 6, 7], &token, 10);
        assert_eq!(second, vec![6, 7]);
    }

    #[test]
    fn exact_last_page_has_no_token() {
        let (p, next) = page(&[1, 2], "", 2);
        assert_eq!(p.len(), 2);
        assert!(next.is_empty());
    }

    #[test]
    fn tokens_are_tied_to_parent_and_filter() {
        let (_, token) = page(&[1, 2, 3], "", 1);
        assert!(decode_token::<u32>(&token, "other", "f").is_err());
        assert!(decode_token::<u32>(&token, "p", "g").is_err());
        assert!(decode_token::<u32>("garbage!", "p", "f").is_err());
        assert!(decode_token::<String>(&token, "p", "f").is_err());
    }

    #[test]
    fn page_size_follows_aip_158() {
        assert_eq!(page_size(0).unwrap(), DEFAULT_PAGE_SIZE);
        assert_eq!(page_size(5000).unwrap(), MAX_PAGE_SIZE);
        assert_eq!(page_size(7).unwrap(), 7);
        assert!(page_size(-1).is_err());
    }
}
