use std::{sync::Arc, time::Duration};

use tower_layer::Layer;

use super::{BufferBudget, VerifySignature};

/// Applies [`VerifySignature`] to a service: see the [module docs](super).
///
/// The handler behind it runs only for genuine, fresh deliveries, and gets the exact bytes
/// that were signed ([`VerifiedBody`](super::VerifiedBody)) and a
/// [`Verified`](crate::Verified) extension; everything else is answered here:
///
/// ```
/// use std::convert::Infallible;
///
/// use bytes::Bytes;
/// use hookgate::{scheme::ElevenLabs, signature::VerifiedBody, Verified, VerifySignatureLayer};
/// use http::{Request, Response, StatusCode};
/// use http_body_util::Full;
/// use tower::{service_fn, Layer, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let scheme = ElevenLabs::new("whsec_test")?;
/// let handler = service_fn(|request: Request<VerifiedBody>| async move {
///     assert!(request.extensions().get::<Verified>().is_some());
///     let body = request.into_body().to_bytes(); // exactly the signed bytes
///     Ok::<_, Infallible>(Response::new(Full::new(body)))
/// });
/// let service = VerifySignatureLayer::new(scheme.clone())
///     .max_body_size(1 << 20)
///     .layer(handler);
///
/// let body = r#"{"type":"speech_to_text_transcription","data":{"request_id":"r1"}}"#;
/// let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
/// let genuine = Request::post("/webhooks/elevenlabs")
///     .header("elevenlabs-signature", scheme.sign(now, body.as_bytes()))
///     .body(Full::new(Bytes::from(body)))?;
/// assert_eq!(service.clone().oneshot(genuine).await?.status(), StatusCode::OK);
///
/// let forged = Request::post("/webhooks/elevenlabs")
///     .header("elevenlabs-signature", format!("t={now},v0={}", "00".repeat(32)))
///     .body(Full::new(Bytes::from(body)))?;
/// let refused = service.oneshot(forged).await?;
/// assert_eq!(refused.status(), StatusCode::UNAUTHORIZED); // signature_mismatch, body unread by the handler
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
#[must_use]
pub struct VerifySignatureLayer<Sch> {
    pub(super) scheme: Arc<Sch>,
    pub(super) limits: Limits,
    pub(super) budget: BufferBudget,
}

/// Per-request limits of the body read.
#[derive(Clone, Copy, Debug)]
pub(super) struct Limits {
    pub(super) max_body_size: usize,
    pub(super) body_timeout: Duration,
}

impl<Sch> VerifySignatureLayer<Sch> {
    /// Default cap on one body: 64 MiB. A speech-to-text transcript with extra formats can be
    /// several MiB, and a call's `post_call_audio` carries the whole call as base64 MP3: about
    /// 38 MiB for an hour. A body over the cap gets a `413`, which a sender never retries:
    /// raise it for longer calls.
    pub const DEFAULT_MAX_BODY_SIZE: usize = 64 << 20;
    /// Default deadline for receiving the whole body: 30 s.
    pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(30);
    /// Default budget for the bodies buffered by all in-flight requests together: 256 MiB.
    pub const DEFAULT_BUFFER_BUDGET: usize = 256 << 20;

    /// A layer verifying signatures with `scheme`, with the default limits.
    pub fn new(scheme: Sch) -> Self {
        Self {
            scheme: Arc::new(scheme),
            limits: Limits {
                max_body_size: Self::DEFAULT_MAX_BODY_SIZE,
                body_timeout: Self::DEFAULT_BODY_TIMEOUT,
            },
            budget: BufferBudget::new(Self::DEFAULT_BUFFER_BUDGET),
        }
    }

    /// Refuses bodies larger than `bytes` with `413`: at once when the declared length
    /// (`Content-Length`) is larger, otherwise as soon as the bytes received exceed it.
    pub fn max_body_size(mut self, bytes: usize) -> Self {
        self.limits.max_body_size = bytes;
        self
    }

    /// Answers `408` (retryable) when the whole body has not arrived `timeout` after the layer
    /// first had to wait for it (which is, to within microseconds, when the request reached
    /// the layer).
    pub fn body_timeout(mut self, timeout: Duration) -> Self {
        self.limits.body_timeout = timeout;
        self
    }

    /// Gives this layer its own [`BufferBudget`] of `bytes`. Keep it at least as large as
    /// [`max_body_size`](Self::max_body_size), or the largest bodies are never accepted.
    pub fn buffer_budget(mut self, bytes: usize) -> Self {
        self.budget = BufferBudget::new(bytes);
        self
    }

    /// Shares `budget` with other layers (e.g. one budget for every route of a gateway).
    pub fn shared_buffer_budget(mut self, budget: BufferBudget) -> Self {
        self.budget = budget;
        self
    }

    /// The scheme.
    #[must_use]
    pub fn scheme(&self) -> &Sch {
        &self.scheme
    }

    /// The buffer budget, e.g. to export [`BufferBudget::in_use`] as a gauge.
    #[must_use]
    pub fn budget(&self) -> &BufferBudget {
        &self.budget
    }
}

impl<Sch> Clone for VerifySignatureLayer<Sch> {
    fn clone(&self) -> Self {
        Self {
            scheme: self.scheme.clone(),
            limits: self.limits,
            budget: self.budget.clone(),
        }
    }
}

impl<S, Sch> Layer<S> for VerifySignatureLayer<Sch> {
    type Service = VerifySignature<S, Sch>;

    fn layer(&self, inner: S) -> Self::Service {
        VerifySignature::from_layer(inner, self.clone())
    }
}
