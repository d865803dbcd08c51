//! The gossip encryption key (`-encrypt`), owned here because the envelope is what uses it;
//! config only parses the operator's string through [`GossipKey::from_base64`].

use std::fmt;

use base64::Engine;

/// The gossip encryption key: 16, 24 or 32 bytes (AES-128, -192 or -256, as Consul accepts;
/// docs/reference/consul.md).
/// Its `Debug` never shows the key.
#[derive(Clone, PartialEq, Eq)]
pub struct GossipKey(pub Vec<u8>);

impl fmt::Debug for GossipKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("GossipKey(hidden)")
    }
}

/// Why an `-encrypt` value is not a key. The operator must fix the value: nothing to retry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The value is not standard base64.
    #[error("encrypt: the key is not valid base64; generate one with `muster keygen`")]
    NotBase64,
    /// The value decodes, but not to an AES key size.
    #[error("encrypt: the key decodes to {0} bytes but must be 32 (or 16 or 24, as Consul accepts); generate one with `muster keygen`")]
    WrongLength(usize),
}

impl GossipKey {
    /// Decodes `-encrypt`: standard base64 of 16, 24 or 32 bytes; `muster keygen` makes 32.
    pub fn from_base64(s: &str) -> Result<Self, KeyError> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(s.trim())
            .map_err(|_| KeyError::NotBase64)?;
        if ![16, 24, 32].contains(&bytes.len()) {
            return Err(KeyError::WrongLength(bytes.len()));
        }
        Ok(Self(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_aes_sizes_only() {
        let b64 = |n: usize| base64::engine::general_purpose::STANDARD.encode(vec![1u8; n]);
        for n in [16, 24, 32] {
            assert_eq!(GossipKey::from_base64(&b64(n)).unwrap().0.len(), n);
        }
        assert_eq!(
            GossipKey::from_base64(&b64(20)),
            Err(KeyError::WrongLength(20))
        );
        assert_eq!(
            GossipKey::from_base64("not base64!"),
            Err(KeyError::NotBase64)
        );
    }

    #[test]
    fn debug_never_shows_the_key() {
        let k = GossipKey(vec![7; 32]);
        assert_eq!(format!("{k:?}"), "GossipKey(hidden)");
    }
}
