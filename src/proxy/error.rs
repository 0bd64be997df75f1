//! One error type for the request path and the one place that maps it to an
//! HTTP status and a JSON error body. Messages say what and where (byte
//! offset, field path), never a value.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};

use super::ProxyBody;
use crate::rewrite::path::PathError;
use crate::rewrite::{ErrorKind, RewriteError};

/// Who caused an error (pingora's `ErrorSource`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The calling service sent something scrim refuses.
    Caller,
    /// The partner failed.
    Partner,
    /// scrim itself.
    Internal,
}

/// Why a request was not forwarded (or not completed).
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// No rule file claims the path or Host. The refusal names the
    /// recipient asked for (the path's first segment, when it reads as a
    /// recipient name and holds nothing the path screen flags) and the
    /// nearest loaded one, or the loaded ones.
    #[error("{}", unknown_recipient(.asked.as_deref(), .help.as_deref()))]
    UnknownRecipient {
        /// The name asked for, when it can be shown.
        asked: Option<String>,
        /// `did you mean "segment"?`, or the loaded recipients.
        help: Option<String>,
    },
    /// Two `Host` headers, or a Host header and a request-target authority
    /// (absolute-form URI, HTTP/2 `:authority`) that lead to different
    /// recipients: readers disagree on which one counts (RFC 9112 3.2).
    #[error(
        "the request names its host twice, or in ways that lead to different recipients (Host header, absolute URI, :authority)"
    )]
    AmbiguousHost,
    /// The URL path is not allowed, or could be read as another path, or
    /// holds personal data.
    #[error("{0}")]
    Path(PathError),
    /// The body could not be rewritten with certainty.
    #[error("{error}{hint}", error = .0, hint = ndjson_hint(.0))]
    Invalid(RewriteError),
    /// The body (after decoding) is over the limit.
    #[error("body larger than {limit} bytes (after decoding)")]
    TooLarge {
        /// The limit.
        limit: u64,
    },
    /// Content type not handled and not allowed through.
    #[error("{what} is not handled for this recipient; it takes {accepts}")]
    UnsupportedType {
        /// The type refused, named only when it is a well-known one.
        what: String,
        /// The types and encodings the recipient takes.
        accepts: String,
    },
    /// Content encoding not handled.
    #[error("{what} is not handled for this recipient; it takes {accepts}")]
    UnsupportedEncoding {
        /// The encoding refused, named only when it is a well-known one.
        what: String,
        /// The types and encodings the recipient takes.
        accepts: String,
    },
    /// The compressed body is corrupt.
    #[error("body is not valid {0} data")]
    BadEncoding(&'static str),
    /// Over the recipient's rate limit.
    #[error("rate limit for this recipient exceeded")]
    RateLimited {
        /// When to retry.
        retry_after: Duration,
    },
    /// Request headers over the limits.
    #[error("request headers too large ({0})")]
    HeadersTooLarge(&'static str),
    /// The concurrency cap is reached.
    #[error("too many requests in flight")]
    Overloaded,
    /// The bytes held for whole-body rewriting would go over
    /// `limits.buffer_bytes`.
    #[error("too many request bytes held for rewriting; retry later")]
    BufferFull,
    /// The client stopped sending the body, sent it too slowly, or did not
    /// finish the request in time (the reason says which).
    #[error("request body too slow: {0}")]
    BodyTimeout(&'static str),
    /// The client connection failed while the body was read.
    #[error("request body could not be read")]
    BodyRead,
    /// The partner could not be reached or reset the connection.
    #[error("partner unreachable ({})", .0.describe())]
    Unreachable(Unreachable),
    /// The partner did not answer in time.
    #[error("partner did not answer within {0:?}")]
    Timeout(Duration),
    /// Something inside scrim failed.
    #[error("internal error ({0})")]
    Internal(&'static str),
    /// An aggregate recipient's event has no subject after `[fields]`: the
    /// whole body is refused.
    #[error("{0}")]
    Events(crate::aggregate::EventError),
    /// The aggregate store did not take the events: none was stored.
    #[error("aggregate store unavailable; nothing was stored, retry later")]
    StoreUnavailable,
    /// The events of a body decided one by one (`[consent]`,
    /// `[suppress]`) could not be found.
    #[error("{0}")]
    Decide(crate::consent::DecideError),
    /// The recipient's suppression lists were never loaded on this replica:
    /// nothing is forwarded until they are.
    #[error("suppression lists not loaded yet; nothing was forwarded, retry later")]
    SuppressionUnavailable,
}

/// Why the partner could not be reached, read from the client error's
/// chain: for the 502's message, its log line and the metric's `kind`.
/// Holds no address and no value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unreachable {
    /// The partner's host name did not resolve.
    Dns,
    /// The partner refused the TCP connection.
    Refused,
    /// The partner's certificate did not verify (unknown issuer, expired,
    /// not for this name).
    TlsVerification,
    /// The TLS handshake failed otherwise.
    Tls,
    /// TCP connect and TLS handshake took longer than
    /// `upstream.connect_timeout_ms`.
    ConnectTimeout,
    /// Connection set-up failed otherwise.
    Connect,
    /// The connection was reset or closed before the response head.
    Reset,
}

impl Unreachable {
    /// Classifies a client error: the first cause in its chain that says
    /// more than "connect" or "reset" wins. `connect`: the error happened
    /// while the connection was set up.
    pub fn classify(error: &(dyn std::error::Error + 'static), connect: bool) -> Unreachable {
        let mut next = Some(error);
        while let Some(e) = next {
            if let Some(found) = Self::of_one(e) {
                return found;
            }
            // `io::Error::source` skips the error it wraps: look inside.
            next = match e.downcast_ref::<std::io::Error>() {
                Some(io) => io.get_ref().map(|inner| inner as _),
                None => e.source(),
            };
        }
        if connect {
            Unreachable::Connect
        } else {
            Unreachable::Reset
        }
    }

    fn of_one(e: &(dyn std::error::Error + 'static)) -> Option<Unreachable> {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(match tls {
                rustls::Error::InvalidCertificate(_) => Unreachable::TlsVerification,
                _ => Unreachable::Tls,
            });
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind as K;
            match io.kind() {
                K::ConnectionRefused => return Some(Unreachable::Refused),
                K::TimedOut => return Some(Unreachable::ConnectTimeout),
                K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe | K::UnexpectedEof => {
                    return Some(Unreachable::Reset);
                }
                _ => {}
            }
        }
        // hyper-util's connector error type is private; its message for a
        // failed name lookup is "dns error".
        if e.to_string().starts_with("dns error") {
            return Some(Unreachable::Dns);
        }
        None
    }

    /// The metric's `kind`: `connect` for anything before the request
    /// could be sent, else `reset`.
    pub fn kind(self) -> &'static str {
        match self {
            Unreachable::Reset => "reset",
            _ => "connect",
        }
    }

    /// The cause as logged (`cause=...`).
    pub fn label(self) -> &'static str {
        match self {
            Unreachable::Dns => "dns",
            Unreachable::Refused => "connection_refused",
            Unreachable::TlsVerification => "tls_verification",
            Unreachable::Tls => "tls_handshake",
            Unreachable::ConnectTimeout => "connect_timeout",
            Unreachable::Connect => "connect",
            Unreachable::Reset => "reset",
        }
    }

    /// The cause in words, for the refusal's message.
    pub fn describe(self) -> &'static str {
        match self {
            Unreachable::Dns => "its host name did not resolve",
            Unreachable::Refused => "connection refused",
            Unreachable::TlsVerification => "its TLS certificate did not verify",
            Unreachable::Tls => "the TLS handshake failed",
            Unreachable::ConnectTimeout => "no connection within the connect timeout",
            Unreachable::Connect => "connection failed",
            Unreachable::Reset => "connection reset or closed before its response",
        }
    }
}

/// The unknown-recipient message: what was asked for and how to fix it.
fn unknown_recipient(asked: Option<&str>, help: Option<&str>) -> String {
    let mut m = match asked {
        Some(name) => {
            format!("no recipient \"{name}\" is loaded, and no rule file claims this Host")
        }
        None => "no recipient matches this request".to_string(),
    };
    if let Some(help) = help {
        m.push_str("; ");
        m.push_str(help);
    }
    m
}

/// JSON with data after the document is most often NDJSON sent with the
/// JSON content type.
fn ndjson_hint(e: &RewriteError) -> &'static str {
    if e.kind == ErrorKind::TrailingData && e.line.is_none() && e.path.is_empty() {
        "; several documents, one per line? send them as application/x-ndjson"
    } else {
        ""
    }
}

impl ProxyError {
    /// Who caused it.
    pub fn origin(&self) -> Origin {
        match self {
            ProxyError::Unreachable(_) | ProxyError::Timeout(_) => Origin::Partner,
            ProxyError::Internal(_)
            | ProxyError::Overloaded
            | ProxyError::BufferFull
            | ProxyError::StoreUnavailable
            | ProxyError::SuppressionUnavailable => Origin::Internal,
            _ => Origin::Caller,
        }
    }

    /// The HTTP status (the fail-closed table of the contract).
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::UnknownRecipient { .. } => StatusCode::NOT_FOUND,
            ProxyError::AmbiguousHost => StatusCode::BAD_REQUEST,
            ProxyError::Path(PathError::NotAllowed) => StatusCode::NOT_FOUND,
            ProxyError::Path(_) => StatusCode::BAD_REQUEST,
            ProxyError::Invalid(_) | ProxyError::BadEncoding(_) => StatusCode::BAD_REQUEST,
            ProxyError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::UnsupportedType { .. } | ProxyError::UnsupportedEncoding { .. } => {
                StatusCode::UNSUPPORTED_MEDIA_TYPE
            }
            ProxyError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ProxyError::HeadersTooLarge(_) => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ProxyError::Overloaded | ProxyError::BufferFull => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ProxyError::BodyRead => StatusCode::BAD_REQUEST,
            ProxyError::Unreachable(_) => StatusCode::BAD_GATEWAY,
            ProxyError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ProxyError::Events(_) => StatusCode::BAD_REQUEST,
            ProxyError::StoreUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::Decide(_) => StatusCode::BAD_REQUEST,
            ProxyError::SuppressionUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            ProxyError::UnknownRecipient { .. } => "unknown_recipient",
            ProxyError::AmbiguousHost => "ambiguous_host",
            ProxyError::Path(e) => e.code(),
            ProxyError::Invalid(e) => match e.kind {
                ErrorKind::TooDeep(_) => "too_deep",
                k => k.code(),
            },
            ProxyError::TooLarge { .. } => "too_large",
            ProxyError::UnsupportedType { .. } => "unsupported_content_type",
            ProxyError::UnsupportedEncoding { .. } => "unsupported_content_encoding",
            ProxyError::BadEncoding(_) => "invalid_encoding",
            ProxyError::RateLimited { .. } => "rate_limited",
            ProxyError::HeadersTooLarge(_) => "headers_too_large",
            ProxyError::Overloaded | ProxyError::BufferFull => "overloaded",
            ProxyError::BodyTimeout(_) => "body_timeout",
            ProxyError::BodyRead => "body_read",
            ProxyError::Unreachable(_) => "upstream_unreachable",
            ProxyError::Timeout(_) => "upstream_timeout",
            ProxyError::Internal(_) => "internal",
            ProxyError::Events(e) => match e {
                crate::aggregate::EventError::MissingSubject { .. } => "missing_subject",
                crate::aggregate::EventError::RecordsNotArray(_) => "records_not_array",
                crate::aggregate::EventError::Unreadable => "invalid_events",
            },
            ProxyError::StoreUnavailable => "store_unavailable",
            ProxyError::Decide(e) => match e {
                crate::consent::DecideError::Unreadable => "invalid_events",
                crate::consent::DecideError::RecordsNotArray(_) => "records_not_array",
            },
            ProxyError::SuppressionUnavailable => "suppression_unavailable",
        }
    }

    /// The JSON error response.
    pub fn into_response(self, recipient: Option<&str>) -> Response<ProxyBody> {
        let body = serde_json::json!({
            "error": {
                "code": self.code(),
                "message": self.to_string(),
                "recipient": recipient,
            }
        });
        let mut resp = Response::new(super::full(Bytes::from(body.to_string())));
        *resp.status_mut() = self.status();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let ProxyError::RateLimited { retry_after } = self {
            let secs = retry_after.as_secs_f64().ceil().max(1.0) as u64;
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        if self.origin() == Origin::Caller || resp.status() == StatusCode::SERVICE_UNAVAILABLE {
            // The connection may hold unread body bytes.
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unknown() -> ProxyError {
        ProxyError::UnknownRecipient {
            asked: None,
            help: None,
        }
    }

    fn unsupported_type() -> ProxyError {
        ProxyError::UnsupportedType {
            what: "content type text/plain".into(),
            accepts: "application/json".into(),
        }
    }

    fn unsupported_encoding() -> ProxyError {
        ProxyError::UnsupportedEncoding {
            what: "content encoding br".into(),
            accepts: "application/json".into(),
        }
    }

    #[test]
    fn unreachable_causes_come_from_the_error_chain() {
        let io = |kind| std::io::Error::new(kind, "x");
        let cases: Vec<(Box<dyn std::error::Error + Send + Sync>, bool, Unreachable)> = vec![
            (
                Box::new(io(std::io::ErrorKind::ConnectionRefused)),
                true,
                Unreachable::Refused,
            ),
            (
                Box::new(io(std::io::ErrorKind::ConnectionReset)),
                false,
                Unreachable::Reset,
            ),
            (
                Box::new(io(std::io::ErrorKind::TimedOut)),
                true,
                Unreachable::ConnectTimeout,
            ),
            // rustls' error inside an io::Error, as tokio-rustls gives it.
            (
                Box::new(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
                )),
                true,
                Unreachable::TlsVerification,
            ),
            (
                Box::new(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    rustls::Error::HandshakeNotComplete,
                )),
                true,
                Unreachable::Tls,
            ),
            (
                Box::new(io(std::io::ErrorKind::Other)),
                true,
                Unreachable::Connect,
            ),
            (
                Box::new(io(std::io::ErrorKind::Other)),
                false,
                Unreachable::Reset,
            ),
        ];
        for (e, connect, want) in cases {
            assert_eq!(Unreachable::classify(e.as_ref(), connect), want, "{e}");
        }
        assert_eq!(Unreachable::Refused.kind(), "connect");
        assert_eq!(Unreachable::Reset.kind(), "reset");
    }

    #[test]
    fn trailing_data_after_json_hints_at_ndjson() {
        let e = ProxyError::Invalid(RewriteError::at(ErrorKind::TrailingData, 8));
        assert!(e.to_string().contains("application/x-ndjson"), "{e}");
        let e = ProxyError::Invalid(RewriteError::at(ErrorKind::DuplicateKey, 8));
        assert!(!e.to_string().contains("ndjson"), "{e}");
    }

    #[test]
    fn an_unknown_recipient_names_what_was_asked_and_the_fix() {
        let e = ProxyError::UnknownRecipient {
            asked: Some("segmnt".into()),
            help: Some("did you mean \"segment\"?".into()),
        };
        assert_eq!(
            e.to_string(),
            "no recipient \"segmnt\" is loaded, and no rule file claims this Host; did you mean \"segment\"?"
        );
        assert_eq!(unknown().to_string(), "no recipient matches this request");
    }

    #[test]
    fn statuses_follow_the_contract() {
        let cases: Vec<(ProxyError, u16)> = vec![
            (unknown(), 404),
            (ProxyError::Path(PathError::NotAllowed), 404),
            (ProxyError::Path(PathError::DotSegment(1)), 400),
            (
                ProxyError::Path(PathError::PersonalData {
                    segment: 1,
                    kind: "email",
                }),
                400,
            ),
            (
                ProxyError::Invalid(RewriteError::at(ErrorKind::TooDeep(64), 64)),
                400,
            ),
            (ProxyError::TooLarge { limit: 1 }, 413),
            (unsupported_type(), 415),
            (unsupported_encoding(), 415),
            (
                ProxyError::RateLimited {
                    retry_after: Duration::from_millis(200),
                },
                429,
            ),
            (ProxyError::HeadersTooLarge("count"), 431),
            (ProxyError::Unreachable(Unreachable::Refused), 502),
            (ProxyError::Timeout(Duration::from_secs(15)), 504),
            (ProxyError::Overloaded, 503),
            (ProxyError::BufferFull, 503),
        ];
        for (e, status) in cases {
            assert_eq!(e.status().as_u16(), status, "{e}");
        }
    }

    /// Every error code, with its status, is in the operators' table in
    /// docs/operations.md. The matches are exhaustive, so a new variant
    /// does not compile until it is listed here.
    #[test]
    fn every_code_is_documented_with_its_status() {
        let doc = include_str!("../../docs/operations.md");
        let kinds = [
            ErrorKind::Syntax("x"),
            ErrorKind::DuplicateKey,
            ErrorKind::LoneSurrogate,
            ErrorKind::InvalidUtf8,
            ErrorKind::TooDeep(1),
            ErrorKind::TrailingData,
            ErrorKind::UnexpectedEnd,
            ErrorKind::NumberTooLong,
            ErrorKind::LineBreakInDocument,
            ErrorKind::InvalidPercentEncoding,
            ErrorKind::NulInKey,
            ErrorKind::NulInName,
            ErrorKind::FormUtf8,
            ErrorKind::BareCarriageReturn,
            ErrorKind::JsonAsForm,
        ];
        for k in &kinds {
            match k {
                ErrorKind::Syntax(_)
                | ErrorKind::DuplicateKey
                | ErrorKind::LoneSurrogate
                | ErrorKind::InvalidUtf8
                | ErrorKind::TooDeep(_)
                | ErrorKind::TrailingData
                | ErrorKind::UnexpectedEnd
                | ErrorKind::NumberTooLong
                | ErrorKind::LineBreakInDocument
                | ErrorKind::InvalidPercentEncoding
                | ErrorKind::NulInKey
                | ErrorKind::NulInName
                | ErrorKind::FormUtf8
                | ErrorKind::BareCarriageReturn
                | ErrorKind::JsonAsForm => {}
            }
        }
        let mut errors: Vec<ProxyError> = kinds
            .into_iter()
            .map(|kind| ProxyError::Invalid(RewriteError::at(kind, 0)))
            .collect();
        errors.extend([
            unknown(),
            ProxyError::TooLarge { limit: 1 },
            unsupported_type(),
            unsupported_encoding(),
            ProxyError::BadEncoding("gzip"),
            ProxyError::RateLimited {
                retry_after: Duration::from_secs(1),
            },
            ProxyError::HeadersTooLarge("count"),
            ProxyError::Overloaded,
            ProxyError::BufferFull,
            ProxyError::BodyTimeout("idle"),
            ProxyError::BodyRead,
            ProxyError::Unreachable(Unreachable::Connect),
            ProxyError::Timeout(Duration::from_secs(1)),
            ProxyError::Internal("x"),
            ProxyError::AmbiguousHost,
            ProxyError::Path(PathError::NotAllowed),
            ProxyError::Path(PathError::DotSegment(1)),
            ProxyError::Path(PathError::PersonalData {
                segment: 1,
                kind: "email",
            }),
            ProxyError::Events(crate::aggregate::EventError::MissingSubject {
                index: 0,
                path: "userId".into(),
            }),
            ProxyError::Events(crate::aggregate::EventError::RecordsNotArray(
                "batch".into(),
            )),
            ProxyError::Events(crate::aggregate::EventError::Unreadable),
            ProxyError::StoreUnavailable,
            ProxyError::Decide(crate::consent::DecideError::Unreadable),
            ProxyError::SuppressionUnavailable,
        ]);
        for e in &errors {
            match e {
                ProxyError::UnknownRecipient { .. }
                | ProxyError::AmbiguousHost
                | ProxyError::Path(_)
                | ProxyError::Invalid(_)
                | ProxyError::TooLarge { .. }
                | ProxyError::UnsupportedType { .. }
                | ProxyError::UnsupportedEncoding { .. }
                | ProxyError::BadEncoding(_)
                | ProxyError::RateLimited { .. }
                | ProxyError::HeadersTooLarge(_)
                | ProxyError::Overloaded
                | ProxyError::BufferFull
                | ProxyError::BodyTimeout(_)
                | ProxyError::BodyRead
                | ProxyError::Unreachable(_)
                | ProxyError::Timeout(_)
                | ProxyError::Internal(_)
                | ProxyError::Events(_)
                | ProxyError::StoreUnavailable
                | ProxyError::Decide(_)
                | ProxyError::SuppressionUnavailable => {}
            }
            let row = format!("| `{}` | {} |", e.code(), e.status().as_u16());
            assert!(doc.contains(&row), "docs/operations.md lacks the row {row}");
        }
    }

    #[test]
    fn retry_after_is_whole_seconds() {
        let r = ProxyError::RateLimited {
            retry_after: Duration::from_millis(200),
        }
        .into_response(Some("x"));
        assert_eq!(r.headers()[header::RETRY_AFTER], "1");
        assert_eq!(r.headers()[header::CONTENT_TYPE], "application/json");
    }
}
