//! IP Messenger's public-key encryption (protocol.md §2.3, §7; the binding
//! details in crypto/README.md): the RSA half of the crypto, on top of the
//! symmetric primitives of [`crate::crypto`]. Still no I/O and no clock; the
//! only outside input is the operating system's CSPRNG (session keys, RSA
//! padding and blinding, key generation).
//!
//! - [`capa`]: the capability word [`Capa`], and [`negotiate`] → [`Choice`];
//! - [`keys`]: our [`KeyPair`] (PKCS#8 PEM, generation, fingerprint) and a
//!   peer's checked [`PeerKey`]; the GETPUBKEY and ANSPUBKEY bodies;
//! - [`message`]: the encrypted SENDMSG body — decrypt (one error for every
//!   failure, no padding oracle), verify, encrypt, sign — and the
//!   plaintext's text / attachment / `TO:` sections;
//! - [`file_request`]: encrypted, signed GETDIRFILES / GETFILEDATA requests;
//! - `fast` (feature `aws-lc`): the RSA-2048 private operations through
//!   AWS-LC, about ten times faster than the `rsa` crate.
//!
//! What to do with a key change, which peers to ask for keys, when to send
//! DecryptErr and where keys live on disk belong to the engine.
//! [`crate::reply`] still reads the same bodies as raw fields, without
//! checks or cryptography.

pub mod capa;
#[cfg(feature = "aws-lc")]
mod fast;
pub mod file_request;
pub mod keys;
pub mod message;

pub use capa::{negotiate, Capa, Choice, Cipher, KeySize, SignHash};
pub use file_request::{EncFileRequest, FileBody};
pub use keys::{decode_getpubkey, encode_getpubkey, KeyPair, PeerKey};
pub use message::{
    decrypt, encrypt, encrypt_with_key, join_plaintext, split_plaintext, Decrypted, EncryptedFields, PlainSections,
    Recipient, Signature,
};
/// Wipes its contents when dropped (the PEM text of a private key).
pub use rsa::pkcs8::der::zeroize::Zeroizing;
/// The `rand_core` (0.6) the RSA code takes its randomness through, for
/// callers that bring their own CSPRNG.
pub use rsa::rand_core;

/// How a message came: what is shown beside it (a lock, a warning).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Security {
    /// Not encrypted.
    Plain,
    /// Encrypted to us; no signature, or no key of the sender's to check it with.
    Encrypted,
    /// Encrypted, and signed with the key pinned for the sender.
    Verified,
    /// Encrypted and signed, but with a key other than the one first pinned
    /// for the sender (TOFU): who holds it is not known.
    KeyChanged,
}

impl Security {
    /// The name used in JSON and the database.
    pub fn name(self) -> &'static str {
        match self {
            Security::Plain => "plain",
            Security::Encrypted => "encrypted",
            Security::Verified => "verified",
            Security::KeyChanged => "key-changed",
        }
    }

    /// The value of a [`Security::name`].
    pub fn from_name(s: &str) -> Option<Security> {
        [Security::Plain, Security::Encrypted, Security::Verified, Security::KeyChanged]
            .into_iter()
            .find(|x| x.name() == s)
    }

    /// Encrypted (whatever the signature).
    pub fn encrypted(self) -> bool {
        self != Security::Plain
    }
}
