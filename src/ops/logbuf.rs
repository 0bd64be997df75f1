//! Log lines of the service workers, handed to the log writer in batches.
//!
//! Every request writes an audit line. Handing each line to the writer
//! thread on its own costs a channel message, a wake-up of that thread and a
//! `write` system call per request, which at tens of thousands of requests a
//! second is a measurable share of the gateway's time. A service worker
//! ([`batch_this_thread`]) instead gathers its lines in a buffer of its own
//! and passes them on once [`BATCH_BYTES`] are pending, and on
//! [`flush_this_thread`], which the worker calls every [`FLUSH_EVERY`] and
//! when it stops: the buffered access log of nginx (`buffer=64k flush=1s`),
//! with a shorter delay. Other threads write through at once.

use std::cell::RefCell;
use std::io::{self, Write};
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;

/// Pending bytes that make a worker pass its lines on.
pub const BATCH_BYTES: usize = 32 * 1024;

/// The longest a line waits in a worker's buffer.
pub const FLUSH_EVERY: Duration = Duration::from_millis(200);

type Sink = Box<dyn Write>;

thread_local! {
    /// This thread's pending lines and where they go; `None` while the
    /// thread writes through.
    static PENDING: RefCell<Option<Pending>> = const { RefCell::new(None) };
}

struct Pending {
    bytes: Vec<u8>,
    /// Set on the first line, from the installed writer.
    sink: Option<Sink>,
}

/// From now on, this thread's log lines are batched.
pub fn batch_this_thread() {
    PENDING.with(|p| {
        p.borrow_mut().get_or_insert_with(|| Pending {
            bytes: Vec::with_capacity(BATCH_BYTES),
            sink: None,
        });
    });
}

/// Passes this thread's pending lines on.
pub fn flush_this_thread() {
    PENDING.with(|p| {
        if let Some(p) = p.borrow_mut().as_mut() {
            p.flush();
        }
    });
}

impl Pending {
    fn flush(&mut self) {
        if let Some(sink) = self.sink.as_mut()
            && !self.bytes.is_empty()
        {
            // The writer's own error handling applies (it never blocks a
            // worker: it is the non-blocking channel to the writer thread).
            let _ = sink.write_all(&self.bytes);
            let _ = sink.flush();
        }
        self.bytes.clear();
    }
}

/// A [`MakeWriter`] that batches the lines of threads that asked for it
/// ([`batch_this_thread`]) and writes through on every other thread.
#[derive(Clone)]
pub struct Batched<W> {
    inner: W,
}

impl<W> Batched<W> {
    /// Wraps the writer that lines finally go to.
    pub fn new(inner: W) -> Self {
        Batched { inner }
    }
}

/// One line's writer, from [`Batched`].
pub struct LineWriter<W> {
    inner: W,
}

impl<'a, W> MakeWriter<'a> for Batched<W>
where
    W: Write + Clone + 'static,
{
    type Writer = LineWriter<W>;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter {
            inner: self.inner.clone(),
        }
    }
}

impl<W: Write + Clone + 'static> Write for LineWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let batched = PENDING.with(|p| match p.borrow_mut().as_mut() {
            Some(p) => {
                if p.sink.is_none() {
                    p.sink = Some(Box::new(self.inner.clone()));
                }
                p.bytes.extend_from_slice(buf);
                if p.bytes.len() >= BATCH_BYTES {
                    p.flush();
                }
                true
            }
            None => false,
        });
        if batched {
            Ok(buf.len())
        } else {
            self.inner.write(buf)
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        // Batched lines are flushed by size and time, not per line.
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Collect(Arc<Mutex<Vec<Vec<u8>>>>);

    impl Write for Collect {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().push(buf.to_vec());
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn batched_threads_pass_lines_on_by_size_and_on_flush_others_write_through() {
        let out = Collect::default();
        let make = Batched::new(out.clone());
        let line = [b'x'; 128];
        std::thread::scope(|s| {
            s.spawn(|| {
                make.make_writer().write_all(&line).unwrap();
                assert_eq!(out.0.lock().unwrap().len(), 1, "written through");
            })
            .join()
            .unwrap();
            s.spawn(|| {
                batch_this_thread();
                let n = BATCH_BYTES / line.len();
                for _ in 0..n - 1 {
                    make.make_writer().write_all(&line).unwrap();
                }
                assert_eq!(out.0.lock().unwrap().len(), 1, "held back");
                make.make_writer().write_all(&line).unwrap();
                assert_eq!(out.0.lock().unwrap().len(), 2, "one batch at the size");
                assert_eq!(out.0.lock().unwrap()[1].len(), n * line.len());
                make.make_writer().write_all(&line).unwrap();
                assert_eq!(out.0.lock().unwrap().len(), 2);
                flush_this_thread();
                assert_eq!(out.0.lock().unwrap().len(), 3, "the rest on flush");
                flush_this_thread();
                assert_eq!(out.0.lock().unwrap().len(), 3, "nothing twice");
            })
            .join()
            .unwrap();
        });
        let total: usize = out.0.lock().unwrap().iter().map(Vec::len).sum();
        assert_eq!(total, line.len() * (2 + BATCH_BYTES / line.len()));
    }
}
