//! The RSA-2048 private operations through AWS-LC (feature `aws-lc`): the
//! SHA-256 signature of every message we send and the unwrap of every
//! session key sent to us. The `rsa` crate does the same operations about
//! ten times slower (about 3 ms against 0.35 ms on the benchmark machine),
//! which made an encrypted message cost two of those: see BENCHMARKS.md.
//!
//! Only the 2048-bit key has a [`Fast`] half (AWS-LC refuses smaller
//! decryption keys); the 1024-bit path, SHA-1 signatures and builds
//! without the feature use the `rsa` crate. Both paths give the same
//! bytes: PKCS#1 v1.5 signatures are deterministic, and a test checks
//! each against the other.

use rsa::pkcs8::der::zeroize::Zeroizing;
use rsa::pkcs8::EncodePrivateKey;
use rsa::RsaPrivateKey;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{Pkcs1PrivateDecryptingKey, PrivateDecryptingKey};
use aws_lc_rs::signature::{RsaKeyPair, RSA_PKCS1_SHA256};

/// AWS-LC's copies of one private key.
pub(crate) struct Fast {
    signer: RsaKeyPair,
    decrypter: Pkcs1PrivateDecryptingKey,
    rng: SystemRandom,
}

impl Fast {
    /// AWS-LC's copy of `private`, when AWS-LC takes it (2048 bits and more).
    pub(crate) fn new(private: &RsaPrivateKey) -> Option<Fast> {
        let der = private.to_pkcs8_der().ok()?;
        let signer = RsaKeyPair::from_pkcs8(der.as_bytes()).ok()?;
        let decrypter = Pkcs1PrivateDecryptingKey::new(PrivateDecryptingKey::from_pkcs8(der.as_bytes()).ok()?).ok()?;
        Some(Fast { signer, decrypter, rng: SystemRandom::new() })
    }

    /// RSASSA-PKCS1-v1_5 with SHA-256 over `data` (AWS-LC hashes it).
    pub(crate) fn sign_sha256(&self, data: &[u8]) -> Option<Vec<u8>> {
        let mut sig = vec![0u8; self.signer.public_modulus_len()];
        self.signer.sign(&RSA_PKCS1_SHA256, &self.rng, data, &mut sig).ok()?;
        Some(sig)
    }

    /// RSAES-PKCS1-v1_5 decryption of a wrapped session key (blinded by
    /// AWS-LC). Every failure is `None`: the caller folds it into its
    /// constant-time choice at once.
    pub(crate) fn unwrap(&self, wrapped: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        let mut out = Zeroizing::new(vec![0u8; self.decrypter.min_output_size()]);
        let n = self.decrypter.decrypt(wrapped, &mut out).ok()?.len();
        out.truncate(n);
        Some(out)
    }
}
