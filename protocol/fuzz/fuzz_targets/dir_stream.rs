//! `DirStreamDecoder`: the input is fed in chunks whose sizes come from the
//! first byte, keeping unused bytes as a fetcher does. The decoder must make
//! progress, never hand out more data bytes than it was given, and produce
//! the same events as when given the whole input at once.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pigeon_protocol::{Charset, DirEvent, DirHeader, DirStreamDecoder, Error};

#[derive(Debug, PartialEq)]
enum Ev {
    Dir(DirHeader),
    File(DirHeader),
    Data(Vec<u8>),
    FileEnd,
    Parent(DirHeader),
    Err(Error),
}

/// Appends an event, merging consecutive data.
fn push(log: &mut Vec<Ev>, ev: DirEvent<'_>) {
    match ev {
        DirEvent::Dir(h) => log.push(Ev::Dir(h)),
        DirEvent::File(h) => log.push(Ev::File(h)),
        DirEvent::Data(d) => match log.last_mut() {
            Some(Ev::Data(v)) => v.extend_from_slice(d),
            _ => log.push(Ev::Data(d.to_vec())),
        },
        DirEvent::FileEnd => log.push(Ev::FileEnd),
        DirEvent::Parent(h) => log.push(Ev::Parent(h)),
    }
}

fn decoder(cs: Charset, small: bool) -> DirStreamDecoder {
    let d = DirStreamDecoder::new(cs);
    if small {
        d.max_header(64).max_depth(3)
    } else {
        d
    }
}

/// Feeds `input` in chunks of `sizes`; returns the log and the data total.
fn run(mut dec: DirStreamDecoder, input: &[u8], mut next_size: impl FnMut() -> usize) -> (Vec<Ev>, usize) {
    let mut log = Vec::new();
    let mut buf: Vec<u8> = Vec::new();
    let mut fed = 0;
    let mut data_total = 0;
    // Every event but FileEnd uses at least one byte, and FileEnd follows one
    // that did: more calls than this means the decoder is not progressing.
    let max_calls = 4 * input.len() + 8;
    let mut calls = 0;
    loop {
        let take = next_size().min(input.len() - fed);
        buf.extend_from_slice(&input[fed..fed + take]);
        fed += take;
        let mut pos = 0;
        loop {
            calls += 1;
            assert!(calls <= max_calls, "decoder makes no progress");
            match dec.decode(&buf[pos..]) {
                Ok((n, ev)) => {
                    assert!(n <= buf.len() - pos, "used more than it was given");
                    if let Some(DirEvent::Data(d)) = &ev {
                        assert_eq!(d.len(), n);
                        assert!(!d.is_empty());
                        data_total += d.len();
                        assert!(data_total <= input.len(), "more data out than bytes in");
                    }
                    pos += n;
                    match ev {
                        Some(ev) => push(&mut log, ev),
                        None => break,
                    }
                }
                Err(e) => {
                    log.push(Ev::Err(e));
                    return (log, data_total);
                }
            }
        }
        buf.drain(..pos);
        if fed == input.len() {
            assert!(buf.len() <= input.len());
            return (log, data_total);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, input)) = data.split_first() else {
        return;
    };
    let cs = [Charset::Utf8, Charset::Gbk, Charset::Cp932][(first & 3) as usize % 3];
    let small = first & 4 != 0;

    let (whole, whole_total) = run(decoder(cs, small), input, || usize::MAX);

    // Chunk sizes: a small generator seeded by the first byte, 1..=max.
    let max = 1 + (first >> 3) as usize; // 1..=32
    let mut state = u32::from(first) | 0x100;
    let sizes = move || {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        1 + (state as usize) % max
    };
    let (chunked, chunked_total) = run(decoder(cs, small), input, sizes);
    assert_eq!(whole_total, chunked_total);
    assert_eq!(whole, chunked, "chunking changed the events");
});
