//! The sender's contract: [`SenderContract`], what a webhook sender does with the event for each
//! status ([`SenderAction`]), and the statuses the layer answers with.
//!
//! The contract is held once, here: the layer's services and futures read this value (through
//! the layer's shared settings), and [`SenderContract::action_for`] is the only place that
//! decides what the sender does with a status.

use std::fmt;

use http::StatusCode;

use crate::ConfigError;

/// What a sender does with an event when the receiver answers a given status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SenderAction {
    /// The event is delivered; the sender is done.
    Success,
    /// The sender retries the event later.
    Retry,
    /// The sender retries the event later and slows down its deliveries to this endpoint.
    Throttle,
    /// The sender drops the event for good.
    Drop,
    /// The sender drops the event and disables the endpoint.
    Disable,
}

impl SenderAction {
    /// Whether the sender delivers the event again ([`Retry`](Self::Retry) or
    /// [`Throttle`](Self::Throttle)).
    #[must_use]
    pub const fn is_retried(self) -> bool {
        matches!(self, Self::Retry | Self::Throttle)
    }
}

/// A webhook sender's retry contract: what it does on each status, and which statuses
/// [`NormalizeStatusLayer`](super::NormalizeStatusLayer) answers with.
///
/// Two profiles come with hookgate:
///
/// ```
/// use hookgate::normalize::{SenderAction, SenderContract};
/// use http::StatusCode;
///
/// let elevenlabs = SenderContract::elevenlabs();
/// assert_eq!(elevenlabs.action_for(StatusCode::OK), SenderAction::Success);
/// assert_eq!(elevenlabs.action_for(StatusCode::CREATED), SenderAction::Drop);
/// assert_eq!(elevenlabs.action_for(StatusCode::TOO_MANY_REQUESTS), SenderAction::Drop);
/// assert_eq!(elevenlabs.action_for(StatusCode::SERVICE_UNAVAILABLE), SenderAction::Retry);
///
/// let standard = SenderContract::standard_webhooks();
/// assert_eq!(standard.action_for(StatusCode::GONE), SenderAction::Disable);
/// assert_eq!(standard.action_for(StatusCode::GATEWAY_TIMEOUT), SenderAction::Throttle);
/// assert_eq!(standard.action_for(StatusCode::BAD_REQUEST), SenderAction::Retry);
/// ```
///
/// Any other sender's contract is built with [`SenderContract::builder`]: every status starts
/// out dropping the event, each [`on`](SenderContractBuilder::on) says what the sender does on
/// some statuses, and [`build`](SenderContractBuilder::build) checks that the layer's own
/// answers are read the way it means them.
///
/// ```
/// use std::{convert::Infallible, time::Duration};
/// use bytes::Bytes;
/// use hookgate::normalize::{NormalizeStatusLayer, SenderAction, SenderContract};
/// use http::{Request, Response, StatusCode};
/// use http_body_util::Full;
/// use tower::{Layer, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), hookgate::ConfigError> {
/// // A sender that accepts 200 and 202, retries 5xx, slows down on 429 and 503, and disables
/// // the endpoint on 410. The layer answers its own "retry later" with 429.
/// let acme = SenderContract::builder("acme")
///     .on([200, 202], SenderAction::Success)
///     .on(500..=599, SenderAction::Retry)
///     .on([429, 503], SenderAction::Throttle)
///     .on([410], SenderAction::Disable)
///     .answer_retry_later_with(StatusCode::TOO_MANY_REQUESTS)
///     .build()?;
/// assert_eq!(acme.action_for(StatusCode::ACCEPTED), SenderAction::Success);
/// assert_eq!(acme.action_for(StatusCode::CREATED), SenderAction::Drop);
/// assert_eq!(acme.action_for(StatusCode::TOO_MANY_REQUESTS), SenderAction::Throttle);
///
/// // A timeout is answered with the contract's retry-later status.
/// let slow = tower::timeout::Timeout::new(
///     tower::service_fn(|_req: Request<Full<Bytes>>| async {
///         tokio::time::sleep(Duration::from_secs(60)).await;
///         Ok::<_, Infallible>(Response::new(Full::<Bytes>::default()))
///     }),
///     Duration::from_millis(10),
/// );
/// let response = NormalizeStatusLayer::new(acme)
///     .layer(slow)
///     .oneshot(Request::new(Full::default()))
///     .await
///     .unwrap();
/// assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
/// # Ok(())
/// # }
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct SenderContract {
    name: &'static str,
    // The action for each status 100-599: a status is in at most one of these four sets (the
    // builder's `on` is their only writer); a status in none drops the event.
    success: StatusSet,
    retry: StatusSet,
    throttle: StatusSet,
    disable: StatusSet,
    success_status: StatusCode,
    retry_later_status: StatusCode,
    failure_status: StatusCode,
}

impl SenderContract {
    /// ElevenLabs: only `200` is success (its API calls failures "any non-200 codes"); 5xx is
    /// retried; every other status drops the event.
    ///
    /// Its newer docs also retry `408` and `429`, but only for webhooks that opted in to
    /// retries, while older docs say 4xx is never retried: the profile takes the reading that
    /// holds under both, so the layer answers `503` instead of an inner `408`/`425`/`429`.
    /// The layer answers `200`, `503` (retry later) and `500` (failure).
    #[must_use]
    pub fn elevenlabs() -> Self {
        Self::builder("elevenlabs")
            .on([200], SenderAction::Success)
            .on(500..=599, SenderAction::Retry)
            .build()
            .expect("the ElevenLabs profile is a valid contract")
    }

    /// [Standard Webhooks]: 2xx is success, `410 Gone` disables the endpoint, `429`, `502`
    /// and `504` throttle, every other status (3xx and 4xx included) is a retried failure.
    /// The layer answers `200`, `503` (retry later) and `500` (failure).
    ///
    /// [Standard Webhooks]: https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md
    #[must_use]
    pub fn standard_webhooks() -> Self {
        Self::builder("standard-webhooks")
            .on(100..=599, SenderAction::Retry)
            .on(200..=299, SenderAction::Success)
            .on([410], SenderAction::Disable)
            .on([429, 502, 504], SenderAction::Throttle)
            .build()
            .expect("the Standard Webhooks profile is a valid contract")
    }

    /// A contract of your own. It starts with every status dropping the event and answers
    /// `200`, `503` and `500`; [`SenderContractBuilder::build`] checks that the sender reads
    /// those answers as success and as retried.
    ///
    /// ```
    /// use hookgate::normalize::{SenderAction, SenderContract};
    /// use http::StatusCode;
    ///
    /// // A sender that retries 5xx and 429, and accepts 200 and 204.
    /// let contract = SenderContract::builder("acme")
    ///     .on([200, 204], SenderAction::Success)
    ///     .on(500..=599, SenderAction::Retry)
    ///     .on([429], SenderAction::Throttle)
    ///     .build()?;
    /// assert_eq!(contract.action_for(StatusCode::NO_CONTENT), SenderAction::Success);
    ///
    /// // A contract under which the layer's own 503 would drop the event is refused.
    /// assert!(SenderContract::builder("broken").on([200], SenderAction::Success).build().is_err());
    /// # Ok::<(), hookgate::ConfigError>(())
    /// ```
    pub fn builder(name: &'static str) -> SenderContractBuilder {
        SenderContractBuilder {
            contract: Self {
                name,
                success: StatusSet::EMPTY,
                retry: StatusSet::EMPTY,
                throttle: StatusSet::EMPTY,
                disable: StatusSet::EMPTY,
                success_status: StatusCode::OK,
                retry_later_status: StatusCode::SERVICE_UNAVAILABLE,
                failure_status: StatusCode::INTERNAL_SERVER_ERROR,
            },
            invalid: None,
        }
    }

    /// The contract's name, e.g. `"elevenlabs"`.
    #[must_use]
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// What the sender does when the receiver answers `status`. Statuses outside 100–599 drop
    /// the event.
    ///
    /// The layer asks this on every response it sees, so it is a few bit tests.
    #[must_use]
    #[inline]
    pub fn action_for(&self, status: StatusCode) -> SenderAction {
        let Some(bit) = Bit::of(status.as_u16()) else {
            return SenderAction::Drop;
        };
        if self.success.has(bit) {
            SenderAction::Success
        } else if self.retry.has(bit) {
            SenderAction::Retry
        } else if self.throttle.has(bit) {
            SenderAction::Throttle
        } else if self.disable.has(bit) {
            SenderAction::Disable
        } else {
            SenderAction::Drop
        }
    }

    /// The status the layer answers when the handler succeeded with a status the sender does
    /// not count as success. Default `200`.
    #[must_use]
    pub fn success_status(&self) -> StatusCode {
        self.success_status
    }

    /// The status the layer answers, with `Retry-After`, for timeouts, overload, the deadline
    /// and handler answers meaning "retry later". Default `503`.
    #[must_use]
    pub fn retry_later_status(&self) -> StatusCode {
        self.retry_later_status
    }

    /// The status the layer answers for errors, panics, redirects and statuses the sender does
    /// not retry. Default `500`.
    #[must_use]
    pub fn failure_status(&self) -> StatusCode {
        self.failure_status
    }
}

impl Default for SenderContract {
    fn default() -> Self {
        Self::elevenlabs()
    }
}

impl fmt::Debug for SenderContract {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SenderContract")
            .field("name", &self.name)
            .field("success", &self.success)
            .field("retried", &self.retry.union(&self.throttle))
            .field("throttled", &self.throttle)
            .field("disabling", &self.disable)
            .field("success_status", &self.success_status.as_u16())
            .field("retry_later_status", &self.retry_later_status.as_u16())
            .field("failure_status", &self.failure_status.as_u16())
            .finish()
    }
}

/// Builds a [`SenderContract`]; see [`SenderContract::builder`].
#[derive(Clone, Debug)]
#[must_use]
pub struct SenderContractBuilder {
    contract: SenderContract,
    invalid: Option<u16>,
}

impl SenderContractBuilder {
    /// The sender does `action` on each of `statuses` (100–599). A later call overrides an
    /// earlier one for the same status; statuses never mentioned drop the event.
    pub fn on(mut self, statuses: impl IntoIterator<Item = u16>, action: SenderAction) -> Self {
        for code in statuses {
            let Some(bit) = Bit::of(code) else {
                self.invalid.get_or_insert(code);
                continue;
            };
            let c = &mut self.contract;
            c.success.set(bit, action == SenderAction::Success);
            c.retry.set(bit, action == SenderAction::Retry);
            c.throttle.set(bit, action == SenderAction::Throttle);
            c.disable.set(bit, action == SenderAction::Disable);
        }
        self
    }

    /// The status the layer answers for a handler success the sender would not count as one.
    /// Default `200`.
    pub fn answer_success_with(mut self, status: StatusCode) -> Self {
        self.contract.success_status = status;
        self
    }

    /// The status the layer answers for "retry later" (timeouts, overload, deadline, handler
    /// `408`/`425`/`429`). Default `503`.
    pub fn answer_retry_later_with(mut self, status: StatusCode) -> Self {
        self.contract.retry_later_status = status;
        self
    }

    /// The status the layer answers for failures (errors, panics, redirects). Default `500`.
    pub fn answer_failure_with(mut self, status: StatusCode) -> Self {
        self.contract.failure_status = status;
        self
    }

    /// The contract, or a [`ConfigError`] when a status is outside 100–599, when the sender
    /// would not count the success answer as success, or would not retry the retry-later or
    /// failure answers.
    pub fn build(self) -> Result<SenderContract, ConfigError> {
        let c = self.contract;
        if let Some(code) = self.invalid {
            return Err(ConfigError::new(format!(
                "sender contract {:?}: status {code} is outside 100-599",
                c.name
            )));
        }
        if c.action_for(c.success_status) != SenderAction::Success {
            return Err(ConfigError::new(format!(
                "sender contract {:?}: the success answer {} is not a success for the sender",
                c.name,
                c.success_status.as_u16()
            )));
        }
        for (what, status) in [
            ("retry-later", c.retry_later_status),
            ("failure", c.failure_status),
        ] {
            if !c.action_for(status).is_retried() {
                return Err(ConfigError::new(format!(
                    "sender contract {:?}: the {what} answer {} is not retried by the sender",
                    c.name,
                    status.as_u16()
                )));
            }
        }
        Ok(c)
    }
}

/// The place of a status 100–599 in a [`StatusSet`]: a word and a bit in it.
#[derive(Clone, Copy)]
struct Bit {
    word: usize,
    mask: u64,
}

impl Bit {
    /// `None` outside 100–599.
    #[inline]
    const fn of(code: u16) -> Option<Self> {
        if code < 100 || code > 599 {
            return None;
        }
        let i = (code - 100) as usize;
        Some(Self {
            word: i / 64,
            mask: 1 << (i % 64),
        })
    }
}

/// A set of HTTP statuses 100–599, one bit each.
#[derive(Clone, Copy, PartialEq, Eq)]
struct StatusSet([u64; 8]);

impl StatusSet {
    const EMPTY: Self = Self([0; 8]);

    #[inline]
    const fn has(&self, bit: Bit) -> bool {
        self.0[bit.word] & bit.mask != 0
    }

    fn contains(&self, code: u16) -> bool {
        Bit::of(code).is_some_and(|bit| self.has(bit))
    }

    fn set(&mut self, bit: Bit, on: bool) {
        if on {
            self.0[bit.word] |= bit.mask;
        } else {
            self.0[bit.word] &= !bit.mask;
        }
    }

    fn union(&self, other: &Self) -> Self {
        let mut words = self.0;
        for (word, other) in words.iter_mut().zip(other.0) {
            *word |= other;
        }
        Self(words)
    }
}

impl fmt::Debug for StatusSet {
    /// Runs of statuses: `{200-299, 410}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        let mut first = true;
        let mut code = 100;
        while code <= 599 {
            if !self.contains(code) {
                code += 1;
                continue;
            }
            let start = code;
            while code < 599 && self.contains(code + 1) {
                code += 1;
            }
            if !first {
                f.write_str(", ")?;
            }
            first = false;
            if start == code {
                write!(f, "{start}")?;
            } else {
                write!(f, "{start}-{code}")?;
            }
            code += 1;
        }
        f.write_str("}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elevenlabs_profile_reads_the_documented_rules() {
        let c = SenderContract::elevenlabs();
        for code in 100..=599u16 {
            let status = StatusCode::from_u16(code).unwrap();
            let expected = match code {
                200 => SenderAction::Success,
                500..=599 => SenderAction::Retry,
                _ => SenderAction::Drop,
            };
            assert_eq!(c.action_for(status), expected, "{code}");
        }
        assert_eq!(
            c.action_for(StatusCode::from_u16(700).unwrap()),
            SenderAction::Drop
        );
        assert_eq!(
            (
                c.success_status(),
                c.retry_later_status(),
                c.failure_status()
            ),
            (
                StatusCode::OK,
                StatusCode::SERVICE_UNAVAILABLE,
                StatusCode::INTERNAL_SERVER_ERROR
            )
        );
        assert_eq!(SenderContract::default(), c);
    }

    #[test]
    fn standard_webhooks_profile_reads_the_spec() {
        let c = SenderContract::standard_webhooks();
        for code in 100..=599u16 {
            let status = StatusCode::from_u16(code).unwrap();
            let expected = match code {
                200..=299 => SenderAction::Success,
                410 => SenderAction::Disable,
                429 | 502 | 504 => SenderAction::Throttle,
                _ => SenderAction::Retry,
            };
            assert_eq!(c.action_for(status), expected, "{code}");
        }
    }

    #[test]
    fn builder_refuses_contracts_the_layer_cannot_honour() {
        let base = || {
            SenderContract::builder("t")
                .on([200], SenderAction::Success)
                .on(500..=599, SenderAction::Retry)
        };
        assert!(base().build().is_ok());
        let out_of_range = base().on([600], SenderAction::Retry).build().unwrap_err();
        assert!(out_of_range.to_string().contains("600"), "{out_of_range}");
        let no_success = base()
            .answer_success_with(StatusCode::NO_CONTENT)
            .build()
            .unwrap_err();
        assert!(no_success.to_string().contains("204"), "{no_success}");
        let dropped_retry = base()
            .answer_retry_later_with(StatusCode::TOO_MANY_REQUESTS)
            .build()
            .unwrap_err();
        assert!(dropped_retry.to_string().contains("429"), "{dropped_retry}");
        let dropped_failure = base().on([500], SenderAction::Drop).build().unwrap_err();
        assert!(
            dropped_failure.to_string().contains("500"),
            "{dropped_failure}"
        );
        // A later `on` overrides an earlier one.
        let c = base().on([503], SenderAction::Throttle).build().unwrap();
        assert_eq!(
            c.action_for(StatusCode::SERVICE_UNAVAILABLE),
            SenderAction::Throttle
        );
    }

    #[test]
    fn contract_debug_lists_status_runs() {
        let debug = format!("{:?}", SenderContract::standard_webhooks());
        assert!(debug.contains("success: {200-299}"), "{debug}");
        assert!(debug.contains("disabling: {410}"), "{debug}");
        assert!(debug.contains("throttled: {429, 502, 504}"), "{debug}");
    }
}
