//! Why the layer changed a response: [`NormalizeCause`], reported in the [`Normalized`]
//! response extension, and how an inner error or panic is named (and logged) as one.

use std::{any::Any, error::Error as StdError, fmt};

use http::StatusCode;

use super::BoxError;

/// Why [`NormalizeStatus`](super::NormalizeStatus) changed a response; see [`Normalized`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum NormalizeCause {
    /// The handler answered a 2xx the sender does not count as success (ElevenLabs: anything
    /// but `200`); answered with the contract's success status, headers and body kept.
    SuccessStatus,
    /// The handler answered a redirect, which webhook senders do not follow.
    Redirect,
    /// The handler answered `408`, `425` or `429`, which the sender would not retry.
    RetryLaterStatus,
    /// The handler answered a status outside 200–599, or a 5xx the sender does not retry.
    UnexpectedStatus,
    /// The inner service failed with a timeout error (`tower::timeout::error::Elapsed`,
    /// `tokio::time::error::Elapsed`).
    Timeout,
    /// The inner service failed with `tower::load_shed::error::Overloaded`.
    Overloaded,
    /// The inner service failed with any other error.
    Error,
    /// The inner service panicked (in `poll_ready`, `call`, or while its future was polled).
    Panic,
    /// The handler did not answer within the layer's handler deadline.
    Deadline,
}

impl NormalizeCause {
    /// A stable label for metrics and logs, e.g. `"deadline"`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::SuccessStatus => "success_status",
            Self::Redirect => "redirect",
            Self::RetryLaterStatus => "retry_later_status",
            Self::UnexpectedStatus => "unexpected_status",
            Self::Timeout => "timeout",
            Self::Overloaded => "overloaded",
            Self::Error => "error",
            Self::Panic => "panic",
            Self::Deadline => "deadline",
        }
    }

    /// Whether the layer answers this cause with the contract's "retry later" status and a
    /// `Retry-After`.
    pub(super) const fn is_retry_later(self) -> bool {
        matches!(
            self,
            Self::Timeout | Self::Overloaded | Self::Deadline | Self::RetryLaterStatus
        )
    }

    /// The fixed problem detail: written by hookgate, never taken from an inner error.
    pub(super) const fn detail(self) -> &'static str {
        match self {
            Self::SuccessStatus => "the handler succeeded",
            Self::Redirect => {
                "the handler answered with a redirect; webhook senders do not follow redirects"
            }
            Self::RetryLaterStatus => "the handler asked to retry later",
            Self::UnexpectedStatus => {
                "the handler answered with a status the sender does not retry"
            }
            Self::Timeout => "the handler timed out",
            Self::Overloaded => "the handler is overloaded",
            Self::Error => "the handler failed",
            Self::Panic => "the handler panicked",
            Self::Deadline => "the handler did not answer before the deadline",
        }
    }

    /// Names the cause of an inner error and logs the error (never sent to the client).
    ///
    /// Errors are downcast along their `source()` chain, so an `Elapsed` wrapped by another
    /// layer is still a timeout.
    pub(super) fn of_error(error: &BoxError, site: &'static str) -> Self {
        let mut cause = Self::Error;
        let mut current: Option<&(dyn StdError + 'static)> = Some(&**error);
        while let Some(e) = current {
            if e.is::<tower::timeout::error::Elapsed>() || e.is::<tokio::time::error::Elapsed>() {
                cause = Self::Timeout;
                break;
            }
            if e.is::<tower::load_shed::error::Overloaded>() {
                cause = Self::Overloaded;
                break;
            }
            current = e.source();
        }
        tracing::warn!(
            cause = cause.as_str(),
            site,
            error = %error,
            "inner service failed; answered with the contract's retryable status"
        );
        cause
    }

    /// [`Panic`](Self::Panic), after logging the panic's message (never sent to the client).
    pub(super) fn of_panic(payload: Box<dyn Any + Send>, site: &'static str) -> Self {
        let message = payload
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
            .unwrap_or("non-string panic payload");
        tracing::error!(
            site,
            panic = message,
            "inner service panicked; answered 500"
        );
        Self::Panic
    }
}

impl fmt::Display for NormalizeCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Response extension added by [`NormalizeStatus`](super::NormalizeStatus) to every response it
/// changed or wrote, so metrics and logs can count normalizations by cause.
///
/// ```
/// use hookgate::normalize::{NormalizeCause, NormalizeStatusLayer, Normalized};
/// use http::{Request, Response, StatusCode};
/// use http_body_util::Full;
/// use bytes::Bytes;
/// use tower::{Layer, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let shedding = tower::service_fn(|_req: Request<()>| async {
///     Err::<Response<Full<Bytes>>, _>(tower::load_shed::error::Overloaded::new())
/// });
/// let response = NormalizeStatusLayer::elevenlabs()
///     .layer(shedding)
///     .oneshot(Request::new(()))
///     .await
///     .unwrap();
/// assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
///
/// let normalized = response.extensions().get::<Normalized>().unwrap();
/// assert_eq!(normalized.original, None); // the inner service answered nothing
/// assert_eq!(normalized.cause, NormalizeCause::Overloaded);
/// assert_eq!(normalized.cause.as_str(), "overloaded"); // a stable metrics label
/// # }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Normalized {
    /// The status the inner service answered; `None` when it answered nothing (an error, a
    /// panic, the deadline).
    pub original: Option<StatusCode>,
    /// Why the response was changed.
    pub cause: NormalizeCause,
}
