//! The payload of SENDMSG (protocol.md §4, §6.1, §8.3): the text in the
//! packet's charset, FeiQ's font tag split off, and the attachment list
//! when FILEATTACHOPT is set.

use crate::attachment::Attachment;
use crate::charset::{self, Charset};
use crate::client::ClientKind;
use crate::command::Opts;
use crate::error::Result;
use crate::feiq;
use crate::packet::{write_packet, Header, Packet};

/// A message's text and attachments.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MessageBody {
    /// The text, newlines as LF, FeiQ's font tag removed.
    pub text: String,
    /// FeiQ's font description, if the text carried one.
    pub font: Option<String>,
    /// Files and folders offered (FILEATTACHOPT).
    pub attachments: Vec<Attachment>,
}

impl MessageBody {
    /// Reads a SENDMSG payload; `legacy` is the configured default, `hint`
    /// the charset this peer wrote in last (for clients that are guessed,
    /// see [`charset::detect`]).
    /// An encrypted body (ENCRYPTOPT) comes back as its raw text.
    pub fn decode(p: &Packet<'_>, legacy: Charset, hint: Option<Charset>) -> Result<(MessageBody, Charset)> {
        let client = ClientKind::from_version(p.version);
        let cs = charset::detect(p.opts(), client, hint, legacy, p.body());
        let raw = cs.decode(p.body());
        let normalized = if raw.contains('\r') { normalize_newlines(&raw) } else { raw.into_owned() };
        let (text, font) = feiq::split_font(&normalized);
        let attachments = if p.opts().has(Opts::FILEATTACHOPT) && !p.opts().has(Opts::ENCRYPTOPT) {
            match p.section(0) {
                Some(list) => Attachment::decode_list(list, cs)?,
                None => Vec::new(),
            }
        } else {
            Vec::new()
        };
        Ok((MessageBody { text: text.to_string(), font: font.map(String::from), attachments }, cs))
    }

    /// Writes a whole SENDMSG: the text in `charset` (CRLF as LF), the font
    /// tag if set, and the attachment list as one section.
    pub fn encode(&self, header: &Header<'_>, charset: Charset, out: &mut Vec<u8>) -> Result<()> {
        let mut text = normalize_newlines(&self.text).replace('\0', "");
        if let Some(f) = &self.font {
            // FeiQ writes one space between the text and its tag.
            text.push_str(&format!(" {{/font;{f};}}"));
        }
        let body = charset.encode(&text);
        if self.attachments.is_empty() {
            return write_packet(out, header, &body, &[]);
        }
        let mut list = Vec::new();
        Attachment::encode_list(&self.attachments, charset, &mut list)?;
        write_packet(out, header, &body, &[&list])
    }
}

/// Newlines on the wire are LF (IPMsg converts CRLF when sending); a CR
/// left over, alone or doubled, becomes LF too.
fn normalize_newlines(s: &str) -> String {
    s.replace("\r\n", "\n").replace('\r', "\n")
}
