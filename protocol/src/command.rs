//! The command word: the mode (low 8 bits) and option flags (high 24 bits)
//! of the fifth header field (protocol.md §2.1–§2.2), with the names of every
//! mode and flag that IPMsg, FeiQ and iptux use.
//!
//! Flag names depend on the mode: 0x100 is ABSENCEOPT on an entry packet and
//! SENDCHECKOPT on a message. This module owns that mapping; it does not know
//! what the bodies mean.

use std::fmt;

/// The low 8 bits of the command word.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Mode(pub u8);

macro_rules! modes {
    ($($name:ident = $val:expr),* $(,)?) => {
        impl Mode {
            $(#[doc = concat!("`", stringify!($name), "`")] pub const $name: Mode = Mode($val);)*
            /// The protocol name of this mode, if it is one that a known client uses.
            pub fn name(self) -> Option<&'static str> {
                match self.0 { $($val => Some(stringify!($name)),)* _ => None }
            }
            /// The mode with this protocol name.
            pub fn from_name(name: &str) -> Option<Mode> {
                match name { $(stringify!($name) => Some(Mode($val)),)* _ => None }
            }
        }
    };
}

modes! {
    NOOPERATION = 0x00,
    BR_ENTRY = 0x01,
    BR_EXIT = 0x02,
    ANSENTRY = 0x03,
    BR_ABSENCE = 0x04,
    BR_ISGETLIST = 0x10,
    OKGETLIST = 0x11,
    GETLIST = 0x12,
    ANSLIST = 0x13,
    ANSLIST_DICT = 0x14,
    BR_ISGETLIST2 = 0x18,
    SENDMSG = 0x20,
    RECVMSG = 0x21,
    FEIQ_GROUPMSG = 0x23,
    READMSG = 0x30,
    DELMSG = 0x31,
    ANSREADMSG = 0x32,
    GETINFO = 0x40,
    SENDINFO = 0x41,
    GETABSENCEINFO = 0x50,
    SENDABSENCEINFO = 0x51,
    GETFILEDATA = 0x60,
    RELEASEFILES = 0x61,
    GETDIRFILES = 0x62,
    DIRFILES_AUTH = 0x63,
    DIRFILES_AUTHRET = 0x64,
    GETPUBKEY = 0x72,
    ANSPUBKEY = 0x73,
    FEIQ_OPENCHAT = 0x77,
    FEIQ_STATUS = 0x78,
    FEIQ_TYPING = 0x79,
    FEIQ_TYPING_STOP = 0x7A,
    AGENT_REQ = 0xA0,
    AGENT_ANSREQ = 0xA1,
    AGENT_PACKET = 0xA2,
    AGENT_PROXYREQ = 0xA3,
    DIR_POLL = 0xB0,
    DIR_POLLAGENT = 0xB1,
    DIR_BROADCAST = 0xB2,
    DIR_ANSBROAD = 0xB3,
    DIR_PACKET = 0xB4,
    DIR_REQUEST = 0xB5,
    DIR_AGENTPACKET = 0xB6,
    DIR_EVBROAD = 0xB7,
    DIR_AGENTREJECT = 0xB8,
    FEIQ_IMAGE = 0xC0,
    FEIQ_IMAGE_ACK = 0xC1,
    FEIQ_GROUP_INFO = 0xC9,
    FEIQ_SHAKE = 0xD1,
    FEIQ_SHAKE_ACK = 0xD2,
    IPTUX_SENDMSG = 0xFB,
    IPTUX_SEND_SIGN = 0xFC,
    IPTUX_SENDSUBLAYER = 0xFD,
    IPTUX_SENDICON = 0xFE,
    IPTUX_ASKSHARED = 0xFF,
}

impl Mode {
    /// Which family of flag names applies to packets of this mode.
    pub fn family(self) -> Family {
        match self {
            Mode::NOOPERATION
            | Mode::BR_ENTRY
            | Mode::BR_EXIT
            | Mode::ANSENTRY
            | Mode::BR_ABSENCE
            | Mode::BR_ISGETLIST
            | Mode::BR_ISGETLIST2
            | Mode::OKGETLIST
            | Mode::GETLIST
            | Mode::ANSLIST => Family::Status,
            Mode::GETFILEDATA | Mode::GETDIRFILES => Family::FileRequest,
            Mode::IPTUX_SENDMSG => Family::IptuxMessage,
            Mode::IPTUX_SENDSUBLAYER => Family::IptuxSublayer,
            _ => Family::Message,
        }
    }

    /// True for the packets that announce presence (entry, exit, absence).
    pub fn is_presence(self) -> bool {
        matches!(self, Mode::NOOPERATION | Mode::BR_ENTRY | Mode::BR_EXIT | Mode::ANSENTRY | Mode::BR_ABSENCE)
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => f.write_str(n),
            None => write!(f, "0x{:02X}", self.0),
        }
    }
}

/// How the option bits of a packet are to be read (they overlap between families).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// Entry-type packets: capability and status flags.
    Status,
    /// SENDMSG and friends.
    Message,
    /// GETFILEDATA / GETDIRFILES on TCP.
    FileRequest,
    /// iptux's IPTUX_SENDMSG: the 0xFF00 byte is a sub-type, not flags.
    IptuxMessage,
    /// iptux's SENDSUBLAYER: PHOTOPIC / MSGPIC.
    IptuxSublayer,
}

/// The high 24 bits of the command word (the low 8 bits are always zero here).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Opts(pub u32);

impl From<u32> for Opts {
    fn from(bits: u32) -> Opts {
        Opts(bits)
    }
}

/// `opts | Opts::SECRETOPT`: these options with a flag's bits added.
impl std::ops::BitOr<u32> for Opts {
    type Output = Opts;
    fn bitor(self, flag: u32) -> Opts {
        self.with(flag)
    }
}

impl std::ops::BitOr for Opts {
    type Output = Opts;
    fn bitor(self, other: Opts) -> Opts {
        self.with(other.0)
    }
}

impl std::ops::BitOrAssign<u32> for Opts {
    fn bitor_assign(&mut self, flag: u32) {
        self.0 |= flag;
    }
}

impl std::ops::BitOrAssign for Opts {
    fn bitor_assign(&mut self, other: Opts) {
        self.0 |= other.0;
    }
}

/// `opts & MASK`: only the flags of the mask.
impl std::ops::BitAnd<u32> for Opts {
    type Output = Opts;
    fn bitand(self, mask: u32) -> Opts {
        Opts(self.0 & mask)
    }
}

impl Opts {
    // Status / capability flags (entry packets).
    pub const ABSENCEOPT: u32 = 0x0000_0100;
    pub const SERVEROPT: u32 = 0x0000_0200;
    pub const CAPFILEENC_OBSLT: u32 = 0x0000_1000;
    pub const DIALUPOPT: u32 = 0x0001_0000;
    pub const CAPFILEENCOPT: u32 = 0x0004_0000;
    pub const CAPIPDICTOPT: u32 = 0x0200_0000;
    pub const CLIPBOARDOPT: u32 = 0x0800_0000;
    pub const DIR_MASTER: u32 = 0x1000_0000;
    pub const FLAG_RESV1: u32 = 0x2000_0000;
    pub const FLAG_RESV2: u32 = 0x4000_0000;

    // Message flags.
    pub const SENDCHECKOPT: u32 = 0x0000_0100;
    pub const SECRETOPT: u32 = 0x0000_0200;
    pub const BROADCASTOPT: u32 = 0x0000_0400;
    pub const MULTICASTOPT: u32 = 0x0000_0800;
    pub const NOPOPUPOPT: u32 = 0x0000_1000;
    pub const AUTORETOPT: u32 = 0x0000_2000;
    pub const RETRYOPT: u32 = 0x0000_4000;
    pub const PASSWORDOPT: u32 = 0x0000_8000;
    pub const NOLOGOPT: u32 = 0x0002_0000;
    pub const NEWMULTI_OBSLT: u32 = 0x0004_0000;
    pub const NOADDLISTOPT: u32 = 0x0008_0000;
    pub const READCHECKOPT: u32 = 0x0010_0000;
    /// SECRETOPT | READCHECKOPT, what IPMsg sends for a sealed message.
    pub const SECRETEXOPT: u32 = Self::SECRETOPT | Self::READCHECKOPT;

    // Shared by several families.
    pub const FILEATTACHOPT: u32 = 0x0020_0000;
    pub const ENCRYPTOPT: u32 = 0x0040_0000;
    pub const UTF8OPT: u32 = 0x0080_0000;
    pub const CAPUTF8OPT: u32 = 0x0100_0000;
    pub const ENCEXTMSGOPT: u32 = 0x0400_0000;

    // File requests.
    pub const ENCFILE_OBSLT: u32 = 0x0000_0400;
    pub const ENCFILEOPT: u32 = 0x0000_0800;

    // iptux private flags.
    pub const IPTUX_SHAREDOPT: u32 = 0x8000_0000;
    pub const IPTUX_PASSWDOPT: u32 = 0x4000_0000;
    pub const IPTUX_REGULAROPT: u32 = 0x0000_0100;
    pub const IPTUX_SEGMENTOPT: u32 = 0x0000_0200;
    pub const IPTUX_GROUPOPT: u32 = 0x0000_0300;
    pub const IPTUX_BROADCASTOPT: u32 = 0x0000_0400;
    pub const IPTUX_PHOTOPICOPT: u32 = 0x0000_0100;
    pub const IPTUX_MSGPICOPT: u32 = 0x0000_0200;

    /// True if every bit of `flag` is set.
    pub fn has(self, flag: u32) -> bool {
        self.0 & flag == flag
    }

    /// These options with `flag` added.
    pub fn with(self, flag: u32) -> Opts {
        Opts(self.0 | flag)
    }

    /// These options with `flag` removed.
    pub fn without(self, flag: u32) -> Opts {
        Opts(self.0 & !flag)
    }

    /// The names of the set flags, read as the given family says; bits no
    /// client names come out as `0x…` hex words.
    pub fn names(self, family: Family) -> Vec<String> {
        let mut left = self.0;
        let mut out = Vec::new();
        let table: &[(u32, &str)] = match family {
            Family::Status => STATUS_NAMES,
            Family::Message => MESSAGE_NAMES,
            Family::FileRequest => FILE_REQUEST_NAMES,
            Family::IptuxMessage => {
                let sub = left & 0xFF00;
                if let Some(n) = IPTUX_MSG_NAMES.iter().find(|(v, _)| *v == sub) {
                    out.push(n.1.to_string());
                    left &= !0xFF00;
                }
                MESSAGE_NAMES
            }
            Family::IptuxSublayer => IPTUX_SUBLAYER_NAMES,
        };
        for &(bit, name) in table {
            if left & bit == bit {
                out.push(name.to_string());
                left &= !bit;
            }
        }
        for i in 8..32 {
            let bit = 1u32 << i;
            if left & bit != 0 {
                out.push(format!("0x{bit:08X}"));
            }
        }
        out
    }
}

const STATUS_NAMES: &[(u32, &str)] = &[
    (Opts::ABSENCEOPT, "ABSENCEOPT"),
    (Opts::SERVEROPT, "SERVEROPT"),
    (Opts::CAPFILEENC_OBSLT, "CAPFILEENC_OBSLT"),
    (Opts::RETRYOPT, "RETRYOPT"),
    (Opts::DIALUPOPT, "DIALUPOPT"),
    (Opts::CAPFILEENCOPT, "CAPFILEENCOPT"),
    (Opts::FILEATTACHOPT, "FILEATTACHOPT"),
    (Opts::ENCRYPTOPT, "ENCRYPTOPT"),
    (Opts::UTF8OPT, "UTF8OPT"),
    (Opts::CAPUTF8OPT, "CAPUTF8OPT"),
    (Opts::CAPIPDICTOPT, "CAPIPDICTOPT"),
    (Opts::ENCEXTMSGOPT, "ENCEXTMSGOPT"),
    (Opts::CLIPBOARDOPT, "CLIPBOARDOPT"),
    (Opts::DIR_MASTER, "DIR_MASTER"),
    (Opts::FLAG_RESV1, "FLAG_RESV1"),
    (Opts::FLAG_RESV2, "FLAG_RESV2"),
];

const MESSAGE_NAMES: &[(u32, &str)] = &[
    (Opts::SENDCHECKOPT, "SENDCHECKOPT"),
    (Opts::SECRETOPT, "SECRETOPT"),
    (Opts::BROADCASTOPT, "BROADCASTOPT"),
    (Opts::MULTICASTOPT, "MULTICASTOPT"),
    (Opts::NOPOPUPOPT, "NOPOPUPOPT"),
    (Opts::AUTORETOPT, "AUTORETOPT"),
    (Opts::RETRYOPT, "RETRYOPT"),
    (Opts::PASSWORDOPT, "PASSWORDOPT"),
    (Opts::NOLOGOPT, "NOLOGOPT"),
    (Opts::NEWMULTI_OBSLT, "NEWMULTI_OBSLT"),
    (Opts::NOADDLISTOPT, "NOADDLISTOPT"),
    (Opts::READCHECKOPT, "READCHECKOPT"),
    (Opts::FILEATTACHOPT, "FILEATTACHOPT"),
    (Opts::ENCRYPTOPT, "ENCRYPTOPT"),
    (Opts::UTF8OPT, "UTF8OPT"),
    (Opts::CAPUTF8OPT, "CAPUTF8OPT"),
    (Opts::ENCEXTMSGOPT, "ENCEXTMSGOPT"),
    (Opts::IPTUX_PASSWDOPT, "IPTUX_PASSWDOPT"),
    (Opts::IPTUX_SHAREDOPT, "IPTUX_SHAREDOPT"),
];

const FILE_REQUEST_NAMES: &[(u32, &str)] = &[
    (Opts::ENCFILE_OBSLT, "ENCFILE_OBSLT"),
    (Opts::ENCFILEOPT, "ENCFILEOPT"),
    (Opts::FILEATTACHOPT, "FILEATTACHOPT"),
    (Opts::ENCRYPTOPT, "ENCRYPTOPT"),
    (Opts::UTF8OPT, "UTF8OPT"),
    (Opts::CAPUTF8OPT, "CAPUTF8OPT"),
];

const IPTUX_MSG_NAMES: &[(u32, &str)] = &[
    (Opts::IPTUX_REGULAROPT, "IPTUX_REGULAROPT"),
    (Opts::IPTUX_SEGMENTOPT, "IPTUX_SEGMENTOPT"),
    (Opts::IPTUX_GROUPOPT, "IPTUX_GROUPOPT"),
    (Opts::IPTUX_BROADCASTOPT, "IPTUX_BROADCASTOPT"),
];

const IPTUX_SUBLAYER_NAMES: &[(u32, &str)] =
    &[(Opts::IPTUX_PHOTOPICOPT, "IPTUX_PHOTOPICOPT"), (Opts::IPTUX_MSGPICOPT, "IPTUX_MSGPICOPT")];

/// The whole 32-bit command word: mode plus options.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Command(pub u32);

impl Command {
    /// Builds a command word from a mode and options (an [`Opts`], or
    /// the bits of its constants).
    pub fn new(mode: Mode, opts: impl Into<Opts>) -> Command {
        Command((opts.into().0 & 0xFFFF_FF00) | mode.0 as u32)
    }

    /// The mode (low 8 bits).
    pub fn mode(self) -> Mode {
        Mode((self.0 & 0xFF) as u8)
    }

    /// The option flags (high 24 bits).
    pub fn opts(self) -> Opts {
        Opts(self.0 & 0xFFFF_FF00)
    }

    /// True if every bit of `flag` is set.
    pub fn has(self, flag: u32) -> bool {
        self.opts().has(flag)
    }

    /// A sealed message: a SENDMSG with SECRETOPT. The flags a message
    /// shows are read from its command word here, never kept beside it.
    pub fn sealed(self) -> bool {
        self.mode() == Mode::SENDMSG && self.has(Opts::SECRETOPT)
    }

    /// A message to everyone: a SENDMSG with BROADCASTOPT, or iptux's
    /// group-window text (IPTUX_SENDMSG, whose option bits mean other things).
    pub fn broadcast(self) -> bool {
        (self.mode() == Mode::SENDMSG && self.has(Opts::BROADCASTOPT)) || self.mode() == Mode::IPTUX_SENDMSG
    }

    /// An automatic reply: a SENDMSG with AUTORETOPT.
    pub fn auto_reply(self) -> bool {
        self.mode() == Mode::SENDMSG && self.has(Opts::AUTORETOPT)
    }

    /// The names of the set option flags, read in this mode's family.
    pub fn option_names(self) -> Vec<String> {
        self.opts().names(self.mode().family())
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.mode())?;
        for n in self.option_names() {
            write!(f, "|{n}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_flags_from_the_word() {
        let sealed = Command::new(Mode::SENDMSG, Opts::SENDCHECKOPT | Opts::SECRETEXOPT);
        assert!(sealed.sealed() && !sealed.broadcast() && !sealed.auto_reply());
        let all = Command::new(Mode::SENDMSG, Opts::BROADCASTOPT);
        assert!(all.broadcast() && !all.sealed());
        assert!(Command::new(Mode::SENDMSG, Opts::AUTORETOPT).auto_reply());
        // iptux's group text: its 0x0300 is IPTUX_GROUPOPT, not SECRETOPT.
        let group = Command::new(Mode::IPTUX_SENDMSG, Opts::IPTUX_GROUPOPT);
        assert!(group.broadcast() && !group.sealed() && !group.auto_reply());
        // A picture fragment carries none of them.
        let pic = Command::new(Mode::FEIQ_IMAGE, Opts::FILEATTACHOPT | Opts::SECRETOPT);
        assert!(!pic.sealed() && !pic.broadcast() && !pic.auto_reply());
    }

    #[test]
    fn ipmsg_default_entry_word() {
        // protocol.md §2.2: IPMsg 4.99's BR_ENTRY is 258211841.
        let c = Command(258211841);
        assert_eq!(c.mode(), Mode::BR_ENTRY);
        assert_eq!(
            c.option_names(),
            [
                "CAPFILEENCOPT",
                "FILEATTACHOPT",
                "ENCRYPTOPT",
                "CAPUTF8OPT",
                "CAPIPDICTOPT",
                "ENCEXTMSGOPT",
                "CLIPBOARDOPT"
            ]
        );
    }

    #[test]
    fn same_bit_named_by_family() {
        assert_eq!(Command(0x101).option_names(), ["ABSENCEOPT"]);
        assert_eq!(Command(0x120).option_names(), ["SENDCHECKOPT"]);
        assert_eq!(Command(1019).option_names(), ["IPTUX_GROUPOPT"]);
        assert_eq!(Command(765).option_names(), ["IPTUX_MSGPICOPT"]);
    }

    #[test]
    fn unknown_bits_are_hex() {
        assert_eq!(Command(0x0000_8001).option_names(), ["0x00008000"]);
        assert_eq!(Mode(0x42).name(), None);
        assert_eq!(Mode(0x42).to_string(), "0x42");
    }

    #[test]
    fn names_round_trip() {
        for v in 0..=255u8 {
            if let Some(n) = Mode(v).name() {
                assert_eq!(Mode::from_name(n), Some(Mode(v)));
            }
        }
    }
}
