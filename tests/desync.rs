//! HTTP request smuggling (desync) through the running gateway, replayed as
//! raw bytes.
//!
//! Every case has a recipient of its own (`c000`, `c001`, ...) whose upstream
//! is a raw TCP listener on 127.0.0.1: it keeps every byte it receives, frames
//! them with a strict HTTP/1.1 reader (CRLF only, one Content-Length or
//! chunked, never both) and answers each request `204 No Content`. A case
//! writes its bytes to scrim on a plain TCP connection and passes when scrim
//! either refused it (an error status or a closed connection) and its
//! upstream saw not one byte, or framed it the one way RFC 9112 allows:
//! exactly the expected requests, each carrying the rewritten body, and
//! nothing the attacker hid reached the partner: no `/smuggled` path, no
//! `GPOST` method, no request head inside a body, no marker or e-mail of the
//! hidden payload, no trailer field.
//!
//! The shapes are the ones known to split HTTP/1.1 parsers (the request
//! smuggling research, aws/http-desync-guardian's cases, the HTTP Garden's
//! findings): CL.TE and TE.CL, duplicate and malformed Content-Length,
//! Transfer-Encoding spellings, obs-fold, bare CR and LF, chunk-size and
//! chunk-framing oddities, trailers, pipelining and `Connection`, refusals
//! that leave a body unread, `Expect: 100-continue`, request-line oddities,
//! GET with a body; and h2c prior-knowledge streams with conflicting or
//! connection-specific fields. All cases run at once, each bounded in time.

mod support;

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use support::{Gateway, Opts, leaks};

/// A personal value in every legitimate body: it must leave as a pseudonym.
const VICTIM: &str = "desync.victim@example.com";
/// The e-mail inside the hidden request: it must never leave in any form.
const PAYLOAD_EMAIL: &str = "smuggled.payload@example.com";
/// A kept field of the hidden request: it would leave verbatim if that
/// request were ever forwarded.
const MARKER: &str = "smuggled-marker";
/// The value of a trailer field, which must not reach the partner.
const TRAILER_MARKER: &str = "trailer-marker-7d1e";

/// The whole time a case may take to be answered.
const CASE_DEADLINE: Duration = Duration::from_secs(5);
/// Silence after the expected answers, to see whether more follow.
const QUIET: Duration = Duration::from_millis(500);
/// The pause between the parts of a case written in several steps.
const PAUSE: Duration = Duration::from_millis(300);

// ---------------------------------------------------------------------------
// Case table
// ---------------------------------------------------------------------------

/// What the caller writes.
enum Input {
    /// HTTP/1.x bytes, in parts written one after another with a pause (an
    /// answer to the first part arrives before the next is written).
    H1(Vec<Vec<u8>>),
    /// HTTP/2 frames sent after the connection preface and an empty SETTINGS.
    H2(Vec<u8>),
}

/// A request the upstream must receive: method, path and the event of its
/// body (`{"event":...,"email":<pseudonym of VICTIM>}`).
#[derive(Debug, Clone, Copy)]
struct Fwd {
    method: &'static str,
    path: &'static str,
    event: &'static str,
}

/// After the forwarded requests, must scrim close the connection?
#[derive(Debug, Clone, Copy, PartialEq)]
enum Then {
    /// The message was ambiguous or asked for it (RFC 9112 6.3, 9.6): scrim
    /// must close, so no later byte is read as a request.
    Close,
    /// Keep-alive or close, both are right.
    Either,
}

enum Expect {
    /// An error status or a closed connection; the upstream sees nothing.
    Refused,
    /// Exactly these requests reach the upstream, in this order (for h2c,
    /// in any order: streams run concurrently).
    Forwarded(Vec<Fwd>, Then),
}

struct Case {
    family: &'static str,
    name: &'static str,
    expect: Expect,
    input: Box<dyn Fn(&str) -> Input>,
}

fn refused(
    family: &'static str,
    name: &'static str,
    bytes: impl Fn(&str) -> String + 'static,
) -> Case {
    Case {
        family,
        name,
        expect: Expect::Refused,
        input: Box::new(move |r| Input::H1(vec![bytes(r).into_bytes()])),
    }
}

fn framed(
    family: &'static str,
    name: &'static str,
    requests: &[(&'static str, &'static str, &'static str)],
    then: Then,
    bytes: impl Fn(&str) -> String + 'static,
) -> Case {
    Case {
        family,
        name,
        expect: forwarded(requests, then),
        input: Box::new(move |r| Input::H1(vec![bytes(r).into_bytes()])),
    }
}

fn forwarded(requests: &[(&'static str, &'static str, &'static str)], then: Then) -> Expect {
    Expect::Forwarded(
        requests
            .iter()
            .map(|&(method, path, event)| Fwd {
                method,
                path,
                event,
            })
            .collect(),
        then,
    )
}

/// The intended request, as the upstream must see it.
const FIRST: &[(&str, &str, &str)] = &[("POST", "/e", "first")];
/// The intended request and a well-formed second one.
const BOTH: &[(&str, &str, &str)] = &[("POST", "/e", "first"), ("POST", "/second", "second")];

/// A JSON document with a kept field and an e-mail to pseudonymise.
fn doc(event: &str) -> String {
    format!(r#"{{"event":"{event}","email":"{VICTIM}"}}"#)
}

fn first() -> String {
    doc("first")
}

/// The request an attacker hides: an extension method, a path no caller
/// asked for, the marker in a kept field and an e-mail. Complete, so a
/// server that reads it as a request forwards it at once.
fn smuggled(r: &str) -> String {
    let body = format!(r#"{{"event":"{MARKER}","email":"{PAYLOAD_EMAIL}"}}"#);
    format!(
        "GPOST /{r}/smuggled HTTP/1.1\r\nHost: scrim\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// A request line, Host, Content-Type, `fields` (each line with its own
/// line ending), the empty line, then `body`.
fn req(line: &str, fields: &str, body: &str) -> String {
    format!("{line}\r\nHost: scrim\r\nContent-Type: application/json\r\n{fields}\r\n{body}")
}

/// `POST /{r}/e HTTP/1.1` with `fields` and `body`.
fn post(r: &str, fields: &str, body: &str) -> String {
    req(&format!("POST /{r}/e HTTP/1.1"), fields, body)
}

fn cl(n: usize) -> String {
    format!("Content-Length: {n}\r\n")
}

/// The intended request, framed by Content-Length.
fn plain(r: &str) -> String {
    post(r, &cl(first().len()), &first())
}

/// A well-formed request to `/{r}/second`.
fn second(r: &str) -> String {
    let b = doc("second");
    req(&format!("POST /{r}/second HTTP/1.1"), &cl(b.len()), &b)
}

fn chunk(data: &str) -> String {
    format!("{:x}\r\n{data}\r\n", data.len())
}

/// `data` as one chunk and the last chunk.
fn chunked(data: &str) -> String {
    format!("{}0\r\n\r\n", chunk(data))
}

/// CL.TE: a Content-Length that covers the chunked body and the hidden
/// request after it, and the given Transfer-Encoding line(s). A reader of
/// Content-Length takes one request; a reader of chunked takes the intended
/// body, and then finds the hidden request, unless it closes the connection
/// as RFC 9112 6.3 requires for a message with both.
fn cl_te(r: &str, te: &str) -> String {
    let body = chunked(&first()) + &smuggled(r);
    post(r, &format!("{}{te}", cl(body.len())), &body)
}

/// A chunked body written by `chunks`, followed by the hidden request: a
/// reader that takes the chunk framing the lenient way ends the body earlier
/// or later than scrim, and reads the hidden request.
fn te_body(r: &str, chunks: &str) -> String {
    post(
        r,
        "Transfer-Encoding: chunked\r\n",
        &format!("{chunks}{}", smuggled(r)),
    )
}

/// The intended body followed by the hidden request, under a Content-Length
/// line that a lenient reader takes as the length of the intended body
/// alone (the hidden request is then the next one) and a strict one refuses.
fn cl_then_smuggled(r: &str, cl_line: &str) -> String {
    post(r, cl_line, &format!("{}{}", first(), smuggled(r)))
}

fn cases() -> Vec<Case> {
    let b = first().len();
    let s = |r: &str| smuggled(r).len();
    let mut v = vec![
        // -- Controls: the upstream sees what a well-formed exchange sends.
        framed(
            "control",
            "one request framed by Content-Length",
            FIRST,
            Then::Either,
            plain,
        ),
        framed(
            "control",
            "one request framed by chunked",
            FIRST,
            Then::Either,
            move |r| post(r, "Transfer-Encoding: chunked\r\n", &chunked(&first())),
        ),
        framed(
            "control",
            "two pipelined requests, both forwarded in order",
            BOTH,
            Then::Either,
            move |r| plain(r) + &second(r),
        ),
        framed(
            "control",
            "a request after a chunked body is the next request",
            BOTH,
            Then::Either,
            move |r| post(r, "Transfer-Encoding: chunked\r\n", &chunked(&first())) + &second(r),
        ),
        framed(
            "control",
            "several chunks and a chunk extension",
            FIRST,
            Then::Either,
            move |r| {
                let d = first();
                let (a, z) = d.split_at(10);
                post(
                    r,
                    "Transfer-Encoding: chunked\r\n",
                    &format!("{:x};name=value\r\n{a}\r\n{}0\r\n\r\n", a.len(), chunk(z)),
                )
            },
        ),
        // -- CL.TE
        framed(
            "CL.TE",
            "Content-Length covers a request after the last chunk",
            FIRST,
            Then::Close,
            move |r| cl_te(r, "Transfer-Encoding: chunked\r\n"),
        ),
        framed(
            "CL.TE",
            "Transfer-Encoding before Content-Length",
            FIRST,
            Then::Close,
            move |r| {
                let body = chunked(&first()) + &smuggled(r);
                post(
                    r,
                    &format!("Transfer-Encoding: chunked\r\n{}", cl(body.len())),
                    &body,
                )
            },
        ),
        framed(
            "CL.TE",
            "Content-Length: 0 with a chunked body and a request after it",
            FIRST,
            Then::Close,
            move |r| {
                post(
                    r,
                    "Content-Length: 0\r\nTransfer-Encoding: chunked\r\n",
                    &(chunked(&first()) + &smuggled(r)),
                )
            },
        ),
        framed(
            "CL.TE",
            "a hidden request line that would prefix the next caller's request",
            FIRST,
            Then::Close,
            move |r| {
                let body =
                    chunked(&first()) + &format!("GPOST /{r}/smuggled HTTP/1.1\r\nX-Ignore: x");
                post(
                    r,
                    &format!("{}Transfer-Encoding: chunked\r\n", cl(body.len())),
                    &body,
                ) + &second(r)
            },
        ),
        // -- TE.CL
        refused(
            "TE.CL",
            "short Content-Length, the hidden request is the chunk data",
            move |r| {
                post(
                    r,
                    "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n",
                    &chunked(&smuggled(r)),
                )
            },
        ),
        framed(
            "TE.CL",
            "Content-Length ends inside the chunk-size line",
            FIRST,
            Then::Close,
            move |r| {
                post(
                    r,
                    "Content-Length: 3\r\nTransfer-Encoding: chunked\r\n",
                    &chunked(&first()),
                )
            },
        ),
        refused(
            "TE.CL",
            "Content-Length ends at the hidden request inside a chunk",
            move |r| {
                let data = format!("{}{}", first(), smuggled(r));
                let size_line = format!("{:x}\r\n", data.len()).len();
                post(
                    r,
                    &format!("{}Transfer-Encoding: chunked\r\n", cl(size_line + b)),
                    &chunked(&data),
                )
            },
        ),
        // -- CL.CL
        framed(
            "CL.CL",
            "two equal Content-Length fields",
            FIRST,
            Then::Either,
            move |r| post(r, &format!("{}{}", cl(b), cl(b)), &first()),
        ),
        refused(
            "CL.CL",
            "two Content-Length fields, the shorter first",
            move |r| cl_then_smuggled(r, &format!("{}{}", cl(b), cl(b + s(r)))),
        ),
        refused(
            "CL.CL",
            "two Content-Length fields, the longer first",
            move |r| cl_then_smuggled(r, &format!("{}{}", cl(b + s(r)), cl(b))),
        ),
        refused("CL.CL", "a list of equal values", move |r| {
            cl_then_smuggled(r, &format!("Content-Length: {b}, {b}\r\n"))
        }),
        refused("CL.CL", "a list of different values", move |r| {
            cl_then_smuggled(r, &format!("Content-Length: {b}, {}\r\n", b + s(r)))
        }),
        refused("CL.CL", "a value and an empty Content-Length", move |r| {
            cl_then_smuggled(r, &format!("{}Content-Length: \r\n", cl(b)))
        }),
        refused(
            "CL.CL",
            "a second Content-Length behind a space before the colon",
            move |r| cl_then_smuggled(r, &format!("{}Content-Length : {}\r\n", cl(b), b + s(r))),
        ),
        refused(
            "CL.CL",
            "a second Content-Length behind a bare LF",
            move |r| {
                cl_then_smuggled(
                    r,
                    &format!("X-Pad: a\nContent-Length: {}\r\n{}", b + s(r), cl(b)),
                )
            },
        ),
        refused(
            "CL.CL",
            "a second Content-Length in an obs-fold continuation",
            move |r| {
                cl_then_smuggled(
                    r,
                    &format!("{}X-Pad: a\r\n Content-Length: {}\r\n", cl(b), b + s(r)),
                )
            },
        ),
        // -- Content-Length syntax
        refused("Content-Length syntax", "plus sign", move |r| {
            cl_then_smuggled(r, &format!("Content-Length: +{b}\r\n"))
        }),
        refused("Content-Length syntax", "minus sign", move |r| {
            cl_then_smuggled(r, "Content-Length: -1\r\n")
        }),
        refused("Content-Length syntax", "hexadecimal with 0x", move |r| {
            cl_then_smuggled(r, &format!("Content-Length: 0x{:x}\r\n", b + s(r)))
        }),
        refused("Content-Length syntax", "digits then letters", move |r| {
            cl_then_smuggled(r, &format!("Content-Length: {b}abc\r\n"))
        }),
        refused("Content-Length syntax", "a decimal point", move |r| {
            cl_then_smuggled(r, &format!("Content-Length: {b}.0\r\n"))
        }),
        refused(
            "Content-Length syntax",
            "a space inside the number",
            move |r| cl_then_smuggled(r, &format!("Content-Length: {} {}\r\n", b / 10, b % 10)),
        ),
        refused("Content-Length syntax", "a trailing comma", move |r| {
            cl_then_smuggled(r, &format!("Content-Length: {b},\r\n"))
        }),
        refused(
            "Content-Length syntax",
            "2^64 + len (wraps to len in 64 bits)",
            move |r| {
                cl_then_smuggled(
                    r,
                    &format!(
                        "Content-Length: {}\r\n",
                        18_446_744_073_709_551_616u128 + b as u128
                    ),
                )
            },
        ),
        refused(
            "Content-Length syntax",
            "a vertical tab before the value",
            move |r| cl_then_smuggled(r, &format!("Content-Length:\x0b{b}\r\n")),
        ),
        refused(
            "Content-Length syntax",
            "a form feed after the value",
            move |r| cl_then_smuggled(r, &format!("Content-Length: {b}\x0c\r\n")),
        ),
        refused("Content-Length syntax", "a NUL after the value", move |r| {
            cl_then_smuggled(r, &format!("Content-Length: {b}\0\r\n"))
        }),
        refused(
            "Content-Length syntax",
            "obs-fold before the value",
            move |r| cl_then_smuggled(r, &format!("Content-Length:\r\n {b}\r\n")),
        ),
        refused(
            "Content-Length syntax",
            "a bare CR inside the value",
            move |r| cl_then_smuggled(r, &format!("Content-Length: {b}\r0\r\n")),
        ),
        framed(
            "Content-Length syntax",
            "leading zeros (1*DIGIT, decimal)",
            FIRST,
            Then::Either,
            move |r| post(r, &format!("Content-Length: 000{b}\r\n"), &first()),
        ),
        framed(
            "Content-Length syntax",
            "spaces around the value (OWS)",
            FIRST,
            Then::Either,
            move |r| post(r, &format!("Content-Length:   {b}  \r\n"), &first()),
        ),
        framed(
            "Content-Length syntax",
            "a tab before the value (OWS)",
            FIRST,
            Then::Either,
            move |r| post(r, &format!("Content-Length:\t{b}\r\n"), &first()),
        ),
        framed(
            "Content-Length syntax",
            "no space after the colon",
            FIRST,
            Then::Either,
            move |r| post(r, &format!("Content-Length:{b}\r\n"), &first()),
        ),
        // -- Transfer-Encoding syntax, each under a Content-Length that
        //    covers the hidden request (the CL.TE shape).
        framed(
            "Transfer-Encoding syntax",
            "a space before chunked",
            FIRST,
            Then::Close,
            move |r| cl_te(r, "Transfer-Encoding:  chunked\r\n"),
        ),
        framed(
            "Transfer-Encoding syntax",
            "a space after chunked",
            FIRST,
            Then::Close,
            move |r| cl_te(r, "Transfer-Encoding: chunked \r\n"),
        ),
        framed(
            "Transfer-Encoding syntax",
            "a tab before chunked",
            FIRST,
            Then::Close,
            move |r| cl_te(r, "Transfer-Encoding:\tchunked\r\n"),
        ),
        framed(
            "Transfer-Encoding syntax",
            "a tab after chunked",
            FIRST,
            Then::Close,
            move |r| cl_te(r, "Transfer-Encoding: chunked\t\r\n"),
        ),
        framed(
            "Transfer-Encoding syntax",
            "no space after the colon",
            FIRST,
            Then::Close,
            move |r| cl_te(r, "Transfer-Encoding:chunked\r\n"),
        ),
        framed(
            "Transfer-Encoding syntax",
            "upper case CHUNKED",
            FIRST,
            Then::Close,
            move |r| cl_te(r, "Transfer-Encoding: CHUNKED\r\n"),
        ),
        framed(
            "Transfer-Encoding syntax",
            "mixed case name and value",
            FIRST,
            Then::Close,
            move |r| cl_te(r, "transfer-ENCODING: ChUnKeD\r\n"),
        ),
        framed(
            "Transfer-Encoding syntax",
            "identity, chunked",
            FIRST,
            Then::Close,
            move |r| cl_te(r, "Transfer-Encoding: identity, chunked\r\n"),
        ),
        framed(
            "Transfer-Encoding syntax",
            "chunked, chunked",
            FIRST,
            Then::Close,
            move |r| cl_te(r, "Transfer-Encoding: chunked, chunked\r\n"),
        ),
        framed(
            "Transfer-Encoding syntax",
            "two fields: identity, then chunked",
            FIRST,
            Then::Close,
            move |r| {
                cl_te(
                    r,
                    "Transfer-Encoding: identity\r\nTransfer-Encoding: chunked\r\n",
                )
            },
        ),
        framed(
            "Transfer-Encoding syntax",
            "two fields: chunked, then chunked",
            FIRST,
            Then::Close,
            move |r| {
                cl_te(
                    r,
                    "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
                )
            },
        ),
        framed(
            "Transfer-Encoding syntax",
            "chunked behind a bare LF in another field",
            FIRST,
            Then::Close,
            move |r| cl_te(r, "X-Pad: a\nTransfer-Encoding: chunked\r\n"),
        ),
        refused("Transfer-Encoding syntax", "xchunked", move |r| {
            cl_te(r, "Transfer-Encoding: xchunked\r\n")
        }),
        refused("Transfer-Encoding syntax", "chunked, identity", move |r| {
            cl_te(r, "Transfer-Encoding: chunked, identity\r\n")
        }),
        refused(
            "Transfer-Encoding syntax",
            "two fields: chunked, then identity",
            move |r| {
                cl_te(
                    r,
                    "Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n",
                )
            },
        ),
        refused("Transfer-Encoding syntax", "quoted \"chunked\"", move |r| {
            cl_te(r, "Transfer-Encoding: \"chunked\"\r\n")
        }),
        refused(
            "Transfer-Encoding syntax",
            "chunked with a parameter",
            move |r| cl_te(r, "Transfer-Encoding: chunked;q=1\r\n"),
        ),
        refused(
            "Transfer-Encoding syntax",
            "a vertical tab before chunked",
            move |r| cl_te(r, "Transfer-Encoding:\x0bchunked\r\n"),
        ),
        refused(
            "Transfer-Encoding syntax",
            "a form feed before chunked",
            move |r| cl_te(r, "Transfer-Encoding: \x0cchunked\r\n"),
        ),
        refused(
            "Transfer-Encoding syntax",
            "a NUL after chunked",
            move |r| cl_te(r, "Transfer-Encoding: chunked\0\r\n"),
        ),
        refused(
            "Transfer-Encoding syntax",
            "a bare CR after chunked",
            move |r| cl_te(r, "Transfer-Encoding: chunked\rX: y\r\n"),
        ),
        refused(
            "Transfer-Encoding syntax",
            "chunked behind a bare CR in another field",
            move |r| cl_te(r, "X-Pad: a\rTransfer-Encoding: chunked\r\n"),
        ),
        refused(
            "Transfer-Encoding syntax",
            "a space before the colon",
            move |r| cl_te(r, "Transfer-Encoding : chunked\r\n"),
        ),
        refused(
            "Transfer-Encoding syntax",
            "a tab before the colon",
            move |r| cl_te(r, "Transfer-Encoding\t: chunked\r\n"),
        ),
        refused(
            "Transfer-Encoding syntax",
            "obs-fold: the value on a continuation line",
            move |r| cl_te(r, "Transfer-Encoding:\r\n chunked\r\n"),
        ),
        refused(
            "Transfer-Encoding syntax",
            "obs-fold: chunked appended to identity",
            move |r| cl_te(r, "Transfer-Encoding: identity\r\n chunked\r\n"),
        ),
        refused(
            "Transfer-Encoding syntax",
            "obs-fold: Transfer-Encoding hidden in another field",
            move |r| cl_te(r, "X-Pad: a\r\n Transfer-Encoding: chunked\r\n"),
        ),
        refused(
            "Transfer-Encoding syntax",
            "Transfer_Encoding with an underscore is another field",
            move |r| cl_te(r, "Transfer_Encoding: chunked\r\n"),
        ),
        refused(
            "Transfer-Encoding syntax",
            "Transfer-Encoding on HTTP/1.0",
            move |r| {
                let body = chunked(&first()) + &smuggled(r);
                req(
                    &format!("POST /{r}/e HTTP/1.0"),
                    &format!(
                        "{}Transfer-Encoding: chunked\r\nConnection: keep-alive\r\n",
                        cl(body.len())
                    ),
                    &body,
                )
            },
        ),
        refused(
            "Transfer-Encoding syntax",
            "identity alone, under a Content-Length",
            move |r| {
                cl_then_smuggled(
                    r,
                    &format!("{}Transfer-Encoding: identity\r\n", cl(first().len())),
                )
            },
        ),
        // -- Header syntax around the framing fields
        refused("header syntax", "a NUL in a field value", move |r| {
            cl_te(r, "X-Pad: a\0b\r\nTransfer-Encoding: chunked\r\n")
        }),
        refused(
            "header syntax",
            "a field name with a space inside",
            move |r| cl_te(r, "Transfer Encoding: chunked\r\n"),
        ),
        refused("header syntax", "a field line without a colon", move |r| {
            cl_then_smuggled(r, &format!("X-Pad a\r\n{}", cl(b)))
        }),
        refused("header syntax", "an empty field name", move |r| {
            cl_then_smuggled(r, &format!(": chunked\r\n{}", cl(b)))
        }),
        refused(
            "header syntax",
            "a field name with a non-token character",
            move |r| cl_then_smuggled(r, &format!("X[Pad]: a\r\n{}", cl(b))),
        ),
        framed(
            "header syntax",
            "every line ending a bare LF",
            FIRST,
            Then::Either,
            move |r| {
                format!(
                    "POST /{r}/e HTTP/1.1\nHost: scrim\nContent-Type: application/json\nContent-Length: {b}\n\n{}",
                    first()
                )
            },
        ),
        // -- Chunk syntax (chunked alone, the hidden request after the body)
        refused("chunk syntax", "chunk size with 0x", move |r| {
            te_body(r, &format!("0x{:x}\r\n{}\r\n0\r\n\r\n", b, first()))
        }),
        refused(
            "chunk syntax",
            "chunk size with a leading space",
            move |r| te_body(r, &format!(" {:x}\r\n{}\r\n0\r\n\r\n", b, first())),
        ),
        refused("chunk syntax", "negative chunk size", move |r| {
            te_body(r, &format!("-{:x}\r\n{}\r\n0\r\n\r\n", b, first()))
        }),
        refused(
            "chunk syntax",
            "chunk size of 2^64 + len (wraps to len)",
            move |r| te_body(r, &format!("1{:016x}\r\n{}\r\n0\r\n\r\n", b, first())),
        ),
        refused("chunk syntax", "chunk size ffffffffffffffff1", move |r| {
            te_body(r, &format!("ffffffffffffffff1\r\n{}\r\n0\r\n\r\n", first()))
        }),
        refused("chunk syntax", "chunk size with an underscore", move |r| {
            te_body(r, &format!("{:x}_0\r\n{}\r\n0\r\n\r\n", b, first()))
        }),
        refused(
            "chunk syntax",
            "chunk extension holding a bare LF",
            move |r| {
                te_body(
                    r,
                    &format!("{:x};x=\"a\nb\"\r\n{}\r\n0\r\n\r\n", b, first()),
                )
            },
        ),
        refused(
            "chunk syntax",
            "chunk extension holding a quoted CRLF and the hidden request",
            move |r| {
                // A reader that honours quotes reads the hidden request as part of
                // the extension; scrim ends the size line at the first CRLF.
                let ext = format!(";x=\"\r\n{}\"", smuggled(r));
                post(
                    r,
                    "Transfer-Encoding: chunked\r\n",
                    &format!("{:x}{ext}\r\n{}\r\n0\r\n\r\n", b, first()),
                )
            },
        ),
        refused(
            "chunk syntax",
            "chunk data longer than its size",
            move |r| te_body(r, &format!("{:x}\r\n{}\r\n0\r\n\r\n", b - 5, first())),
        ),
        refused(
            "chunk syntax",
            "chunk data shorter than its size",
            move |r| te_body(r, &format!("{:x}\r\n{}\r\n0\r\n\r\n", b + 5, first())),
        ),
        refused("chunk syntax", "no CRLF after the chunk data", move |r| {
            te_body(r, &format!("{:x}\r\n{}0\r\n\r\n", b, first()))
        }),
        refused("chunk syntax", "LF alone after the chunk data", move |r| {
            te_body(r, &format!("{:x}\r\n{}\n0\r\n\r\n", b, first()))
        }),
        refused("chunk syntax", "LF alone after the chunk size", move |r| {
            te_body(r, &format!("{:x}\n{}\r\n0\r\n\r\n", b, first()))
        }),
        refused(
            "chunk syntax",
            "every chunk line ending a bare LF",
            move |r| te_body(r, &format!("{:x}\n{}\n0\n\n", b, first())),
        ),
        refused("chunk syntax", "a bare CR after the chunk size", move |r| {
            te_body(r, &format!("{:x}\r{}\r\n0\r\n\r\n", b, first()))
        }),
        refused(
            "chunk syntax",
            "the last chunk without its empty line, a request head read as trailers",
            move |r| te_body(r, &format!("{}0\r\n", chunk(&first()))),
        ),
        framed(
            "chunk syntax",
            "whitespace after the chunk size",
            FIRST,
            Then::Either,
            move |r| {
                post(
                    r,
                    "Transfer-Encoding: chunked\r\n",
                    &format!("{:x} \t\r\n{}\r\n0\r\n\r\n", b, first()),
                )
            },
        ),
        framed(
            "chunk syntax",
            "upper-case hex and leading zeros in the chunk size",
            FIRST,
            Then::Either,
            move |r| {
                post(
                    r,
                    "Transfer-Encoding: chunked\r\n",
                    &format!("000{:X}\r\n{}\r\n0\r\n\r\n", b, first()),
                )
            },
        ),
        // -- Trailers
        framed(
            "trailers",
            "trailers carrying Content-Length and Transfer-Encoding",
            FIRST,
            Then::Either,
            move |r| {
                post(
                    r,
                    "Transfer-Encoding: chunked\r\nTrailer: Content-Length, Transfer-Encoding, X-Trailer\r\n",
                    &format!(
                        "{}0\r\nContent-Length: 999\r\nTransfer-Encoding: chunked\r\nX-Trailer: {TRAILER_MARKER}\r\n\r\n",
                        chunk(&first())
                    ),
                )
            },
        ),
        refused("trailers", "a trailer with obs-fold", move |r| {
            te_body(
                r,
                &format!(
                    "{}0\r\nX-Trailer: a\r\n {TRAILER_MARKER}\r\n\r\n",
                    chunk(&first())
                ),
            )
        }),
        refused("trailers", "a trailer line without a colon", move |r| {
            te_body(
                r,
                &format!("{}0\r\nX-Trailer {TRAILER_MARKER}\r\n\r\n", chunk(&first())),
            )
        }),
        // -- Pipelining and Connection
        framed(
            "pipelining",
            "Connection: close, then a pipelined request",
            FIRST,
            Then::Close,
            move |r| post(r, &format!("{}Connection: close\r\n", cl(b)), &first()) + &smuggled(r),
        ),
        framed(
            "pipelining",
            "Connection: close, then Connection: keep-alive",
            FIRST,
            Then::Close,
            move |r| {
                post(
                    r,
                    &format!("{}Connection: close\r\nConnection: keep-alive\r\n", cl(b)),
                    &first(),
                ) + &smuggled(r)
            },
        ),
        framed(
            "pipelining",
            "Connection: keep-alive, close",
            FIRST,
            Then::Close,
            move |r| {
                post(
                    r,
                    &format!("{}Connection: keep-alive, close\r\n", cl(b)),
                    &first(),
                ) + &smuggled(r)
            },
        ),
        framed(
            "pipelining",
            "Connection: CLOSE in upper case",
            FIRST,
            Then::Close,
            move |r| post(r, &format!("{}Connection: CLOSE\r\n", cl(b)), &first()) + &smuggled(r),
        ),
        framed(
            "pipelining",
            "HTTP/1.0 without keep-alive, then a pipelined request",
            FIRST,
            Then::Close,
            move |r| req(&format!("POST /{r}/e HTTP/1.0"), &cl(b), &first()) + &smuggled(r),
        ),
        framed(
            "pipelining",
            "HTTP/1.0 with Connection: keep-alive, then a second request",
            BOTH,
            Then::Either,
            move |r| {
                req(
                    &format!("POST /{r}/e HTTP/1.0"),
                    &format!("{}Connection: keep-alive\r\n", cl(b)),
                    &first(),
                ) + &second(r)
            },
        ),
        framed(
            "pipelining",
            "Connection: close on the second request, then a third",
            BOTH,
            Then::Close,
            move |r| {
                let d = doc("second");
                plain(r)
                    + &req(
                        &format!("POST /{r}/second HTTP/1.1"),
                        &format!("{}Connection: close\r\n", cl(d.len())),
                        &d,
                    )
                    + &smuggled(r)
            },
        ),
        framed(
            "pipelining",
            "a CL.TE request pipelined after a good one",
            FIRST,
            Then::Close,
            move |r| {
                // The good request is forwarded; the second is the CL.TE shape with
                // an unparsable first chunk, so only a reader of its chunked body
                // that keeps the connection would reach the hidden request.
                let body = format!("{}{}", chunked("not json"), smuggled(r));
                plain(r)
                    + &req(
                        &format!("POST /{r}/x HTTP/1.1"),
                        &format!("{}Transfer-Encoding: chunked\r\n", cl(body.len())),
                        &body,
                    )
            },
        ),
        // -- Refusals that leave the body unread: the body is the hidden
        //    request, which must never be read as the next one.
        refused(
            "unread body",
            "unknown recipient, the body is a request",
            move |r| req("POST /nobody/e HTTP/1.1", &cl(s(r)), &smuggled(r)),
        ),
        refused(
            "unread body",
            "unhandled content type, the body is a request",
            move |r| {
                format!(
                    "POST /{r}/e HTTP/1.1\r\nHost: scrim\r\nContent-Type: text/plain\r\n{}\r\n{}",
                    cl(s(r)),
                    smuggled(r)
                )
            },
        ),
        refused(
            "unread body",
            "declared length over the limit, the body starts with a request",
            move |r| post(r, "Content-Length: 99999999\r\n", &smuggled(r)),
        ),
        refused(
            "unread body",
            "two Host fields, the body is a request",
            move |r| {
                req(
                    &format!("POST /{r}/e HTTP/1.1"),
                    &format!("Host: other\r\n{}", cl(s(r))),
                    &smuggled(r),
                )
            },
        ),
        refused(
            "unread body",
            "unsupported Content-Encoding, the body is a request",
            move |r| {
                post(
                    r,
                    &format!("Content-Encoding: br\r\n{}", cl(s(r))),
                    &smuggled(r),
                )
            },
        ),
        // -- Request line
        framed(
            "request line",
            "absolute-form naming another host",
            FIRST,
            Then::Either,
            move |r| {
                req(
                    &format!("POST http://partner.example/{r}/e HTTP/1.1"),
                    &cl(first().len()),
                    &first(),
                )
            },
        ),
        framed(
            "request line",
            "empty lines before the request line",
            FIRST,
            Then::Either,
            move |r| format!("\r\n\r\n{}", plain(r)),
        ),
        framed(
            "request line",
            "a bare LF ending the request line",
            FIRST,
            Then::Either,
            move |r| {
                format!(
                    "POST /{r}/e HTTP/1.1\nHost: scrim\r\nContent-Type: application/json\r\n{}\r\n{}",
                    cl(b),
                    first()
                )
            },
        ),
        refused("request line", "two spaces after the method", move |r| {
            req(
                &format!("POST  /{r}/e HTTP/1.1"),
                &cl(first().len()),
                &first(),
            ) + &smuggled(r)
        }),
        refused("request line", "tabs as separators", move |r| {
            req(
                &format!("POST\t/{r}/e\tHTTP/1.1"),
                &cl(first().len()),
                &first(),
            ) + &smuggled(r)
        }),
        refused("request line", "lower-case http/1.1", move |r| {
            req(
                &format!("POST /{r}/e http/1.1"),
                &cl(first().len()),
                &first(),
            ) + &smuggled(r)
        }),
        refused("request line", "a space after the version", move |r| {
            req(
                &format!("POST /{r}/e HTTP/1.1 "),
                &cl(first().len()),
                &first(),
            ) + &smuggled(r)
        }),
        refused(
            "request line",
            "a second version in the request line",
            move |r| {
                req(
                    &format!("POST /{r}/e HTTP/1.1 HTTP/1.1"),
                    &cl(first().len()),
                    &first(),
                ) + &smuggled(r)
            },
        ),
        refused("request line", "HTTP/1.2", move |r| {
            req(
                &format!("POST /{r}/e HTTP/1.2"),
                &cl(first().len()),
                &first(),
            ) + &smuggled(r)
        }),
        refused(
            "request line",
            "HTTP/2.0 on an HTTP/1 connection",
            move |r| {
                req(
                    &format!("POST /{r}/e HTTP/2.0"),
                    &cl(first().len()),
                    &first(),
                ) + &smuggled(r)
            },
        ),
        refused("request line", "a NUL in the request target", move |r| {
            req(
                &format!("POST /{r}/e\0x HTTP/1.1"),
                &cl(first().len()),
                &first(),
            ) + &smuggled(r)
        }),
        refused(
            "request line",
            "a bare CR ending the request line",
            move |r| {
                format!(
                    "POST /{r}/e HTTP/1.1\rHost: scrim\r\nContent-Type: application/json\r\n{}\r\n{}{}",
                    cl(b),
                    first(),
                    smuggled(r)
                )
            },
        ),
        refused(
            "request line",
            "a request target starting with //",
            move |r| {
                req(
                    &format!("POST //{r}/e HTTP/1.1"),
                    &cl(first().len()),
                    &first(),
                )
            },
        ),
        // -- GET with a body
        framed(
            "GET with a body",
            "GET with Content-Length and a JSON body",
            &[("GET", "/e", "first")],
            Then::Either,
            move |r| {
                req(
                    &format!("GET /{r}/e HTTP/1.1"),
                    &cl(first().len()),
                    &first(),
                )
            },
        ),
        framed(
            "GET with a body",
            "GET with a chunked JSON body",
            &[("GET", "/e", "first")],
            Then::Either,
            move |r| {
                req(
                    &format!("GET /{r}/e HTTP/1.1"),
                    "Transfer-Encoding: chunked\r\n",
                    &chunked(&first()),
                )
            },
        ),
        refused(
            "GET with a body",
            "GET whose Content-Length body is a request",
            move |r| req(&format!("GET /{r}/e HTTP/1.1"), &cl(s(r)), &smuggled(r)),
        ),
        refused(
            "GET with a body",
            "GET whose chunked body is a request",
            move |r| {
                req(
                    &format!("GET /{r}/e HTTP/1.1"),
                    "Transfer-Encoding: chunked\r\n",
                    &chunked(&smuggled(r)),
                )
            },
        ),
        // -- Upgrade and the h2 preface on an HTTP/1.1 connection
        framed(
            "upgrade",
            "Upgrade: h2c on a request with a body",
            FIRST,
            Then::Either,
            move |r| {
                post(
                    r,
                    &format!(
                        "{}Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n",
                        cl(b)
                    ),
                    &first(),
                )
            },
        ),
        framed(
            "upgrade",
            "the h2 preface after an HTTP/1.1 request",
            FIRST,
            Then::Either,
            move |r| {
                format!(
                    "{}PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n{}",
                    plain(r),
                    smuggled(r)
                )
            },
        ),
    ];
    // -- Expect: 100-continue, written in two parts.
    v.push(Case {
        family: "Expect",
        name: "100-continue, the body after the interim answer",
        expect: forwarded(FIRST, Then::Either),
        input: Box::new(move |r| {
            Input::H1(vec![
                post(r, &format!("{}Expect: 100-continue\r\n", cl(b)), "").into_bytes(),
                first().into_bytes(),
            ])
        }),
    });
    v.push(Case {
        family: "Expect",
        name: "100-continue refused before the body (unknown recipient), then the body is a request",
        expect: Expect::Refused,
        input: Box::new(move |r| {
            Input::H1(vec![
                req("POST /nobody/e HTTP/1.1", &format!("{}Expect: 100-continue\r\n", cl(s(r))), "").into_bytes(),
                smuggled(r).into_bytes(),
            ])
        }),
    });
    v.push(Case {
        family: "Expect",
        name: "100-continue refused before the body (content type), then the body is a request",
        expect: Expect::Refused,
        input: Box::new(move |r| {
            Input::H1(vec![
                format!(
                    "POST /{r}/e HTTP/1.1\r\nHost: scrim\r\nContent-Type: text/plain\r\nExpect: 100-continue\r\n{}\r\n",
                    cl(s(r))
                )
                .into_bytes(),
                smuggled(r).into_bytes(),
            ])
        }),
    });
    v.push(Case {
        family: "Expect",
        name: "100-continue with a CL.TE body after the interim answer",
        expect: forwarded(FIRST, Then::Close),
        input: Box::new(move |r| {
            let body = chunked(&first()) + &smuggled(r);
            Input::H1(vec![
                post(
                    r,
                    &format!(
                        "{}Transfer-Encoding: chunked\r\nExpect: 100-continue\r\n",
                        cl(body.len())
                    ),
                    "",
                )
                .into_bytes(),
                body.into_bytes(),
            ])
        }),
    });
    v.extend(h2_cases());
    v
}

// ---------------------------------------------------------------------------
// h2c prior knowledge
// ---------------------------------------------------------------------------

type Fields = Vec<(Vec<u8>, Vec<u8>)>;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len();
    assert!(len < 1 << 14, "frame over the default maximum size");
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// An HPACK integer with an `n`-bit prefix (RFC 7541 5.1).
fn hpack_int(out: &mut Vec<u8>, first: u8, n: u32, mut v: usize) {
    let max = (1usize << n) - 1;
    if v < max {
        out.push(first | v as u8);
        return;
    }
    out.push(first | max as u8);
    v -= max;
    while v >= 128 {
        out.push((v % 128) as u8 | 0x80);
        v /= 128;
    }
    out.push(v as u8);
}

/// Fields as literals without indexing, new names, no Huffman coding: the
/// bytes go on the wire exactly as the case spells them.
fn hpack(fields: &Fields) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in fields {
        out.push(0x00);
        hpack_int(&mut out, 0, 7, name.len());
        out.extend_from_slice(name);
        hpack_int(&mut out, 0, 7, value.len());
        out.extend_from_slice(value);
    }
    out
}

const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

/// HEADERS (and DATA when there is a body) of one stream.
fn h2_stream(stream: u32, fields: &Fields, data: Option<&[u8]>) -> Vec<u8> {
    let mut out = frame(
        1,
        END_HEADERS | if data.is_none() { END_STREAM } else { 0 },
        stream,
        &hpack(fields),
    );
    if let Some(d) = data {
        out.extend(frame(0, END_STREAM, stream, d));
    }
    out
}

fn field(name: &str, value: &str) -> (Vec<u8>, Vec<u8>) {
    (name.as_bytes().to_vec(), value.as_bytes().to_vec())
}

/// A POST to `/{r}{path}` with a JSON content type, the pseudo-header fields
/// first, then `extra`.
fn h2_fields(r: &str, path: &str, extra: &[(&str, &str)]) -> Fields {
    let mut v = vec![
        field(":method", "POST"),
        field(":scheme", "http"),
        field(":authority", "scrim"),
        field(":path", &format!("/{r}{path}")),
        field("content-type", "application/json"),
    ];
    v.extend(extra.iter().map(|(n, val)| field(n, val)));
    v
}

fn h2_case(name: &'static str, expect: Expect, build: impl Fn(&str) -> Vec<u8> + 'static) -> Case {
    Case {
        family: "h2c",
        name,
        expect,
        input: Box::new(move |r| Input::H2(build(r))),
    }
}

/// The intended body on stream 1, with the given fields added.
fn h2_first(r: &str, extra: &[(&str, &str)]) -> Vec<u8> {
    h2_stream(1, &h2_fields(r, "/e", extra), Some(first().as_bytes()))
}

fn h2_cases() -> Vec<Case> {
    let b = first().len();
    vec![
        h2_case(
            "a well-formed POST",
            forwarded(FIRST, Then::Either),
            move |r| h2_first(r, &[("content-length", &b.to_string())]),
        ),
        h2_case(
            "two streams, both forwarded",
            forwarded(BOTH, Then::Either),
            move |r| {
                let d = doc("second");
                let mut out = h2_first(r, &[("content-length", &b.to_string())]);
                out.extend(h2_stream(
                    3,
                    &h2_fields(r, "/second", &[("content-length", &d.len().to_string())]),
                    Some(d.as_bytes()),
                ));
                out
            },
        ),
        h2_case(
            "content-length larger than the DATA",
            Expect::Refused,
            move |r| h2_first(r, &[("content-length", &(b + 10).to_string())]),
        ),
        h2_case(
            "content-length smaller than the DATA",
            Expect::Refused,
            move |r| h2_first(r, &[("content-length", &(b - 5).to_string())]),
        ),
        h2_case(
            "two different content-length fields",
            Expect::Refused,
            move |r| {
                h2_first(
                    r,
                    &[
                        ("content-length", &b.to_string()),
                        ("content-length", &(b + 1).to_string()),
                    ],
                )
            },
        ),
        h2_case(
            "content-length with a plus sign",
            Expect::Refused,
            move |r| h2_first(r, &[("content-length", &format!("+{b}"))]),
        ),
        h2_case(
            "transfer-encoding: chunked and a CL.TE body",
            Expect::Refused,
            move |r| {
                let body = chunked(&first()) + &smuggled(r);
                h2_stream(
                    1,
                    &h2_fields(r, "/e", &[("transfer-encoding", "chunked")]),
                    Some(body.as_bytes()),
                )
            },
        ),
        h2_case("connection: keep-alive", Expect::Refused, move |r| {
            h2_first(r, &[("connection", "keep-alive")])
        }),
        h2_case("te: chunked", Expect::Refused, move |r| {
            h2_first(r, &[("te", "chunked")])
        }),
        h2_case(
            "CRLF in a field value adding transfer-encoding",
            Expect::Refused,
            move |r| h2_first(r, &[("x-pad", "a\r\ntransfer-encoding: chunked")]),
        ),
        h2_case(
            "CRLF in :path with a second request",
            Expect::Refused,
            move |r| {
                let mut fields = h2_fields(r, "/e", &[]);
                fields[3] = field(
                    ":path",
                    &format!("/{r}/e HTTP/1.1\r\nHost: scrim\r\n\r\nGPOST /{r}/smuggled"),
                );
                h2_stream(1, &fields, Some(first().as_bytes()))
            },
        ),
        h2_case("a space and a path in :method", Expect::Refused, move |r| {
            let mut fields = h2_fields(r, "/e", &[]);
            fields[0] = field(":method", &format!("GPOST /{r}/smuggled"));
            h2_stream(1, &fields, Some(first().as_bytes()))
        }),
        h2_case("an upper-case field name", Expect::Refused, move |r| {
            h2_first(r, &[("Transfer-Encoding", "chunked")])
        }),
        h2_case(
            "a pseudo-header after a regular field",
            Expect::Refused,
            move |r| {
                let mut fields = h2_fields(r, "/e", &[]);
                fields.push(field(":path", &format!("/{r}/smuggled")));
                h2_stream(1, &fields, Some(first().as_bytes()))
            },
        ),
        h2_case(
            "DATA holding the document and an HTTP/1.1 request after it",
            Expect::Refused,
            move |r| {
                let body = format!("{}\r\n\r\n{}", first(), smuggled(r));
                h2_stream(
                    1,
                    &h2_fields(r, "/e", &[("content-length", &body.len().to_string())]),
                    Some(body.as_bytes()),
                )
            },
        ),
        h2_case(
            "trailers carrying content-length",
            forwarded(FIRST, Then::Either),
            move |r| {
                let mut out = frame(1, END_HEADERS, 1, &hpack(&h2_fields(r, "/e", &[])));
                out.extend(frame(0, 0, 1, first().as_bytes()));
                out.extend(frame(
                    1,
                    END_HEADERS | END_STREAM,
                    1,
                    &hpack(&vec![
                        field("content-length", "999"),
                        field("x-trailer", TRAILER_MARKER),
                    ]),
                ));
                out
            },
        ),
    ]
}

// ---------------------------------------------------------------------------
// The raw recording upstream
// ---------------------------------------------------------------------------

/// One request as the strict reader framed it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    target: String,
    /// Lower-case names, values as sent.
    fields: Vec<(String, String)>,
    body: Vec<u8>,
}

#[derive(Debug, Default, Clone)]
struct UpState {
    connections: usize,
    /// Every byte received, per connection.
    raw: Vec<Vec<u8>>,
    /// Every request, in the order they were framed.
    requests: Vec<Seen>,
    /// What the strict reader could not frame.
    errors: Vec<String>,
}

struct RawUpstream {
    addr: SocketAddr,
    state: Arc<Mutex<UpState>>,
    task: JoinHandle<()>,
}

impl Drop for RawUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

const NO_CONTENT: &[u8] = b"HTTP/1.1 204 No Content\r\n\r\n";

impl RawUpstream {
    async fn start() -> RawUpstream {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind upstream");
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(UpState::default()));
        let st = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let index = {
                    let mut s = st.lock().unwrap();
                    s.connections += 1;
                    s.raw.push(Vec::new());
                    s.raw.len() - 1
                };
                tokio::spawn(serve_raw(stream, st.clone(), index));
            }
        });
        RawUpstream { addr, state, task }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.addr.port())
    }

    fn snapshot(&self) -> UpState {
        self.state.lock().unwrap().clone()
    }
}

async fn serve_raw(mut stream: TcpStream, state: Arc<Mutex<UpState>>, index: usize) {
    let mut pending = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let n = match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        state.lock().unwrap().raw[index].extend_from_slice(&buf[..n]);
        pending.extend_from_slice(&buf[..n]);
        loop {
            match frame_request(&pending) {
                Ok(Some((seen, used))) => {
                    pending.drain(..used);
                    state.lock().unwrap().requests.push(seen);
                    if stream.write_all(NO_CONTENT).await.is_err() {
                        return;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    state.lock().unwrap().errors.push(e);
                    return;
                }
            }
        }
    }
    if !pending.is_empty() {
        state.lock().unwrap().errors.push(format!(
            "the connection ended inside a request ({} bytes not framed: {:?})",
            pending.len(),
            String::from_utf8_lossy(&pending)
        ));
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Splits a head at CRLF, refusing a bare CR or LF or any other control
/// character.
fn head_lines(head: &[u8]) -> Result<Vec<&str>, String> {
    let text = std::str::from_utf8(head).map_err(|_| "head is not UTF-8".to_string())?;
    let lines: Vec<&str> = text.split("\r\n").collect();
    for l in &lines {
        if l.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f) {
            return Err(format!("control character in head line {l:?}"));
        }
    }
    Ok(lines)
}

/// A strict HTTP/1.1 request reader: `Ok(None)` until a whole request is
/// there.
fn frame_request(buf: &[u8]) -> Result<Option<(Seen, usize)>, String> {
    let Some(end) = find(buf, b"\r\n\r\n") else {
        return Ok(None);
    };
    let lines = head_lines(&buf[..end])?;
    let parts: Vec<&str> = lines[0].split(' ').collect();
    if parts.len() != 3
        || !is_token(parts[0])
        || !parts[1].starts_with('/')
        || parts[2] != "HTTP/1.1"
    {
        return Err(format!("not a request line: {:?}", lines[0]));
    }
    let mut fields = Vec::new();
    for l in &lines[1..] {
        let (name, value) = l
            .split_once(':')
            .ok_or_else(|| format!("field line without a colon: {l:?}"))?;
        if !is_token(name) {
            return Err(format!("not a field name: {name:?}"));
        }
        fields.push((
            name.to_ascii_lowercase(),
            value.trim_matches([' ', '\t']).to_string(),
        ));
    }
    let get = |n: &str| -> Vec<&str> {
        fields
            .iter()
            .filter(|(k, _)| k == n)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    let lengths = get("content-length");
    let codings = get("transfer-encoding");
    let start = end + 4;
    let framed = match (lengths.as_slice(), codings.as_slice()) {
        ([], []) => Some((Vec::new(), start)),
        ([n], []) => {
            if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!("Content-Length {n:?}"));
            }
            let n: usize = n.parse().map_err(|_| format!("Content-Length {n:?}"))?;
            (buf.len() >= start + n).then(|| (buf[start..start + n].to_vec(), start + n))
        }
        ([], ["chunked"]) => dechunk(&buf[start..])?.map(|(body, used)| (body, start + used)),
        _ => {
            return Err(format!(
                "framing fields: Content-Length {lengths:?}, Transfer-Encoding {codings:?}"
            ));
        }
    };
    Ok(framed.map(|(body, used)| {
        (
            Seen {
                method: parts[0].to_string(),
                target: parts[1].to_string(),
                fields,
                body,
            },
            used,
        )
    }))
}

/// Strict chunked decoding (no extensions, no trailers): the body and the
/// bytes used, `Ok(None)` until it is complete.
fn dechunk(buf: &[u8]) -> Result<Option<(Vec<u8>, usize)>, String> {
    let mut body = Vec::new();
    let mut at = 0;
    loop {
        let Some(eol) = find(&buf[at..], b"\r\n") else {
            return Ok(None);
        };
        let line = std::str::from_utf8(&buf[at..at + eol])
            .map_err(|_| "chunk size not UTF-8".to_string())?;
        if line.is_empty() || line.len() > 15 || !line.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("chunk size line {line:?}"));
        }
        let size = usize::from_str_radix(line, 16).map_err(|e| e.to_string())?;
        at += eol + 2;
        if size == 0 {
            if buf.len() < at + 2 {
                return Ok(None);
            }
            if &buf[at..at + 2] != b"\r\n" {
                return Err("trailers or junk after the last chunk".into());
            }
            return Ok(Some((body, at + 2)));
        }
        if buf.len() < at + size + 2 {
            return Ok(None);
        }
        body.extend_from_slice(&buf[at..at + size]);
        if &buf[at + size..at + size + 2] != b"\r\n" {
            return Err("no CRLF after chunk data".into());
        }
        at += size + 2;
    }
}

// ---------------------------------------------------------------------------
// The caller's side
// ---------------------------------------------------------------------------

/// What scrim answered on one connection.
#[derive(Debug, Default)]
struct Exchange {
    /// Every byte scrim sent.
    raw: Vec<u8>,
    /// Final status codes, in order (h2c: one per response HEADERS).
    statuses: Vec<u16>,
    /// Interim (1xx) answers.
    interim: usize,
    /// Scrim closed (or reset) the connection.
    closed: bool,
    /// h2c: a stream was reset or the connection ended with an error code.
    reset: bool,
    /// An answer that could not be read.
    error: Option<String>,
}

/// Reads until the peer closes, `deadline`, or `quiet` passes without a
/// byte once `enough` holds for what arrived. Returns whether the connection
/// was closed.
async fn read_until(
    s: &mut TcpStream,
    raw: &mut Vec<u8>,
    deadline: Instant,
    quiet: Duration,
    enough: impl Fn(&[u8]) -> bool,
) -> bool {
    let mut buf = [0u8; 8192];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        let wait = if enough(raw) { quiet.min(left) } else { left };
        match tokio::time::timeout(wait, s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(n)) => raw.extend_from_slice(&buf[..n]),
        }
    }
}

/// How many final answers a case waits for before the quiet: one per
/// forwarded request, or the one refusal.
fn answers_wanted(expect: &Expect) -> usize {
    match expect {
        Expect::Refused => 1,
        Expect::Forwarded(requests, _) => requests.len(),
    }
}

async fn exchange_h1(addr: SocketAddr, parts: Vec<Vec<u8>>, want: usize) -> Exchange {
    let mut s = TcpStream::connect(addr).await.expect("connect to scrim");
    let mut ex = Exchange::default();
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            // The answer to the first part, if any, comes before the rest.
            let until = Instant::now() + PAUSE;
            ex.closed = read_until(&mut s, &mut ex.raw, until, PAUSE, |_| false).await;
            if ex.closed {
                break;
            }
        }
        if s.write_all(part).await.is_err() {
            ex.closed = true;
            break;
        }
    }
    if !ex.closed {
        let until = Instant::now() + CASE_DEADLINE;
        ex.closed = read_until(&mut s, &mut ex.raw, until, QUIET, |raw| {
            parse_responses(raw).is_ok_and(|(statuses, _)| statuses.len() >= want)
        })
        .await;
    }
    match parse_responses(&ex.raw) {
        Ok((statuses, interim)) => {
            ex.statuses = statuses;
            ex.interim = interim;
        }
        Err(e) => ex.error = Some(e),
    }
    ex
}

/// Reads HTTP/1.1 responses: final statuses and the number of interim ones.
fn parse_responses(raw: &[u8]) -> Result<(Vec<u16>, usize), String> {
    let mut statuses = Vec::new();
    let mut interim = 0;
    let mut at = 0;
    while at < raw.len() {
        let end = find(&raw[at..], b"\r\n\r\n").ok_or("an incomplete response head")?;
        let lines = head_lines(&raw[at..at + end])?;
        let status: u16 = lines[0]
            .strip_prefix("HTTP/1.1 ")
            .or_else(|| lines[0].strip_prefix("HTTP/1.0 "))
            .and_then(|rest| rest.get(..3))
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| format!("not a status line: {:?}", lines[0]))?;
        let mut length = None;
        let mut chunked = false;
        for l in &lines[1..] {
            let (name, value) = l
                .split_once(':')
                .ok_or("a response field without a colon")?;
            match name.to_ascii_lowercase().as_str() {
                "content-length" => {
                    length = Some(value.trim().parse::<usize>().map_err(|e| e.to_string())?)
                }
                "transfer-encoding" => chunked = value.trim().eq_ignore_ascii_case("chunked"),
                _ => {}
            }
        }
        at += end + 4;
        if status < 200 {
            interim += 1;
            continue;
        }
        statuses.push(status);
        if status == 204 || status == 304 {
            continue;
        }
        if chunked {
            let (_, used) = dechunk(&raw[at..])?.ok_or("an incomplete chunked response")?;
            at += used;
        } else if let Some(n) = length {
            if raw.len() < at + n {
                return Err("a response shorter than its Content-Length".into());
            }
            at += n;
        } else {
            at = raw.len();
        }
    }
    Ok((statuses, interim))
}

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

async fn exchange_h2(addr: SocketAddr, frames: Vec<u8>, want: usize) -> Exchange {
    let mut s = TcpStream::connect(addr).await.expect("connect to scrim");
    let mut ex = Exchange::default();
    let mut out = PREFACE.to_vec();
    out.extend(frame(4, 0, 0, &[]));
    out.extend(frames);
    if s.write_all(&out).await.is_err() {
        ex.closed = true;
        return ex;
    }
    let deadline = Instant::now() + CASE_DEADLINE;
    let mut at = 0;
    let mut buf = [0u8; 8192];
    loop {
        // Frames read so far.
        while ex.raw.len() >= at + 9 {
            let h = &ex.raw[at..at + 9];
            let len = (usize::from(h[0]) << 16) | (usize::from(h[1]) << 8) | usize::from(h[2]);
            let (kind, flags) = (h[3], h[4]);
            if ex.raw.len() < at + 9 + len {
                break;
            }
            let payload = ex.raw[at + 9..at + 9 + len].to_vec();
            at += 9 + len;
            match kind {
                1 => match h2_status(&payload, flags) {
                    Some(st) if st < 200 => ex.interim += 1,
                    Some(st) => ex.statuses.push(st),
                    None => ex.error = Some(format!("unreadable response HEADERS {payload:02x?}")),
                },
                3 => ex.reset = true,
                4 if flags & 1 == 0 => {
                    let _ = s.write_all(&frame(4, 1, 0, &[])).await;
                }
                7 => {
                    let code = payload
                        .get(4..8)
                        .map_or(0, |c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]));
                    if code != 0 {
                        ex.reset = true;
                    }
                }
                _ => {}
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        // The server's SETTINGS are not an answer: the quiet counts once the
        // expected responses (or a reset) are in.
        let enough = ex.statuses.len() >= want || ex.reset;
        let wait = if enough { QUIET.min(left) } else { left };
        match tokio::time::timeout(wait, s.read(&mut buf)).await {
            Err(_) => break,
            Ok(Ok(0)) | Ok(Err(_)) => {
                ex.closed = true;
                break;
            }
            Ok(Ok(n)) => ex.raw.extend_from_slice(&buf[..n]),
        }
    }
    ex
}

/// The `:status` of a response HEADERS frame: the first field, indexed in
/// the static table or a literal with its name indexed (RFC 7541 appendix A).
fn h2_status(payload: &[u8], flags: u8) -> Option<u16> {
    let mut block = payload;
    if flags & 0x8 != 0 {
        let pad = usize::from(*block.first()?);
        block = block.get(1..block.len().checked_sub(pad)?)?;
    }
    if flags & 0x20 != 0 {
        block = block.get(5..)?;
    }
    // Dynamic table size updates.
    while block.first().is_some_and(|b| b & 0xe0 == 0x20) {
        block = block.get(1..)?;
    }
    let first = *block.first()?;
    if first & 0x80 != 0 {
        return match first & 0x7f {
            8 => Some(200),
            9 => Some(204),
            10 => Some(206),
            11 => Some(304),
            12 => Some(400),
            13 => Some(404),
            14 => Some(500),
            _ => None,
        };
    }
    let name = if first & 0x40 != 0 {
        first & 0x3f
    } else {
        first & 0x0f
    };
    if name != 8 {
        return None;
    }
    let len_byte = *block.get(1)?;
    let value = block.get(2..2 + usize::from(len_byte & 0x7f))?;
    let digits = if len_byte & 0x80 != 0 {
        huffman_digits(value)?
    } else {
        String::from_utf8(value.to_vec()).ok()?
    };
    digits.parse().ok()
}

/// Huffman-decodes a string of decimal digits (RFC 7541 appendix B: `0`-`2`
/// are 5 bits, `3`-`9` are 6 bits, the padding is all ones).
fn huffman_digits(code: &[u8]) -> Option<String> {
    let bits: Vec<u8> = code
        .iter()
        .flat_map(|b| (0..8).rev().map(move |i| (b >> i) & 1))
        .collect();
    let value = |bits: &[u8]| bits.iter().fold(0u8, |a, &b| (a << 1) | b);
    let mut out = String::new();
    let mut i = 0;
    while i < bits.len() {
        let rest = &bits[i..];
        if rest.len() < 8 && rest.iter().all(|&b| b == 1) {
            break;
        }
        if rest.len() >= 5 && value(&rest[..5]) <= 2 {
            out.push(char::from(b'0' + value(&rest[..5])));
            i += 5;
        } else if rest.len() >= 6 && (0b011001..=0b011111).contains(&value(&rest[..6])) {
            out.push(char::from(b'3' + value(&rest[..6]) - 0b011001));
            i += 6;
        } else {
            return None;
        }
    }
    Some(out)
}

// ---------------------------------------------------------------------------
// The verdict
// ---------------------------------------------------------------------------

/// Upstream request fields scrim may send for these rules: the computed ones.
const UPSTREAM_FIELDS: &[&str] = &["host", "content-type", "content-length"];

fn contains_ci(haystack: &[u8], needle: &str) -> bool {
    find(
        &haystack.to_ascii_lowercase(),
        needle.to_ascii_lowercase().as_bytes(),
    )
    .is_some()
}

/// Every way the case can fail: the upstream's view, then the caller's.
/// `pseudonym` is the case recipient's pseudonym of [`VICTIM`].
fn check(case: &Case, h2: bool, ex: &Exchange, up: &UpState, pseudonym: &str) -> Vec<String> {
    let mut fail = Vec::new();
    let raw: Vec<u8> = up.raw.concat();
    for e in &up.errors {
        fail.push(format!("the upstream could not frame what scrim sent: {e}"));
    }
    for needle in [
        "smuggled",
        "GPOST",
        MARKER,
        PAYLOAD_EMAIL,
        VICTIM,
        TRAILER_MARKER,
        "PRI * HTTP",
    ] {
        if contains_ci(&raw, needle) {
            fail.push(format!("{needle:?} reached the upstream"));
        }
    }
    // One request line per framed request: no head inside a body.
    let lines = raw.windows(8).filter(|w| w == b"HTTP/1.1").count();
    if lines != up.requests.len() {
        fail.push(format!(
            "the upstream received {lines} `HTTP/1.1` but framed {} requests",
            up.requests.len()
        ));
    }
    for r in &up.requests {
        for (name, _) in &r.fields {
            if !UPSTREAM_FIELDS.contains(&name.as_str()) {
                fail.push(format!(
                    "field {name:?} reached the upstream on {} {}",
                    r.method, r.target
                ));
            }
        }
    }
    for needle in [PAYLOAD_EMAIL, VICTIM, MARKER] {
        if contains_ci(&ex.raw, needle) {
            fail.push(format!("scrim's answer shows {needle:?}"));
        }
    }
    if let Some(e) = &ex.error {
        fail.push(format!("scrim's answer is unreadable: {e}"));
    }
    if ex
        .statuses
        .iter()
        .any(|s| (500..600).contains(s) && *s != 505)
    {
        fail.push(format!("server error in {:?}", ex.statuses));
    }
    match &case.expect {
        Expect::Refused => {
            if up.connections != 0 || !raw.is_empty() {
                fail.push(format!(
                    "expected a refusal, but the upstream saw {} connection(s), {} bytes, requests {:?}",
                    up.connections,
                    raw.len(),
                    up.requests.iter().map(|r| format!("{} {}", r.method, r.target)).collect::<Vec<_>>()
                ));
            }
            if ex.statuses.iter().any(|s| (200..400).contains(s)) {
                fail.push(format!(
                    "expected a refusal, scrim answered {:?}",
                    ex.statuses
                ));
            }
            if !(ex.closed || ex.reset || ex.statuses.iter().any(|s| *s >= 400)) {
                fail.push(
                    "expected a refusal, scrim neither answered with an error nor closed".into(),
                );
            }
        }
        Expect::Forwarded(want, then) => {
            let mut want: Vec<(String, String, String)> = want
                .iter()
                .map(|w| {
                    (
                        w.method.to_string(),
                        w.path.to_string(),
                        format!(r#"{{"event":"{}","email":"{pseudonym}"}}"#, w.event),
                    )
                })
                .collect();
            let mut got: Vec<(String, String, String)> = up
                .requests
                .iter()
                .map(|r| {
                    (
                        r.method.clone(),
                        r.target.clone(),
                        String::from_utf8_lossy(&r.body).into_owned(),
                    )
                })
                .collect();
            if h2 {
                want.sort();
                got.sort();
            }
            if got != want {
                fail.push(format!(
                    "the upstream received\n    {got:?}\n  expected\n    {want:?}"
                ));
            }
            let n = want.len();
            if ex.statuses.len() < n || ex.statuses[..n].iter().any(|s| *s != 204) {
                fail.push(format!(
                    "expected {n} relayed 204 first, scrim answered {:?}",
                    ex.statuses
                ));
            } else if ex.statuses[n..].iter().any(|s| *s < 400) {
                fail.push(format!(
                    "an answer beyond the {n} expected is not an error: {:?}",
                    ex.statuses
                ));
            }
            if *then == Then::Close && !ex.closed {
                fail.push(
                    "scrim kept the connection open: later bytes could be read as a request".into(),
                );
            }
        }
    }
    fail
}

fn outcome(ex: &Exchange, up: &UpState) -> String {
    let mut s = format!("answers {:?}", ex.statuses);
    if ex.interim > 0 {
        let _ = write!(s, " +{} interim", ex.interim);
    }
    if ex.reset {
        s.push_str(", stream reset");
    }
    s.push_str(if ex.closed { ", closed" } else { ", open" });
    let _ = write!(s, "; upstream {} request(s)", up.requests.len());
    s
}

/// The recipient of the case at `index`.
fn recipient(index: usize) -> String {
    format!("c{index:03}")
}

fn rule(recipient: &str, upstream: &str) -> String {
    format!(
        "recipient = \"{recipient}\"\nupstream = \"{upstream}\"\n\n[fields]\n\"event\" = \"keep\"\n\"**.email\" = {{ action = \"pseudonymise\", normalise = \"email\" }}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smuggling_shapes_are_refused_or_framed_without_reaching_the_partner() {
    let cases = cases();
    let mut names: Vec<(&str, &str)> = cases.iter().map(|c| (c.family, c.name)).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), cases.len(), "case names are not unique");

    let mut upstreams = Vec::new();
    let mut rules = Vec::new();
    for i in 0..cases.len() {
        let up = RawUpstream::start().await;
        rules.push((
            format!("{}.toml", recipient(i)),
            rule(&recipient(i), &up.url()),
        ));
        upstreams.push(up);
    }
    let rule_refs: Vec<(&str, &str)> = rules
        .iter()
        .map(|(n, t)| (n.as_str(), t.as_str()))
        .collect();
    let gw = Gateway::start(&rule_refs, Opts::default()).await;
    // The leak audit looks for these in scrim's logs and error bodies too.
    let personal = format!(
        r#"{{"event":"{MARKER}","email":"{PAYLOAD_EMAIL}","victim":"{VICTIM}","trailer":"{TRAILER_MARKER}"}}"#
    );
    leaks::audit().record_request(&gw.url("/c000/e"), &[], personal.as_bytes());

    // Every case at once, each on its own connection and upstream.
    let mut tasks = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let addr = gw.running.addr;
        let input = (case.input)(&recipient(i));
        let want = answers_wanted(&case.expect);
        tasks.push(tokio::spawn(async move {
            let exchange = async move {
                match input {
                    Input::H1(parts) => (false, exchange_h1(addr, parts, want).await),
                    Input::H2(frames) => (true, exchange_h2(addr, frames, want).await),
                }
            };
            tokio::time::timeout(CASE_DEADLINE + 2 * PAUSE, exchange).await
        }));
    }
    let mut done = Vec::new();
    for (case, task) in cases.iter().zip(tasks) {
        let finished = task.await.expect("case task");
        done.push(finished.unwrap_or_else(|_| panic!("{}: no verdict in time", case.name)));
    }
    // The upstreams' view once every exchange is over: a late request
    // counts against its case.
    let mut failures = Vec::new();
    let mut report = String::new();
    for (i, (case, (h2, ex))) in cases.iter().zip(done).enumerate() {
        leaks::audit().record_error_body(&ex.raw);
        let up = upstreams[i].snapshot();
        let failed = check(case, h2, &ex, &up, &gw.pseudonym(&recipient(i), VICTIM));
        let _ = writeln!(
            report,
            "{:<26} {:<80} {}",
            case.family,
            case.name,
            outcome(&ex, &up)
        );
        if !failed.is_empty() {
            failures.push(format!(
                "[{}] {}: {}\n  {}",
                case.family,
                case.name,
                outcome(&ex, &up),
                failed.join("\n  ")
            ));
        }
    }
    println!("{report}");
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// What the raw upstream records for these bytes, on one connection.
fn upstream_saw(raw: &[u8]) -> UpState {
    let mut st = UpState {
        connections: 1,
        raw: vec![raw.to_vec()],
        ..UpState::default()
    };
    let mut at = 0;
    while at < raw.len() {
        match frame_request(&raw[at..]) {
            Ok(Some((seen, used))) => {
                st.requests.push(seen);
                at += used;
            }
            Ok(None) => {
                st.errors.push("incomplete".into());
                break;
            }
            Err(e) => {
                st.errors.push(e);
                break;
            }
        }
    }
    st
}

/// The verdict itself fails on what the replay exists to catch: a second
/// request, a hidden request inside a body, a connection left open, bytes
/// upstream for a refused case, a field that should have been dropped.
#[test]
fn the_verdict_catches_what_a_desync_looks_like() {
    let request = |fields: &str, body: &str| {
        format!(
            "POST /e HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n{fields}content-length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    let good = request("", r#"{"event":"first","email":"P"}"#);
    let answered = |closed| Exchange {
        raw: b"HTTP/1.1 204 No Content\r\n\r\n".to_vec(),
        statuses: vec![204],
        closed,
        ..Exchange::default()
    };
    let verdict = |case: &Case, ex: &Exchange, upstream: &str| {
        check(case, false, ex, &upstream_saw(upstream.as_bytes()), "P")
    };
    let case = framed("control", "close", FIRST, Then::Close, plain);
    assert_eq!(verdict(&case, &answered(true), &good), Vec::<String>::new());

    let hidden = smuggled("c000").replacen("/c000", "", 1);
    let found = verdict(&case, &answered(true), &format!("{good}{hidden}"));
    assert!(
        found.iter().any(|m| m.contains("\"smuggled\" reached")),
        "{found:?}"
    );
    assert!(
        found.iter().any(|m| m.contains("\"GPOST\" reached")),
        "{found:?}"
    );
    assert!(
        found.iter().any(|m| m.contains("the upstream received\n")),
        "{found:?}"
    );

    let head_in_body = request("", r#"{"event":"first","x":"GET / HTTP/1.1"}"#);
    let found = verdict(&case, &answered(true), &head_in_body);
    assert!(
        found.iter().any(|m| m.contains("framed 1 requests")),
        "{found:?}"
    );

    let found = verdict(&case, &answered(false), &good);
    assert!(
        found.iter().any(|m| m.contains("kept the connection open")),
        "{found:?}"
    );

    let with_cookie = request("cookie: a=1\r\n", r#"{"event":"first","email":"P"}"#);
    let found = verdict(&case, &answered(true), &with_cookie);
    assert!(
        found.iter().any(|m| m.contains("\"cookie\" reached")),
        "{found:?}"
    );

    let both = request(
        "transfer-encoding: chunked\r\n",
        r#"{"event":"first","email":"P"}"#,
    );
    let found = verdict(&case, &answered(true), &both);
    assert!(
        found.iter().any(|m| m.contains("could not frame")),
        "{found:?}"
    );

    let refused_case = refused("control", "refused", plain);
    let error = Exchange {
        raw: b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n".to_vec(),
        statuses: vec![400],
        ..Exchange::default()
    };
    assert_eq!(
        check(&refused_case, false, &error, &UpState::default(), "P"),
        Vec::<String>::new()
    );
    let found = verdict(&refused_case, &error, &good);
    assert!(
        found.iter().any(|m| m.contains("expected a refusal")),
        "{found:?}"
    );
    let found = check(
        &refused_case,
        false,
        &Exchange::default(),
        &UpState::default(),
        "P",
    );
    assert!(
        found.iter().any(|m| m.contains("neither answered")),
        "{found:?}"
    );
}

#[test]
fn the_h2_status_reader_knows_indexed_literal_and_huffman_forms() {
    assert_eq!(h2_status(&[0x89], 0), Some(204));
    assert_eq!(h2_status(&[0x8c], 0), Some(400));
    assert_eq!(h2_status(&[0x08, 0x03, b'4', b'1', b'3'], 0), Some(413));
    // "415" Huffman-coded: 011010 00001 011011, padded with ones.
    assert_eq!(h2_status(&[0x48, 0x83, 0x68, 0x2d, 0xff], 0), Some(415));
    assert_eq!(h2_status(&[0x82], 0), None);
}
