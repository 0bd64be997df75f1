//! Chunked feeding against whole-buffer feeding, for JSON, NDJSON and form
//! bodies under a fixed policy ([`common::POLICY`]).
//!
//! Input: byte 0 picks the format (and, bit 2, one byte per chunk), byte 1
//! the number of split points, then two bytes per split point; the rest is
//! the body.
//!
//! Oracles: the same outcome either way; when accepted, byte-identical output,
//! equal stats and equal `--explain` records; when refused, the same error
//! (kind, offset, line, path). And the JSON fast path (whole documents, no
//! `--explain`) against the resumable state machine alone, on the same
//! bytes: the same outcome, output, stats and error.

#![no_main]

mod common;

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use scrim::policy::BodyFormat;
use scrim::rewrite::{Engine, Explained, RewriteError, Stats};

static ENGINE: LazyLock<Engine> = LazyLock::new(|| common::engine(common::POLICY).unwrap());

type Outcome = Result<(Vec<u8>, Stats, Vec<Explained>), RewriteError>;

fn rewrite<'a>(format: BodyFormat, chunks: impl IntoIterator<Item = &'a [u8]>) -> Outcome {
    let mut rw = ENGINE.body_rewriter(format);
    rw.explain();
    let mut out = Vec::new();
    for chunk in chunks {
        rw.feed(chunk, &mut out)?;
    }
    let stats = rw.finish(&mut out)?;
    Ok((out, stats, rw.explained().to_vec()))
}

/// Whole buffer without `--explain`: the fast path where it applies, or the
/// state machine alone.
fn plain(format: BodyFormat, body: &[u8], state_machine_only: bool) -> Result<(Vec<u8>, Stats), RewriteError> {
    let mut rw = ENGINE.body_rewriter(format);
    if state_machine_only {
        rw.state_machine_only();
    }
    let mut out = Vec::new();
    rw.feed(body, &mut out)?;
    let stats = rw.finish(&mut out)?;
    Ok((out, stats))
}

fuzz_target!(|data: &[u8]| {
    let [mode, n, rest @ ..] = data else { return };
    let format = [BodyFormat::Json, BodyFormat::Ndjson, BodyFormat::Form][(mode % 4 % 3) as usize];
    let n = (*n % 17) as usize;
    if rest.len() < 2 * n {
        return;
    }
    let (splits, body) = rest.split_at(2 * n);
    let mut cuts: Vec<usize> = splits
        .chunks(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]) as usize % (body.len() + 1))
        .collect();
    cuts.sort_unstable();

    let chunks: Vec<&[u8]> = if mode & 4 != 0 {
        body.chunks(1).collect()
    } else {
        let mut v = Vec::new();
        let mut from = 0;
        for c in cuts.into_iter().chain([body.len()]) {
            v.push(&body[from..c]); // empty chunks included
            from = c;
        }
        v
    };

    let whole = rewrite(format, [body]);
    let chunked = rewrite(format, chunks.iter().copied());
    match (&whole, &chunked) {
        (Ok(w), Ok(c)) => {
            assert!(
                w.0 == c.0,
                "{format:?}: output differs\nwhole:   {:?}\nchunked: {:?}",
                String::from_utf8_lossy(&w.0),
                String::from_utf8_lossy(&c.0)
            );
            assert_eq!(w.1, c.1, "{format:?}: stats differ");
            assert_eq!(w.2, c.2, "{format:?}: explain records differ");
        }
        (Err(w), Err(c)) => {
            assert_eq!(
                (w.kind, w.offset, w.line),
                (c.kind, c.offset, c.line),
                "{format:?}: different refusal"
            );
            assert_eq!(w.path, c.path, "{format:?}: refusal path differs");
        }
        _ => panic!("{format:?}: whole {whole:?} but chunked {chunked:?}"),
    }

    let fast = plain(format, body, false);
    let slow = plain(format, body, true);
    match (&fast, &slow) {
        (Ok(f), Ok(s)) => {
            assert!(
                f.0 == s.0,
                "{format:?}: fast path output differs\nfast: {:?}\nslow: {:?}",
                String::from_utf8_lossy(&f.0),
                String::from_utf8_lossy(&s.0)
            );
            assert_eq!(f.1, s.1, "{format:?}: fast path stats differ");
        }
        (Err(f), Err(s)) => {
            assert_eq!(
                (f.kind, f.offset, f.line, &f.path),
                (s.kind, s.offset, s.line, &s.path),
                "{format:?}: fast path refusal differs"
            );
        }
        _ => panic!("{format:?}: fast {fast:?} but state machine {slow:?}"),
    }
});
