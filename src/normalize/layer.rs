//! [`NormalizeStatusLayer`] and the settings its services and futures share.

use std::{sync::Arc, time::Duration};

use tower_layer::Layer;

use super::{contract::SenderContract, service::NormalizeStatus};

/// The `Retry-After` the layer sends with its own `503`s unless told otherwise: ElevenLabs'
/// first retry comes after 30 s.
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(30);

/// Applies a [`SenderContract`] to every outcome of the inner service: see the
/// [module docs](super).
///
/// A handler that answers `429 Too Many Requests` would make ElevenLabs drop the event; behind
/// the layer, the sender gets a `503` it retries, with a `Retry-After`:
///
/// ```
/// use std::convert::Infallible;
/// use bytes::Bytes;
/// use hookgate::normalize::{NormalizeCause, NormalizeStatusLayer, Normalized};
/// use http::{header, Request, Response, StatusCode};
/// use http_body_util::Full;
/// use tower::{Layer, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let handler = tower::service_fn(|_req: Request<Full<Bytes>>| async {
///     let mut response = Response::new(Full::new(Bytes::from_static(b"busy")));
///     *response.status_mut() = StatusCode::TOO_MANY_REQUESTS;
///     Ok::<_, Infallible>(response)
/// });
/// let service = NormalizeStatusLayer::elevenlabs().layer(handler);
///
/// let response = service.oneshot(Request::new(Full::default())).await.unwrap();
/// assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
/// assert_eq!(response.headers()[header::RETRY_AFTER], "30");
/// assert_eq!(
///     response.extensions().get::<Normalized>().map(|n| n.cause),
///     Some(NormalizeCause::RetryLaterStatus),
/// );
/// # }
/// ```
///
/// Another contract, a deadline for the handler and a shorter `Retry-After`:
///
/// ```
/// use std::time::Duration;
/// use hookgate::normalize::{NormalizeStatusLayer, SenderContract};
///
/// let layer = NormalizeStatusLayer::new(SenderContract::standard_webhooks())
///     .handler_deadline(Duration::from_secs(10))
///     .retry_after(Duration::from_secs(5));
/// assert_eq!(layer.contract().name(), "standard-webhooks");
/// ```
#[derive(Clone, Debug)]
#[must_use]
pub struct NormalizeStatusLayer {
    settings: Arc<Settings>,
}

/// What every service and response future of one layer reads: the contract itself, the one
/// representation of what the sender does with each status, and the layer's options. Shared
/// through an `Arc`: a request costs a reference count, never a copy of the contract.
#[derive(Clone, Debug)]
pub(super) struct Settings {
    pub(super) contract: SenderContract,
    pub(super) retry_after: Duration,
    pub(super) handler_deadline: Option<Duration>,
}

impl NormalizeStatusLayer {
    /// A layer applying `contract`, with no handler deadline and a `Retry-After` of 30 s on the
    /// `503`s it writes itself.
    pub fn new(contract: SenderContract) -> Self {
        Self {
            settings: Arc::new(Settings {
                contract,
                retry_after: DEFAULT_RETRY_AFTER,
                handler_deadline: None,
            }),
        }
    }

    /// The ElevenLabs profile ([`SenderContract::elevenlabs`]), the default.
    pub fn elevenlabs() -> Self {
        Self::new(SenderContract::elevenlabs())
    }

    /// The Standard Webhooks profile ([`SenderContract::standard_webhooks`]).
    pub fn standard_webhooks() -> Self {
        Self::new(SenderContract::standard_webhooks())
    }

    /// Answers `503` + `Retry-After` ([`NormalizeCause::Deadline`]) when the inner service has
    /// not answered within `deadline` of the call, and drops (cancels) its future. Choose it
    /// shorter than the sender's own request timeout: a sender timeout has unknown retry
    /// behaviour, a `503` is retried. Needs a tokio runtime with the time driver.
    ///
    /// [`NormalizeCause::Deadline`]: super::NormalizeCause::Deadline
    pub fn handler_deadline(mut self, deadline: Duration) -> Self {
        Arc::make_mut(&mut self.settings).handler_deadline = Some(deadline);
        self
    }

    /// The wait announced in `Retry-After` on the `503`s this layer writes itself (timeouts,
    /// overload, deadline, and `408`/`425`/`429` answers that carried none). Rounded up to whole
    /// seconds, at least 1 s. Default 30 s.
    pub fn retry_after(mut self, wait: Duration) -> Self {
        Arc::make_mut(&mut self.settings).retry_after = wait;
        self
    }

    /// The contract this layer applies.
    #[must_use]
    pub fn contract(&self) -> &SenderContract {
        &self.settings.contract
    }
}

impl Default for NormalizeStatusLayer {
    fn default() -> Self {
        Self::elevenlabs()
    }
}

impl<S> Layer<S> for NormalizeStatusLayer {
    type Service = NormalizeStatus<S>;

    fn layer(&self, inner: S) -> Self::Service {
        NormalizeStatus::with_settings(inner, Arc::clone(&self.settings))
    }
}
