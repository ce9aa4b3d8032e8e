//! IP Messenger's encryption in the engine (protocol.md §7,
//! crypto/README.md): our key pairs, the peers' public keys with the one
//! pinned first (trust on first use), and the encrypted message body both
//! ways. The cryptography itself is `pigeon_protocol::pubkey`'s; what this
//! module decides is *when*: which peers must get ciphertext (those whose
//! entry announces ENCRYPTOPT), which key and algorithm, and what an
//! incoming body's signature means. The engine's send and receive paths
//! call it; keys live on disk in the home (`crate::keys`).

use std::collections::HashMap;

use pigeon_protocol::attachment::Attachment;
use pigeon_protocol::pubkey::{self, Capa, KeyPair, KeySize, Security, Signature};
use pigeon_protocol::{Charset, Opts};

use super::PeerKey;

/// A peer's public key (ANSPUBKEY).
pub type PublicKey = pubkey::PeerKey;

/// Our two key pairs: the 2048-bit one (AES-256, signatures) and the
/// 1024-bit one older clients wrap their Blowfish keys with.
pub struct OurKeys {
    pub rsa2048: KeyPair,
    pub rsa1024: KeyPair,
}

impl std::fmt::Debug for OurKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OurKeys({})", self.rsa2048.fingerprint())
    }
}

impl OurKeys {
    /// What we announce in GETPUBKEY and ANSPUBKEY: RSA-2048 + AES-256 +
    /// SHA-256 signatures (`41900004`, what two IP Messenger 4.x settle
    /// on), plus RSA-1024 + Blowfish-128 for old peers.
    pub const CAPA: Capa = Capa(0x4190_0004 | 0x0002_0000 | 0x0000_0002);

    /// The key to give a peer that asked with `theirs`: the 2048-bit one if
    /// it can use it, else the 1024-bit one; None if we share nothing.
    pub fn for_peer(&self, theirs: Capa) -> Option<&KeyPair> {
        let common = Self::CAPA & theirs;
        if common.intersects(Capa::RSA_2048) {
            Some(&self.rsa2048)
        } else if common.intersects(Capa::RSA_1024) {
            Some(&self.rsa1024)
        } else {
            None
        }
    }
}

/// A peer's key as the engine holds it.
#[derive(Clone, Debug)]
pub struct KnownKey {
    pub key: PublicKey,
    /// The modulus pinned the first time (or trusted since).
    pub pinned: Vec<u8>,
}

impl KnownKey {
    /// Not the key first pinned for this peer.
    pub fn changed(&self) -> bool {
        self.key.modulus_be() != self.pinned
    }
}

/// The peers' keys.
#[derive(Default)]
pub struct Keyring {
    keys: HashMap<PeerKey, KnownKey>,
    /// Keys a peer said are stale (DecryptErr): not used, pin kept.
    stale: std::collections::HashSet<PeerKey>,
}

/// At most this many peers' keys are held (a flood of ANSPUBKEY from made-up
/// names cannot grow memory without bound).
pub const MAX_KEYS: usize = 16_384;

/// What taking a key did.
#[derive(Debug, PartialEq, Eq)]
pub enum Took {
    New,
    /// Exactly what we held.
    Same,
    /// Different from what we held (modulus or capability word), but not
    /// newly different from the pinned key.
    Updated,
    /// Another key than the one pinned.
    Changed,
}

impl Keyring {
    pub fn get(&self, peer: &PeerKey) -> Option<&KnownKey> {
        if self.stale.contains(peer) {
            return None;
        }
        self.keys.get(peer)
    }

    /// A key from the store: pinned modulus as stored.
    pub fn restore(&mut self, peer: PeerKey, key: PublicKey, pinned: Vec<u8>) {
        if self.keys.len() < MAX_KEYS {
            self.keys.insert(peer, KnownKey { key, pinned });
        }
    }

    /// A key a peer gave now.
    pub fn take(&mut self, peer: &PeerKey, key: PublicKey) -> Took {
        self.stale.remove(peer);
        match self.keys.get_mut(peer) {
            Some(k) if k.key.modulus_be() == key.modulus_be() && k.key.capa() == key.capa() => Took::Same,
            Some(k) => {
                let was_changed = k.changed();
                k.key = key;
                if k.changed() && !was_changed {
                    Took::Changed
                } else {
                    Took::Updated
                }
            }
            None => {
                if self.keys.len() >= MAX_KEYS {
                    return Took::Same;
                }
                let pinned = key.modulus_be();
                self.keys.insert(peer.clone(), KnownKey { key, pinned });
                Took::New
            }
        }
    }

    /// The key a peer gives now becomes its pinned one.
    pub fn trust(&mut self, peer: &PeerKey) {
        if let Some(k) = self.keys.get_mut(peer) {
            k.pinned = k.key.modulus_be();
        }
    }

    /// Stops using the key a peer gave (it could not read what we
    /// encrypted with it: DecryptErr) until it gives one again; the pin
    /// stays, so a new key shows as a change.
    pub fn forget(&mut self, peer: &PeerKey) {
        if self.keys.contains_key(peer) {
            self.stale.insert(peer.clone());
        }
    }
}

/// An encrypted body we cannot read, whatever the reason (one value: no
/// padding oracle).
#[derive(Debug, PartialEq, Eq)]
pub struct Unreadable;

/// An encrypted body read: its text and attachments, and how it came.
pub struct Opened {
    pub text: Vec<u8>,
    pub attachments: Vec<Attachment>,
    pub security: Security,
    /// No key of the sender's to check the signature with: ask for it.
    pub need_key: bool,
}

/// Reads the body of a SENDMSG with ENCRYPTOPT (everything after the
/// header). [`Unreadable`] for every failure, alike (no padding oracle): the
/// caller answers them all the same way.
pub fn open(
    ours: &OurKeys,
    sender: Option<&KnownKey>,
    opts: Opts,
    raw_packet_no: &[u8],
    body: &[u8],
    cs: Charset,
) -> Result<Opened, Unreadable> {
    // `fields\0[attachment list\0]`: without ENCEXTMSGOPT the list is plain, after.
    let end = body.iter().position(|&b| b == 0).unwrap_or(body.len());
    let (fields, rest) = (&body[..end], body.get(end + 1..).unwrap_or_default());
    let d = pubkey::decrypt(fields, raw_packet_no, &[&ours.rsa2048, &ours.rsa1024], sender.map(|k| &k.key))
        .map_err(|_| Unreadable)?;
    let security = match d.signature {
        Signature::Bad => return Err(Unreadable),
        Signature::Verified if sender.is_some_and(KnownKey::changed) => Security::KeyChanged,
        Signature::Verified => Security::Verified,
        Signature::Unverified => Security::Encrypted,
    };
    let encext = opts.has(Opts::ENCEXTMSGOPT);
    let sections = d.sections(encext);
    let list = if encext { sections.attachments.unwrap_or_default() } else { rest };
    let list = &list[..list.iter().position(|&b| b == 0).unwrap_or(list.len())];
    let attachments = if opts.has(Opts::FILEATTACHOPT) && !list.is_empty() {
        Attachment::decode_list(list, cs).unwrap_or_default()
    } else {
        Vec::new()
    };
    let need_key = sender.is_none() && d.choice.sign.is_some();
    Ok(Opened { text: sections.text.to_vec(), attachments, security, need_key })
}

/// Writes the body of an encrypted SENDMSG to `peer` (key `key`, whose
/// entry said `status`): returns the body bytes (to follow the header) and
/// the option bits to add (ENCRYPTOPT, ENCEXTMSGOPT). None if we share no
/// algorithm with it (IP Messenger then sends plain).
pub fn seal(
    ours: &OurKeys,
    key: &PublicKey,
    status: Opts,
    raw_packet_no: &[u8],
    text: &[u8],
    list: Option<&[u8]>,
) -> Option<Result<(Vec<u8>, u32), pigeon_protocol::Error>> {
    let choice = key.negotiate(Capa::PIGEON_SEND)?;
    let signer = match choice.key_size {
        KeySize::Rsa2048 => Some(&ours.rsa2048),
        KeySize::Rsa1024 => None,
    };
    let encext = status.has(Opts::ENCEXTMSGOPT) && list.is_some();
    let written = (|| {
        let plain = pubkey::join_plaintext(text, list.filter(|_| encext), &[])?;
        let fields = pubkey::encrypt(&choice, key, signer, raw_packet_no, &plain)?;
        let mut body = fields.into_bytes();
        body.push(0);
        let mut opts = Opts::ENCRYPTOPT;
        if encext {
            opts |= Opts::ENCEXTMSGOPT;
        } else if let Some(l) = list {
            body.extend_from_slice(l);
            body.push(0);
        }
        Ok((body, opts))
    })();
    Some(written)
}
