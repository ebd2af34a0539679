//! [`NormalizeStatusLayer`] and the per-request settings its services and futures carry.

use std::{fmt, time::Duration};

use http::StatusCode;
use tower_layer::Layer;

use super::{
    contract::{SenderContract, StatusSet},
    service::NormalizeStatus,
};

/// The `Retry-After` the layer sends with its own `503`s unless told otherwise: ElevenLabs'
/// first retry comes after 30 s.
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(30);

/// Applies a [`SenderContract`] to every outcome of the inner service: see the
/// [module docs](super).
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
    contract: SenderContract,
    settings: Settings,
}

/// What a service and its response futures need per request: the contract reduced to the
/// statuses the layer looks up, plus the layer's options. Small and `Copy`: no shared state
/// and no allocation per request.
#[derive(Clone, Copy)]
pub(super) struct Settings {
    /// Bit `i`: the sender counts `200 + i` as success.
    pub(super) success_2xx: u128,
    /// Bit `i`: the sender retries `500 + i`.
    pub(super) retried_5xx: u128,
    /// Bits 0, 1, 2: the sender retries `408`, `425`, `429`.
    pub(super) retried_retry_later: u8,
    pub(super) success_status: StatusCode,
    pub(super) retry_later_status: StatusCode,
    pub(super) failure_status: StatusCode,
    pub(super) retry_after: Duration,
    pub(super) handler_deadline: Option<Duration>,
}

impl fmt::Debug for Settings {
    /// The answers and options; the status bits are the contract's, shown by its own `Debug`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("success_status", &self.success_status.as_u16())
            .field("retry_later_status", &self.retry_later_status.as_u16())
            .field("failure_status", &self.failure_status.as_u16())
            .field("retry_after", &self.retry_after)
            .field("handler_deadline", &self.handler_deadline)
            .finish_non_exhaustive()
    }
}

impl Settings {
    pub(super) fn new(contract: &SenderContract) -> Self {
        let bits = |from: u16, set: &StatusSet| {
            (0..100u16).fold(0u128, |acc, i| {
                acc | (u128::from(set.contains(from + i)) << i)
            })
        };
        let retried_retry_later = [408u16, 425, 429]
            .iter()
            .enumerate()
            .fold(0u8, |acc, (i, &code)| {
                acc | (u8::from(contract.retried.contains(code)) << i)
            });
        Self {
            success_2xx: bits(200, &contract.success),
            retried_5xx: bits(500, &contract.retried),
            retried_retry_later,
            success_status: contract.success_status(),
            retry_later_status: contract.retry_later_status(),
            failure_status: contract.failure_status(),
            retry_after: DEFAULT_RETRY_AFTER,
            handler_deadline: None,
        }
    }

    /// Whether the sender counts `code` (a 2xx) as success.
    pub(super) fn is_success(&self, code: u16) -> bool {
        matches!(code, 200..=299) && (self.success_2xx >> (code - 200)) & 1 == 1
    }

    /// Whether the sender retries `code` (a 5xx, `408`, `425` or `429`).
    pub(super) fn is_retried(&self, code: u16) -> bool {
        match code {
            500..=599 => (self.retried_5xx >> (code - 500)) & 1 == 1,
            408 => self.retried_retry_later & 1 != 0,
            425 => self.retried_retry_later & 2 != 0,
            429 => self.retried_retry_later & 4 != 0,
            _ => false,
        }
    }
}

impl NormalizeStatusLayer {
    /// A layer applying `contract`, with no handler deadline and a `Retry-After` of 30 s on the
    /// `503`s it writes itself.
    pub fn new(contract: SenderContract) -> Self {
        Self {
            settings: Settings::new(&contract),
            contract,
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
        self.settings.handler_deadline = Some(deadline);
        self
    }

    /// The wait announced in `Retry-After` on the `503`s this layer writes itself (timeouts,
    /// overload, deadline, and `408`/`425`/`429` answers that carried none). Rounded up to whole
    /// seconds, at least 1 s. Default 30 s.
    pub fn retry_after(mut self, wait: Duration) -> Self {
        self.settings.retry_after = wait;
        self
    }

    /// The contract this layer applies.
    #[must_use]
    pub fn contract(&self) -> &SenderContract {
        &self.contract
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
        NormalizeStatus::with_settings(inner, self.settings)
    }
}
