//! [`Deduplicate`]: the service made by [`DeduplicateLayer`](super::DeduplicateLayer), its
//! answers, and the [`DedupeOutcome`] it reports.

use std::{
    fmt,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use http::{header, HeaderName, HeaderValue, Request, Response, StatusCode};
use tower_service::Service;

use super::{
    future::{Held, ResponseFuture},
    layer::Logs,
    Check, Claim, DedupeKey, DedupeStore, EventKey, LeaseToken, Settled, StoreError,
};
use crate::{
    body::ProblemBody,
    problem::{Problem, ProblemCode, ResponseForm},
    signature::VerifiedBody,
    Verified,
};

/// The header on the answer to a duplicate: `hookgate-duplicate: true`.
pub static DUPLICATE_HEADER: HeaderName = HeaderName::from_static("hookgate-duplicate");

/// `Retry-After` when the store cannot decide: a store outage is usually short, and the
/// sender's own backoff spaces its retries further.
const STORE_RETRY_AFTER: Duration = Duration::from_secs(1);

/// The gRPC status of a duplicate: `ALREADY_EXISTS` (the event was handled; a gRPC client
/// reads `OK` without a message as an error, and must not retry this one).
const GRPC_ALREADY_EXISTS: &str = "6";

/// What [`DeduplicateLayer`](super::DeduplicateLayer) did with a delivery, in the response's
/// extensions (with the [`EventKey`] when one was made), so that metrics and logs can count
/// them. An inner service's error carries none.
///
/// ```
/// use hookgate::dedupe::DedupeOutcome;
///
/// assert_eq!(DedupeOutcome::Duplicate.as_str(), "duplicate");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DedupeOutcome {
    /// The handler answered 2xx, and the key is marked done: its answer is returned.
    Handled,
    /// The handler answered something else, and the claim was released so that a retry
    /// goes through: its answer is returned.
    Released,
    /// An earlier delivery of the event was handled: answered `200` with
    /// [`DUPLICATE_HEADER`], without calling the handler.
    Duplicate,
    /// Another delivery of the event holds its claim: answered `503` `delivery_in_flight`.
    InFlight,
    /// The store could not claim the key: answered `503` `dedupe_unavailable`.
    StoreUnavailable,
    /// The handler answered, but its lease had run out: the key was not marked done or
    /// released (it may be another delivery's now). The handler's answer is returned.
    LeaseLost,
    /// The handler answered, but the store could not mark the key done or release it: the
    /// claim expires with its lease. The handler's answer is returned.
    SettleFailed,
    /// The request reached the layer without a [`Verified`] extension (no verification layer
    /// in front): answered `500` `dedupe_key_missing`.
    Unverified,
    /// No source of the [`DedupeKey`] found a key: answered `500` `dedupe_key_missing`.
    KeyMissing,
}

impl DedupeOutcome {
    /// A stable name for metrics labels: `handled`, `released`, `duplicate`, `in_flight`,
    /// `store_unavailable`, `lease_lost`, `settle_failed`, `unverified`, `key_missing`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Handled => "handled",
            Self::Released => "released",
            Self::Duplicate => "duplicate",
            Self::InFlight => "in_flight",
            Self::StoreUnavailable => "store_unavailable",
            Self::LeaseLost => "lease_lost",
            Self::SettleFailed => "settle_failed",
            Self::Unverified => "unverified",
            Self::KeyMissing => "key_missing",
        }
    }
}

impl fmt::Display for DedupeOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Handles each event once; made by [`DeduplicateLayer`](super::DeduplicateLayer).
pub struct Deduplicate<S, St> {
    inner: S,
    shared: Arc<Shared<St>>,
}

/// What every service of a layer shares.
pub(crate) struct Shared<St> {
    pub(crate) store: Arc<St>,
    pub(crate) key: DedupeKey,
    pub(crate) lease: Duration,
    pub(crate) keep_done: Duration,
    pub(crate) logs: Arc<Logs>,
}

impl<St: DedupeStore> Shared<St> {
    /// The answer to a claim: `None` when the key is claimed (call the handler).
    pub(crate) fn on_claim<B: ProblemBody>(
        &self,
        result: Result<Claim, StoreError>,
        key: &EventKey,
        form: ResponseForm,
    ) -> Option<Response<B>> {
        let (outcome, response) = match result {
            Ok(Claim::Claimed) => return None,
            Ok(Claim::Done) => {
                tracing::info!(
                    target: "hookgate::dedupe",
                    %key,
                    "duplicate delivery answered 200 without calling the handler"
                );
                (DedupeOutcome::Duplicate, duplicate(key, form))
            }
            Ok(Claim::InFlight { lease_left }) => {
                tracing::info!(
                    target: "hookgate::dedupe",
                    %key,
                    lease_left_ms = lease_left.as_millis() as u64,
                    "delivery answered 503: another delivery of the event is being handled"
                );
                let problem = Problem::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    ProblemCode::DELIVERY_IN_FLIGHT,
                )
                .with_detail(
                    "another delivery of this event is being handled; retry after the indicated delay",
                )
                .with_retry_after(lease_left);
                (DedupeOutcome::InFlight, problem.into_response_for(form))
            }
            Err(error) => {
                if let Some(suppressed) = self.logs.store.admit() {
                    tracing::warn!(
                        target: "hookgate::dedupe",
                        %key,
                        %error,
                        suppressed,
                        "dedupe store failed to claim a key: delivery answered 503"
                    );
                }
                let problem = Problem::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    ProblemCode::DEDUPE_UNAVAILABLE,
                )
                .with_detail("the receiver cannot record deliveries right now; retry later")
                .with_retry_after(STORE_RETRY_AFTER);
                (
                    DedupeOutcome::StoreUnavailable,
                    problem.into_response_for(form),
                )
            }
        };
        Some(with_outcome(response, outcome, Some(key.clone())))
    }

    /// The answer to a request no key could be made for.
    fn no_key<B: ProblemBody>(&self, outcome: DedupeOutcome, form: ResponseForm) -> Response<B> {
        let detail = if outcome == DedupeOutcome::Unverified {
            if let Some(suppressed) = self.logs.key.admit() {
                tracing::error!(
                    target: "hookgate::dedupe",
                    suppressed,
                    "request reached DeduplicateLayer unverified: put it inside VerifySignatureLayer"
                );
            }
            "the request reached deduplication without being verified: the receiver's verification layer is missing"
        } else {
            if let Some(suppressed) = self.logs.key.admit() {
                tracing::warn!(
                    target: "hookgate::dedupe",
                    key = ?self.key,
                    suppressed,
                    "delivery has none of the fields its dedupe key is made from: answered 500"
                );
            }
            "the delivery has none of the fields its deduplication key is made from"
        };
        let problem = Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ProblemCode::DEDUPE_KEY_MISSING,
        )
        .with_detail(detail);
        with_outcome(problem.into_response_for(form), outcome, None)
    }

    /// Marks the key done (`completing`) or frees it.
    pub(crate) fn settle(
        &self,
        key: &EventKey,
        token: LeaseToken,
        completing: bool,
    ) -> Check<St::SettleFuture, Settled> {
        if completing {
            self.store.complete(key, token, self.keep_done)
        } else {
            self.store.release(key, token)
        }
    }

    /// The handler's output once its claim is settled, with the outcome in its extensions.
    pub(crate) fn settled<B, E>(
        &self,
        output: Result<Response<B>, E>,
        result: Result<Settled, StoreError>,
        completing: bool,
        key: EventKey,
    ) -> Result<Response<B>, E> {
        let outcome = match result {
            Ok(Settled::Settled) if completing => DedupeOutcome::Handled,
            Ok(Settled::Settled) => DedupeOutcome::Released,
            Ok(Settled::LeaseLost) => {
                tracing::warn!(
                    target: "hookgate::dedupe",
                    %key,
                    completing,
                    "the handler outlived its dedupe lease: the key was neither marked done nor released"
                );
                DedupeOutcome::LeaseLost
            }
            Err(error) => {
                if let Some(suppressed) = self.logs.store.admit() {
                    tracing::warn!(
                        target: "hookgate::dedupe",
                        %key,
                        %error,
                        completing,
                        suppressed,
                        "dedupe store failed to settle a claim: it expires with its lease"
                    );
                }
                DedupeOutcome::SettleFailed
            }
        };
        output.map(|response| with_outcome(response, outcome, Some(key)))
    }
}

/// `response` with `outcome` (and the key) in its extensions.
fn with_outcome<B>(
    mut response: Response<B>,
    outcome: DedupeOutcome,
    key: Option<EventKey>,
) -> Response<B> {
    let extensions = response.extensions_mut();
    extensions.insert(outcome);
    if let Some(key) = key {
        extensions.insert(key);
    }
    response
}

/// The answer to a duplicate: `200`, `{"duplicate":true,"key":...}`; for a gRPC client,
/// `ALREADY_EXISTS`.
fn duplicate<B: ProblemBody>(key: &EventKey, form: ResponseForm) -> Response<B> {
    let mut response = match form {
        ResponseForm::Http => {
            #[derive(serde::Serialize)]
            struct Body<'a> {
                duplicate: bool,
                key: &'a str,
            }
            let json = serde_json::to_vec(&Body {
                duplicate: true,
                key: key.as_str(),
            })
            .unwrap_or_default();
            let mut response = Response::new(B::from_problem(Bytes::from(json)));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            response
        }
        ResponseForm::Grpc => {
            let mut response = Response::new(B::from_problem(Bytes::new()));
            let headers = response.headers_mut();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/grpc"),
            );
            headers.insert("grpc-status", HeaderValue::from_static(GRPC_ALREADY_EXISTS));
            headers.insert(
                "grpc-message",
                HeaderValue::from_static("duplicate delivery of an event already handled"),
            );
            response
        }
    };
    response
        .headers_mut()
        .insert(DUPLICATE_HEADER.clone(), HeaderValue::from_static("true"));
    response
}

impl<S, St> Deduplicate<S, St> {
    pub(crate) fn new(inner: S, shared: Arc<Shared<St>>) -> Self {
        Self { inner, shared }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, consuming the layer's service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone, St> Clone for Deduplicate<S, St> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S: fmt::Debug, St: fmt::Debug> fmt::Debug for Deduplicate<S, St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Deduplicate")
            .field("inner", &self.inner)
            .field("store", &self.shared.store)
            .field("key", &self.shared.key)
            .field("lease", &self.shared.lease)
            .field("keep_done", &self.shared.keep_done)
            .finish()
    }
}

impl<S, St, B> Service<Request<VerifiedBody>> for Deduplicate<S, St>
where
    S: Service<Request<VerifiedBody>, Response = Response<B>> + Clone,
    St: DedupeStore,
    B: ProblemBody,
{
    type Response = Response<B>;
    type Error = S::Error;
    type Future = ResponseFuture<S, St>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<VerifiedBody>) -> Self::Future {
        let form = ResponseForm::of(request.headers());
        let shared = &self.shared;
        let (mut parts, mut body) = request.into_parts();
        let Some(verified) = parts.extensions.get::<Verified>() else {
            return ResponseFuture::answered(shared.no_key(DedupeOutcome::Unverified, form));
        };
        let bytes = if shared.key.reads_body() {
            body.make_contiguous()
        } else {
            Bytes::new()
        };
        let Some(key) = shared.key.event_key(verified, &bytes) else {
            return ResponseFuture::answered(shared.no_key(DedupeOutcome::KeyMissing, form));
        };
        drop(bytes);
        parts.extensions.insert(key.clone());
        let request = Request::from_parts(parts, body);

        let token = LeaseToken::random();
        match shared.store.claim(&key, token, shared.lease) {
            Check::Ready(result) => match shared.on_claim(result, &key, form) {
                Some(answer) => ResponseFuture::answered(answer),
                None => {
                    let held = Held::new(shared, key, token);
                    ResponseFuture::handling(self.inner.call(request), held)
                }
            },
            Check::Pending(claim) => {
                // The service `poll_ready` readied goes with the request; a clone stays.
                let clone = self.inner.clone();
                let inner = std::mem::replace(&mut self.inner, clone);
                ResponseFuture::claiming(claim, inner, request, Held::new(shared, key, token), form)
            }
        }
    }
}
