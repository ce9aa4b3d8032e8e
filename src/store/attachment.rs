//! The stored form of a message's offered files and folders (the
//! `attachments` column, JSON): one [`StoredAttachment`] per file, the
//! same shape the control API shows (`crate::control::api` re-exports it).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// File or folder.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FileKind {
    #[default]
    File,
    Dir,
}

/// An offered file or folder. Read leniently (rows of early versions lack
/// some fields: zero, or a file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct StoredAttachment {
    /// Its file ID in the offer.
    #[serde(default)]
    pub id: u64,
    pub name: String,
    /// Bytes (a folder: the whole tree's, when the sender says).
    #[serde(default)]
    pub size: u64,
    /// Unix seconds.
    #[serde(default)]
    pub mtime: u64,
    #[serde(default)]
    pub kind: FileKind,
}

impl StoredAttachment {
    pub fn new(id: u64, name: &str, size: u64, mtime: u64, dir: bool) -> StoredAttachment {
        StoredAttachment { id, name: name.into(), size, mtime, kind: if dir { FileKind::Dir } else { FileKind::File } }
    }

    /// The files of a message that came, as the protocol read them.
    pub fn from_wire(list: &[pigeon_protocol::Attachment]) -> Vec<StoredAttachment> {
        list.iter().map(|a| StoredAttachment::new(a.id, &a.name, a.size, a.mtime, a.attr.is_dir())).collect()
    }

    /// What we offered: (file ID, what).
    pub fn from_offers(offers: &[(u64, crate::engine::OfferFile)]) -> Vec<StoredAttachment> {
        offers.iter().map(|(id, f)| StoredAttachment::new(*id, &f.name, f.size, f.mtime, f.dir)).collect()
    }

    /// The column's text.
    pub fn to_column(list: &[StoredAttachment]) -> String {
        serde_json::to_string(list).expect("attachments are plain data")
    }

    /// The column read back (text that is not a list: none).
    pub fn from_column(text: &str) -> Vec<StoredAttachment> {
        serde_json::from_str(text).unwrap_or_default()
    }

    pub fn is_dir(&self) -> bool {
        self.kind == FileKind::Dir
    }
}
