//! `pigeon-protocol`: the IP Messenger / FeiQ / iptux wire format.
//!
//! No I/O and no clock: every type here turns bytes into values and values
//! into bytes. Reading is lenient, as real clients require (protocol.md
//! §1.3); writing is strict. One module per wire concept:
//!
//! - [`packet`]: the datagram frame and its sections;
//! - [`command`]: modes and option flags, with their names;
//! - [`charset`]: GBK / UTF-8 / CP932 and which one a packet uses;
//! - [`client`]: which program sent a packet, FeiQ's version field;
//! - [`entry`]: presence payloads (nick, group, UTF-8 trailer, iptux sections);
//! - [`message`]: SENDMSG text and attachments;
//! - [`attachment`]: attachment lists and file attributes;
//! - [`request`]: GETFILEDATA / GETDIRFILES bodies;
//! - [`dirstream`]: the directory stream, with an incremental decoder;
//! - [`name`]: safe file names;
//! - [`hostlist`]: ANSLIST host lists;
//! - [`reply`]: the short control bodies and key-exchange fields;
//! - [`crypto`]: AES / Blowfish CBC, AES-CTR, FeiQ group cipher, key fingerprint;
//! - [`pubkey`]: IPMsg encryption: capability word, RSA keys and key exchange,
//!   encrypted message bodies and file requests, signatures;
//! - [`feiq`]: FeiQ's font tag, image fragments and acks.

#![forbid(unsafe_code)]

pub mod attachment;
pub mod charset;
pub mod client;
pub mod command;
pub mod crypto;
pub mod dirstream;
pub mod entry;
pub mod error;
pub mod feiq;
pub mod hostlist;
pub mod message;
pub mod name;
pub mod packet;
pub mod pubkey;
pub mod reply;
pub mod request;

pub use attachment::{Attachment, ExtAttr, FileAttr};
pub use charset::Charset;
pub use client::{ClientKind, FeiqVersion};
pub use command::{Command, Mode, Opts};
pub use dirstream::{DirEvent, DirHeader, DirStreamDecoder};
pub use entry::{Entry, IptuxExtra, Utf8Trailer};
pub use error::{Error, Result};
pub use hostlist::{HostEntry, HostList};
pub use message::MessageBody;
pub use packet::{write_packet, Header, Packet, PacketNo};
pub use pubkey::{Capa, KeyPair, PeerKey};
pub use reply::PacketRef;
pub use request::{FileRequest, RequestKind};
