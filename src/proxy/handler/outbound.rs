//! What leaves for the upstream: the outbound head, and a body that can
//! only be the rewriter's output.
//!
//! An upstream takes an [`OutboundBody`]: either a [`Whole`] body, which
//! only this module makes (the rewriter's complete output, no body, or,
//! for a content type the rule file lets through untouched, the caller's
//! body under the same size limit), or a [`RewritingBody`] that streams the
//! rewriter's output frame by frame. No type on the way to an upstream
//! holds the caller's bytes otherwise.
//!
//! The caller's body is read through a [`PacedBody`], which refuses a body
//! that does not keep its [`Pace`] (408 `body_timeout`).

use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Uri};
use hyper::body::{Body, Frame, Incoming};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;

use super::super::ProxyBody;
use super::super::body::Decoder;
use super::super::error::ProxyError;
use super::outcome::Tally;
use crate::rewrite::{BodyRewriter, MAX_DROPPED_PATHS, Stats};

/// The request head as it leaves: the method, the upstream's URI for the
/// rewritten path and query, and the minimised headers.
#[derive(Debug)]
pub struct OutboundHead {
    /// The caller's method.
    pub method: Method,
    /// Where it goes (origin-form for the capture upstream).
    pub uri: Uri,
    /// The headers the rule file lets through or sets, and the body's
    /// Content-Type (and Content-Encoding, untouched).
    pub headers: HeaderMap,
}

impl OutboundHead {
    /// The request with `body`.
    pub fn into_request(self, body: ProxyBody) -> Request<ProxyBody> {
        let mut req = Request::new(body);
        *req.method_mut() = self.method;
        *req.uri_mut() = self.uri;
        *req.headers_mut() = self.headers;
        req
    }
}

/// The body an upstream takes.
pub enum OutboundBody<'b, 'a> {
    /// Complete before anything is sent.
    Whole(Whole),
    /// Over the buffering threshold: the rewriter's output as it comes.
    Streaming(&'b mut RewritingBody<'a>),
}

/// A body complete before anything is sent: no body, the rewriter's whole
/// output, or the caller's body that the rule file lets through untouched.
#[derive(Debug)]
pub struct Whole {
    bytes: Bytes,
    /// scrim computed the bytes (rewritten), so it states their length.
    computed: bool,
}

impl Whole {
    /// No body.
    pub fn empty() -> Whole {
        Whole {
            bytes: Bytes::new(),
            computed: false,
        }
    }

    /// A body the rewriter produced whole.
    pub fn rewritten(bytes: Vec<u8>) -> Whole {
        Whole {
            bytes: Bytes::from(bytes),
            computed: true,
        }
    }

    /// Its length in bytes.
    pub fn len(&self) -> u64 {
        self.bytes.len() as u64
    }

    /// The bytes to send. A rewritten body's Content-Length is set on
    /// `headers`; an untouched or empty one's is left to the client, from
    /// the body itself.
    pub fn into_bytes(self, headers: &mut HeaderMap) -> Bytes {
        if self.computed {
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(self.bytes.len()));
        }
        self.bytes
    }
}

/// How fast a request body must come: the next chunk within the idle
/// timeout; after the grace time, on average at least the minimum data rate
/// (Kestrel's `MinRequestBodyDataRate`); the whole request within the
/// deadline. A client that trickles its body is cut with 408 and its slot
/// freed, instead of holding it for as long as it keeps each gap under the
/// idle timeout.
pub struct Pace {
    start: Instant,
    idle: Duration,
    min_rate: u64,
    grace: Duration,
    deadline: Option<Duration>,
    received: u64,
}

impl Pace {
    /// The pace of a body whose request began at `start`.
    pub fn new(limits: &crate::config::Limits, start: Instant) -> Pace {
        Pace {
            start,
            idle: limits.body_idle_timeout,
            min_rate: limits.body_min_rate,
            grace: limits.body_min_rate_grace,
            deadline: limits.request_deadline,
            received: 0,
        }
    }

    fn received(&mut self, n: usize) {
        self.received += n as u64;
    }

    /// How long to wait for the next chunk, and what it is that runs out.
    fn next_wait(&self) -> (Duration, &'static str) {
        let elapsed = self.start.elapsed();
        let mut wait = (self.idle, "no data within the idle timeout");
        if self.min_rate > 0 {
            // By `grace + received / rate`, the average since the grace
            // time falls below the rate.
            let due =
                self.grace + Duration::from_secs_f64(self.received as f64 / self.min_rate as f64);
            let left = due.saturating_sub(elapsed);
            if left < wait.0 {
                wait = (left, "below the minimum data rate");
            }
        }
        if let Some(d) = self.deadline {
            let left = d.saturating_sub(elapsed);
            if left < wait.0 {
                wait = (left, "past the request deadline");
            }
        }
        wait
    }
}

/// The caller's body, frame by frame, each within its [`Pace`]: a frame
/// that does not come in time ends the body with 408 `body_timeout`, a
/// broken connection with 400 `body_read`.
pub struct PacedBody<'t> {
    incoming: Incoming,
    pace: Pace,
    /// Fires when the frame being waited for is late. Pinned by the caller
    /// (on the request's stack), so reading a body allocates no timer.
    timer: Pin<&'t mut Sleep>,
    /// The timer is set for the frame being waited for; what runs out when
    /// it fires.
    waiting: Option<&'static str>,
}

impl<'t> PacedBody<'t> {
    /// Reads `incoming` at `pace`, with `timer` as its clock.
    pub fn new(incoming: Incoming, pace: Pace, timer: Pin<&'t mut Sleep>) -> PacedBody<'t> {
        PacedBody {
            incoming,
            pace,
            timer,
            waiting: None,
        }
    }

    /// Reads the whole body untouched, for a content type the rule file
    /// lets through; 413 beyond `limit` bytes.
    pub async fn read_untouched(mut self, limit: u64) -> Result<Whole, ProxyError> {
        let mut buf = Vec::new();
        while let Some(frame) = poll_fn(|cx| Pin::new(&mut self).poll_frame(cx)).await {
            if let Ok(d) = frame?.into_data() {
                if buf.len() as u64 + d.len() as u64 > limit {
                    return Err(ProxyError::TooLarge { limit });
                }
                buf.extend_from_slice(&d);
            }
        }
        Ok(Whole {
            bytes: Bytes::from(buf),
            computed: false,
        })
    }
}

impl Body for PacedBody<'_> {
    type Data = Bytes;
    type Error = ProxyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ProxyError>>> {
        let this = self.get_mut();
        // The frame first: one that is there wins over a timer that ran out.
        if let Poll::Ready(frame) = Pin::new(&mut this.incoming).poll_frame(cx) {
            this.waiting = None;
            return Poll::Ready(frame.map(|f| match f {
                Ok(f) => {
                    if let Some(data) = f.data_ref() {
                        this.pace.received(data.len());
                    }
                    Ok(f)
                }
                Err(_) => Err(ProxyError::BodyRead),
            }));
        }
        let why = match this.waiting {
            Some(why) => why,
            None => {
                let (wait, why) = this.pace.next_wait();
                this.timer
                    .as_mut()
                    .reset(tokio::time::Instant::now() + wait);
                this.waiting = Some(why);
                why
            }
        };
        ready!(this.timer.as_mut().poll(cx));
        this.waiting = None;
        Poll::Ready(Some(Err(ProxyError::BodyTimeout(why))))
    }

    fn is_end_stream(&self) -> bool {
        self.incoming.is_end_stream()
    }
}

/// Reads the caller's body whole and decoded (under the decoded size
/// limit), for a recipient whose events are decided before rewriting.
/// Every byte held is taken from `budget` (503 `overloaded` when it is
/// spent); the permit goes back when the returned one is dropped.
pub async fn read_decoded(
    mut caller: PacedBody<'_>,
    mut decoder: Decoder,
    budget: &Arc<Semaphore>,
) -> Result<(Vec<u8>, Option<OwnedSemaphorePermit>), ProxyError> {
    let mut buf: Vec<u8> = Vec::new();
    let mut held: Option<OwnedSemaphorePermit> = None;
    let take = |buf: &Vec<u8>, held: &mut Option<OwnedSemaphorePermit>| {
        let have = held.as_ref().map_or(0, OwnedSemaphorePermit::num_permits);
        let need = buf.len().saturating_sub(have);
        if need == 0 {
            return Ok(());
        }
        let more = u32::try_from(need)
            .ok()
            .and_then(|n| budget.clone().try_acquire_many_owned(n).ok())
            .ok_or(ProxyError::BufferFull)?;
        match held.as_mut() {
            Some(p) => p.merge(more),
            None => *held = Some(more),
        }
        Ok::<(), ProxyError>(())
    };
    while let Some(frame) = poll_fn(|cx| Pin::new(&mut caller).poll_frame(cx)).await {
        if let Ok(data) = frame?.into_data() {
            decoder.push(&data, &mut |decoded| {
                buf.extend_from_slice(decoded);
                Ok(())
            })?;
            take(&buf, &mut held)?;
        }
    }
    decoder.finish(&mut |decoded| {
        buf.extend_from_slice(decoded);
        Ok(())
    })?;
    take(&buf, &mut held)?;
    Ok((buf, held))
}

/// The caller's body decoded (Content-Encoding, under the decoded size
/// limit) and rewritten, as frames of the rewriter's output.
///
/// [`RewritingBody::buffer`] reads it whole while it is small, holding its
/// output against the buffer budget; a body over the buffering threshold is
/// then polled as an [`http_body::Body`](Body) for the rest, so it streams.
/// Whatever ends it (whole, refused, or cut short by the upstream) is
/// written to the request's [`Tally`].
pub struct RewritingBody<'a> {
    caller: PacedBody<'a>,
    decoder: Decoder,
    rewriter: BodyRewriter<'a>,
    /// Rewritten output not handed on yet.
    out: Vec<u8>,
    /// Decoded bytes read.
    bytes_in: u64,
    /// Decoded input gathered while the body is read whole, rewritten in
    /// pieces of at least [`GATHER`] bytes (see [`gather`]).
    gathered: Vec<u8>,
    /// Output bytes handed on as frames.
    sent: u64,
    /// The share of `limits.buffer_bytes` that `out` holds while the body
    /// waits whole (released when it streams, or with the body).
    held: Option<OwnedSemaphorePermit>,
    /// Over the buffering threshold: the body streams.
    streaming: bool,
    /// Nothing more is read: the rewriter finished, or the body failed.
    ended: bool,
    /// The request's counts, with the path and query's already in.
    tally: &'a mut Tally,
}

/// While a body is read whole, its decoded input is rewritten in pieces of
/// at least this many bytes. An HTTP/2 caller sends a body as DATA frames
/// of 16 KiB or less (h2load and many clients: a few KiB); rewriting each
/// frame as it came cost twice the work of the whole body at once, since
/// every cut inside a value is read again by the resumable state machine.
/// A body in one frame (HTTP/1.1 with its length, most HTTP/2 events) is
/// rewritten from the frame, without a copy. At most this much more than a
/// frame is held per request.
const GATHER: usize = 64 * 1024;

/// Feeds `decoded` to `rewriter`: at once when streaming (`gather` false),
/// else through `gathered`, once it holds [`GATHER`] bytes.
fn gather(
    rewriter: &mut BodyRewriter<'_>,
    out: &mut Vec<u8>,
    gathered: &mut Vec<u8>,
    decoded: &[u8],
    gather: bool,
) -> Result<(), ProxyError> {
    if !gather || (gathered.is_empty() && decoded.len() >= GATHER) {
        return rewriter.feed(decoded, out).map_err(ProxyError::Invalid);
    }
    gathered.extend_from_slice(decoded);
    if gathered.len() >= GATHER {
        rewriter.feed(gathered, out).map_err(ProxyError::Invalid)?;
        gathered.clear();
    }
    Ok(())
}

/// What one step of reading gave.
enum Input {
    /// A frame was read and rewritten.
    More,
    /// The body ended; the rewriter's counts.
    Ended(Stats),
}

impl<'a> RewritingBody<'a> {
    /// Rewrites `caller` with `rewriter` after `decoder`, counting in
    /// `tally`.
    pub fn new(
        caller: PacedBody<'a>,
        decoder: Decoder,
        rewriter: BodyRewriter<'a>,
        tally: &'a mut Tally,
    ) -> RewritingBody<'a> {
        RewritingBody {
            caller,
            decoder,
            rewriter,
            out: Vec::new(),
            bytes_in: 0,
            gathered: Vec::new(),
            sent: 0,
            held: None,
            streaming: false,
            ended: false,
            tally,
        }
    }

    /// Reads and rewrites until the body ends, or until more than
    /// `threshold` decoded bytes came in (`None`: never). Every byte of
    /// output held is taken from `budget` (503 `overloaded` when it is
    /// spent, before anything is sent). Returns the whole output, or `None`
    /// when the body streams from here on, beginning with what is held.
    pub async fn buffer(
        &mut self,
        threshold: Option<u64>,
        budget: &Arc<Semaphore>,
    ) -> Result<Option<Whole>, ProxyError> {
        let read = self.read_whole(threshold, budget).await;
        read.map_err(|e| self.fail(e))
    }

    async fn read_whole(
        &mut self,
        threshold: Option<u64>,
        budget: &Arc<Semaphore>,
    ) -> Result<Option<Whole>, ProxyError> {
        loop {
            match poll_fn(|cx| self.poll_input(cx)).await? {
                Input::More if threshold.is_some_and(|t| self.bytes_in > t) => {
                    self.streaming = true;
                    let Self {
                        rewriter,
                        out,
                        gathered,
                        ..
                    } = self;
                    if !gathered.is_empty() {
                        rewriter.feed(gathered, out).map_err(ProxyError::Invalid)?;
                        *gathered = Vec::new();
                    }
                    self.held = None; // what is held goes out first
                    return Ok(None);
                }
                Input::More => self.hold(budget)?,
                Input::Ended(stats) => {
                    self.hold(budget)?;
                    self.complete(stats);
                    let bytes = Bytes::from(std::mem::take(&mut self.out));
                    return Ok(Some(Whole {
                        bytes,
                        computed: true,
                    }));
                }
            }
        }
    }

    /// Ends the body with `e`, counting what was read: for an error of its
    /// own, and for an upstream that stopped taking it.
    pub fn fail(&mut self, e: ProxyError) -> ProxyError {
        self.tally.bytes_in = self.bytes_in;
        self.tally.streamed = self.streaming;
        self.ended = true;
        self.out.clear();
        self.gathered = Vec::new();
        e
    }

    /// Reads one frame of the caller's body and rewrites it into `out`.
    fn poll_input(&mut self, cx: &mut Context<'_>) -> Poll<Result<Input, ProxyError>> {
        let Some(frame) = ready!(Pin::new(&mut self.caller).poll_frame(cx)) else {
            return Poll::Ready(self.end_input().map(Input::Ended));
        };
        // Trailers are not forwarded.
        if let Ok(data) = frame?.into_data() {
            // The last frame of a body that came in one: no copy.
            let direct = self.gathered.is_empty() && self.caller.is_end_stream();
            let keep = !self.streaming && !direct;
            let Self {
                decoder,
                rewriter,
                out,
                bytes_in,
                gathered,
                ..
            } = self;
            decoder.push(&data, &mut |decoded| {
                *bytes_in += decoded.len() as u64;
                gather(rewriter, out, gathered, decoded, keep)
            })?;
        }
        Poll::Ready(Ok(Input::More))
    }

    /// The end of the caller's body: the decoder's and the rewriter's last
    /// output (a truncated compressed stream or document is refused).
    fn end_input(&mut self) -> Result<Stats, ProxyError> {
        let keep = !self.streaming;
        let Self {
            decoder,
            rewriter,
            out,
            bytes_in,
            gathered,
            ..
        } = self;
        decoder.finish(&mut |decoded| {
            *bytes_in += decoded.len() as u64;
            gather(rewriter, out, gathered, decoded, keep)
        })?;
        if !gathered.is_empty() {
            rewriter.feed(gathered, out).map_err(ProxyError::Invalid)?;
            *gathered = Vec::new();
        }
        rewriter.finish(out).map_err(ProxyError::Invalid)
    }

    /// Takes budget for every byte `out` holds beyond what is held already.
    fn hold(&mut self, budget: &Arc<Semaphore>) -> Result<(), ProxyError> {
        let held = self
            .held
            .as_ref()
            .map_or(0, OwnedSemaphorePermit::num_permits);
        let need = self.out.len().saturating_sub(held);
        if need == 0 {
            return Ok(());
        }
        let more = u32::try_from(need)
            .ok()
            .and_then(|n| budget.clone().try_acquire_many_owned(n).ok())
            .ok_or(ProxyError::BufferFull)?;
        match self.held.as_mut() {
            Some(p) => p.merge(more),
            None => self.held = Some(more),
        }
        Ok(())
    }

    /// The whole body is rewritten: its counts join the path and query's.
    fn complete(&mut self, body: Stats) {
        let tally = &mut *self.tally;
        tally.stats.absorb(&body);
        tally.stats.documents += body.documents;
        let room = MAX_DROPPED_PATHS.saturating_sub(tally.stats.dropped_paths.len());
        tally
            .stats
            .dropped_paths
            .extend(body.dropped_paths.into_iter().take(room));
        tally.bytes_in = self.bytes_in;
        tally.bytes_out = self.sent + self.out.len() as u64;
        tally.streamed = self.streaming;
        tally.complete = true;
        self.ended = true;
    }
}

impl Body for RewritingBody<'_> {
    type Data = Bytes;
    type Error = ProxyError;

    /// The output of each frame of the caller's body as it is rewritten
    /// (frames whose output is empty are read on), then the rewriter's
    /// last output. An error ends the body.
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ProxyError>>> {
        let this = self.get_mut();
        loop {
            if !this.out.is_empty() {
                let chunk = Bytes::from(std::mem::take(&mut this.out));
                this.sent += chunk.len() as u64;
                return Poll::Ready(Some(Ok(Frame::data(chunk))));
            }
            if this.ended {
                return Poll::Ready(None);
            }
            match ready!(this.poll_input(cx)) {
                Ok(Input::More) => {}
                Ok(Input::Ended(stats)) => this.complete(stats),
                Err(e) => return Poll::Ready(Some(Err(this.fail(e)))),
            }
        }
    }

    /// True once the last frame has been handed on.
    fn is_end_stream(&self) -> bool {
        self.ended && self.out.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pace(min_rate: u64, grace_ms: u64, deadline_ms: Option<u64>, idle_ms: u64) -> Pace {
        Pace {
            start: Instant::now(),
            idle: Duration::from_millis(idle_ms),
            min_rate,
            grace: Duration::from_millis(grace_ms),
            deadline: deadline_ms.map(Duration::from_millis),
            received: 0,
        }
    }

    #[test]
    fn the_nearest_of_idle_rate_and_deadline_decides() {
        // Nothing received: the rate runs out when the grace does.
        let (wait, why) = pace(240, 5_000, Some(60_000), 15_000).next_wait();
        assert!(wait <= Duration::from_millis(5_000) && wait > Duration::from_millis(4_900));
        assert_eq!(why, "below the minimum data rate");
        // 4,800 bytes in: twenty more seconds of credit, so the idle timeout
        // comes first.
        let mut p = pace(240, 5_000, Some(60_000), 15_000);
        p.received(4_800);
        let (wait, why) = p.next_wait();
        assert!(wait > Duration::from_millis(14_900), "{wait:?}");
        assert_eq!(why, "no data within the idle timeout");
        // A fast body still has to end by the deadline.
        let mut p = pace(240, 5_000, Some(1_000), 15_000);
        p.received(1 << 20);
        assert_eq!(p.next_wait().1, "past the request deadline");
        // Both limits off: only the idle timeout.
        let (wait, why) = pace(0, 5_000, None, 15_000).next_wait();
        assert_eq!(
            (wait, why),
            (
                Duration::from_millis(15_000),
                "no data within the idle timeout"
            )
        );
    }
}
