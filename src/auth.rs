//! Who a caller is and what it may do: the tokens file (`[auth] tokens_file`, API.md "Caller
//! security"), read again when it changes, and the [`Grant`] a recognised caller carries
//! through its call: its scopes and the upstreams it may use.
//!
//! The file holds no token in clear, only each token's SHA-256; a presented token is hashed
//! and compared with every entry in constant time, so neither the answer nor its timing says
//! which part of a wrong token was wrong.

use std::{
    collections::BTreeSet,
    fmt,
    path::{Path, PathBuf},
    sync::{Arc, RwLock},
    time::Duration,
};

use serde::Deserialize;

/// What a scope lets a caller do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    /// Get, List, Watch, Wait, and the UpstreamService.
    Read,
    /// CancelTask.
    Cancel,
    /// CreateRunspace, DeleteRunspace.
    RunspacesWrite,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Cancel => "cancel",
            Scope::RunspacesWrite => "runspaces.write",
        }
    }

    /// The scope a gRPC method needs (`/pkg.Service/Method`).
    pub fn of_method(path: &str) -> Scope {
        match path.rsplit('/').next().unwrap_or("") {
            "CancelTask" => Scope::Cancel,
            "CreateRunspace" | "DeleteRunspace" => Scope::RunspacesWrite,
            _ => Scope::Read,
        }
    }
}

/// What one caller may do: its scopes on its upstreams.
#[derive(Clone, PartialEq, Eq)]
pub struct Grant {
    /// The entry's name, for logs (never the token).
    pub name: String,
    scopes: BTreeSet<Scope>,
    /// `None`: every upstream.
    upstreams: Option<BTreeSet<String>>,
}

impl fmt::Debug for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Grant({})", self.name)
    }
}

impl Grant {
    /// Everything, everywhere (for tests and tooling).
    pub fn all(name: &str) -> Grant {
        Grant {
            name: name.to_string(),
            scopes: [Scope::Read, Scope::Cancel, Scope::RunspacesWrite].into(),
            upstreams: None,
        }
    }

    pub fn has(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope)
    }

    /// Whether the caller may use the upstream named `name` (configured or not).
    pub fn may_use(&self, upstream: &str) -> bool {
        self.upstreams.as_ref().is_none_or(|u| u.contains(upstream))
    }
}

/// The tokens file, as read.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokensFile {
    #[serde(default)]
    tokens: Vec<TokenEntry>,
    #[serde(default)]
    clients: Vec<ClientEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenEntry {
    name: String,
    sha256: String,
    scopes: Vec<String>,
    upstreams: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientEntry {
    #[serde(rename = "match")]
    matches: String,
    scopes: Vec<String>,
    upstreams: Vec<String>,
}

/// The callers a tokens file knows.
#[derive(Debug, Default)]
pub struct Callers {
    tokens: Vec<([u8; 32], Arc<Grant>)>,
    clients: Vec<(String, Arc<Grant>)>,
}

impl Callers {
    /// Parses a tokens file's text; errors name the entry and key (`tokens[1].sha256`).
    pub fn parse(text: &str) -> Result<Callers, String> {
        let file: TokensFile = toml::from_str(text).map_err(|e| e.message().to_string())?;
        let mut callers = Callers::default();
        for (i, t) in file.tokens.into_iter().enumerate() {
            let key = |k: &str| format!("tokens[{i}].{k}");
            let digest = parse_sha256(&t.sha256).ok_or_else(|| {
                format!(
                    "{}: must be 64 hex digits (print one with `vmware-grpc-gateway hash-token`)",
                    key("sha256")
                )
            })?;
            let grant = grant(&t.name, &t.scopes, &t.upstreams, &key)?;
            callers.tokens.push((digest, Arc::new(grant)));
        }
        for (i, c) in file.clients.into_iter().enumerate() {
            let key = |k: &str| format!("clients[{i}].{k}");
            if c.matches.trim().is_empty() {
                return Err(format!("{}: must name a SAN or subject CN", key("match")));
            }
            let grant = grant(&c.matches, &c.scopes, &c.upstreams, &key)?;
            callers.clients.push((c.matches, Arc::new(grant)));
        }
        Ok(callers)
    }

    /// The grant of the caller presenting bearer `token`. Every entry is compared, in
    /// constant time, whatever matches.
    pub fn by_token(&self, token: &str) -> Option<Arc<Grant>> {
        let presented = sha256(token.as_bytes());
        let mut found = None;
        for (digest, grant) in &self.tokens {
            if constant_time_eq(digest, &presented) {
                found = Some(grant.clone());
            }
        }
        found
    }

    /// The grant of an mTLS client whose verified certificate names one of `identities`
    /// (SAN DNS names and URIs, the subject CN).
    pub fn by_client(&self, identities: &[String]) -> Option<Arc<Grant>> {
        self.clients
            .iter()
            .find(|(m, _)| identities.iter().any(|id| id == m))
            .map(|(_, g)| g.clone())
    }
}

fn grant(
    name: &str,
    scopes: &[String],
    upstreams: &[String],
    key: &dyn Fn(&str) -> String,
) -> Result<Grant, String> {
    let mut set = BTreeSet::new();
    for s in scopes {
        match s.as_str() {
            "*" => set.extend([Scope::Read, Scope::Cancel, Scope::RunspacesWrite]),
            "read" => {
                set.insert(Scope::Read);
            }
            "cancel" => {
                set.insert(Scope::Cancel);
            }
            "runspaces.write" => {
                set.insert(Scope::RunspacesWrite);
            }
            other => {
                return Err(format!(
                    "{}: unknown scope '{other}' (read, cancel, runspaces.write or *)",
                    key("scopes")
                ));
            }
        }
    }
    let upstreams = if upstreams.iter().any(|u| u == "*") {
        None
    } else {
        Some(upstreams.iter().cloned().collect())
    };
    Ok(Grant {
        name: name.to_string(),
        scopes: set,
        upstreams,
    })
}

/// SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// The tokens-file line for `token`: what `hash-token` prints.
pub fn hash_line(token: &str) -> String {
    let hex: String = sha256(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256 = \"{hex}\"")
}

fn parse_sha256(s: &str) -> Option<[u8; 32]> {
    let s = s.trim();
    if s.len() != 64 || !s.bytes().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// Equality that looks at every byte whatever differs.
fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The callers of the tokens file at `path`, kept current: a changed file (its contents,
/// read through the path, so a Kubernetes symlink swap counts) is parsed again; one that
/// does not parse leaves the last good callers in place and logs why.
pub struct CallerStore {
    path: PathBuf,
    current: RwLock<(Vec<u8>, Arc<Callers>)>,
}

impl CallerStore {
    /// Reads the file once; a missing or bad file is an error saying why (for the
    /// configuration key `auth.tokens_file`).
    pub fn load(path: &Path) -> Result<Arc<CallerStore>, String> {
        let text =
            std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let callers = Callers::parse(&String::from_utf8_lossy(&text))
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(Arc::new(CallerStore {
            path: path.to_path_buf(),
            current: RwLock::new((text, Arc::new(callers))),
        }))
    }

    pub fn callers(&self) -> Arc<Callers> {
        self.current.read().map(|c| c.1.clone()).unwrap_or_default()
    }

    /// Reads the file again if it changed; true when new callers took effect.
    pub fn refresh(&self) -> bool {
        let Ok(text) = std::fs::read(&self.path) else {
            tracing::warn!(file = %self.path.display(), "tokens file unreadable: keeping the callers already loaded");
            return false;
        };
        if self.current.read().is_ok_and(|c| c.0 == text) {
            return false;
        }
        match Callers::parse(&String::from_utf8_lossy(&text)) {
            Ok(callers) => {
                tracing::info!(file = %self.path.display(), tokens = callers.tokens.len(), clients = callers.clients.len(), "tokens file reloaded");
                if let Ok(mut c) = self.current.write() {
                    *c = (text, Arc::new(callers));
                }
                true
            }
            Err(e) => {
                tracing::warn!(file = %self.path.display(), error = %e, "tokens file changed but does not parse: keeping the callers already loaded");
                false
            }
        }
    }

    /// Checks the file every `every` until the returned watch or the store is dropped.
    pub fn watch(self: &Arc<Self>, every: Duration) -> crate::reload::Watch {
        crate::reload::every(self, every, |store: &CallerStore| {
            store.refresh();
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(entries: &str) -> Callers {
        Callers::parse(entries).unwrap()
    }

    #[test]
    fn a_token_is_known_by_its_hash_with_its_scopes_and_upstreams() {
        let line = hash_line("s3cret");
        let callers = file(&format!(
            "[[tokens]]\nname = \"ci\"\n{line}\nscopes = [\"read\"]\nupstreams = [\"vc1\"]\n"
        ));
        let g = callers.by_token("s3cret").expect("known");
        assert_eq!(g.name, "ci");
        assert!(g.has(Scope::Read) && !g.has(Scope::Cancel));
        assert!(g.may_use("vc1") && !g.may_use("vc2"));
        assert!(callers.by_token("s3cre").is_none());
        assert!(callers.by_token("").is_none());
    }

    #[test]
    fn star_means_every_scope_and_upstream() {
        let callers = file(&format!(
            "[[tokens]]\nname = \"ops\"\n{}\nscopes = [\"*\"]\nupstreams = [\"*\"]\n",
            hash_line("t")
        ));
        let g = callers.by_token("t").unwrap();
        assert!(g.has(Scope::RunspacesWrite) && g.may_use("anything"));
    }

    #[test]
    fn bad_entries_are_named() {
        let bad_hash = Callers::parse(
            "[[tokens]]\nname = \"x\"\nsha256 = \"abc\"\nscopes = []\nupstreams = []\n",
        )
        .unwrap_err();
        assert!(bad_hash.starts_with("tokens[0].sha256"), "{bad_hash}");
        let bad_scope = Callers::parse(&format!(
            "[[tokens]]\nname = \"x\"\n{}\nscopes = [\"write\"]\nupstreams = []\n",
            hash_line("t")
        ))
        .unwrap_err();
        assert!(bad_scope.starts_with("tokens[0].scopes"), "{bad_scope}");
        assert!(Callers::parse("[[tokens]]\nname = 1\n").is_err());
    }

    #[test]
    fn clients_match_a_certificate_identity() {
        let callers = file(
            "[[clients]]\nmatch = \"spiffe://cluster.local/ns/ops/sa/runner\"\nscopes = [\"cancel\"]\nupstreams = [\"*\"]\n",
        );
        let ids = vec![
            "runner.example".to_string(),
            "spiffe://cluster.local/ns/ops/sa/runner".to_string(),
        ];
        assert!(callers.by_client(&ids).unwrap().has(Scope::Cancel));
        assert!(callers.by_client(&["other".to_string()]).is_none());
    }

    #[test]
    fn methods_need_their_scopes() {
        assert_eq!(
            Scope::of_method("/vmware.gateway.v1.TaskService/CancelTask"),
            Scope::Cancel
        );
        assert_eq!(
            Scope::of_method("/vmware.gateway.v1.RunspaceService/DeleteRunspace"),
            Scope::RunspacesWrite
        );
        assert_eq!(
            Scope::of_method("/vmware.gateway.v1.UpstreamService/ListUpstreams"),
            Scope::Read
        );
    }

    #[test]
    fn hash_line_is_the_documented_sha256() {
        // What `printf test | sha256sum` prints.
        assert_eq!(
            hash_line("test"),
            "sha256 = \"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\""
        );
    }
}
