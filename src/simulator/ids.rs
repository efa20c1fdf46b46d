//! The ids the simulator makes up: random hex strings (session ids, runspace ids, token
//! signatures), random UUID-shaped ids (tasks, request ids in error messages) and stable
//! UUID-shaped ids derived from a name (Cloud Director orgs and users keep theirs).

/// `n` random lowercase hex digits.
pub fn hex(n: usize) -> String {
    (0..n)
        .map(|_| char::from_digit(fastrand::u32(0..16), 16).unwrap_or('0'))
        .collect()
}

/// A random UUID-like id: 8-4-4-4-12 lowercase hex, version-4 shaped (`4` and `8`–`b` in
/// the version and variant places, as real servers' ids are).
pub fn uuid() -> String {
    format!(
        "{}-{}-4{}-{}{}-{}",
        hex(8),
        hex(4),
        hex(3),
        ['8', '9', 'a', 'b'][fastrand::usize(0..4)],
        hex(3),
        hex(12)
    )
}

/// A deterministic UUID-shaped id for `(kind, name)` (two FNV-1a hashes), so an org or a
/// user has the same id in every answer and every run.
pub fn stable_uuid(kind: &str, name: &str) -> String {
    let fnv = |seed: u64| {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed;
        for b in kind.bytes().chain([0u8]).chain(name.bytes()) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h
    };
    let hex = format!("{:016x}{:016x}", fnv(1), fnv(2));
    format!(
        "{}-{}-4{}-a{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[13..16],
        &hex[17..20],
        &hex[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_their_shapes() {
        let h = hex(32);
        assert_eq!(h.len(), 32);
        assert!(
            h.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        for id in [uuid(), stable_uuid("org", "acme")] {
            let groups: Vec<usize> = id.split('-').map(str::len).collect();
            assert_eq!(groups, [8, 4, 4, 4, 12], "{id}");
            assert_eq!(id.as_bytes()[14], b'4', "{id}");
        }
        assert_eq!(stable_uuid("org", "acme"), stable_uuid("org", "acme"));
        assert_ne!(stable_uuid("org", "acme"), stable_uuid("user", "acme"));
    }
}
