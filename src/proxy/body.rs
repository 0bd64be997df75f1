//! Request bodies before the engine: content type, content encoding, and a
//! decoder whose output is capped so a compression bomb is refused after
//! producing no more than the limit.

use std::io::Write;

use flate2::write::{GzDecoder, ZlibDecoder};

use super::error::ProxyError;
use crate::policy::BodyFormat;

/// What to do with a request body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyKind {
    /// No body.
    Empty,
    /// Rewritten by the engine.
    Rewrite(BodyFormat),
    /// Allowed through untouched by the rule file (`passthrough_content_types`).
    Passthrough,
}

/// Media type without parameters, lower case (`application/json`), and the
/// `charset` parameter if there is one. Two `charset` parameters give
/// `Some("(conflicting)")`, which no check accepts.
pub fn media_type(content_type: &str) -> (String, Option<String>) {
    let mut parts = content_type.split(';');
    let mt = parts.next().unwrap_or("").trim().to_ascii_lowercase();
    let mut charsets = parts.filter_map(|p| {
        let (k, v) = p.split_once('=')?;
        (k.trim().eq_ignore_ascii_case("charset"))
            .then(|| v.trim().trim_matches('"').to_ascii_lowercase())
    });
    let charset = match (charsets.next(), charsets.next()) {
        (Some(c), None) => Some(c),
        (None, _) => None,
        (Some(_), Some(_)) => Some("(conflicting)".into()),
    };
    (mt, charset)
}

/// The Content-Type scrim sends with a body it rewrote: the media type
/// alone (parameters, which nothing checks, stay behind), with
/// `charset=utf-8` when the caller named one. A vendor `+json` type passes
/// only when it is a plain token; otherwise the partner gets
/// `application/json`.
pub fn outbound_content_type(format: BodyFormat, content_type: &str) -> String {
    let (mt, charset) = media_type(content_type);
    let base = match format {
        BodyFormat::Form => "application/x-www-form-urlencoded",
        BodyFormat::Ndjson => match mt.as_str() {
            "application/jsonl" | "application/x-jsonlines" => mt.as_str(),
            _ => "application/x-ndjson",
        },
        BodyFormat::Json => {
            if mt != "application/json" && is_plain_vendor_json(&mt) {
                mt.as_str()
            } else {
                "application/json"
            }
        }
    };
    match charset {
        Some(_) => format!("{base}; charset=utf-8"),
        None => base.to_string(),
    }
}

/// `application/vnd.api+json`: letters, digits and `.-+` only, short.
fn is_plain_vendor_json(mt: &str) -> bool {
    mt.len() <= 64
        && mt.strip_prefix("application/").is_some_and(|sub| {
            sub.ends_with("+json")
                && sub
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+-.".contains(&b))
        })
}

/// Media types named in error messages; any other is "this content type",
/// since a caller-chosen string may carry anything.
const NAMED_TYPES: &[&str] = &[
    "text/plain",
    "text/html",
    "text/csv",
    "text/xml",
    "application/xml",
    "application/octet-stream",
    "application/x-protobuf",
    "application/protobuf",
    "application/grpc",
    "application/cbor",
    "application/msgpack",
    "application/x-msgpack",
    "application/json-seq",
    "application/javascript",
    "multipart/form-data",
    "multipart/mixed",
];

/// Content codings named in error messages.
const NAMED_CODINGS: &[&str] = &[
    "br",
    "zstd",
    "compress",
    "x-compress",
    "gzip",
    "x-gzip",
    "deflate",
    "identity",
    "aes128gcm",
];

/// What a recipient takes, for a 415's message: the types scrim rewrites,
/// the encodings it decodes, and the types the recipient's rule file lets
/// through untouched (`passthrough_content_types`).
pub fn accepts(passthrough: &[String]) -> String {
    let mut s = String::from(
        "Content-Type application/json (or application/*+json), application/x-ndjson (or application/jsonl, application/x-jsonlines) or application/x-www-form-urlencoded, with Content-Encoding identity, gzip or deflate (one layer)",
    );
    if !passthrough.is_empty() {
        s.push_str("; and, untouched: ");
        s.push_str(&passthrough.join(", "));
    }
    s
}

fn unsupported_type(what: String, passthrough: &[String]) -> ProxyError {
    ProxyError::UnsupportedType {
        what,
        accepts: accepts(passthrough),
    }
}

/// An encoding refusal for a recipient with these passthrough types.
pub fn unsupported_encoding(what: String, passthrough: &[String]) -> ProxyError {
    ProxyError::UnsupportedEncoding {
        what,
        accepts: accepts(passthrough),
    }
}

/// Decides how a body is handled from its Content-Type.
pub fn classify(
    content_type: Option<&str>,
    has_body: bool,
    expects_body: bool,
    passthrough: &[String],
) -> Result<BodyKind, ProxyError> {
    let Some(ct) = content_type else {
        return if has_body {
            Err(unsupported_type(
                "a body without Content-Type".into(),
                passthrough,
            ))
        } else {
            Ok(BodyKind::Empty)
        };
    };
    let (mt, charset) = media_type(ct);
    let format = match mt.as_str() {
        "application/json" => Some(BodyFormat::Json),
        "application/x-ndjson" | "application/jsonl" | "application/x-jsonlines" => {
            Some(BodyFormat::Ndjson)
        }
        "application/x-www-form-urlencoded" => Some(BodyFormat::Form),
        // Structured syntax suffix (RFC 6839): application/vnd.api+json.
        m if m.starts_with("application/") && m.ends_with("+json") => Some(BodyFormat::Json),
        _ => None,
    };
    if let Some(f) = format {
        // JSON is UTF-8 (RFC 8259 section 8.1); anything else is refused
        // rather than misread.
        if charset
            .as_deref()
            .is_some_and(|c| c != "utf-8" && c != "utf8")
        {
            let named = match f {
                BodyFormat::Json => "JSON",
                BodyFormat::Ndjson => "NDJSON",
                BodyFormat::Form => "a form",
            };
            return Err(unsupported_type(
                format!("{named} with a charset other than UTF-8, or more than one charset"),
                passthrough,
            ));
        }
        // An empty JSON document is not a document: a request that carries
        // a payload (POST, PUT, PATCH) declaring JSON with no body goes to the
        // engine, which refuses it. NDJSON and forms may be empty.
        let refuse_empty = expects_body && f == BodyFormat::Json;
        return Ok(if has_body || refuse_empty {
            BodyKind::Rewrite(f)
        } else {
            BodyKind::Empty
        });
    }
    if passthrough.contains(&mt) {
        return Ok(BodyKind::Passthrough);
    }
    if !has_body {
        return Ok(BodyKind::Empty);
    }
    // Only a well-known media type goes into the message.
    let what = if NAMED_TYPES.contains(&mt.as_str()) {
        format!("content type {mt}")
    } else {
        "this content type".into()
    };
    Err(unsupported_type(what, passthrough))
}

/// A supported Content-Encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// None.
    Identity,
    /// gzip (RFC 1952).
    Gzip,
    /// deflate, i.e. zlib (RFC 1950), per RFC 9110 section 8.4.1.2.
    Deflate,
}

/// Parses Content-Encoding. One layer at most: stacked encodings are
/// refused (the refusal lists what a recipient with `passthrough` types
/// takes).
pub fn encoding(value: Option<&str>, passthrough: &[String]) -> Result<Encoding, ProxyError> {
    let Some(v) = value else {
        return Ok(Encoding::Identity);
    };
    let codings: Vec<String> = v
        .split(',')
        .map(|c| c.trim().to_ascii_lowercase())
        .filter(|c| !c.is_empty() && c != "identity")
        .collect();
    match codings.as_slice() {
        [] => Ok(Encoding::Identity),
        [one] if one == "gzip" || one == "x-gzip" => Ok(Encoding::Gzip),
        [one] if one == "deflate" => Ok(Encoding::Deflate),
        [one] if NAMED_CODINGS.contains(&one.as_str()) => Err(unsupported_encoding(
            format!("content encoding {one}"),
            passthrough,
        )),
        [_] => Err(unsupported_encoding(
            "this content encoding".into(),
            passthrough,
        )),
        many => {
            let named: Vec<&str> = many
                .iter()
                .map(String::as_str)
                .filter(|c| NAMED_CODINGS.contains(c))
                .collect();
            let what = if named.len() == many.len() {
                format!("stacked content encodings {}", named.join(", "))
            } else {
                "stacked content encodings".into()
            };
            Err(unsupported_encoding(what, passthrough))
        }
    }
}

/// Collects decoded output, failing once more than `limit` bytes came out.
struct Capped {
    buf: Vec<u8>,
    total: u64,
    limit: u64,
}

/// Marker for the cap inside an io::Error.
#[derive(Debug)]
struct OverLimit;

impl std::fmt::Display for OverLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("decoded body over the limit")
    }
}

impl std::error::Error for OverLimit {}

impl Write for Capped {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.total += data.len() as u64;
        if self.total > self.limit {
            return Err(std::io::Error::other(OverLimit));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Incremental body decoder with a cap on the decoded size.
pub struct Decoder {
    inner: Inner,
    limit: u64,
    identity_total: u64,
}

enum Inner {
    Identity,
    Gzip(Box<GzDecoder<Capped>>),
    Deflate(Box<ZlibDecoder<Capped>>),
}

impl Decoder {
    /// A decoder for `encoding` that refuses output beyond `limit` bytes.
    pub fn new(encoding: Encoding, limit: u64) -> Decoder {
        let capped = || Capped {
            buf: Vec::new(),
            total: 0,
            limit,
        };
        let inner = match encoding {
            Encoding::Identity => Inner::Identity,
            Encoding::Gzip => Inner::Gzip(Box::new(GzDecoder::new(capped()))),
            Encoding::Deflate => Inner::Deflate(Box::new(ZlibDecoder::new(capped()))),
        };
        Decoder {
            inner,
            limit,
            identity_total: 0,
        }
    }

    /// Decodes one chunk; calls `sink` with the decoded bytes.
    pub fn push(
        &mut self,
        data: &[u8],
        sink: &mut dyn FnMut(&[u8]) -> Result<(), ProxyError>,
    ) -> Result<(), ProxyError> {
        let limit = self.limit;
        let map = |e: std::io::Error, what: &'static str| decode_error(e, what, limit);
        match &mut self.inner {
            Inner::Identity => {
                self.identity_total += data.len() as u64;
                if self.identity_total > limit {
                    return Err(ProxyError::TooLarge { limit });
                }
                sink(data)
            }
            Inner::Gzip(d) => {
                feed_all(d.as_mut(), data).map_err(|e| map(e, "gzip"))?;
                drain(&mut d.get_mut().buf, sink)
            }
            Inner::Deflate(d) => {
                feed_all(d.as_mut(), data).map_err(|e| map(e, "deflate"))?;
                drain(&mut d.get_mut().buf, sink)
            }
        }
    }

    /// Ends the body: a truncated compressed stream is an error.
    pub fn finish(
        &mut self,
        sink: &mut dyn FnMut(&[u8]) -> Result<(), ProxyError>,
    ) -> Result<(), ProxyError> {
        let limit = self.limit;
        let map = |e: std::io::Error, what: &'static str| decode_error(e, what, limit);
        match &mut self.inner {
            Inner::Identity => Ok(()),
            Inner::Gzip(d) => {
                d.try_finish().map_err(|e| map(e, "gzip"))?;
                drain(&mut d.get_mut().buf, sink)?;
                if !gz_done(d) {
                    return Err(ProxyError::BadEncoding("gzip"));
                }
                Ok(())
            }
            Inner::Deflate(d) => {
                d.try_finish().map_err(|e| map(e, "deflate"))?;
                drain(&mut d.get_mut().buf, sink)?;
                if d.total_out() == 0 && d.total_in() == 0 {
                    return Err(ProxyError::BadEncoding("deflate"));
                }
                Ok(())
            }
        }
    }
}

/// The cap, or a corrupt stream.
fn decode_error(e: std::io::Error, what: &'static str, limit: u64) -> ProxyError {
    if e.get_ref().is_some_and(|i| i.is::<OverLimit>()) {
        ProxyError::TooLarge { limit }
    } else {
        ProxyError::BadEncoding(what)
    }
}

fn gz_done(d: &GzDecoder<Capped>) -> bool {
    // A complete member has a parsed header; try_finish has flushed it.
    d.header().is_some()
}

/// Writes all of `data`; a decoder that stops accepting input has reached
/// the end of its stream, so bytes after it are trailing garbage.
fn feed_all(w: &mut dyn Write, mut data: &[u8]) -> std::io::Result<()> {
    while !data.is_empty() {
        let n = w.write(data)?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "data after the end of the compressed stream",
            ));
        }
        data = &data[n..];
    }
    Ok(())
}

fn drain(
    buf: &mut Vec<u8>,
    sink: &mut dyn FnMut(&[u8]) -> Result<(), ProxyError>,
) -> Result<(), ProxyError> {
    if !buf.is_empty() {
        sink(buf)?;
        buf.clear();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::Compression;
    use flate2::write::GzEncoder;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn decode_all(
        enc: Encoding,
        data: &[u8],
        limit: u64,
        chunk: usize,
    ) -> Result<Vec<u8>, ProxyError> {
        let mut d = Decoder::new(enc, limit);
        let mut out = Vec::new();
        for c in data.chunks(chunk) {
            d.push(c, &mut |b| {
                out.extend_from_slice(b);
                Ok(())
            })?;
        }
        d.finish(&mut |b| {
            out.extend_from_slice(b);
            Ok(())
        })?;
        Ok(out)
    }

    #[test]
    fn scrim_sets_its_own_content_type() {
        use BodyFormat::*;
        for (format, given, sent) in [
            (Json, "application/json", "application/json"),
            (
                Json,
                "Application/JSON; charset=UTF-8",
                "application/json; charset=utf-8",
            ),
            (
                Json,
                "application/json; profile=alice@example.com",
                "application/json",
            ),
            (Json, "application/vnd.api+json", "application/vnd.api+json"),
            (
                Json,
                "application/vnd.alice%40example.com+json",
                "application/json",
            ),
            (
                Ndjson,
                "application/x-ndjson; x=secret",
                "application/x-ndjson",
            ),
            (Ndjson, "application/jsonl", "application/jsonl"),
            (
                Form,
                "application/x-www-form-urlencoded; charset=utf-8; a=b",
                "application/x-www-form-urlencoded; charset=utf-8",
            ),
        ] {
            assert_eq!(outbound_content_type(format, given), sent, "{given}");
        }
    }

    #[test]
    fn errors_name_only_well_known_types_and_codings() {
        let pt = Vec::new();
        for (ct, shown) in [
            ("text/plain", "content type text/plain"),
            ("text/alice.smith@example.com", "this content type"),
            ("application/x-alice-smith", "this content type"),
        ] {
            match classify(Some(ct), true, true, &pt) {
                Err(ProxyError::UnsupportedType { what, accepts }) => {
                    assert_eq!(what, shown, "{ct}");
                    assert!(accepts.contains("application/x-ndjson"), "{accepts}");
                    assert!(!accepts.contains("alice"), "{accepts}");
                }
                other => panic!("{ct}: {other:?}"),
            }
        }
        match classify(
            Some("application/json; charset=utf-8; charset=utf-16"),
            true,
            true,
            &pt,
        ) {
            Err(ProxyError::UnsupportedType { what, .. }) => {
                assert!(what.contains("more than one charset"), "{what}")
            }
            other => panic!("{other:?}"),
        }
        for (ce, shown) in [
            ("br", "content encoding br"),
            ("bob@example.com", "this content encoding"),
            ("gzip, bob@example.com", "stacked content encodings"),
            ("gzip, br", "stacked content encodings gzip, br"),
        ] {
            match encoding(Some(ce), &["text/csv".to_string()]) {
                Err(ProxyError::UnsupportedEncoding { what, accepts }) => {
                    assert_eq!(what, shown, "{ce}");
                    assert!(accepts.contains("gzip or deflate"), "{accepts}");
                    assert!(accepts.ends_with("untouched: text/csv"), "{accepts}");
                }
                other => panic!("{ce}: {other:?}"),
            }
        }
    }

    #[test]
    fn gzip_round_trip_in_any_chunking() {
        let body = br#"{"event":"x"}"#.repeat(100);
        let z = gzip(&body);
        for chunk in [1, 7, 4096] {
            assert_eq!(
                decode_all(Encoding::Gzip, &z, 1 << 20, chunk).unwrap(),
                body
            );
        }
    }

    #[test]
    fn gzip_bomb_is_refused_at_the_limit() {
        let z = gzip(&vec![b' '; 50 * 1024 * 1024]);
        assert!(z.len() < 100 * 1024);
        let mut produced = 0u64;
        let mut d = Decoder::new(Encoding::Gzip, 1024 * 1024);
        let mut err = None;
        for c in z.chunks(16 * 1024) {
            if let Err(e) = d.push(c, &mut |b| {
                produced += b.len() as u64;
                Ok(())
            }) {
                err = Some(e);
                break;
            }
        }
        assert!(matches!(err, Some(ProxyError::TooLarge { .. })));
        assert!(produced <= 1024 * 1024);
    }

    #[test]
    fn truncated_and_garbage_gzip_are_refused() {
        let z = gzip(b"{\"a\":1}");
        assert!(decode_all(Encoding::Gzip, &z[..z.len() - 4], 1 << 20, 3).is_err());
        assert!(decode_all(Encoding::Gzip, b"not gzip at all", 1 << 20, 4).is_err());
        let mut trailing = z.clone();
        trailing.extend_from_slice(b"{\"b\":2}");
        assert!(decode_all(Encoding::Gzip, &trailing, 1 << 20, 64).is_err());
        assert!(decode_all(Encoding::Gzip, b"", 1 << 20, 64).is_err());
    }

    #[test]
    fn encodings_and_types() {
        assert_eq!(encoding(None, &[]).unwrap(), Encoding::Identity);
        assert_eq!(encoding(Some("GZIP"), &[]).unwrap(), Encoding::Gzip);
        assert!(matches!(
            encoding(Some("br"), &[]),
            Err(ProxyError::UnsupportedEncoding { .. })
        ));
        assert!(matches!(
            encoding(Some("gzip, gzip"), &[]),
            Err(ProxyError::UnsupportedEncoding { .. })
        ));
        let pt = vec!["image/gif".to_string()];
        assert_eq!(
            classify(Some("application/json; charset=utf-8"), true, true, &pt).unwrap(),
            BodyKind::Rewrite(BodyFormat::Json)
        );
        assert_eq!(
            classify(Some("application/vnd.api+json"), true, true, &pt).unwrap(),
            BodyKind::Rewrite(BodyFormat::Json)
        );
        assert!(classify(Some("application/json; charset=latin1"), true, true, &pt).is_err());
        assert!(classify(Some("text/plain"), true, true, &pt).is_err());
        assert_eq!(
            classify(Some("image/gif"), true, true, &pt).unwrap(),
            BodyKind::Passthrough
        );
        assert_eq!(classify(None, false, false, &pt).unwrap(), BodyKind::Empty);
        // POST with an empty JSON body: the engine refuses it.
        assert_eq!(
            classify(Some("application/json"), false, true, &pt).unwrap(),
            BodyKind::Rewrite(BodyFormat::Json)
        );
        assert_eq!(
            classify(Some("application/json"), false, false, &pt).unwrap(),
            BodyKind::Empty
        );
        assert!(classify(None, true, true, &pt).is_err());
    }
}
