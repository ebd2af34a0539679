//! `application/problem+json` rejections ([RFC 9457]) shared by every hookgate layer.
//!
//! Every answer a hookgate layer writes itself (rather than passing on the inner service's) is a
//! [`Problem`]: a status, a stable machine-readable [`ProblemCode`] naming the cause, a
//! human-readable detail and, for retryable answers, a `Retry-After`. The body looks like
//!
//! ```json
//! {"type":"urn:hookgate:problem:signature_mismatch","title":"Signature does not match",
//!  "status":401,"detail":"no configured secret produced any of the 1 v0 signature(s)",
//!  "code":"signature_mismatch"}
//! ```
//!
//! The code is also inserted into the response's extensions, so metrics and logs can count
//! rejections by cause without parsing bodies:
//!
//! ```
//! use hookgate::problem::{Problem, ProblemCode};
//! use http::StatusCode;
//!
//! let response = Problem::new(StatusCode::UNAUTHORIZED, ProblemCode::SIGNATURE_MISMATCH)
//!     .into_response::<http_body_util::Full<bytes::Bytes>>();
//! assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
//! assert_eq!(response.extensions().get::<ProblemCode>(), Some(&ProblemCode::SIGNATURE_MISMATCH));
//! assert_eq!(response.headers()["content-type"], "application/problem+json");
//! ```
//!
//! A problem never carries a secret, an expected signature or the text of an inner error: the
//! detail is written by hookgate from what the client itself sent.
//!
//! [RFC 9457]: https://www.rfc-editor.org/rfc/rfc9457

use std::{borrow::Cow, fmt, time::Duration};

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use serde::Serialize;

use crate::body::ProblemBody;

/// The media type of every body hookgate writes itself.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// A stable, machine-readable name for the cause of a rejection, with a short human title.
///
/// The `code` strings are part of hookgate's public contract: they appear in problem bodies and
/// metrics and do not change between releases. [`ProblemCode::new`] makes codes for your own
/// layers.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProblemCode {
    code: &'static str,
    title: &'static str,
}

impl ProblemCode {
    /// A code of your own, e.g. for a custom layer built on [`Problem`].
    #[must_use]
    pub const fn new(code: &'static str, title: &'static str) -> Self {
        Self { code, title }
    }

    /// The machine-readable code, e.g. `"signature_mismatch"`.
    #[must_use]
    pub const fn as_str(&self) -> &'static str {
        self.code
    }

    /// The short human-readable title, e.g. `"Signature does not match"`.
    #[must_use]
    pub const fn title(&self) -> &'static str {
        self.title
    }

    // --- signature verification ---
    /// 401: the request carries no signature header.
    pub const MISSING_SIGNATURE: Self = Self::new("missing_signature", "Signature header missing");
    /// 400: the signature header (or a header the scheme signs, such as a message id) cannot be parsed.
    pub const MALFORMED_SIGNATURE: Self =
        Self::new("malformed_signature", "Signature header malformed");
    /// 401: no configured secret produced any of the signatures sent.
    pub const SIGNATURE_MISMATCH: Self =
        Self::new("signature_mismatch", "Signature does not match");
    /// 401: the signed timestamp is older than the tolerance.
    pub const TIMESTAMP_STALE: Self = Self::new("timestamp_stale", "Signed timestamp too old");
    /// 401: the signed timestamp is further in the future than the allowed clock skew.
    pub const TIMESTAMP_IN_FUTURE: Self =
        Self::new("timestamp_in_future", "Signed timestamp in the future");
    /// 413: the body is larger than the configured cap.
    pub const PAYLOAD_TOO_LARGE: Self = Self::new("payload_too_large", "Payload too large");
    /// 408: the client did not finish sending the body within the read deadline.
    pub const BODY_TIMEOUT: Self = Self::new("body_timeout", "Request body not received in time");
    /// 400: the request body could not be read (the client broke off or sent invalid framing).
    pub const BODY_UNREADABLE: Self = Self::new("body_unreadable", "Request body unreadable");
    /// 503: the memory budget for bodies buffered by all in-flight requests is exhausted.
    pub const BUFFER_BUDGET_EXHAUSTED: Self = Self::new(
        "buffer_budget_exhausted",
        "Receiver busy buffering other deliveries",
    );

    // --- authentication (static tokens) ---
    /// 401: the request carries no credentials (no token, or no `Authorization: Bearer`).
    pub const MISSING_CREDENTIALS: Self = Self::new("missing_credentials", "Credentials missing");
    /// 401: the request's credentials are not among the accepted ones (or are ambiguous or
    /// malformed).
    pub const INVALID_CREDENTIALS: Self =
        Self::new("invalid_credentials", "Credentials not accepted");

    // --- client checks ---
    /// 403: the client's address is not on the allow-list.
    pub const CLIENT_NOT_ALLOWED: Self =
        Self::new("client_not_allowed", "Client address not allowed");
    /// 403: the request did not arrive over HTTPS.
    pub const HTTPS_REQUIRED: Self = Self::new("https_required", "HTTPS required");

    // --- rate limiting ---
    /// 429: too many requests from one client before verification.
    pub const RATE_LIMITED: Self = Self::new("rate_limited", "Too many requests");
    /// 503: verified traffic above its configured rate; retry later.
    pub const THROTTLED: Self = Self::new("throttled", "Verified traffic over its rate");
    /// 429: the client failed verification too often and is blocked for a cooldown.
    pub const CLIENT_BLOCKED: Self = Self::new("client_blocked", "Client blocked after failures");
    /// The limiter could not tell which client sent the request.
    pub const CLIENT_UNIDENTIFIED: Self =
        Self::new("client_unidentified", "Client could not be identified");
    /// 503: the limiter cannot decide for this client: its shared store is unreachable and the
    /// layer fails closed, or its store is full of other clients.
    pub const LIMITER_UNAVAILABLE: Self =
        Self::new("limiter_unavailable", "Rate limiter store unavailable");

    // --- deduplication ---
    /// 503: another delivery of the same event is being handled right now; retry after its
    /// lease (`Retry-After`).
    pub const DELIVERY_IN_FLIGHT: Self = Self::new(
        "delivery_in_flight",
        "Another delivery of this event is being handled",
    );
    /// 503: the deduplication store cannot decide (unreachable, or full); retry later.
    pub const DEDUPE_UNAVAILABLE: Self =
        Self::new("dedupe_unavailable", "Deduplication store unavailable");
    /// 500: no deduplication key could be made for a delivery: it reached the deduplication
    /// layer unverified (the verification layer is missing in front of it), or its body has
    /// none of the fields the key is made from.
    pub const DEDUPE_KEY_MISSING: Self =
        Self::new("dedupe_key_missing", "Deduplication key could not be made");

    // --- verified events (extractors) ---
    /// 500: a handler asked for a verified event (`elevenlabs::VerifiedEvent`,
    /// `elevenlabs::verified_event`) of a request that carries no `Verified` extension: the
    /// `VerifySignatureLayer` is missing in front of the handler, or layered after it. Retried
    /// by the sender while the receiver is fixed.
    pub const VERIFICATION_LAYER_MISSING: Self = Self::new(
        "verification_layer_missing",
        "Verification layer missing in front of the handler",
    );
    /// 400: a verified body is not the event the handler reads (not JSON, or JSON of another
    /// shape). The sender signed it: sending it again will not help.
    pub const INVALID_EVENT: Self =
        Self::new("invalid_event", "Verified body is not a valid event");

    // --- status normalization ---
    /// 500: the inner service returned an error.
    pub const HANDLER_ERROR: Self = Self::new("handler_error", "Handler failed");
    /// 500: the inner service panicked.
    pub const HANDLER_PANICKED: Self = Self::new("handler_panicked", "Handler panicked");
    /// 503: the handler did not answer before the deadline.
    pub const HANDLER_TIMEOUT: Self =
        Self::new("handler_timeout", "Handler did not answer in time");
    /// 503: the inner service is overloaded (load shedding, concurrency limits).
    pub const HANDLER_OVERLOADED: Self = Self::new("handler_overloaded", "Handler overloaded");
    /// 503: the handler answered 408, 425 or 429; the sender should retry.
    pub const HANDLER_THROTTLED: Self =
        Self::new("handler_throttled", "Handler asked to retry later");
    /// 500: the handler answered with a redirect, which a webhook sender does not follow.
    pub const HANDLER_REDIRECTED: Self =
        Self::new("handler_redirected", "Handler answered with a redirect");
}

impl fmt::Debug for ProblemCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code)
    }
}

impl fmt::Display for ProblemCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code)
    }
}

/// An answer written by a hookgate layer: status, cause, detail and an optional `Retry-After`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use]
pub struct Problem {
    status: StatusCode,
    code: ProblemCode,
    detail: Option<Cow<'static, str>>,
    retry_after: Option<Duration>,
    request_id: Option<Cow<'static, str>>,
}

impl Problem {
    /// A problem with the given status and cause, no detail and no `Retry-After`.
    pub const fn new(status: StatusCode, code: ProblemCode) -> Self {
        Self {
            status,
            code,
            detail: None,
            retry_after: None,
            request_id: None,
        }
    }

    /// Adds a human-readable explanation of this occurrence. Never put secrets or inner error
    /// texts here: it goes to the client.
    pub fn with_detail(mut self, detail: impl Into<Cow<'static, str>>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// Adds a `Retry-After` header: the wait, rounded up to whole seconds and at least 1 s
    /// (a `Retry-After: 0` invites an immediate retry storm).
    pub fn with_retry_after(mut self, wait: Duration) -> Self {
        self.retry_after = Some(wait);
        self
    }

    /// Names the request this answers (its `X-Request-Id`), so that a sender's report, the
    /// receiver's logs and this body can be matched. Only ever a value the receiver checked or
    /// made itself: it goes to the client.
    pub fn with_request_id(mut self, id: impl Into<Cow<'static, str>>) -> Self {
        self.request_id = Some(id.into());
        self
    }

    /// The request id, if one was added.
    #[must_use]
    pub fn request_id(&self) -> Option<&str> {
        self.request_id.as_deref()
    }

    /// The HTTP status.
    #[must_use]
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The stable cause.
    #[must_use]
    pub fn code(&self) -> ProblemCode {
        self.code
    }

    /// The human-readable explanation, if any.
    #[must_use]
    pub fn detail(&self) -> Option<&str> {
        self.detail.as_deref()
    }

    /// The wait before a retry, if the answer is retryable and a wait is known.
    #[must_use]
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// The `Retry-After` value in whole seconds: rounded up, at least 1.
    #[must_use]
    pub fn retry_after_secs(&self) -> Option<u64> {
        self.retry_after.map(retry_after_secs)
    }

    /// The `application/problem+json` body.
    #[must_use]
    pub fn to_json(&self) -> Bytes {
        #[derive(Serialize)]
        struct Body<'a> {
            #[serde(rename = "type")]
            kind: &'a str,
            title: &'a str,
            status: u16,
            #[serde(skip_serializing_if = "Option::is_none")]
            detail: Option<&'a str>,
            code: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            retry_after: Option<u64>,
            #[serde(skip_serializing_if = "Option::is_none")]
            request_id: Option<&'a str>,
        }
        let kind = format!("urn:hookgate:problem:{}", self.code.as_str());
        let body = Body {
            kind: &kind,
            title: self.code.title(),
            status: self.status.as_u16(),
            detail: self.detail(),
            code: self.code.as_str(),
            retry_after: self.retry_after_secs(),
            request_id: self.request_id(),
        };
        // Serializing a struct of strings and integers cannot fail.
        Bytes::from(serde_json::to_vec(&body).unwrap_or_default())
    }

    /// The complete response: status, `Content-Type: application/problem+json`, `Retry-After`
    /// when set, the JSON body, and in the response extensions the [`ProblemCode`] and the
    /// `Problem` itself, so that a layer further out can answer it again differently (the
    /// normalization layer moves a retry-later answer to a status the sender retries; a gateway
    /// adds the request id) without parsing the body.
    pub fn into_response<B: ProblemBody>(self) -> Response<B> {
        let mut response = Response::new(B::from_problem(self.to_json()));
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(secs) = self.retry_after_secs() {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response.extensions_mut().insert(self.code);
        response.extensions_mut().insert(self);
        response
    }
}

#[cfg(feature = "normalize")]
impl Problem {
    /// The same problem under another status (the normalization layer moving a retry-later
    /// answer to a status the sender retries).
    pub(crate) fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }
}

impl Problem {
    /// The gRPC status code this problem maps to, following the gRPC HTTP-status mapping (and
    /// keeping retryable answers retryable: 503 and 429 become `UNAVAILABLE`).
    #[must_use]
    pub fn grpc_code(&self) -> u8 {
        match self.status.as_u16() {
            400 => 3,              // INVALID_ARGUMENT
            401 => 16,             // UNAUTHENTICATED
            403 => 7,              // PERMISSION_DENIED
            404 => 12,             // UNIMPLEMENTED
            408 | 504 => 4,        // DEADLINE_EXCEEDED
            413 => 8,              // RESOURCE_EXHAUSTED
            429 | 502 | 503 => 14, // UNAVAILABLE
            _ => 13,               // INTERNAL
        }
    }

    /// The answer for a gRPC client: a trailers-only response (HTTP 200, `grpc-status`,
    /// `grpc-message`), since gRPC clients read the status from there, not from the HTTP
    /// status. The [`ProblemCode`] is in the extensions as with [`into_response`](Self::into_response).
    pub fn into_grpc_response<B: ProblemBody>(self) -> Response<B> {
        let mut response = Response::new(B::from_problem(Bytes::new()));
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        );
        headers.insert(
            "grpc-status",
            HeaderValue::from(u16::from(self.grpc_code())),
        );
        let message = grpc_message(&format!(
            "{}: {}",
            self.code,
            self.detail().unwrap_or(self.code.title())
        ));
        if let Ok(value) = HeaderValue::from_str(&message) {
            headers.insert("grpc-message", value);
        }
        if let Some(secs) = self.retry_after_secs() {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response.extensions_mut().insert(self.code);
        response
    }

    /// The answer in the form the request's client reads: [`into_grpc_response`] for a gRPC
    /// request ([`is_grpc`]), otherwise [`into_response`]. Every hookgate layer answers through
    /// [`ResponseForm`], which is decided here.
    ///
    /// [`into_grpc_response`]: Self::into_grpc_response
    /// [`into_response`]: Self::into_response
    pub fn into_response_for<B: ProblemBody>(self, form: ResponseForm) -> Response<B> {
        match form {
            ResponseForm::Grpc => self.into_grpc_response(),
            ResponseForm::Http => self.into_response(),
        }
    }
}

/// The form a rejection takes for a request's client: an `application/problem+json` body, or
/// a gRPC trailers-only answer (gRPC clients read the status from `grpc-status`, not from the
/// HTTP status). Decided once per request from its headers, kept by a layer that answers
/// after the request has moved on (verification answers after reading the body).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResponseForm {
    /// `application/problem+json` with the problem's HTTP status.
    Http,
    /// HTTP 200 with `grpc-status` and `grpc-message`, empty body.
    Grpc,
}

impl ResponseForm {
    /// The form for a request with these headers: gRPC when its content type is gRPC.
    #[must_use]
    pub fn of(request_headers: &http::HeaderMap) -> Self {
        if is_grpc(request_headers) {
            Self::Grpc
        } else {
            Self::Http
        }
    }
}

/// Whether a request (or response) is gRPC: `content-type: application/grpc` or
/// `application/grpc+...`, in any letter case (media types are case-insensitive).
#[must_use]
pub fn is_grpc(headers: &http::HeaderMap) -> bool {
    const GRPC: &[u8] = b"application/grpc";
    headers.get(header::CONTENT_TYPE).is_some_and(|value| {
        value
            .as_bytes()
            .get(..GRPC.len())
            .is_some_and(|start| start.eq_ignore_ascii_case(GRPC))
    })
}

/// Percent-encodes a `grpc-message` as the gRPC spec asks: printable ASCII except `%` as is.
fn grpc_message(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if (0x20..=0x7e).contains(&byte) && byte != b'%' {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status.as_u16(), self.code)?;
        if let Some(detail) = &self.detail {
            write!(f, ": {detail}")?;
        }
        Ok(())
    }
}

/// Whole seconds for a `Retry-After` header: rounded up, never below 1.
#[must_use]
pub fn retry_after_secs(wait: Duration) -> u64 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Full};

    #[test]
    fn retry_after_rounds_up_and_is_at_least_one_second() {
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1001)), 2);
        assert_eq!(retry_after_secs(Duration::from_secs(30)), 30);
    }

    #[tokio::test]
    async fn response_carries_status_headers_extension_and_json_body() {
        let response = Problem::new(StatusCode::SERVICE_UNAVAILABLE, ProblemCode::THROTTLED)
            .with_detail("wait \"a bit\"")
            .with_retry_after(Duration::from_millis(2500))
            .into_response::<Full<Bytes>>();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
        assert_eq!(response.headers()[header::RETRY_AFTER], "3");
        assert_eq!(
            response.extensions().get::<ProblemCode>(),
            Some(&ProblemCode::THROTTLED)
        );
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["type"], "urn:hookgate:problem:throttled");
        assert_eq!(json["code"], "throttled");
        assert_eq!(json["status"], 503);
        assert_eq!(json["title"], "Verified traffic over its rate");
        assert_eq!(json["detail"], "wait \"a bit\"");
        assert_eq!(json["retry_after"], 3);
    }

    #[tokio::test]
    async fn grpc_answers_are_trailers_only_with_a_mapped_status() {
        let response = Problem::new(StatusCode::UNAUTHORIZED, ProblemCode::SIGNATURE_MISMATCH)
            .with_detail("100% wrong")
            .into_grpc_response::<Full<Bytes>>();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["content-type"], "application/grpc");
        assert_eq!(response.headers()["grpc-status"], "16");
        assert_eq!(
            response.headers()["grpc-message"],
            "signature_mismatch: 100%25 wrong"
        );
        assert_eq!(
            response.extensions().get::<ProblemCode>(),
            Some(&ProblemCode::SIGNATURE_MISMATCH)
        );
        assert!(response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .is_empty());
        let unavailable = Problem::new(StatusCode::SERVICE_UNAVAILABLE, ProblemCode::THROTTLED);
        assert_eq!(unavailable.grpc_code(), 14);
        assert_eq!(
            Problem::new(StatusCode::BAD_REQUEST, ProblemCode::MALFORMED_SIGNATURE).grpc_code(),
            3
        );
    }

    #[test]
    fn grpc_requests_are_recognised_by_content_type() {
        let mut headers = http::HeaderMap::new();
        assert!(!is_grpc(&headers));
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc+proto"),
        );
        assert!(is_grpc(&headers));
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("Application/GRPC-Web"),
        );
        assert!(is_grpc(&headers));
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        assert!(!is_grpc(&headers));
    }

    #[test]
    fn no_retry_after_header_unless_set() {
        let response = Problem::new(StatusCode::UNAUTHORIZED, ProblemCode::SIGNATURE_MISMATCH)
            .into_response::<Full<Bytes>>();
        assert!(response.headers().get(header::RETRY_AFTER).is_none());
        let json: serde_json::Value = serde_json::from_slice(
            &Problem::new(StatusCode::UNAUTHORIZED, ProblemCode::SIGNATURE_MISMATCH).to_json(),
        )
        .unwrap();
        assert!(json.get("detail").is_none());
        assert!(json.get("retry_after").is_none());
    }
}
