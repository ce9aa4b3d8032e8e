//! The schema, as a list of migrations.
//!
//! `PRAGMA user_version` holds the number of migrations applied; `open`
//! applies the missing ones in order, inside one transaction. A migration,
//! once released, is never edited: a change is a new entry at the end.

/// `PRAGMA application_id` of a Pigeon database ("PGN1"), so that another
/// program's SQLite file is recognised as such.
pub(crate) const APPLICATION_ID: i32 = 0x5047_4E31;

/// Migration `i` (0-based) brings the schema from version `i` to `i + 1`.
pub(crate) const MIGRATIONS: &[&str] = &[
    // 1: messages with full-text search, peers seen, meta (packet counter).
    r#"
PRAGMA application_id = 1346850353;

-- One row per message and peer: a message sent to three peers is three rows
-- sharing one packet number. `time` is Unix milliseconds (UTC).
CREATE TABLE messages (
    id          INTEGER PRIMARY KEY,
    direction   TEXT    NOT NULL CHECK (direction IN ('in', 'out')),
    peer_user   TEXT    NOT NULL,
    peer_host   TEXT    NOT NULL,
    peer_nick   TEXT    NOT NULL,
    peer_addr   TEXT    NOT NULL,
    packet_no   TEXT    NOT NULL,
    time        INTEGER NOT NULL,
    text        TEXT    NOT NULL,
    command     INTEGER NOT NULL,
    sealed      INTEGER NOT NULL CHECK (sealed IN (0, 1)),
    broadcast   INTEGER NOT NULL CHECK (broadcast IN (0, 1)),
    state       TEXT    NOT NULL CHECK (
        (direction = 'in'  AND state IN ('unread', 'read')) OR
        (direction = 'out' AND state IN ('sending', 'delivered', 'queued', 'failed', 'read'))
    ),
    attachments TEXT
);

-- History of one conversation.
CREATE INDEX messages_peer_time ON messages (peer_user, peer_host, time);
-- History of everything, `since` queries, de-duplication keys at startup.
CREATE INDEX messages_time ON messages (time);
-- An incoming message is stored once, whatever the retransmissions. The text
-- is part of the key: iptux restarts its packet numbers at 1, so a number
-- seen last week may name a new message now.
CREATE UNIQUE INDEX messages_in_key
    ON messages (peer_user, peer_host, packet_no, text) WHERE direction = 'in';
-- Receipts (RECVMSG / READMSG) find the outgoing row by peer and packet.
CREATE INDEX messages_out_key
    ON messages (peer_user, peer_host, packet_no) WHERE direction = 'out';
-- The outbox at startup.
CREATE INDEX messages_outbox
    ON messages (time) WHERE direction = 'out' AND state IN ('queued', 'sending');

-- Full-text index over the text and the peer's nick, external content.
-- The trigram tokenizer finds any substring of 3 or more characters, which
-- is what makes Chinese (no spaces between words) searchable.
CREATE VIRTUAL TABLE messages_fts USING fts5(
    text, peer_nick,
    content = 'messages', content_rowid = 'id',
    tokenize = 'trigram'
);

CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN
    INSERT INTO messages_fts (rowid, text, peer_nick)
        VALUES (new.id, new.text, new.peer_nick);
END;
CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, text, peer_nick)
        VALUES ('delete', old.id, old.text, old.peer_nick);
END;
-- State changes (the common update) leave the index alone.
CREATE TRIGGER messages_fts_update AFTER UPDATE OF text, peer_nick ON messages BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, text, peer_nick)
        VALUES ('delete', old.id, old.text, old.peer_nick);
    INSERT INTO messages_fts (rowid, text, peer_nick)
        VALUES (new.id, new.text, new.peer_nick);
END;

-- Peers seen, the last word of each.
CREATE TABLE peers (
    user      TEXT    NOT NULL,
    host      TEXT    NOT NULL,
    nick      TEXT    NOT NULL,
    grp       TEXT    NOT NULL,
    addr      TEXT    NOT NULL,
    client    TEXT    NOT NULL,
    last_seen INTEGER NOT NULL,
    PRIMARY KEY (user, host)
) WITHOUT ROWID;

-- Small named values: 'packet_counter' (INTEGER).
CREATE TABLE meta (
    key   TEXT PRIMARY KEY NOT NULL,
    value
) WITHOUT ROWID;
"#,
    // 2: files and folders we offer, served on TCP to their addressee only.
    r#"
-- One row per file or folder and addressee. `path` is the local path's
-- bytes; `packet_no` the offering SENDMSG's number (decimal).
CREATE TABLE offers (
    packet_no  TEXT    NOT NULL,
    file_id    INTEGER NOT NULL,
    peer_user  TEXT    NOT NULL,
    peer_host  TEXT    NOT NULL,
    peer_addr  TEXT    NOT NULL,
    path       BLOB    NOT NULL,
    name       TEXT    NOT NULL,
    kind       TEXT    NOT NULL CHECK (kind IN ('file', 'dir')),
    size       INTEGER NOT NULL,
    mtime      INTEGER NOT NULL,
    created    INTEGER NOT NULL,
    expires    INTEGER NOT NULL,
    released   INTEGER NOT NULL DEFAULT 0 CHECK (released IN (0, 1)),
    PRIMARY KEY (packet_no, file_id, peer_user, peer_host)
);
CREATE INDEX offers_expires ON offers (expires);
"#,
    // 3: unread incoming messages by peer (the chat's counts at start).
    r#"
CREATE INDEX messages_unread
    ON messages (peer_user, peer_host) WHERE direction = 'in' AND state = 'unread';
"#,
    // 4: what tells a machine from others of the same user@host (Pigeon's
    // instance, FeiQ's MAC). Peers of one name on other machines are kept
    // as `host#address` (engine::peers); rows of earlier versions are the
    // first machine of their name, unchanged.
    r#"
ALTER TABLE peers ADD COLUMN marker TEXT;
-- Our own instance marker lives in meta ('instance').
"#,
    // 5: an offer ends once its addressee has fetched it (Unix ms; 0: not
    // yet), after a short grace for a receiver whose check failed.
    r#"
ALTER TABLE offers ADD COLUMN fetched INTEGER NOT NULL DEFAULT 0;
"#,
    // 6: a broadcast we sent is one row, to everyone (`*`@`*`, nick
    // 'everyone'), stored 'delivered' (no receipt is asked; the history
    // shows no state for it). Earlier versions kept one row per peer
    // online: merged here, keeping the text and the earliest time.
    r#"
INSERT INTO messages (direction, peer_user, peer_host, peer_nick, peer_addr, packet_no,
                      time, text, command, sealed, broadcast, state, attachments)
    SELECT 'out', '*', '*', 'everyone', '', packet_no, min(time), text, min(command), 0, 1, 'delivered', NULL
    FROM messages
    WHERE direction = 'out' AND broadcast = 1 AND NOT (peer_user = '*' AND peer_host = '*')
    GROUP BY packet_no, text;
DELETE FROM messages
    WHERE direction = 'out' AND broadcast = 1 AND NOT (peer_user = '*' AND peer_host = '*');
"#,
    // 7: what became of each file offered to us (store::taken): fetched
    // (where to) or declined. No row: not yet.
    r#"
CREATE TABLE taken (
    message_id INTEGER NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    file_id    INTEGER NOT NULL,
    state      TEXT    NOT NULL CHECK (state IN ('fetched', 'declined')),
    path       BLOB,
    time       INTEGER NOT NULL,
    PRIMARY KEY (message_id, file_id)
) WITHOUT ROWID;
"#,
    // 8: encryption (store::keys). How each incoming message came
    // (plain, encrypted, verified, key-changed; NULL: outgoing, or older),
    // and the peers' public keys: the current one, and the modulus pinned
    // the first time (trust on first use) until the user trusts a new one.
    r#"
ALTER TABLE messages ADD COLUMN security TEXT;
CREATE TABLE peer_keys (
    user       TEXT    NOT NULL,
    host       TEXT    NOT NULL,
    capa       INTEGER NOT NULL,
    exponent   BLOB    NOT NULL,
    modulus    BLOB    NOT NULL,
    pinned     BLOB    NOT NULL,
    first_seen INTEGER NOT NULL,
    last_seen  INTEGER NOT NULL,
    PRIMARY KEY (user, host)
) WITHOUT ROWID;
"#,
    // 9: `sealed` and `broadcast` are what the command word says (the
    // program reads them from it; the columns serve the indexes and
    // queries): a SENDMSG (mode 0x20) with SECRETOPT (0x200) or
    // BROADCASTOPT (0x400), or iptux's group text (mode 0xFB).
    r#"
UPDATE messages SET
    sealed = ((command & 255) = 32 AND (command & 512) != 0),
    broadcast = (((command & 255) = 32 AND (command & 1024) != 0) OR (command & 255) = 251);
"#,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn application_id_matches_migration_text() {
        assert!(MIGRATIONS[0].contains(&format!("application_id = {APPLICATION_ID};")));
    }
}
