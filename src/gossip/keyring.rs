//! The gossip keyring: several keys, one primary (docs/gossip.md, Keyring).
//!
//! Messages are sealed with the primary and opened with any installed key, so a key can be
//! rotated in a running cluster (install, use, remove) without two members ever failing to read
//! each other. The keyring is kept in `<data_dir>/serf/local.keyring` (Consul's path and
//! format), written atomically after every change and before the change is answered, so a
//! restarted agent comes back with the rotated keys rather than the `-encrypt` it was started
//! with. Operations reach every member over the gossip TCP port ([`Syncer`]), sealed with a key
//! the receiver must hold.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;
use serde::{Deserialize, Serialize};
use tokio::net::TcpStream;

use super::envelope::{Kind, Sealer};
use super::key::{GossipKey, KeyError};
use super::sync::{Syncer, MAX_FRAME};
use crate::frame::{read_frame, write_frame};

/// Where the keyring is kept, under the data dir (Consul's path).
pub const KEYRING_FILE: &str = "serf/local.keyring";
/// Most members asked at once by one cluster-wide operation.
pub const MAX_CONCURRENT_ASKS: usize = 16;

/// An ordered set of gossip keys, never empty; the first is the primary.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Keyring {
    keys: Vec<GossipKey>,
}

/// Why a keyring operation was refused. The texts never hold a key: they are logged and
/// answered to whoever asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyringError {
    /// This agent has no keyring: it gossips in plain text. The operator starts it with a key.
    #[error("gossip encryption is not enabled on this agent; start it with -encrypt")]
    NotEnabled,
    /// `use` or `remove` of a key this member does not hold.
    #[error("the key is not installed; install it first with -install")]
    NotInstalled,
    /// `remove` of the primary key, which would leave the member unable to seal.
    #[error("the key is the primary key and cannot be removed; make another key primary with -use first")]
    RemovePrimary,
    /// The keyring file could not be written; the change was not made.
    #[error("{0}")]
    Persist(String),
}

/// What a keyring operation asks of every member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyringOp {
    /// Answer the keys held.
    List,
    /// Add a key (at the end; nothing to do if it is held already).
    Install(GossipKey),
    /// Make a held key the primary.
    Use(GossipKey),
    /// Remove a held key that is not the primary.
    Remove(GossipKey),
}

impl Keyring {
    /// A keyring of one key, the primary.
    pub fn new(primary: GossipKey) -> Self {
        Self {
            keys: vec![primary],
        }
    }

    /// A keyring of `keys`, the first primary, duplicates dropped; `None` if empty.
    pub fn from_keys(keys: Vec<GossipKey>) -> Option<Self> {
        let mut unique: Vec<GossipKey> = Vec::with_capacity(keys.len());
        for k in keys {
            if !unique.contains(&k) {
                unique.push(k);
            }
        }
        (!unique.is_empty()).then_some(Self { keys: unique })
    }

    /// The key every message is sealed with.
    pub fn primary(&self) -> &GossipKey {
        &self.keys[0]
    }

    /// Every key, primary first: the order messages are opened in.
    pub fn keys(&self) -> &[GossipKey] {
        &self.keys
    }

    /// The keyring after `op`; `List` changes nothing.
    pub fn apply(&self, op: &KeyringOp) -> Result<Keyring, KeyringError> {
        let mut keys = self.keys.clone();
        match op {
            KeyringOp::List => {}
            KeyringOp::Install(k) => {
                if !keys.contains(k) {
                    keys.push(k.clone());
                }
            }
            KeyringOp::Use(k) => {
                let i = keys
                    .iter()
                    .position(|x| x == k)
                    .ok_or(KeyringError::NotInstalled)?;
                let k = keys.remove(i);
                keys.insert(0, k);
            }
            KeyringOp::Remove(k) => {
                let i = keys
                    .iter()
                    .position(|x| x == k)
                    .ok_or(KeyringError::NotInstalled)?;
                if i == 0 {
                    return Err(KeyringError::RemovePrimary);
                }
                keys.remove(i);
            }
        }
        Ok(Keyring { keys })
    }
}

/// Why the keyring file kept the agent from starting. Each names the file and the fix; none
/// shows a key.
#[derive(Debug, thiserror::Error)]
pub enum KeyringFileError {
    #[error("cannot read the keyring file {}: {source}; fix its permissions, or remove it to start from -encrypt", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the keyring file {} is not a JSON array of base64 keys ({what} at line {line}, column {column}); fix it, or remove it to start from -encrypt", path.display())]
    Parse {
        path: PathBuf,
        what: &'static str,
        line: usize,
        column: usize,
    },
    #[error("the keyring file {} holds no key; remove it to start from -encrypt", path.display())]
    Empty { path: PathBuf },
    #[error("the keyring file {} holds an invalid key (entry {index}): {reason}; fix the entry, or remove the file to start from -encrypt", path.display())]
    BadKey {
        path: PathBuf,
        index: usize,
        reason: &'static str,
    },
    #[error("cannot write the keyring file {}: {source}; fix the data_dir's permissions", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The keyring an agent starts with, and what it was made of.
#[derive(Debug)]
pub struct Loaded {
    /// `None`: no file and no `-encrypt`, so gossip is plain.
    pub keyring: Option<Keyring>,
    /// The keyring file's path under the data dir.
    pub file: PathBuf,
    /// The one warning line to log, when `-encrypt` was ignored for the file.
    pub warning: Option<String>,
}

/// The keyring file's path in `data_dir`.
pub fn keyring_path(data_dir: &Path) -> PathBuf {
    data_dir.join(KEYRING_FILE)
}

/// The keyring at start: the file if it exists (`-encrypt` is then ignored, with a warning if
/// it is not the file's primary), else one made of `-encrypt` and written to the file, else
/// none. A file that is unreadable, unparsable or empty is an error, never a plain start.
pub fn load_or_create(
    data_dir: &Path,
    encrypt: Option<&GossipKey>,
) -> Result<Loaded, KeyringFileError> {
    let file = keyring_path(data_dir);
    match read(&file)? {
        Some(keyring) => {
            let warning = encrypt.filter(|k| *k != keyring.primary()).map(|_| {
                format!(
                    "the keyring file {} holds the gossip keys; -encrypt is ignored (it is not the keyring's primary key)",
                    file.display()
                )
            });
            Ok(Loaded {
                keyring: Some(keyring),
                file,
                warning,
            })
        }
        None => {
            let keyring = encrypt.cloned().map(Keyring::new);
            if let Some(k) = &keyring {
                save(&file, k).map_err(|source| KeyringFileError::Write {
                    path: file.clone(),
                    source,
                })?;
            }
            Ok(Loaded {
                keyring,
                file,
                warning: None,
            })
        }
    }
}

/// Reads the keyring file; `None` if there is none.
pub fn read(path: &Path) -> Result<Option<Keyring>, KeyringFileError> {
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(KeyringFileError::Read {
                path: path.into(),
                source,
            })
        }
    };
    // The parser's own message may quote the file's content (a key), so only its category
    // and position are shown.
    let entries: Vec<String> =
        serde_json::from_slice(&text).map_err(|e| KeyringFileError::Parse {
            path: path.into(),
            what: match e.classify() {
                serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
                    "not valid JSON"
                }
                _ => "not an array of strings",
            },
            line: e.line(),
            column: e.column(),
        })?;
    let mut keys = Vec::with_capacity(entries.len());
    for (i, s) in entries.iter().enumerate() {
        let key = GossipKey::from_base64(s).map_err(|e| KeyringFileError::BadKey {
            path: path.into(),
            index: i + 1,
            reason: key_problem(&e),
        })?;
        keys.push(key);
    }
    Keyring::from_keys(keys)
        .map(Some)
        .ok_or_else(|| KeyringFileError::Empty { path: path.into() })
}

/// What is wrong with a key, in words that never include it.
pub fn key_problem(e: &KeyError) -> &'static str {
    match e {
        KeyError::NotBase64 => "not standard base64",
        KeyError::WrongLength(_) => "does not decode to 16, 24 or 32 bytes",
    }
}

/// The keyring as the file holds it: a JSON array of base64 keys, primary first.
fn to_json(keyring: &Keyring) -> Vec<u8> {
    let b64: Vec<String> = keyring.keys.iter().map(encode).collect();
    serde_json::to_vec(&b64).expect("strings encode")
}

/// A key in standard base64, as the operator gives it.
pub fn encode(key: &GossipKey) -> String {
    base64::engine::general_purpose::STANDARD.encode(&key.0)
}

/// Writes the keyring file atomically: a temp file in the same dir (0600), fsync, rename,
/// fsync of the dir (0700). A crash leaves the old keyring or the new one.
pub fn save(path: &Path, keyring: &Keyring) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    let tmp = dir.join(".local.keyring.tmp");
    {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&to_json(keyring))?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

/// The agent's keyring as operations change it: the [`Sealer`] that uses it and the file that
/// keeps it, one operation at a time.
pub(super) struct KeyringStore {
    pub(super) sealer: Arc<Sealer>,
    /// `None` in tests that keep nothing on disk.
    pub(super) file: Option<PathBuf>,
    pub(super) lock: tokio::sync::Mutex<()>,
}

impl KeyringStore {
    /// Applies `op` to this agent: persisted first, then used. The keys held after it.
    pub(super) async fn apply(&self, op: &KeyringOp) -> Result<Keyring, KeyringError> {
        let _one_at_a_time = self.lock.lock().await;
        let current = self.sealer.keyring().ok_or(KeyringError::NotEnabled)?;
        let next = current.apply(op)?;
        if next != current {
            if let Some(file) = &self.file {
                save(file, &next).map_err(|e| {
                    KeyringError::Persist(format!(
                        "cannot write the keyring file {}: {e}; the change was not made",
                        file.display()
                    ))
                })?;
            }
            self.sealer.set_keyring(next.clone());
            tracing::info!(
                op = op.name(),
                keys = next.keys.len(),
                "gossip keyring changed"
            );
        }
        Ok(next)
    }
}

impl KeyringOp {
    fn name(&self) -> &'static str {
        match self {
            KeyringOp::List => "list",
            KeyringOp::Install(_) => "install",
            KeyringOp::Use(_) => "use",
            KeyringOp::Remove(_) => "remove",
        }
    }

    fn to_wire(&self) -> WireOp {
        match self {
            KeyringOp::List => WireOp::List,
            KeyringOp::Install(k) => WireOp::Install(k.0.clone()),
            KeyringOp::Use(k) => WireOp::Use(k.0.clone()),
            KeyringOp::Remove(k) => WireOp::Remove(k.0.clone()),
        }
    }
}

/// `KeyringOp` on the wire (postcard; docs/gossip.md, Keyring).
#[derive(Serialize, Deserialize)]
enum WireOp {
    List,
    Install(Vec<u8>),
    Use(Vec<u8>),
    Remove(Vec<u8>),
}

impl WireOp {
    fn into_op(self) -> Option<KeyringOp> {
        let key = |b: Vec<u8>| [16, 24, 32].contains(&b.len()).then_some(GossipKey(b));
        Some(match self {
            WireOp::List => KeyringOp::List,
            WireOp::Install(b) => KeyringOp::Install(key(b)?),
            WireOp::Use(b) => KeyringOp::Use(key(b)?),
            WireOp::Remove(b) => KeyringOp::Remove(key(b)?),
        })
    }
}

/// A member's answer: its keys after the operation, primary first, or why it refused.
#[derive(Serialize, Deserialize)]
enum KeyringAnswer {
    Ok(Vec<Vec<u8>>),
    Err(String),
}

/// One member's answer to a cluster-wide operation.
#[derive(Debug, Clone)]
pub struct NodeAnswer {
    pub node: String,
    /// The member's keyring after the operation, or why it failed (never a key).
    pub result: Result<Keyring, String>,
}

/// Every asked member's answer, this agent's first.
#[derive(Debug, Clone)]
pub struct KeyringReport {
    pub answers: Vec<NodeAnswer>,
}

impl KeyringReport {
    /// The members that failed, grouped by reason: `2/5 members failed: n4, n5: reason`; `None`
    /// if every member applied the operation.
    pub fn failure(&self) -> Option<String> {
        let mut by_reason: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for a in &self.answers {
            if let Err(e) = &a.result {
                by_reason.entry(e).or_default().push(&a.node);
            }
        }
        if by_reason.is_empty() {
            return None;
        }
        let failed: usize = by_reason.values().map(Vec::len).sum();
        let parts: Vec<String> = by_reason
            .iter()
            .map(|(reason, nodes)| format!("{}: {reason}", nodes.join(", ")))
            .collect();
        Some(format!(
            "{failed}/{} members failed: {}",
            self.answers.len(),
            parts.join("; ")
        ))
    }
}

impl Syncer {
    /// Sends `op` to the member at `addr` and reads its answer, within the sync deadline. The
    /// request is sealed with this agent's primary key whatever `encrypt_verify_outgoing` says.
    pub(super) async fn ask_keyring(
        &self,
        addr: SocketAddr,
        op: &KeyringOp,
    ) -> Result<Keyring, String> {
        let body = postcard::to_allocvec(&op.to_wire()).map_err(|e| e.to_string())?;
        let frame = self
            .sealer
            .seal_encrypted(Kind::KeyringRequest, &body)
            .ok_or_else(|| KeyringError::NotEnabled.to_string())?;
        let exchange = async {
            let mut stream = self
                .connect(addr)
                .await
                .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
            write_frame(&mut stream, &frame)
                .await
                .map_err(|e| format!("connection to {addr} failed: {e}"))?;
            let reply = read_frame(&mut stream, MAX_FRAME)
                .await
                .map_err(|e| format!("no answer from {addr}: {e}"))?;
            match self.sealer.open(&reply) {
                Ok((Kind::KeyringReply, body)) => match postcard::from_bytes(&body) {
                    Ok(KeyringAnswer::Ok(keys)) => {
                        let keys = keys.into_iter().map(GossipKey).collect();
                        Keyring::from_keys(keys).ok_or_else(|| "answered no key".to_string())
                    }
                    Ok(KeyringAnswer::Err(e)) => Err(e),
                    Err(e) => Err(format!("malformed keyring answer: {e}")),
                },
                Ok((Kind::Refused, reason)) => {
                    Err(format!("refused: {}", String::from_utf8_lossy(&reason)))
                }
                Ok((kind, _)) => Err(format!("unexpected {kind:?} answer")),
                Err(e) => Err(e.to_string()),
            }
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| format!("no answer within {:?}", self.timeout))?
    }

    /// Answers a keyring request that opened (so it was sealed with a key this agent holds):
    /// applies it, persisted, and answers the keys held after it, sealed.
    pub(super) async fn answer_keyring(
        &self,
        stream: &mut TcpStream,
        peer: SocketAddr,
        body: &[u8],
    ) {
        let answer = match postcard::from_bytes::<WireOp>(body)
            .ok()
            .and_then(WireOp::into_op)
        {
            None => KeyringAnswer::Err("malformed keyring request".into()),
            Some(op) => match self.keyring.apply(&op).await {
                Ok(k) => KeyringAnswer::Ok(k.keys.iter().map(|k| k.0.clone()).collect()),
                Err(e) => {
                    tracing::warn!(%peer, op = op.name(), reason = %e, "refused a gossip keyring operation");
                    KeyringAnswer::Err(e.to_string())
                }
            },
        };
        let body = postcard::to_allocvec(&answer).expect("answers encode");
        // The request opened, so there is a keyring to seal with.
        if let Some(frame) = self.sealer.seal_encrypted(Kind::KeyringReply, &body) {
            let _ = write_frame(stream, &frame).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> GossipKey {
        GossipKey(vec![b; 32])
    }

    #[test]
    fn use_and_remove_follow_the_rules() {
        let ring = Keyring::new(key(1));
        let ring = ring.apply(&KeyringOp::Install(key(2))).unwrap();
        assert_eq!(ring.keys(), &[key(1), key(2)]);
        assert_eq!(ring.apply(&KeyringOp::Install(key(2))).unwrap(), ring);
        assert_eq!(
            ring.apply(&KeyringOp::Remove(key(1))),
            Err(KeyringError::RemovePrimary)
        );
        assert_eq!(
            ring.apply(&KeyringOp::Use(key(3))),
            Err(KeyringError::NotInstalled)
        );
        assert_eq!(
            ring.apply(&KeyringOp::Remove(key(3))),
            Err(KeyringError::NotInstalled)
        );
        let ring = ring.apply(&KeyringOp::Use(key(2))).unwrap();
        assert_eq!(ring.primary(), &key(2));
        let ring = ring.apply(&KeyringOp::Remove(key(1))).unwrap();
        assert_eq!(ring.keys(), &[key(2)]);
        for e in [KeyringError::RemovePrimary, KeyringError::NotInstalled] {
            assert!(!e.to_string().contains(&encode(&key(2))));
        }
    }

    #[test]
    fn the_file_round_trips_primary_first_and_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = keyring_path(dir.path());
        assert!(read(&path).unwrap().is_none());
        let ring = Keyring::from_keys(vec![key(2), key(1), GossipKey(vec![3; 16])]).unwrap();
        save(&path, &ring).unwrap();
        assert_eq!(read(&path).unwrap(), Some(ring.clone()));
        let on_disk: Vec<String> = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(on_disk[0], encode(&key(2)));
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
    }

    #[test]
    fn the_file_wins_over_encrypt_and_encrypt_creates_it() {
        let dir = tempfile::tempdir().unwrap();
        let none = load_or_create(dir.path(), None).unwrap();
        assert!(none.keyring.is_none());
        assert!(!none.file.exists(), "no key, no file");
        let first = load_or_create(dir.path(), Some(&key(1))).unwrap();
        assert_eq!(first.keyring, Some(Keyring::new(key(1))));
        assert!(first.warning.is_none());
        save(&first.file, &Keyring::new(key(2))).unwrap();
        let again = load_or_create(dir.path(), Some(&key(1))).unwrap();
        assert_eq!(again.keyring, Some(Keyring::new(key(2))));
        let warning = again.warning.expect("a warning");
        assert!(warning.contains("-encrypt is ignored"), "{warning}");
        assert!(!warning.contains(&encode(&key(1))) && !warning.contains(&encode(&key(2))));
        assert!(load_or_create(dir.path(), Some(&key(2)))
            .unwrap()
            .warning
            .is_none());
    }

    #[test]
    fn a_bad_file_is_an_error_naming_it_and_never_a_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = keyring_path(dir.path());
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let secret = encode(&key(9));
        for (text, needle) in [
            (format!("[\"{secret}\""), "not valid JSON"),
            (format!("{{\"k\": \"{secret}\"}}"), "not an array"),
            ("[]".to_string(), "holds no key"),
            (format!("[\"{secret}\", \"c2hvcnQ=\"]"), "entry 2"),
        ] {
            std::fs::write(&path, &text).unwrap();
            let e = load_or_create(dir.path(), Some(&key(1)))
                .unwrap_err()
                .to_string();
            assert!(e.contains(needle), "{text}: {e}");
            assert!(e.contains(&path.display().to_string()), "{e}");
            assert!(!e.contains(&secret), "{e}");
        }
    }

    #[test]
    fn a_report_groups_failures_by_reason() {
        let ok = |n: &str| NodeAnswer {
            node: n.into(),
            result: Ok(Keyring::new(key(1))),
        };
        let bad = |n: &str, e: &str| NodeAnswer {
            node: n.into(),
            result: Err(e.into()),
        };
        assert!(KeyringReport {
            answers: vec![ok("n1"), ok("n2")]
        }
        .failure()
        .is_none());
        let r = KeyringReport {
            answers: vec![ok("n1"), bad("n2", "x"), bad("n3", "x"), bad("n4", "y")],
        };
        assert_eq!(r.failure().unwrap(), "3/4 members failed: n2, n3: x; n4: y");
    }
}
