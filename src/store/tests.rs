use super::*;

const T0: i64 = 1_700_000_000_000; // ms

fn at(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap()
}

fn peer(user: &str, host: &str) -> PeerRef {
    PeerRef { user: user.into(), host: host.into(), nick: format!("{user}'s nick"), addr: "192.0.2.7:2425".into() }
}

fn msg(dir: Direction, user: &str, packet_no: &str, ms: i64, text: &str) -> MessageRecord {
    MessageRecord {
        id: 0,
        direction: dir,
        peer: peer(user, "host-a"),
        packet_no: packet_no.into(),
        time: at(ms),
        text: text.into(),
        command: 0x0000_0120,
        state: match dir {
            Direction::In => MessageState::Unread,
            Direction::Out => MessageState::Sending,
        },
        attachments_json: None,
        security: None,
    }
}

fn insert(store: &mut Store, m: &MessageRecord) -> Option<i64> {
    store.transaction(|tx| tx.insert_message(m)).unwrap()
}

fn texts(v: &[MessageRecord]) -> Vec<&str> {
    v.iter().map(|m| m.text.as_str()).collect()
}

fn search(store: &Store, s: &str) -> Vec<String> {
    let q = HistoryQuery { search: Some(s.into()), ..Default::default() };
    let found = store.history(&q).unwrap_or_else(|e| panic!("search {s:?}: {e}"));
    found.into_iter().map(|m| m.text).collect()
}

fn user_version(path: &Path) -> i64 {
    let conn = Connection::open(path).unwrap();
    conn.pragma_query_value(None, "user_version", |r| r.get(0)).unwrap()
}

#[test]
fn fresh_file_is_migrated_and_reopening_keeps_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pigeon.db");
    let id;
    {
        let mut store = Store::open(&path).unwrap();
        assert_eq!(store.path(), path);
        let mode: String = store.conn.pragma_query_value(None, "journal_mode", |r| r.get(0)).unwrap();
        assert_eq!(mode, "wal");
        let sync: i64 = store.conn.pragma_query_value(None, "synchronous", |r| r.get(0)).unwrap();
        assert_eq!(sync, 1, "synchronous = NORMAL");
        assert_eq!(store.packet_counter().unwrap(), 0);
        assert!(store.history(&HistoryQuery::default()).unwrap().is_empty());
        id = store
            .transaction(|tx| {
                tx.set_packet_counter(1_700_000_123)?;
                tx.upsert_peer(&PeerRecord {
                    user: "bob".into(),
                    host: "box".into(),
                    nick: "Bob".into(),
                    group: "dev".into(),
                    addr: "192.0.2.9:2425".into(),
                    client: "FeiQ".into(),
                    last_seen: at(T0),
                    marker: None,
                })?;
                tx.insert_message(&msg(Direction::In, "bob", "42", T0, "kept"))
            })
            .unwrap()
            .unwrap();
    }
    assert_eq!(user_version(&path), i64::from(SCHEMA_VERSION));

    let store = Store::open(&path).unwrap();
    assert_eq!(user_version(&path), i64::from(SCHEMA_VERSION));
    assert_eq!(store.packet_counter().unwrap(), 1_700_000_123);
    assert_eq!(store.peers().unwrap().len(), 1);
    let m = store.message(id).unwrap().unwrap();
    assert_eq!(m.text, "kept");
    assert_eq!(search(&store, "kept"), ["kept"]);
}

#[test]
fn in_memory_store_works() {
    let mut store = Store::open_in_memory().unwrap();
    assert_eq!(store.path(), Path::new(":memory:"));
    assert!(insert(&mut store, &msg(Direction::Out, "bob", "1", T0, "hi")).is_some());
    assert_eq!(store.outbox().unwrap().len(), 1);
}

#[test]
fn message_round_trips_every_field() {
    let mut store = Store::open_in_memory().unwrap();
    let mut m = msg(Direction::Out, "bob", "1700000001", T0 + 123, "all fields");
    m.peer.nick = "鲍勃".into();
    // SENDMSG with SENDCHECKOPT, SECRETOPT, BROADCASTOPT and high bits.
    m.command = 0x8040_0720;
    m.state = MessageState::Queued;
    m.attachments_json = Some(r#"[{"name":"a.txt","size":3}]"#.into());
    let id = insert(&mut store, &m).unwrap();
    assert!(id > 0);
    let back = store.message(id).unwrap().unwrap();
    assert_eq!(back, MessageRecord { id, ..m });
    assert_eq!(store.message(id + 1).unwrap(), None);
}

#[test]
fn duplicate_incoming_is_ignored() {
    let mut store = Store::open_in_memory().unwrap();
    let m = msg(Direction::In, "bob", "100", T0, "once");
    assert!(insert(&mut store, &m).is_some());
    // A retransmission (same text), even at another time.
    let again = MessageRecord { time: at(T0 + 5000), ..m.clone() };
    assert_eq!(insert(&mut store, &again), None);
    // The same number with another text: a peer that restarted its counter
    // (iptux starts at 1 every time) sent a new message.
    let reused = MessageRecord { time: at(T0 + 9000), text: "after a restart".into(), ..m.clone() };
    assert!(insert(&mut store, &reused).is_some());
    // The same packet number from another host or user is another message.
    let mut other_host = m.clone();
    other_host.peer.host = "host-b".into();
    other_host.text = "other host".into();
    assert!(insert(&mut store, &other_host).is_some());
    assert!(insert(&mut store, &msg(Direction::In, "carol", "100", T0, "c")).is_some());
    // Outgoing rows are not de-duplicated: one per recipient, or a resend.
    assert!(insert(&mut store, &msg(Direction::Out, "bob", "100", T0, "o1")).is_some());
    assert!(insert(&mut store, &msg(Direction::Out, "bob", "100", T0, "o2")).is_some());

    let all = store.history(&HistoryQuery::default()).unwrap();
    assert_eq!(all.len(), 6);
    assert_eq!(all.iter().filter(|m| m.text == "once").count(), 1, "the first copy is kept");
}

#[test]
fn state_changes() {
    let mut store = Store::open_in_memory().unwrap();
    // One send to two peers: one packet number, two rows.
    let to_bob = msg(Direction::Out, "bob", "500", T0, "to both");
    let to_carol = msg(Direction::Out, "carol", "500", T0, "to both");
    let incoming = msg(Direction::In, "bob", "77", T0, "from bob");
    let (b, c, i) = store
        .transaction(|tx| {
            Ok((
                tx.insert_message(&to_bob)?.unwrap(),
                tx.insert_message(&to_carol)?.unwrap(),
                tx.insert_message(&incoming)?.unwrap(),
            ))
        })
        .unwrap();

    let changed = store.transaction(|tx| tx.set_out_state("bob", "host-a", "500", MessageState::Delivered)).unwrap();
    assert!(changed);
    assert_eq!(store.message(b).unwrap().unwrap().state, MessageState::Delivered);
    assert_eq!(store.message(c).unwrap().unwrap().state, MessageState::Sending);

    // Unknown keys, and the direction matters.
    store
        .transaction(|tx| {
            assert!(!tx.set_out_state("bob", "host-a", "501", MessageState::Read)?);
            assert!(!tx.set_out_state("bob", "host-b", "500", MessageState::Read)?);
            assert!(!tx.set_out_state("bob", "host-a", "77", MessageState::Read)?);
            assert!(!tx.set_in_state("bob", "host-a", "500", MessageState::Read)?);
            Ok(())
        })
        .unwrap();

    assert!(store.transaction(|tx| tx.set_in_state("bob", "host-a", "77", MessageState::Read)).unwrap());
    assert_eq!(store.message(i).unwrap().unwrap().state, MessageState::Read);

    store.transaction(|tx| tx.set_state(c, MessageState::Failed)).unwrap();
    assert_eq!(store.message(c).unwrap().unwrap().state, MessageState::Failed);

    // An unknown id, and a state that does not fit the direction.
    let err = store.transaction(|tx| tx.set_state(9999, MessageState::Read)).unwrap_err();
    assert!(matches!(err, StoreError::NoSuchMessage { id: 9999, .. }), "{err}");
    let err = store.transaction(|tx| tx.set_state(i, MessageState::Sending)).unwrap_err();
    assert!(err.to_string().contains("CHECK constraint"), "{err}");
    assert_eq!(store.message(i).unwrap().unwrap().state, MessageState::Read);
}

/// The `sealed` and `broadcast` columns follow the command word, whatever
/// wrote them: the insert, and migration 9 for rows of older versions.
#[test]
fn flag_columns_follow_the_command_word() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pigeon.db");
    let mut store = Store::open(&path).unwrap();
    let rows = [
        (0x120, "plain", false, false),
        (0x320, "sealed", true, false),
        (0x520, "broadcast", false, true),
        (0x3FB, "iptux group", false, true),
        (0x2000C0, "picture", false, false),
    ];
    store
        .transaction(|tx| {
            for (i, (command, text, ..)) in rows.iter().enumerate() {
                tx.insert_message(&MessageRecord {
                    command: *command,
                    ..msg(Direction::In, "bob", &i.to_string(), T0, text)
                })?;
            }
            Ok(())
        })
        .unwrap();
    let columns = |path: &Path| -> Vec<(String, bool, bool)> {
        let c = rusqlite::Connection::open(path).unwrap();
        let mut st = c.prepare("SELECT text, sealed, broadcast FROM messages ORDER BY id").unwrap();
        st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).unwrap().map(Result::unwrap).collect()
    };
    let want: Vec<(String, bool, bool)> = rows.iter().map(|(_, t, s, b)| (t.to_string(), *s, *b)).collect();
    assert_eq!(columns(&path), want);
    for m in store.history(&HistoryQuery::default()).unwrap() {
        let (_, _, s, b) = rows.iter().find(|r| r.1 == m.text).unwrap();
        assert_eq!((m.sealed(), m.broadcast()), (*s, *b), "{}", m.text);
    }
    // A row an older version wrote with other flags is mended by migration 9.
    drop(store);
    let c = rusqlite::Connection::open(&path).unwrap();
    c.execute_batch("UPDATE messages SET sealed = 1 - sealed, broadcast = 1 - broadcast; PRAGMA user_version = 8;")
        .unwrap();
    drop(c);
    drop(Store::open(&path).unwrap());
    assert_eq!(columns(&path), want);
}

#[test]
fn unread_counts_and_marking_seen() {
    let mut store = Store::open_in_memory().unwrap();
    let plain = msg(Direction::In, "bob", "1", T0, "hi");
    let sealed = MessageRecord { command: 0x320, ..msg(Direction::In, "bob", "2", T0 + 1, "secret") };
    let bcast = MessageRecord { command: 0x520, ..msg(Direction::In, "carol", "3", T0 + 2, "all hands") };
    let carol = msg(Direction::In, "carol", "4", T0 + 3, "to you");
    let out = msg(Direction::Out, "bob", "5", T0 + 4, "mine");
    for m in [&plain, &sealed, &bcast, &carol, &out] {
        insert(&mut store, m);
    }
    let counts =
        |s: &Store| s.unread_counts().unwrap().into_iter().map(|c| (c.user, c.broadcast, c.count)).collect::<Vec<_>>();
    let bob = |b, n| ("bob".to_string(), b, n);
    let carol = |b, n| ("carol".to_string(), b, n);
    assert_eq!(counts(&store), [bob(false, 2), carol(false, 1), carol(true, 1)]);

    // Seeing bob reads his plain message; the sealed one waits to be opened.
    assert_eq!(store.transaction(|tx| tx.mark_seen(Some(("bob", "host-a")))).unwrap(), 1);
    assert_eq!(counts(&store), [bob(false, 1), carol(false, 1), carol(true, 1)]);
    // Seeing the broadcasts reads carol's broadcast, not her private message.
    assert_eq!(store.transaction(|tx| tx.mark_seen(None)).unwrap(), 1);
    assert_eq!(counts(&store), [bob(false, 1), carol(false, 1)]);
    assert_eq!(store.transaction(|tx| tx.mark_seen(Some(("carol", "host-a")))).unwrap(), 1);
    assert_eq!(store.transaction(|tx| tx.mark_seen(Some(("carol", "host-a")))).unwrap(), 0);
    assert_eq!(counts(&store), [bob(false, 1)]);
    // Opening the sealed one is what reads it.
    assert!(store.transaction(|tx| tx.set_in_state("bob", "host-a", "2", MessageState::Read)).unwrap());
    assert!(counts(&store).is_empty());
}

#[test]
fn failed_transaction_keeps_nothing() {
    let mut store = Store::open_in_memory().unwrap();
    let err = store
        .transaction(|tx| {
            tx.insert_message(&msg(Direction::In, "bob", "1", T0, "gone"))?;
            tx.set_packet_counter(99)?;
            tx.set_state(12345, MessageState::Read)
        })
        .unwrap_err();
    assert!(matches!(err, StoreError::NoSuchMessage { .. }));
    assert!(store.history(&HistoryQuery::default()).unwrap().is_empty());
    assert_eq!(store.packet_counter().unwrap(), 0);
}

#[test]
fn outbox_holds_queued_and_sending_oldest_first() {
    let mut store = Store::open_in_memory().unwrap();
    let mut queued = msg(Direction::Out, "bob", "3", T0 + 3000, "queued");
    queued.state = MessageState::Queued;
    let sending = msg(Direction::Out, "carol", "2", T0 + 2000, "sending");
    let mut delivered = msg(Direction::Out, "bob", "1", T0 + 1000, "delivered");
    delivered.state = MessageState::Delivered;
    let mut failed = msg(Direction::Out, "bob", "4", T0, "failed");
    failed.state = MessageState::Failed;
    let mut read = msg(Direction::Out, "bob", "5", T0, "read");
    read.state = MessageState::Read;
    let incoming = msg(Direction::In, "bob", "6", T0, "incoming");
    store
        .transaction(|tx| {
            for m in [&queued, &sending, &delivered, &failed, &read, &incoming] {
                tx.insert_message(m)?;
            }
            Ok(())
        })
        .unwrap();
    let outbox = store.outbox().unwrap();
    assert_eq!(texts(&outbox), ["sending", "queued"]);

    store.transaction(|tx| tx.set_out_state("carol", "host-a", "2", MessageState::Delivered)).unwrap();
    assert_eq!(texts(&store.outbox().unwrap()), ["queued"]);
}

#[test]
fn history_by_peer_since_and_limit() {
    let mut store = Store::open_in_memory().unwrap();
    store
        .transaction(|tx| {
            // Inserted out of order: history sorts by time.
            for (i, user) in [(3, "bob"), (1, "bob"), (2, "carol"), (5, "bob"), (4, "carol")] {
                let dir = if i % 2 == 0 { Direction::Out } else { Direction::In };
                tx.insert_message(&msg(dir, user, &i.to_string(), T0 + i * 1000, &format!("m{i}")))?;
            }
            Ok(())
        })
        .unwrap();
    let all = store.history(&HistoryQuery::default()).unwrap();
    assert_eq!(texts(&all), ["m1", "m2", "m3", "m4", "m5"]);

    let bob = Some(("bob".to_owned(), "host-a".to_owned()));
    let q = HistoryQuery { peer: bob.clone(), ..Default::default() };
    assert_eq!(texts(&store.history(&q).unwrap()), ["m1", "m3", "m5"]);

    let q = HistoryQuery { peer: Some(("bob".to_owned(), "elsewhere".to_owned())), ..Default::default() };
    assert!(store.history(&q).unwrap().is_empty());

    let q = HistoryQuery { since: Some(at(T0 + 3000)), ..Default::default() };
    assert_eq!(texts(&store.history(&q).unwrap()), ["m3", "m4", "m5"]);

    // The limit keeps the newest N, still returned oldest first.
    let q = HistoryQuery { limit: Some(2), ..Default::default() };
    assert_eq!(texts(&store.history(&q).unwrap()), ["m4", "m5"]);

    let q = HistoryQuery { peer: bob.clone(), since: Some(at(T0 + 2000)), limit: Some(1), ..Default::default() };
    assert_eq!(texts(&store.history(&q).unwrap()), ["m5"]);

    // Pages: the messages before one (by time, then id), newest N of them.
    let m4 = all.iter().find(|m| m.text == "m4").unwrap().id;
    let q = HistoryQuery { before: Some(m4), limit: Some(2), ..Default::default() };
    assert_eq!(texts(&store.history(&q).unwrap()), ["m2", "m3"]);
    let m3 = all.iter().find(|m| m.text == "m3").unwrap().id;
    let q = HistoryQuery { peer: bob, before: Some(m3), ..Default::default() };
    assert_eq!(texts(&store.history(&q).unwrap()), ["m1"]);
    let q = HistoryQuery { before: Some(all[0].id), ..Default::default() };
    assert!(store.history(&q).unwrap().is_empty());

    store
        .transaction(|tx| {
            let mut b = msg(Direction::In, "carol", "9", T0 + 9000, "everyone!");
            b.command |= 0x400; // BROADCASTOPT
            tx.insert_message(&b).map(|_| ())
        })
        .unwrap();
    let q = HistoryQuery { broadcast_only: true, ..Default::default() };
    assert_eq!(texts(&store.history(&q).unwrap()), ["everyone!"]);

    let q = HistoryQuery { limit: Some(0), ..Default::default() };
    assert!(store.history(&q).unwrap().is_empty());
    let q = HistoryQuery { limit: Some(usize::MAX), ..Default::default() };
    assert_eq!(store.history(&q).unwrap().len(), 6);
}

fn search_fixture() -> Store {
    let mut store = Store::open_in_memory().unwrap();
    let mut from_li = msg(Direction::In, "li", "9", T0 + 9000, "周末一起吃饭吗");
    from_li.peer.nick = "李雷".into();
    let rows = [
        msg(Direction::In, "bob", "1", T0 + 1000, "Hello world, this is Pigeon"),
        msg(Direction::Out, "bob", "2", T0 + 2000, "这是一条测试消息，请忽略"),
        msg(Direction::In, "bob", "3", T0 + 3000, "你好，世界"),
        msg(Direction::Out, "carol", "4", T0 + 4000, "hi there, 100% sure_thing"),
        msg(Direction::In, "carol", "5", T0 + 5000, "say \"quoted\" (or not) *star* a:b"),
        msg(Direction::In, "carol", "6", T0 + 6000, "the world is round"),
        from_li,
    ];
    store
        .transaction(|tx| {
            for m in &rows {
                tx.insert_message(m)?;
            }
            Ok(())
        })
        .unwrap();
    store
}

#[test]
fn search_english_and_chinese() {
    let store = search_fixture();
    // Substrings of 3+ characters, case ignored for ASCII.
    assert_eq!(search(&store, "hello"), ["Hello world, this is Pigeon"]);
    assert_eq!(search(&store, "PIGEON"), ["Hello world, this is Pigeon"]);
    assert_eq!(search(&store, "orl"), ["Hello world, this is Pigeon", "the world is round"]);
    assert_eq!(search(&store, "测试消息"), ["这是一条测试消息，请忽略"]);
    assert_eq!(search(&store, "一条测试"), ["这是一条测试消息，请忽略"]);
    assert_eq!(search(&store, "，世界"), ["你好，世界"]);
    assert!(search(&store, "测试消失").is_empty());
    // Plain words must all occur, anywhere.
    assert_eq!(search(&store, "world round"), ["the world is round"]);
    assert_eq!(search(&store, "  round   world "), ["the world is round"]);
    // The peer's nick is searched too.
    assert_eq!(search(&store, "carol's"), search(&store, "carol's nick"));
    assert_eq!(search(&store, "carol's").len(), 3);
    assert_eq!(search(&store, "李雷"), ["周末一起吃饭吗"]);
    // FTS5 syntax is used as such.
    assert_eq!(search(&store, "hello OR round"), ["Hello world, this is Pigeon", "the world is round"]);
    assert_eq!(search(&store, "world NOT round"), ["Hello world, this is Pigeon"]);
    assert_eq!(search(&store, "\"world, this\""), ["Hello world, this is Pigeon"]);
    // Blank searches do not narrow.
    assert_eq!(search(&store, "").len(), 7);
    assert_eq!(search(&store, "   ").len(), 7);
}

#[test]
fn short_search_words_fall_back_to_like() {
    let store = search_fixture();
    // Shorter than a trigram: LIKE.
    assert_eq!(search(&store, "你好"), ["你好，世界"]);
    assert_eq!(search(&store, "吃"), ["周末一起吃饭吗"]);
    assert_eq!(search(&store, "HI"), ["Hello world, this is Pigeon", "hi there, 100% sure_thing"]);
    assert_eq!(search(&store, "李"), ["周末一起吃饭吗"]);
    // LIKE wildcards are literal.
    assert_eq!(search(&store, "%"), ["hi there, 100% sure_thing"]);
    assert_eq!(search(&store, "0%"), ["hi there, 100% sure_thing"]);
    assert_eq!(search(&store, "e_"), ["hi there, 100% sure_thing"]);
    assert!(search(&store, "\\").is_empty());
    // Mixed: the long word by FTS, the short one by LIKE.
    assert_eq!(search(&store, "world is"), ["Hello world, this is Pigeon", "the world is round"]);
    assert_eq!(search(&store, "round is"), ["the world is round"]);
    assert!(search(&store, "round zz").is_empty());
}

#[test]
fn invalid_fts_syntax_does_not_error() {
    let store = search_fixture();
    for bad in [
        "\"",
        "\"unbalanced",
        "(",
        "world)",
        "*",
        "AND",
        "world AND",
        "OR OR",
        "NOT",
        "NEAR(",
        "^",
        "a:b",
        "nocolumn: world",
        "\"quoted\" (or",
    ] {
        store
            .history(&HistoryQuery { search: Some(bad.into()), ..Default::default() })
            .unwrap_or_else(|e| panic!("search {bad:?}: {e}"));
    }
    // The fallback searches the string literally.
    let quoted = ["say \"quoted\" (or not) *star* a:b"];
    assert_eq!(search(&store, "\"quoted\" (or"), quoted);
    assert_eq!(search(&store, "*star*"), quoted);
    assert_eq!(search(&store, "a:b"), quoted);
    assert_eq!(search(&store, "world AND"), Vec::<String>::new());
}

#[test]
fn search_combines_with_peer_since_and_limit() {
    let store = search_fixture();
    let q = HistoryQuery {
        peer: Some(("carol".into(), "host-a".into())),
        search: Some("world".into()),
        ..Default::default()
    };
    assert_eq!(texts(&store.history(&q).unwrap()), ["the world is round"]);
    let q = HistoryQuery { search: Some("orl".into()), limit: Some(1), ..Default::default() };
    assert_eq!(texts(&store.history(&q).unwrap()), ["the world is round"]);
    let q = HistoryQuery { search: Some("hi".into()), since: Some(at(T0 + 4001)), ..Default::default() };
    assert!(store.history(&q).unwrap().is_empty());
}

#[test]
fn recent_incoming_keys_since() {
    let mut store = Store::open_in_memory().unwrap();
    store
        .transaction(|tx| {
            tx.insert_message(&msg(Direction::In, "bob", "1", T0, "old"))?;
            tx.insert_message(&msg(Direction::In, "bob", "2", T0 + 1000, "new"))?;
            tx.insert_message(&msg(Direction::Out, "bob", "3", T0 + 2000, "out"))?;
            tx.insert_message(&msg(Direction::In, "carol", "4", T0 + 3000, "new"))?;
            Ok(())
        })
        .unwrap();
    let keys = store.recent_incoming_keys(at(T0 + 1000), 10).unwrap();
    assert_eq!(
        keys,
        [
            ("bob".into(), "host-a".into(), "2".into(), "new".into()),
            ("carol".into(), "host-a".into(), "4".into(), "new".into())
        ]
    );
    // Only the newest `limit`, still oldest first.
    let keys = store.recent_incoming_keys(at(T0), 1).unwrap();
    assert_eq!(keys, [("carol".into(), "host-a".into(), "4".into(), "new".into())]);
}

#[test]
fn what_strangers_send_is_bounded_and_conversations_are_kept() {
    let mut store = Store::open_in_memory().unwrap();
    store
        .transaction(|tx| {
            // A conversation: we wrote to bob; he wrote a lot.
            tx.insert_message(&msg(Direction::Out, "bob", "1", T0, "hi bob"))?;
            for i in 0..50 {
                tx.insert_message(&msg(Direction::In, "bob", &format!("b{i}"), T0 + i, "from bob"))?;
            }
            // A stranger who never stops, and a flood of made-up names.
            for i in 0..50 {
                tx.insert_message(&msg(Direction::In, "spam", &format!("s{i}"), T0 + 100 + i, &format!("spam {i}")))?;
            }
            for i in 0..30 {
                tx.insert_message(&msg(Direction::In, &format!("fake{i}"), "1", T0 + 200 + i, "hello"))?;
                tx.upsert_peer(&PeerRecord {
                    user: format!("fake{i}"),
                    host: "x".into(),
                    nick: String::new(),
                    group: String::new(),
                    addr: "10.0.0.1:2425".into(),
                    client: "ipmsg".into(),
                    last_seen: at(T0 + i),
                    marker: None,
                })?;
            }
            Ok(())
        })
        .unwrap();
    let r = Retention { peers: 10, per_stranger: 5, strangers: 20 };
    let removed = store.transaction(|tx| tx.prune(&r)).unwrap();
    assert_eq!(removed, 20 + (45 + 30 - 15));
    let all = store.history(&HistoryQuery::default()).unwrap();
    let from = |u: &str| all.iter().filter(|m| m.peer.user == u).count();
    assert_eq!(from("bob"), 51, "a conversation is kept whole");
    // The newest 20 stranger messages: the 30 fakes' and none of spam's older ones.
    let strangers = all.iter().filter(|m| m.peer.user != "bob").count();
    assert_eq!(strangers, 20);
    assert!(all.iter().filter(|m| m.peer.user == "spam").count() <= 5);
    assert_eq!(store.peers().unwrap().len(), 10);
    assert_eq!(store.peers().unwrap()[0].user, "fake20", "the most recently seen are kept");
}

#[test]
fn peers_are_upserted() {
    let mut store = Store::open_in_memory().unwrap();
    let mut p = PeerRecord {
        user: "bob".into(),
        host: "box".into(),
        nick: "Bob".into(),
        group: "".into(),
        addr: "192.0.2.9:2425".into(),
        client: "IPMsg".into(),
        last_seen: at(T0),
        marker: Some("mac:00112233AABB".into()),
    };
    let carol = PeerRecord { user: "carol".into(), ..p.clone() };
    store
        .transaction(|tx| {
            tx.upsert_peer(&p)?;
            tx.upsert_peer(&carol)
        })
        .unwrap();
    p.nick = "Bobby".into();
    p.group = "开发".into();
    p.addr = "192.0.2.10:2425".into();
    p.client = "iptux".into();
    p.last_seen = at(T0 + 60_000);
    store.transaction(|tx| tx.upsert_peer(&p)).unwrap();
    // A marker, once known, is kept when an update does not carry one.
    let mut without = p.clone();
    without.marker = None;
    store.transaction(|tx| tx.upsert_peer(&without)).unwrap();
    assert_eq!(store.peers().unwrap(), [p, carol]);
}

#[test]
fn packet_counter_only_grows() {
    let mut store = Store::open_in_memory().unwrap();
    assert_eq!(store.packet_counter().unwrap(), 0);
    store.transaction(|tx| tx.set_packet_counter(100)).unwrap();
    assert_eq!(store.packet_counter().unwrap(), 100);
    store.transaction(|tx| tx.set_packet_counter(50)).unwrap();
    assert_eq!(store.packet_counter().unwrap(), 100);
    store
        .transaction(|tx| {
            tx.set_packet_counter(300)?;
            tx.set_packet_counter(200)
        })
        .unwrap();
    assert_eq!(store.packet_counter().unwrap(), 300);
    store.transaction(|tx| tx.set_packet_counter(0)).unwrap();
    assert_eq!(store.packet_counter().unwrap(), 300);
    let err = store.transaction(|tx| tx.set_packet_counter(u64::MAX)).unwrap_err();
    assert!(err.to_string().contains("out of range"), "{err}");
    assert_eq!(store.packet_counter().unwrap(), 300);
}

#[test]
fn newer_schema_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pigeon.db");
    drop(Store::open(&path).unwrap());
    let newer = SCHEMA_VERSION + 1;
    Connection::open(&path).unwrap().pragma_update(None, "user_version", newer).unwrap();
    let err = Store::open(&path).err().expect("a newer schema must not open");
    assert!(
        matches!(err, StoreError::TooNew { found, supported, .. } if found == newer && supported == SCHEMA_VERSION),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(text.contains(&path.display().to_string()), "{text}");
    assert!(text.contains(&format!("was written by a newer Pigeon (schema {newer} > {SCHEMA_VERSION})")), "{text}");
    // Refusing did not touch it.
    assert_eq!(user_version(&path), i64::from(newer));
}

#[test]
fn a_file_that_is_not_sqlite_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pigeon.db");
    std::fs::write(&path, "[identity]\nnick = \"this is a config file, not a database\"\n".repeat(20)).unwrap();
    let err = Store::open(&path).err().expect("not a database");
    assert!(matches!(err, StoreError::NotADatabase { .. }), "{err:?}");
    let text = err.to_string();
    assert_eq!(text, format!("{} is not a Pigeon database (it is not an SQLite file)", path.display()));
}

#[test]
fn another_programs_sqlite_file_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other.db");
    Connection::open(&path).unwrap().execute_batch("CREATE TABLE cookies (name TEXT, value TEXT);").unwrap();
    let err = Store::open(&path).err().expect("not ours");
    assert!(matches!(err, StoreError::NotPigeon { .. }), "{err:?}");
    assert!(err.to_string().contains("is not a Pigeon database"), "{err}");
    // An empty file is a fresh database, though.
    let empty = dir.path().join("empty.db");
    std::fs::write(&empty, "").unwrap();
    Store::open(&empty).unwrap();
}

#[test]
fn missing_directory_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no-such-dir").join("pigeon.db");
    let err = Store::open(&path).err().expect("no directory");
    assert!(matches!(err, StoreError::CannotOpen { .. }), "{err:?}");
    assert!(err.to_string().contains("cannot open database"), "{err}");
}

#[test]
fn database_locked_by_another_process_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pigeon.db");
    drop(Store::open(&path).unwrap());
    // Another writer holds the write lock.
    let other = Connection::open(&path).unwrap();
    other.execute_batch("BEGIN IMMEDIATE; INSERT INTO meta (key, value) VALUES ('x', 1);").unwrap();
    let mut store = Store::open_with_timeout(&path, Duration::from_millis(50)).unwrap();
    let err = store.transaction(|tx| tx.set_packet_counter(1)).unwrap_err();
    assert!(matches!(err, StoreError::Locked { .. }), "{err:?}");
    assert!(err.to_string().contains(&format!("database {} is locked by another process", path.display())), "{err}");
    other.execute_batch("COMMIT").unwrap();
    store.transaction(|tx| tx.set_packet_counter(1)).unwrap();
}

#[test]
fn a_thousand_messages_in_one_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pigeon.db");
    let mut store = Store::open(&path).unwrap();
    let ids = store
        .transaction(|tx| {
            let mut ids = Vec::new();
            for i in 0..1000i64 {
                let dir = if i % 3 == 0 { Direction::Out } else { Direction::In };
                let text = format!("batch message {i} 批量消息");
                let m = msg(dir, "bob", &(1_000_000 + i).to_string(), T0 + i, &text);
                ids.push(tx.insert_message(&m)?.unwrap());
            }
            tx.set_packet_counter(1_000_999)?;
            Ok(ids)
        })
        .unwrap();
    assert_eq!(ids.len(), 1000);
    drop(store);

    let store = Store::open(&path).unwrap();
    let all = store.history(&HistoryQuery::default()).unwrap();
    assert_eq!(all.len(), 1000);
    assert_eq!(all[0].text, "batch message 0 批量消息");
    assert_eq!(all[999].text, "batch message 999 批量消息");
    assert_eq!(search(&store, "message 999"), ["batch message 999 批量消息"]);
    assert_eq!(search(&store, "批量消息").len(), 1000);
    assert_eq!(store.outbox().unwrap().len(), 334);
    assert_eq!(store.packet_counter().unwrap(), 1_000_999);
    // The external-content index is consistent with its table.
    store.conn.execute_batch("INSERT INTO messages_fts (messages_fts) VALUES ('integrity-check');").unwrap();
}

#[test]
fn fts_index_follows_text_updates_and_deletes() {
    // No API edits or deletes messages yet; the triggers are there for
    // when one does.
    let mut store = search_fixture();
    store
        .conn
        .execute_batch(
            "UPDATE messages SET text = 'replaced words' WHERE text = 'the world is round';
             DELETE FROM messages WHERE text LIKE 'Hello%';
             INSERT INTO messages_fts (messages_fts) VALUES ('integrity-check');",
        )
        .unwrap();
    assert!(search(&store, "world").is_empty());
    assert_eq!(search(&store, "replaced"), ["replaced words"]);
    // State changes do not disturb the index.
    store.transaction(|tx| tx.set_in_state("carol", "host-a", "6", MessageState::Read)).unwrap();
    assert_eq!(search(&store, "replaced"), ["replaced words"]);
}

#[test]
fn names_round_trip() {
    for s in [
        MessageState::Sending,
        MessageState::Delivered,
        MessageState::Queued,
        MessageState::Failed,
        MessageState::Read,
        MessageState::Unread,
    ] {
        assert_eq!(s.as_str().parse::<MessageState>().unwrap(), s);
        assert_eq!(MessageState::from_str(&s.to_string()).unwrap(), s);
    }
    for d in [Direction::In, Direction::Out] {
        assert_eq!(d.as_str().parse::<Direction>().unwrap(), d);
    }
    let err = "lost".parse::<MessageState>().unwrap_err();
    assert_eq!(err.to_string(), "unknown message state \"lost\"");
}

#[test]
fn search_planning() {
    assert_eq!(
        Search::plain("hello 你好 x"),
        Search {
            fts: Some("\"hello\"".into()),
            like: vec!["%你好%".into(), "%x%".into()],
            files: vec!["%hello%".into(), "%你好%".into(), "%x%".into()]
        }
    );
    assert_eq!(Search::literal("a\"b").fts.as_deref(), Some("\"a\"\"b\""));
    assert_eq!(Search::literal("ab").like, ["%ab%"]);
    assert_eq!(like_pattern(r"1%_\"), r"%1\%\_\\%");
    assert!(has_fts_syntax("a OR b"));
    assert!(has_fts_syntax("pre*"));
    assert!(!has_fts_syntax("or and not, a-b c.d"));
}

/// A database of schema 3 (the previous release) with a peer, a message,
/// a queued message and an offer: after migration every row is there, the
/// peers without a marker (they are the first machine of their name).
#[test]
fn a_schema_3_database_migrates_without_loss() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pigeon.db");
    {
        let conn = Connection::open(&path).unwrap();
        for m in &MIGRATIONS[..3] {
            conn.execute_batch(m).unwrap();
        }
        conn.pragma_update(None, "user_version", 3).unwrap();
        conn.execute_batch(
            "INSERT INTO peers VALUES ('pi', 'raspberrypi', 'pi', '', '198.18.0.12:2425', 'pigeon', 1700000000000);
             INSERT INTO messages (direction, peer_user, peer_host, peer_nick, peer_addr, packet_no, time, text,
                                   command, sealed, broadcast, state)
                 VALUES ('in', 'pi', 'raspberrypi', 'pi', '198.18.0.12:2425', '7', 1700000000000, '你好',
                         288, 0, 0, 'unread'),
                        ('out', 'pi', 'raspberrypi', 'pi', '198.18.0.12:2425', '8', 1700000001000, 'queued one',
                         288, 0, 0, 'queued'),
                        ('out', 'pi', 'raspberrypi', 'pi', '198.18.0.12:2425', '9', 1700000002000, 'office notice',
                         1056, 0, 1, 'delivered'),
                        ('out', 'qa', 'qa-pc', 'QA', '198.18.0.13:2425', '9', 1700000002001, 'office notice',
                         8389664, 0, 1, 'delivered');
             INSERT INTO offers VALUES ('8', 1, 'pi', 'raspberrypi', '198.18.0.12:2425', X'2f746d702f61',
                                        'a', 'file', 1, 0, 1700000001000, 1900000000000, 0);",
        )
        .unwrap();
    }
    let store = Store::open(&path).unwrap();
    assert_eq!(user_version(&path), i64::from(SCHEMA_VERSION));
    let peers = store.peers().unwrap();
    assert_eq!((peers.len(), peers[0].user.as_str(), peers[0].marker.as_ref()), (1, "pi", None));
    let all = store.history(&HistoryQuery::default()).unwrap();
    assert_eq!(texts(&all), ["你好", "queued one", "office notice"]);
    // The broadcast's rows per peer became one, to everyone (migration 6).
    let b = &all[2];
    assert_eq!((b.peer.user.as_str(), b.peer.host.as_str(), b.peer.nick.as_str()), ("*", "*", "everyone"));
    assert_eq!((b.broadcast(), b.command, b.time.timestamp_millis()), (true, 1056, 1_700_000_002_000));
    let q = HistoryQuery { search: Some("notice".into()), ..Default::default() };
    assert_eq!(store.history(&q).unwrap().len(), 1, "the search index follows");
    assert_eq!(texts(&store.outbox().unwrap()), ["queued one"]);
    assert_eq!(store.live_offers(8, at(1_800_000_000_000)).unwrap().len(), 1);
}
