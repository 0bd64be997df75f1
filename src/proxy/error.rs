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
    /// No rule file claims the path or Host.
    #[error("no recipient matches this request")]
    UnknownRecipient,
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
    #[error("{0}")]
    Invalid(RewriteError),
    /// The body (after decoding) is over the limit.
    #[error("body larger than {limit} bytes (after decoding)")]
    TooLarge {
        /// The limit.
        limit: u64,
    },
    /// Content type not handled and not allowed through.
    #[error("content type {0} is not handled for this recipient")]
    UnsupportedType(String),
    /// Content encoding not handled.
    #[error("content encoding {0} is not handled (identity, gzip and deflate are)")]
    UnsupportedEncoding(String),
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
    #[error("partner unreachable ({0})")]
    Unreachable(&'static str),
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
            ProxyError::UnknownRecipient => StatusCode::NOT_FOUND,
            ProxyError::AmbiguousHost => StatusCode::BAD_REQUEST,
            ProxyError::Path(PathError::NotAllowed) => StatusCode::NOT_FOUND,
            ProxyError::Path(_) => StatusCode::BAD_REQUEST,
            ProxyError::Invalid(_) | ProxyError::BadEncoding(_) => StatusCode::BAD_REQUEST,
            ProxyError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::UnsupportedType(_) | ProxyError::UnsupportedEncoding(_) => {
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
            ProxyError::UnknownRecipient => "unknown_recipient",
            ProxyError::AmbiguousHost => "ambiguous_host",
            ProxyError::Path(e) => e.code(),
            ProxyError::Invalid(e) => match e.kind {
                ErrorKind::TooDeep(_) => "too_deep",
                k => k.code(),
            },
            ProxyError::TooLarge { .. } => "too_large",
            ProxyError::UnsupportedType(_) => "unsupported_content_type",
            ProxyError::UnsupportedEncoding(_) => "unsupported_content_encoding",
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

    #[test]
    fn statuses_follow_the_contract() {
        let cases: Vec<(ProxyError, u16)> = vec![
            (ProxyError::UnknownRecipient, 404),
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
            (ProxyError::UnsupportedType("text/plain".into()), 415),
            (ProxyError::UnsupportedEncoding("br".into()), 415),
            (
                ProxyError::RateLimited {
                    retry_after: Duration::from_millis(200),
                },
                429,
            ),
            (ProxyError::HeadersTooLarge("count"), 431),
            (ProxyError::Unreachable("connect"), 502),
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
            ProxyError::UnknownRecipient,
            ProxyError::TooLarge { limit: 1 },
            ProxyError::UnsupportedType("text/plain".into()),
            ProxyError::UnsupportedEncoding("br".into()),
            ProxyError::BadEncoding("gzip"),
            ProxyError::RateLimited {
                retry_after: Duration::from_secs(1),
            },
            ProxyError::HeadersTooLarge("count"),
            ProxyError::Overloaded,
            ProxyError::BufferFull,
            ProxyError::BodyTimeout("idle"),
            ProxyError::BodyRead,
            ProxyError::Unreachable("connect"),
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
                ProxyError::UnknownRecipient
                | ProxyError::AmbiguousHost
                | ProxyError::Path(_)
                | ProxyError::Invalid(_)
                | ProxyError::TooLarge { .. }
                | ProxyError::UnsupportedType(_)
                | ProxyError::UnsupportedEncoding(_)
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
