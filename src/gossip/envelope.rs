//! The envelope around every gossip message, UDP datagram or TCP frame (docs/gossip.md).
//!
//! ```text
//! 0      2        3       4
//! +------+--------+-------+------------------------------------------------------------+
//! | "MU" | ver=1  | flags | body, or (flags & 1) nonce[12] ‖ AES-256-GCM(body) ‖ tag[16] |
//! +------+--------+-------+------------------------------------------------------------+
//! body = kind u8 ‖ dc_len u8 ‖ datacenter ‖ payload
//! ```
//! The four header bytes are the additional authenticated data, so a flipped flag or version is
//! caught by the tag. The datacenter travels in every body, so packets of another datacenter are
//! dropped before anything else looks at them. Random 96-bit nonces: at gossip rates a key sees
//! far fewer than the 2^32 messages NIST allows for random nonces with one key.

use aes_gcm::aead::consts::U12;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::aes::Aes192;
use aes_gcm::{Aes128Gcm, Aes256Gcm, AesGcm, Nonce};
use std::sync::{Arc, RwLock};

use rand::Rng;

use super::key::GossipKey;
use super::keyring::Keyring;

const MAGIC: &[u8; 2] = b"MU";
const VERSION: u8 = 1;
const FLAG_ENCRYPTED: u8 = 1;
const HEADER_LEN: usize = 4;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// Bytes the envelope adds around a payload, at most (encrypted, longest datacenter name).
pub const MAX_OVERHEAD: usize = HEADER_LEN + NONCE_LEN + TAG_LEN + 2 + 255;

/// What a message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// A foca SWIM packet (UDP).
    Swim = 1,
    /// TCP: a joiner's (or anti-entropy peer's) full state, asking for ours.
    SyncRequest = 2,
    /// TCP: the answer to a sync request: our full state.
    SyncReply = 3,
    /// TCP: the sync was refused; payload is the reason in UTF-8. May be sent unencrypted, since
    /// it is the answer to a peer whose envelope could not be opened.
    Refused = 4,
    /// TCP, encrypted only: a keyring operation (docs/gossip.md, Keyring).
    KeyringRequest = 5,
    /// TCP, encrypted only: a member's answer to a keyring operation.
    KeyringReply = 6,
}

impl Kind {
    fn from_u8(b: u8) -> Option<Self> {
        Some(match b {
            1 => Self::Swim,
            2 => Self::SyncRequest,
            3 => Self::SyncReply,
            4 => Self::Refused,
            5 => Self::KeyringRequest,
            6 => Self::KeyringReply,
            _ => return None,
        })
    }
}

/// Why an incoming message was dropped. Each is counted separately in the gossip stats.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// Not ours at all (a scanner, another protocol, a newer wire version): drop it; nothing
    /// for anyone to do unless the counter keeps rising.
    #[error("not a muster gossip message (bad length, magic or version)")]
    Malformed,
    /// The sender has no key and this agent requires one: drop it; the operator gives the
    /// sender the cluster's `-encrypt` key.
    #[error("unencrypted message, but this agent requires gossip encryption (-encrypt); the sender has no key")]
    Unencrypted,
    /// The sender encrypts and this agent has no key: drop it; the operator gives this agent
    /// the cluster's `-encrypt` key.
    #[error("encrypted message, but this agent has no gossip key; start it with the cluster's -encrypt key")]
    UnexpectedEncrypted,
    /// Wrong key (or a forged or damaged message): drop it; the operator makes the keys agree.
    #[error("message could not be decrypted: the sender uses a different -encrypt key")]
    Decrypt,
    /// A member of another datacenter: drop it, by design; the operator keeps datacenters'
    /// gossip apart or fixes the sender's `-datacenter`.
    #[error("message from datacenter {0:?}, this agent is in another; dropped")]
    WrongDatacenter(String),
}

/// AES-GCM with the key size the operator's key has.
enum Cipher {
    Aes128(Aes128Gcm),
    Aes192(AesGcm<Aes192, U12>),
    Aes256(Aes256Gcm),
}

impl Cipher {
    fn new(key: &[u8]) -> Self {
        match key.len() {
            16 => Self::Aes128(Aes128Gcm::new_from_slice(key).expect("16-byte key")),
            24 => Self::Aes192(AesGcm::new_from_slice(key).expect("24-byte key")),
            _ => Self::Aes256(
                Aes256Gcm::new_from_slice(key).expect("32-byte key, validated by config"),
            ),
        }
    }

    fn encrypt(&self, nonce: &[u8], p: Payload<'_, '_>) -> Result<Vec<u8>, aes_gcm::Error> {
        let n = Nonce::<U12>::from_slice(nonce);
        match self {
            Self::Aes128(c) => c.encrypt(n, p),
            Self::Aes192(c) => c.encrypt(n, p),
            Self::Aes256(c) => c.encrypt(n, p),
        }
    }

    fn decrypt(&self, nonce: &[u8], p: Payload<'_, '_>) -> Result<Vec<u8>, aes_gcm::Error> {
        let n = Nonce::<U12>::from_slice(nonce);
        match self {
            Self::Aes128(c) => c.decrypt(n, p),
            Self::Aes192(c) => c.decrypt(n, p),
            Self::Aes256(c) => c.decrypt(n, p),
        }
    }
}

/// What an agent with a keyring requires of messages: Consul's `encrypt_verify_incoming` and
/// `encrypt_verify_outgoing`, both true by default; false only while encryption is being turned
/// on in a running cluster (docs/gossip.md, "Turning encryption on in a running cluster").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verify {
    /// False: plain messages (but never keyring ones) are accepted too.
    pub incoming: bool,
    /// False: messages (but never keyring ones) are sent plain.
    pub outgoing: bool,
}

impl Default for Verify {
    fn default() -> Self {
        Self {
            incoming: true,
            outgoing: true,
        }
    }
}

/// The keyring with a cipher per key, primary first; replaced whole on a change.
struct Keys {
    keyring: Keyring,
    ciphers: Vec<Cipher>,
}

impl Keys {
    fn new(keyring: Keyring) -> Self {
        let ciphers = keyring.keys().iter().map(|k| Cipher::new(&k.0)).collect();
        Self { keyring, ciphers }
    }
}

/// Seals and opens envelopes for one agent: its datacenter and its keyring, if any. The
/// keyring is shared-mutable (behind a lock, swapped whole) because keyring operations change
/// it while the driver and the syncer use it; nothing else changes it.
pub struct Sealer {
    datacenter: String,
    keys: RwLock<Option<Arc<Keys>>>,
    verify: Verify,
}

impl Sealer {
    /// A sealer with at most one key and strict verification.
    pub fn new(datacenter: &str, key: Option<&GossipKey>) -> Self {
        Self::with_keyring(
            datacenter,
            key.cloned().map(Keyring::new),
            Verify::default(),
        )
    }

    /// A sealer with a keyring (or none: plain gossip) and what it verifies.
    pub fn with_keyring(datacenter: &str, keyring: Option<Keyring>, verify: Verify) -> Self {
        assert!(
            datacenter.len() <= 255,
            "datacenter names are validated to 128 bytes"
        );
        Self {
            datacenter: datacenter.to_string(),
            keys: RwLock::new(keyring.map(|k| Arc::new(Keys::new(k)))),
            verify,
        }
    }

    fn keys(&self) -> Option<Arc<Keys>> {
        self.keys.read().expect("keyring lock").clone()
    }

    /// Whether this agent has a keyring (messages are encrypted, unless
    /// `encrypt_verify_outgoing` is false).
    pub fn encrypted(&self) -> bool {
        self.keys().is_some()
    }

    /// The keyring in use, if any.
    pub fn keyring(&self) -> Option<Keyring> {
        self.keys().map(|k| k.keyring.clone())
    }

    /// Replaces the keyring: only a keyring operation does (docs/gossip.md, Keyring).
    pub(crate) fn set_keyring(&self, keyring: Keyring) {
        *self.keys.write().expect("keyring lock") = Some(Arc::new(Keys::new(keyring)));
    }

    /// Wraps `payload` of `kind` for sending: sealed with the primary key, or plain without a
    /// keyring or with `encrypt_verify_outgoing = false`.
    pub fn seal(&self, kind: Kind, payload: &[u8]) -> Vec<u8> {
        let keys = self.keys().filter(|_| self.verify.outgoing);
        self.seal_with(kind, payload, keys.as_deref())
    }

    /// Wraps `payload` sealed with the primary key whatever `encrypt_verify_outgoing` says (the
    /// keyring kinds); `None` without a keyring.
    pub fn seal_encrypted(&self, kind: Kind, payload: &[u8]) -> Option<Vec<u8>> {
        let keys = self.keys()?;
        Some(self.seal_with(kind, payload, Some(&keys)))
    }

    fn seal_with(&self, kind: Kind, payload: &[u8], keys: Option<&Keys>) -> Vec<u8> {
        let mut body = Vec::with_capacity(2 + self.datacenter.len() + payload.len());
        body.push(kind as u8);
        body.push(self.datacenter.len() as u8);
        body.extend_from_slice(self.datacenter.as_bytes());
        body.extend_from_slice(payload);
        let mut out = Vec::with_capacity(HEADER_LEN + NONCE_LEN + body.len() + TAG_LEN);
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        match keys.map(|k| &k.ciphers[0]) {
            None => {
                out.push(0);
                out.extend_from_slice(&body);
            }
            Some(cipher) => {
                out.push(FLAG_ENCRYPTED);
                let mut nonce = [0u8; NONCE_LEN];
                rand::rng().fill_bytes(&mut nonce);
                let sealed = cipher
                    .encrypt(
                        &nonce,
                        Payload {
                            msg: &body,
                            aad: &out[..HEADER_LEN],
                        },
                    )
                    .expect("AES-GCM encryption of an in-memory buffer cannot fail");
                out.extend_from_slice(&nonce);
                out.extend_from_slice(&sealed);
            }
        }
        out
    }

    /// A refusal that any peer can read, whatever its key: sent when we cannot open its message.
    pub fn seal_plain_refusal(reason: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + 2 + reason.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&[VERSION, 0, Kind::Refused as u8, 0]);
        out.extend_from_slice(reason.as_bytes());
        out
    }

    /// Opens a received message: checks the header, decrypts (primary key first, then the
    /// others), checks the datacenter. An unencrypted refusal is always readable, so that a
    /// joiner learns why it was refused; a plain keyring message never is.
    pub fn open(&self, data: &[u8]) -> Result<(Kind, Vec<u8>), OpenError> {
        if data.len() < HEADER_LEN + 2 || &data[..2] != MAGIC || data[2] != VERSION {
            return Err(OpenError::Malformed);
        }
        let flags = data[3];
        if flags & !FLAG_ENCRYPTED != 0 {
            return Err(OpenError::Malformed);
        }
        let encrypted = flags & FLAG_ENCRYPTED != 0;
        let body: Vec<u8> = match (encrypted, self.keys()) {
            (false, None) => data[HEADER_LEN..].to_vec(),
            (false, Some(_)) => {
                if data[HEADER_LEN] == Kind::Refused as u8 && data[HEADER_LEN + 1] == 0 {
                    return Ok((Kind::Refused, data[HEADER_LEN + 2..].to_vec()));
                }
                if self.verify.incoming {
                    return Err(OpenError::Unencrypted);
                }
                data[HEADER_LEN..].to_vec()
            }
            (true, None) => return Err(OpenError::UnexpectedEncrypted),
            (true, Some(keys)) => {
                if data.len() < HEADER_LEN + NONCE_LEN + TAG_LEN + 2 {
                    return Err(OpenError::Malformed);
                }
                let nonce = &data[HEADER_LEN..HEADER_LEN + NONCE_LEN];
                let payload = || Payload {
                    msg: &data[HEADER_LEN + NONCE_LEN..],
                    aad: &data[..HEADER_LEN],
                };
                keys.ciphers
                    .iter()
                    .find_map(|c| c.decrypt(nonce, payload()).ok())
                    .ok_or(OpenError::Decrypt)?
            }
        };
        if body.len() < 2 {
            return Err(OpenError::Malformed);
        }
        let kind = Kind::from_u8(body[0]).ok_or(OpenError::Malformed)?;
        if !encrypted && matches!(kind, Kind::KeyringRequest | Kind::KeyringReply) {
            return Err(OpenError::Unencrypted);
        }
        let dc_len = body[1] as usize;
        if body.len() < 2 + dc_len {
            return Err(OpenError::Malformed);
        }
        let dc = &body[2..2 + dc_len];
        if kind == Kind::Refused && dc.is_empty() {
            return Ok((kind, body[2..].to_vec()));
        }
        if dc != self.datacenter.as_bytes() {
            return Err(OpenError::WrongDatacenter(
                String::from_utf8_lossy(dc).into_owned(),
            ));
        }
        Ok((kind, body[2 + dc_len..].to_vec()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_with_and_without_key() {
        for key in [
            None,
            Some(GossipKey(vec![3; 32])),
            Some(GossipKey(vec![4; 16])),
            Some(GossipKey(vec![5; 24])),
        ] {
            let s = Sealer::new("dc1", key.as_ref());
            let sealed = s.seal(Kind::Swim, b"hello");
            assert_eq!(s.open(&sealed).unwrap(), (Kind::Swim, b"hello".to_vec()));
        }
    }

    #[test]
    fn key_mismatches_are_named() {
        let plain = Sealer::new("dc1", None);
        let a = Sealer::new("dc1", Some(&GossipKey(vec![1; 32])));
        let b = Sealer::new("dc1", Some(&GossipKey(vec![2; 32])));
        assert_eq!(
            a.open(&plain.seal(Kind::Swim, b"x")),
            Err(OpenError::Unencrypted)
        );
        assert_eq!(
            plain.open(&a.seal(Kind::Swim, b"x")),
            Err(OpenError::UnexpectedEncrypted)
        );
        assert_eq!(b.open(&a.seal(Kind::Swim, b"x")), Err(OpenError::Decrypt));
        // A refusal is readable by anyone.
        let r = Sealer::seal_plain_refusal("no");
        assert_eq!(a.open(&r).unwrap(), (Kind::Refused, b"no".to_vec()));
        assert_eq!(plain.open(&r).unwrap(), (Kind::Refused, b"no".to_vec()));
    }

    #[test]
    fn other_datacenter_and_tampering_are_dropped() {
        let dc1 = Sealer::new("dc1", Some(&GossipKey(vec![1; 32])));
        let dc2 = Sealer::new("dc2", Some(&GossipKey(vec![1; 32])));
        assert_eq!(
            dc1.open(&dc2.seal(Kind::Swim, b"x")),
            Err(OpenError::WrongDatacenter("dc2".into()))
        );
        let mut m = dc1.seal(Kind::Swim, b"payload");
        let last = m.len() - 1;
        m[last] ^= 1;
        assert_eq!(dc1.open(&m), Err(OpenError::Decrypt));
    }

    #[test]
    fn seals_with_the_primary_and_opens_with_any_key() {
        let (old, new) = (GossipKey(vec![1; 32]), GossipKey(vec![2; 16]));
        let only_old = Sealer::new("dc1", Some(&old));
        let only_new = Sealer::new("dc1", Some(&new));
        let both = Sealer::with_keyring(
            "dc1",
            Keyring::from_keys(vec![old.clone(), new.clone()]),
            Verify::default(),
        );
        // Primary old: both read it; only_new cannot.
        let m = both.seal(Kind::Swim, b"x");
        assert_eq!(only_old.open(&m).unwrap().1, b"x");
        assert_eq!(only_new.open(&m), Err(OpenError::Decrypt));
        // both opens messages sealed with either key.
        assert!(both.open(&only_old.seal(Kind::Swim, b"x")).is_ok());
        assert!(both.open(&only_new.seal(Kind::Swim, b"x")).is_ok());
        // After `use new`, it seals with new.
        both.set_keyring(Keyring::from_keys(vec![new.clone(), old.clone()]).unwrap());
        let m = both.seal(Kind::Swim, b"y");
        assert_eq!(only_new.open(&m).unwrap().1, b"y");
        assert_eq!(only_old.open(&m), Err(OpenError::Decrypt));
        assert_eq!(both.keyring().unwrap().primary(), &new);
    }

    #[test]
    fn relaxed_verification_never_relaxes_keyring_messages() {
        let key = GossipKey(vec![1; 32]);
        let plain = Sealer::new("dc1", None);
        let lax = Verify {
            incoming: false,
            outgoing: false,
        };
        let relaxed = Sealer::with_keyring("dc1", Some(Keyring::new(key.clone())), lax);
        let strict = Sealer::new("dc1", Some(&key));
        // Plain in, plain out.
        assert!(relaxed.open(&plain.seal(Kind::Swim, b"x")).is_ok());
        assert!(plain.open(&relaxed.seal(Kind::Swim, b"x")).is_ok());
        assert!(relaxed.open(&strict.seal(Kind::Swim, b"x")).is_ok());
        // Keyring kinds: sealed anyway, and plain ones refused everywhere.
        let req = relaxed.seal_encrypted(Kind::KeyringRequest, b"op").unwrap();
        assert_eq!(strict.open(&req).unwrap().0, Kind::KeyringRequest);
        let plain_req = plain.seal(Kind::KeyringRequest, b"op");
        assert_eq!(relaxed.open(&plain_req), Err(OpenError::Unencrypted));
        assert_eq!(plain.open(&plain_req), Err(OpenError::Unencrypted));
        assert!(plain.seal_encrypted(Kind::KeyringRequest, b"op").is_none());
    }

    #[test]
    fn garbage_never_panics() {
        let s = Sealer::new("dc1", Some(&GossipKey(vec![1; 32])));
        let p = Sealer::new("dc1", None);
        let mut seed = 1u64;
        for len in 0..300 {
            let buf: Vec<u8> = (0..len)
                .map(|i| {
                    seed = seed
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    if i < 2 {
                        b"MU"[i]
                    } else if i == 2 {
                        1
                    } else {
                        (seed >> 33) as u8
                    }
                })
                .collect();
            let _ = s.open(&buf);
            let _ = p.open(&buf);
        }
    }
}
