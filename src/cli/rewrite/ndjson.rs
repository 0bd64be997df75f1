//! NDJSON for `scrim rewrite`: reading, rewriting and writing on three
//! threads, memory flat whatever the size of the input.

use std::io::{Read, Write};
use std::os::fd::AsFd as _;
use std::process::ExitCode;

use super::{completed_lines, field_counts, show_records, summary};
use crate::policy::BodyFormat;
use crate::rewrite::Engine;

/// NDJSON: whole lines are fed to the engine (so each is read by its fast
/// path), and output is written as records complete. A refused line ends
/// the run, or with `--skip-refused` is left out (and reported) and the
/// run goes on with the next line.
///
/// Reading and writing run on threads of their own, so that copying bytes
/// in and out of the kernel overlaps with rewriting; a few buffers of
/// [`NDJSON_PIECE`] bytes go round, so memory stays flat whatever the size
/// of the input.
pub(super) fn rewrite_ndjson(
    engine: &Engine,
    input: Box<dyn Read + Send>,
    skip_refused: bool,
    bar: &indicatif::ProgressBar,
) -> ExitCode {
    use std::sync::mpsc::sync_channel;
    let stdout = match std::io::stdout().as_fd().try_clone_to_owned() {
        Ok(fd) => std::fs::File::from(fd),
        Err(e) => {
            eprintln!("stdout: {e}");
            return ExitCode::from(2);
        }
    };
    // Whole lines in; empty buffers back to be filled again.
    let (lines_tx, lines_rx) = sync_channel::<std::io::Result<Vec<u8>>>(2);
    let (spare_in_tx, spare_in_rx) = sync_channel::<Vec<u8>>(4);
    // Output out; empty buffers back.
    let (out_tx, out_rx) = sync_channel::<Vec<u8>>(2);
    let (spare_out_tx, spare_out_rx) = sync_channel::<Vec<u8>>(4);
    let reader = std::thread::spawn(move || read_lines(input, &lines_tx, &spare_in_rx));
    let writer = std::thread::spawn(move || write_pieces(stdout, &out_rx, &spare_out_tx));
    let outcome = rewrite_pieces(
        engine,
        &lines_rx,
        &spare_in_tx,
        &out_tx,
        &spare_out_rx,
        skip_refused,
        bar,
    );
    drop(out_tx);
    drop(lines_rx);
    let wrote = writer.join().is_ok_and(|r| r.is_ok());
    let _ = reader.join();
    bar.finish_and_clear();
    let (totals, refused, failure) = match outcome {
        Ok(x) => x,
        Err(e) => {
            eprintln!("read error: {e}");
            return ExitCode::from(2);
        }
    };
    if !wrote {
        return ExitCode::from(2);
    }
    if let Some((e, done)) = failure {
        eprintln!("refused: {e}");
        eprintln!("{}", field_counts(&done));
        eprintln!("{}", summary(&totals, totals.documents, 1));
        return ExitCode::from(1);
    }
    if !skip_refused {
        eprintln!("{}", field_counts(&totals));
    }
    eprintln!("{}", summary(&totals, totals.documents, refused));
    if refused > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// Bytes read at a time for NDJSON (a line longer than this grows the
/// buffer it is read into).
const NDJSON_PIECE: usize = 256 * 1024;

/// The reader thread: sends the input as pieces of whole lines (the last
/// piece may end without a line feed), then an empty piece at the end.
fn read_lines(
    mut input: Box<dyn Read + Send>,
    lines: &std::sync::mpsc::SyncSender<std::io::Result<Vec<u8>>>,
    spare: &std::sync::mpsc::Receiver<Vec<u8>>,
) {
    let mut carry: Vec<u8> = Vec::new();
    loop {
        // A buffer back from the rewriter is already as long as a piece was:
        // its bytes are overwritten, not zeroed again.
        let mut buf = spare.try_recv().unwrap_or_default();
        let start = carry.len();
        if buf.len() < start + NDJSON_PIECE {
            buf.resize(start + NDJSON_PIECE, 0);
        }
        buf[..start].copy_from_slice(&carry);
        carry.clear();
        let read_into = start..start + NDJSON_PIECE;
        let n = loop {
            match input.read(&mut buf[read_into.clone()]) {
                Ok(n) => break Ok(n),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => break Err(e),
            }
        };
        let n = match n {
            Ok(n) => n,
            Err(e) => {
                let _ = lines.send(Err(e));
                return;
            }
        };
        buf.truncate(start + n);
        if n == 0 {
            if !buf.is_empty() && lines.send(Ok(buf)).is_err() {
                return;
            }
            let _ = lines.send(Ok(Vec::new()));
            return;
        }
        match memchr::memrchr(b'\n', &buf[start..]) {
            Some(i) => {
                carry.extend_from_slice(&buf[start + i + 1..]);
                buf.truncate(start + i + 1);
                if lines.send(Ok(buf)).is_err() {
                    return;
                }
            }
            // No line ends here yet: keep reading into the same line.
            None => carry = buf,
        }
    }
}

/// The writer thread: writes each piece, hands the buffer back.
pub(super) fn write_pieces(
    mut stdout: std::fs::File,
    pieces: &std::sync::mpsc::Receiver<Vec<u8>>,
    spare: &std::sync::mpsc::SyncSender<Vec<u8>>,
) -> std::io::Result<()> {
    for piece in pieces {
        stdout.write_all(&piece)?;
        let _ = spare.try_send(piece);
    }
    stdout.flush()
}

/// What an NDJSON run ends with: the counts of the records written, how
/// many were refused and left out, and the refusal that ended the run.
type NdjsonOutcome = (
    crate::rewrite::Stats,
    u64,
    Option<(crate::rewrite::RewriteError, crate::rewrite::Stats)>,
);

/// The rewriting stage of [`rewrite_ndjson`].
#[allow(clippy::too_many_arguments)]
fn rewrite_pieces(
    engine: &Engine,
    lines: &std::sync::mpsc::Receiver<std::io::Result<Vec<u8>>>,
    spare_in: &std::sync::mpsc::SyncSender<Vec<u8>>,
    out_tx: &std::sync::mpsc::SyncSender<Vec<u8>>,
    spare_out: &std::sync::mpsc::Receiver<Vec<u8>>,
    skip_refused: bool,
    bar: &indicatif::ProgressBar,
) -> std::io::Result<NdjsonOutcome> {
    let mut totals = crate::rewrite::Stats::default();
    let mut refused = 0u64;
    // Lines before the current rewriter's first one.
    let mut lines_before = 0u64;
    let mut rw = engine.body_rewriter(BodyFormat::Ndjson);
    rw.track_completed();
    // Bytes fed to the current rewriter before the piece being fed, and
    // where in the input it started.
    let mut fed_before = 0u64;
    let mut rw_start = 0u64;
    let mut failure = None;
    for piece in lines {
        let piece = piece?;
        let eof = piece.is_empty();
        bar.inc(piece.len() as u64);
        let mut out = spare_out.try_recv().unwrap_or_default();
        out.clear();
        out.reserve(piece.len() + piece.len() / 4);
        let mut at = 0;
        loop {
            let rest = &piece[at..];
            let fed = rw.feed(rest, &mut out).and_then(|()| {
                if eof {
                    rw.finish(&mut out).map(|_| ())
                } else {
                    Ok(())
                }
            });
            let Err(mut e) = fed else {
                fed_before += rest.len() as u64;
                break;
            };
            // The records before the refused one stand.
            out.truncate(completed_lines(&out));
            let done = rw.completed().unwrap_or_default();
            let line = lines_before + e.line.unwrap_or(1);
            let rel = (e.offset.saturating_sub(fed_before) as usize).min(rest.len());
            // Where in the whole input, not in this rewriter's part of it.
            e.offset += rw_start;
            e.line = Some(line);
            totals.absorb(&done);
            totals.documents += done.documents;
            if !skip_refused {
                failure = Some((e, done));
                break;
            }
            refused += 1;
            e.line = None;
            bar.suspend(|| eprintln!("line {line}: refused: {e}"));
            // Go on after the refused line, with a fresh rewriter.
            let next = memchr::memchr(b'\n', &rest[rel..]).map_or(rest.len(), |i| rel + i + 1);
            lines_before = line;
            at += next;
            rw_start += fed_before + next as u64;
            fed_before = 0;
            rw = engine.body_rewriter(BodyFormat::Ndjson);
            rw.track_completed();
            if at >= piece.len() && !eof {
                break;
            }
        }
        let _ = spare_in.try_send(piece);
        if !out.is_empty() && out_tx.send(out).is_err() {
            // The writer stopped (stdout closed): it reports.
            break;
        }
        if failure.is_some() || eof {
            break;
        }
        show_records(bar, totals.documents + rw.documents());
    }
    if failure.is_none() {
        let last = rw.completed().unwrap_or_default();
        totals.absorb(&last);
        totals.documents += last.documents;
    }
    Ok((totals, refused, failure))
}
