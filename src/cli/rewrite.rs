//! `scrim rewrite`: a file through the engine, as the gateway would send it.

mod ndjson;

use std::io::{IsTerminal, Read, Write};
use std::os::fd::AsFd as _;
use std::path::PathBuf;
use std::process::ExitCode;

use super::args::Format;
use super::{Reporter, RulesGiven, load, sniff, unknown_recipient_help};
use crate::policy::BodyFormat;
use crate::pseudonym::KeyRing;
use crate::rewrite::Engine;
use ndjson::{rewrite_ndjson, write_pieces};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

/// How `scrim rewrite` reports and what it does with refused NDJSON lines.
pub struct RewriteOptions {
    /// Show each field's selector, action and outcome on stderr.
    pub explain: bool,
    /// Draw a progress bar (when stderr is a terminal).
    pub progress: bool,
    /// Leave refused NDJSON lines out and go on.
    pub skip_refused: bool,
}

/// Rewrites a file (or standard input) for one recipient to standard
/// output, with the end-of-run counts on stderr.
pub fn run(
    rules: PathBuf,
    recipient: &str,
    keys: Option<PathBuf>,
    test_key: bool,
    format: Option<Format>,
    options: RewriteOptions,
    file: Option<PathBuf>,
) -> ExitCode {
    let RewriteOptions {
        explain,
        progress,
        skip_refused,
    } = options;
    let mut reporter = Reporter::stderr_human();
    let policies = match load(
        std::slice::from_ref(&rules),
        RulesGiven::Flag,
        &mut reporter,
    ) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let loaded: Vec<&str> = policies.iter().map(|p| p.recipient.as_str()).collect();
    let Some(policy) = policies.iter().find(|p| p.recipient == recipient) else {
        eprintln!(
            "error: unknown recipient \"{recipient}\": no rule file in {} is for it\nhelp: {}",
            rules.display(),
            unknown_recipient_help(recipient, &loaded)
        );
        return ExitCode::from(1);
    };
    let policy = policy.clone();
    let ring = if test_key {
        KeyRing::test_ring()
    } else if let Some(path) = keys {
        match KeyRing::load(&path) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(1);
            }
        }
    } else {
        eprintln!(
            "warning: no key ring (--keys or SCRIM_KEYS_FILE): using a random ephemeral key; pseudonyms will differ on every run"
        );
        match KeyRing::ephemeral() {
            Ok(r) => r,
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(1);
            }
        }
    };
    let engine = Engine::new(policy, &ring);
    let mut size = None;
    let mut input: Box<dyn Read + Send> = match &file {
        Some(f) if f.as_os_str() != "-" => match std::fs::File::open(f) {
            Ok(fh) => {
                size = fh.metadata().ok().map(|m| m.len()).filter(|_| f.is_file());
                Box::new(fh)
            }
            Err(e) => {
                eprintln!("{}: {e}", f.display());
                return ExitCode::from(2);
            }
        },
        _ => Box::new(std::io::stdin()),
    };
    let format = match format {
        Some(f) => f.into(),
        None => match file
            .as_ref()
            .and_then(|f| f.extension())
            .and_then(|e| e.to_str())
        {
            Some("ndjson" | "jsonl") => BodyFormat::Ndjson,
            Some("json") => BodyFormat::Json,
            // Standard input or another extension: NDJSON when the first
            // line is a whole JSON value and more follows, else JSON.
            _ => {
                let head = match peek_lines(&mut input) {
                    Ok(h) => h,
                    Err(e) => {
                        eprintln!("read error: {e}");
                        return ExitCode::from(2);
                    }
                };
                let format = match sniff(&head) {
                    BodyFormat::Ndjson => BodyFormat::Ndjson,
                    _ => BodyFormat::Json,
                };
                input = Box::new(std::io::Cursor::new(head).chain(input));
                format
            }
        },
    };
    let bar = progress_bar(progress, size);
    if format == BodyFormat::Ndjson && (skip_refused || !explain) {
        return rewrite_ndjson(&engine, input, skip_refused, &bar);
    }
    let mut rw = engine.body_rewriter(format);
    if explain {
        rw.explain();
    }
    rw.track_completed();
    // Straight to the file descriptor: the standard handle's line buffering
    // would look for line feeds in every byte written.
    let mut stdout = match std::io::stdout().as_fd().try_clone_to_owned() {
        Ok(fd) => std::fs::File::from(fd),
        Err(e) => {
            eprintln!("stdout: {e}");
            return ExitCode::from(2);
        }
    };
    // A refusal leaves no part of a single JSON document (or form body)
    // behind: into a regular file it is written as it is rewritten and the
    // file is cut back to where it started if the document is refused;
    // anywhere else (a pipe, a terminal) it is held and written once
    // complete. NDJSON (here only with --explain) streams whole lines.
    // Chunks of a mebibyte keep almost every event whole in one, for the
    // fast path, and the input is never held whole.
    let stream = format == BodyFormat::Ndjson;
    let mut spill = match if stream { None } else { Spill::into(&stdout) } {
        Some(Ok(s)) => Some(s),
        Some(Err(e)) => {
            eprintln!("stdout: {e}");
            return ExitCode::from(2);
        }
        None => None,
    };
    let mut out = Vec::with_capacity(match (stream, &spill, size) {
        (false, None, Some(s)) => usize::try_from(s).unwrap_or(0).saturating_add(4096),
        _ => SPILL_AT + (64 << 10),
    });
    // Input is read on a thread of its own, so that copying it out of the
    // kernel overlaps with rewriting.
    let piece = if stream { 64 * 1024 } else { 1 << 20 };
    let (chunks_tx, chunks) = sync_channel::<std::io::Result<Vec<u8>>>(2);
    let (spare_in, spare_in_rx) = sync_channel::<Vec<u8>>(4);
    std::thread::spawn(move || read_pieces(input, piece, &chunks_tx, &spare_in_rx));
    let result = loop {
        let chunk = match chunks.recv() {
            Ok(Ok(c)) if c.is_empty() => break rw.finish(&mut out),
            Ok(Ok(c)) => c,
            failed => {
                bar.finish_and_clear();
                match failed {
                    Ok(Err(e)) => eprintln!("read error: {e}"),
                    _ => eprintln!("read error: the input stopped"),
                }
                if let Some(s) = spill {
                    s.cut_back();
                }
                return ExitCode::from(2);
            }
        };
        bar.inc(chunk.len() as u64);
        let fed = rw.feed(&chunk, &mut out);
        let _ = spare_in.try_send(chunk);
        if let Err(e) = fed {
            break Err(e);
        }
        if !stream {
            if let Some(s) = &mut spill
                && out.len() >= SPILL_AT
                && !s.send(&mut out)
            {
                bar.finish_and_clear();
                if let Some(s) = spill {
                    s.cut_back();
                }
                return ExitCode::from(2);
            }
            continue;
        }
        show_records(&bar, rw.documents());
        if out.len() >= 64 * 1024 {
            let done = completed_lines(&out);
            if stdout.write_all(&out[..done]).is_err() {
                return ExitCode::from(1);
            }
            out.drain(..done);
        }
    };
    bar.finish_and_clear();
    match result {
        Ok(stats) => {
            // The output ends with a line feed, like every line-oriented
            // tool's (NDJSON lines already end with theirs): a shell prompt,
            // `cat a b` or `wc -l` see one record per line. It is only
            // added once the document was accepted, so a refusal still
            // leaves nothing of it.
            if !stream {
                out.push(b'\n');
            }
            let wrote = match spill {
                Some(mut s) => {
                    if s.send(&mut out) {
                        s.finish()
                    } else {
                        s.cut_back();
                        return ExitCode::from(2);
                    }
                }
                // In pieces the size of a cache, not one write of the whole.
                None => out.chunks(1 << 20).try_for_each(|c| stdout.write_all(c)),
            };
            if let Err(e) = wrote {
                eprintln!("write error: {e}");
                return ExitCode::from(2);
            }
            let _ = stdout.flush();
            if explain {
                print_explain(rw.explained());
            }
            eprintln!("{}", field_counts(&stats));
            eprintln!("{}", summary(&stats, stats.documents, 0));
            ExitCode::SUCCESS
        }
        Err(e) => {
            if stream {
                let _ = stdout.write_all(&out[..completed_lines(&out)]);
            }
            if let Some(s) = spill {
                s.cut_back();
            }
            if explain {
                print_explain(rw.explained());
            }
            eprintln!("refused: {e}");
            if format == BodyFormat::Json && e.kind == crate::rewrite::ErrorKind::TrailingData {
                eprintln!("help: several documents, one per line? use --format ndjson");
            }
            // Only records that were written count: for NDJSON, the lines
            // before the refused one; for JSON or a form body, none.
            let stats = if stream {
                rw.completed().unwrap_or_default()
            } else {
                Default::default()
            };
            eprintln!("{}", field_counts(&stats));
            eprintln!("{}", summary(&stats, stats.documents, 1));
            ExitCode::from(1)
        }
    }
}

/// Output held before a part of a single document is written to a file.
const SPILL_AT: usize = 1 << 20;

/// A single document's output on its way into a regular file (`> file`,
/// or `>> file` onto an empty one): written by a thread of its own as it
/// is rewritten, and cut back to where it started if the document is
/// refused or a write fails.
struct Spill {
    file: std::fs::File,
    start: u64,
    pieces: Option<SyncSender<Vec<u8>>>,
    spare: Receiver<Vec<u8>>,
    writer: Option<JoinHandle<std::io::Result<()>>>,
}

impl Spill {
    /// `None` when `out` is anything else (a pipe, a terminal, a file
    /// written elsewhere than at its end): nothing is written there before
    /// the document is complete.
    fn into(out: &std::fs::File) -> Option<std::io::Result<Spill>> {
        use std::io::Seek as _;
        let meta = out.metadata().ok()?;
        if !meta.is_file() {
            return None;
        }
        let mut f = out;
        let start = f.stream_position().ok()?;
        if start != meta.len() {
            return None;
        }
        let file = match out.try_clone() {
            Ok(f) => f,
            Err(e) => return Some(Err(e)),
        };
        let (pieces, pieces_rx) = sync_channel::<Vec<u8>>(2);
        let (spare_tx, spare) = sync_channel::<Vec<u8>>(4);
        let writer = std::thread::spawn(move || write_pieces(file, &pieces_rx, &spare_tx));
        Some(out.try_clone().map(|file| Spill {
            file,
            start,
            pieces: Some(pieces),
            spare,
            writer: Some(writer),
        }))
    }

    /// Hands `out` to the writer and leaves an empty buffer in its place;
    /// false when the writer has stopped (a write failed).
    fn send(&mut self, out: &mut Vec<u8>) -> bool {
        let mut next = self
            .spare
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(out.capacity()));
        next.clear();
        let full = std::mem::replace(out, next);
        self.pieces.as_ref().is_some_and(|p| p.send(full).is_ok())
    }

    /// Waits for everything sent to be written.
    fn finish(&mut self) -> std::io::Result<()> {
        drop(self.pieces.take());
        match self.writer.take().map(JoinHandle::join) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(std::io::Error::other("the writer thread failed")),
            None => Ok(()),
        }
    }

    /// Cuts the file back to where the document started, and goes back
    /// there (stderr may share the file: what it says next follows on).
    fn cut_back(mut self) {
        use std::io::Seek as _;
        if let Err(e) = self.finish() {
            eprintln!("write error: {e}");
        }
        let cut = self
            .file
            .set_len(self.start)
            .and_then(|()| self.file.seek(std::io::SeekFrom::Start(self.start)));
        if let Err(e) = cut {
            eprintln!("error: could not cut the output back to where it started: {e}");
        }
    }
}

/// The reader thread of a single document: sends the input in pieces of
/// `size` bytes, then an empty piece at the end (or the error that stopped
/// it).
fn read_pieces(
    mut input: Box<dyn Read + Send>,
    size: usize,
    pieces: &SyncSender<std::io::Result<Vec<u8>>>,
    spare: &Receiver<Vec<u8>>,
) {
    loop {
        // A buffer back from the rewriter keeps its length (the bytes read
        // into it), so only what it lacks is zeroed.
        let mut buf = spare.try_recv().unwrap_or_default();
        if buf.len() < size {
            buf.resize(size, 0);
        }
        let n = loop {
            match input.read(&mut buf) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                r => break r,
            }
        };
        let (piece, last) = match n {
            Ok(n) => {
                buf.truncate(n);
                (Ok(buf), n == 0)
            }
            Err(e) => (Err(e), true),
        };
        if pieces.send(piece).is_err() || last {
            return;
        }
    }
}

/// The output of completed NDJSON records: each ends with its line feed,
/// and no rewritten record holds a raw one.
pub(super) fn completed_lines(out: &[u8]) -> usize {
    memchr::memrchr(b'\n', out).map_or(0, |i| i + 1)
}

/// The progress bar's message: records so far and per second.
pub(super) fn show_records(bar: &indicatif::ProgressBar, records: u64) {
    if bar.is_hidden() {
        return;
    }
    let secs = bar.elapsed().as_secs_f64();
    if secs > 0.0 {
        bar.set_message(format!(
            "{records} records ({:.0}/s)",
            records as f64 / secs
        ));
    }
}

/// A progress bar on stderr: drawn only when stderr is a terminal
/// (indicatif's stderr target hides itself otherwise), never when asked not to.
pub(super) fn progress_bar(enabled: bool, size: Option<u64>) -> indicatif::ProgressBar {
    use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
    if !enabled || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(size, ProgressDrawTarget::stderr());
    let template = if size.is_some() {
        "{bar:30} {bytes}/{total_bytes} ({bytes_per_sec}, {eta} left) {msg}"
    } else {
        "{spinner} {bytes} ({bytes_per_sec}) {msg}"
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
    bar
}

/// The end-of-run field counts.
pub(super) fn field_counts(stats: &crate::rewrite::Stats) -> String {
    format!(
        "kept {}, transformed {}, dropped {} ({} not applicable), documents {}",
        stats.kept, stats.transformed, stats.dropped, stats.not_applicable, stats.documents
    )
}

/// Reads the start of `input` for [`sniff`]: up to the first line and a
/// little of the next (or the end, or 64 KiB).
fn peek_lines(input: &mut dyn Read) -> std::io::Result<Vec<u8>> {
    let mut head = Vec::new();
    let mut chunk = [0u8; 8192];
    while head.len() < 64 * 1024 {
        let n = match input.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        head.extend_from_slice(&chunk[..n]);
        let text = head.trim_ascii_start();
        if let Some(nl) = text.iter().position(|&b| b == b'\n')
            && !text[nl..].trim_ascii().is_empty()
        {
            break;
        }
    }
    Ok(head)
}

/// The end-of-run summary: fields per action, records, refused records.
pub(super) fn summary(stats: &crate::rewrite::Stats, records: u64, refused: u64) -> String {
    let mut parts: Vec<String> = stats
        .by_action
        .nonzero()
        .into_iter()
        .map(|(name, n)| {
            if name == "drop" && stats.not_applicable > 0 {
                format!("{name} {n} ({} not applicable)", stats.not_applicable)
            } else {
                format!("{name} {n}")
            }
        })
        .collect();
    parts.push(format!("records {records}"));
    parts.push(format!("refused records {refused}"));
    parts.join(", ")
}

fn print_explain(entries: &[crate::rewrite::Explained]) {
    let mut err = std::io::stderr().lock();
    for e in entries {
        let sel = match (&e.selector, e.inherited) {
            (Some(s), _) => s.clone(),
            (None, true) => "(kept container)".into(),
            (None, false) => "(default deny)".into(),
        };
        let _ = writeln!(
            err,
            "{:<40} {:<28} {:<14} {}",
            if e.path.is_empty() { "(root)" } else { &e.path },
            sel,
            e.action,
            e.outcome
        );
    }
}
