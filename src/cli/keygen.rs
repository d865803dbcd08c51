//! `muster keygen`: a fresh gossip key, base64 of 32 random bytes (AES-256), for `-encrypt`.

use base64::Engine;
use rand::Rng;

pub fn run() -> u8 {
    let mut key = [0u8; 32];
    rand::rng().fill_bytes(&mut key);
    println!("{}", base64::engine::general_purpose::STANDARD.encode(key));
    0
}
