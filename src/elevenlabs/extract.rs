//! A verified delivery, read as an event: the axum extractors [`VerifiedEvent`] and
//! [`VerifiedJson`] (feature `axum`), and the same for a plain tower service,
//! [`verified_event`] and [`verified_json`] (feature `signature`).
//!
//! All of them answer alike, as a [`Problem`]:
//!
//! - no [`Verified`] extension on the request (the [`VerifySignatureLayer`] is missing in front of
//!   the handler, or layered after it): `500 verification_layer_missing`, logged at `error`.
//!   A 500 is retried by the sender, so no delivery is lost while the receiver is fixed, and
//!   nothing unverified is ever handed on.
//! - a verified body that is not the event asked for (not JSON, or JSON of another shape):
//!   `400 invalid_event`, logged at `warn`. The sender signed it, so sending it again will not
//!   help: a 4xx tells it to stop.
//!
//! [`VerifySignatureLayer`]: crate::VerifySignatureLayer

use http::StatusCode;
use serde::Deserialize;

use super::Event;
use crate::{
    problem::{Problem, ProblemCode},
    Verified,
};

#[cfg(feature = "signature")]
use crate::signature::VerifiedBody;

/// The answer to a request without a [`Verified`] extension: the verification layer is not in
/// front of the handler. Logged at `error`: it is the receiver's own mistake, and every
/// delivery meets it until it is fixed.
fn layer_missing(path: &str) -> Problem {
    tracing::error!(
        target: "hookgate::elevenlabs",
        code = ProblemCode::VERIFICATION_LAYER_MISSING.as_str(),
        path,
        "request reached a verified-event extractor without a `Verified` extension: \
         VerifySignatureLayer is missing in front of this handler (or layered after it); answered 500"
    );
    Problem::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        ProblemCode::VERIFICATION_LAYER_MISSING,
    )
    .with_detail(
        "the request carries no proof of verification: the receiver's VerifySignatureLayer is \
         missing in front of this handler (or layered after it)",
    )
}

/// The answer to a verified body that is not the event asked for. serde_json's message names
/// what the sender's own bytes lack and where (`expected value at line 1 column 1`), never
/// anything of the receiver's.
fn invalid_event(what: &str, error: &serde_json::Error) -> Problem {
    tracing::warn!(
        target: "hookgate::elevenlabs",
        code = ProblemCode::INVALID_EVENT.as_str(),
        %error,
        "verified body is not {what}: answered 400"
    );
    Problem::new(StatusCode::BAD_REQUEST, ProblemCode::INVALID_EVENT)
        .with_detail(format!("the verified body is not {what}: {error}"))
}

const AN_EVENT: &str = "an ElevenLabs webhook event";
const EXPECTED_JSON: &str = "the JSON the receiver expects";

/// Parses an ElevenLabs event, borrowing from `body`.
fn parse_event(body: &[u8]) -> Result<Event<'_>, Problem> {
    Event::from_slice(body).map_err(|error| invalid_event(AN_EVENT, &error))
}

/// Parses any JSON type from `body`.
fn parse_json<'b, T: Deserialize<'b>>(body: &'b [u8]) -> Result<T, Problem> {
    serde_json::from_slice(body).map_err(|error| invalid_event(EXPECTED_JSON, &error))
}

// --- a plain tower service ---

/// The [`Verified`] extension and the body of a request, as one slice: a body that arrived in
/// several frames is joined once, and kept joined in the request (a second call copies
/// nothing).
#[cfg(feature = "signature")]
fn verified_parts(
    request: &mut http::Request<VerifiedBody>,
) -> Result<(&Verified, &[u8]), Problem> {
    if request.extensions().get::<Verified>().is_none() {
        return Err(layer_missing(request.uri().path()));
    }
    request.body_mut().make_contiguous();
    let request = &*request;
    let verified = request
        .extensions()
        .get::<Verified>()
        .ok_or_else(|| layer_missing(request.uri().path()))?;
    let body = request
        .body()
        .frames()
        .next()
        .map_or(&[][..], |bytes| bytes);
    Ok((verified, body))
}

/// The typed ElevenLabs [`Event`] of a request verified by
/// [`VerifySignatureLayer`](crate::VerifySignatureLayer), for a plain tower or hyper service,
/// with the [`Verified`] proof (its signed timestamp, the matching signature).
///
/// The event borrows its strings from the request's body (no copy: see
/// [`Event::from_slice`]); a body that arrived in several frames is joined once, in place.
/// [`Event::into_owned`] keeps the event past the request.
///
/// # Errors
/// As a [`Problem`] to answer with ([`Problem::into_response_for`]):
/// - no [`Verified`] extension (the verification layer is missing in front of the service):
///   `500 verification_layer_missing`, logged at `error`;
/// - a body that is not an ElevenLabs event (not JSON, not an object, no `type`):
///   `400 invalid_event`. Unknown types are no error: they are [`Event::Unknown`].
///
/// ```
/// use std::convert::Infallible;
///
/// use bytes::Bytes;
/// use hookgate::{
///     elevenlabs::{verified_event, Event},
///     problem::ResponseForm,
///     scheme::ElevenLabs,
///     signature::VerifiedBody,
///     VerifySignatureLayer,
/// };
/// use http::{Request, Response, StatusCode};
/// use http_body_util::Full;
/// use tower::{ServiceBuilder, ServiceExt};
///
/// async fn handle(mut request: Request<VerifiedBody>) -> Result<Response<Full<Bytes>>, Infallible> {
///     let form = ResponseForm::of(request.headers());
///     let (verified, event) = match verified_event(&mut request) {
///         Ok(parts) => parts,
///         Err(problem) => return Ok(problem.into_response_for(form)),
///     };
///     let answer = format!("{} signed at {}", event.event_type(), verified.unix_timestamp());
///     Ok(Response::new(Full::from(answer)))
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let scheme = ElevenLabs::new("whsec_test")?;
/// let service = ServiceBuilder::new()
///     .layer(VerifySignatureLayer::new(scheme.clone()))
///     .service_fn(handle);
///
/// let body = r#"{"type":"post_call_transcription","data":{"conversation_id":"c1"}}"#;
/// let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
/// let request = Request::post("/webhooks/elevenlabs")
///     .header("elevenlabs-signature", scheme.sign(now, body.as_bytes()))
///     .body(Full::new(Bytes::from(body)))?;
/// let response = service.clone().oneshot(request).await?;
/// assert_eq!(response.status(), StatusCode::OK);
///
/// // Without the layer, a loud (and retryable) 500, never a silent pass.
/// let unverified = Request::post("/").body(VerifiedBody::from_bytes(body))?;
/// let response = tower::service_fn(handle).oneshot(unverified).await?;
/// assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
/// # Ok(())
/// # }
/// ```
#[cfg(feature = "signature")]
pub fn verified_event(
    request: &mut http::Request<VerifiedBody>,
) -> Result<(&Verified, Event<'_>), Problem> {
    let (verified, body) = verified_parts(request)?;
    Ok((verified, parse_event(body)?))
}

/// Any JSON type `T` read from the body of a request verified by
/// [`VerifySignatureLayer`](crate::VerifySignatureLayer), with the [`Verified`] proof: the
/// [`verified_event`] of your own types (and of any scheme, not only ElevenLabs'). `T` may
/// borrow from the body (`&str`, `Cow<str>` with `#[serde(borrow)]`); a body that arrived in
/// several frames is joined once, in place.
///
/// # Errors
/// As [`verified_event`]: `500 verification_layer_missing` without a [`Verified`] extension,
/// `400 invalid_event` when the body is not JSON or not a `T`.
///
/// ```
/// use hookgate::{elevenlabs::verified_json, problem::ProblemCode, signature::VerifiedBody, Verified};
/// use http::Request;
/// use serde::Deserialize;
///
/// #[derive(Deserialize)]
/// struct Delivery<'a> {
///     #[serde(rename = "type")]
///     kind: &'a str,
/// }
///
/// // What the layer hands on (built by hand here): the body and the `Verified` proof.
/// let mut request = Request::new(VerifiedBody::from_bytes(r#"{"type":"voice_removed"}"#));
/// request.extensions_mut().insert(Verified::new(1_739_537_297, 0, [7; 32]));
/// let (verified, delivery) = verified_json::<Delivery>(&mut request).unwrap();
/// assert_eq!((verified.unix_timestamp(), delivery.kind), (1_739_537_297, "voice_removed"));
///
/// *request.body_mut() = VerifiedBody::from_bytes(r#"{"kind":"voice_removed"}"#);
/// let problem = verified_json::<Delivery>(&mut request).err().unwrap();
/// assert_eq!(problem.code(), ProblemCode::INVALID_EVENT);
/// ```
#[cfg(feature = "signature")]
pub fn verified_json<'r, T: Deserialize<'r>>(
    request: &'r mut http::Request<VerifiedBody>,
) -> Result<(&'r Verified, T), Problem> {
    let (verified, body) = verified_parts(request)?;
    Ok((verified, parse_json(body)?))
}

// --- axum ---

/// Why [`VerifiedEvent`] or [`VerifiedJson`] refused a request: the [`Problem`], answered in
/// the request's form (`application/problem+json`, or `grpc-status` for a gRPC client).
///
/// ```
/// use hookgate::{elevenlabs::EventRejection, problem::ProblemCode};
///
/// fn code(rejection: &EventRejection) -> ProblemCode {
///     rejection.problem().code()
/// }
/// ```
#[cfg(feature = "axum")]
#[derive(Debug, Clone)]
pub struct EventRejection {
    problem: Problem,
    form: crate::problem::ResponseForm,
}

#[cfg(feature = "axum")]
impl EventRejection {
    fn new(problem: Problem, form: crate::problem::ResponseForm) -> Self {
        Self { problem, form }
    }

    /// The problem answered: `500 verification_layer_missing`, `400 invalid_event` or
    /// `400 body_unreadable`.
    pub fn problem(&self) -> &Problem {
        &self.problem
    }

    /// The problem, to answer it another way.
    pub fn into_problem(self) -> Problem {
        self.problem
    }
}

#[cfg(feature = "axum")]
impl std::fmt::Display for EventRejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.problem, f)
    }
}

#[cfg(feature = "axum")]
impl std::error::Error for EventRejection {}

#[cfg(feature = "axum")]
impl axum::response::IntoResponse for EventRejection {
    fn into_response(self) -> axum::response::Response {
        self.problem.into_response_for(self.form)
    }
}

/// The [`Verified`] proof of an axum request and its whole body, or why not; and the form
/// the request's client reads a rejection in.
#[cfg(feature = "axum")]
async fn verified_body(
    request: axum::extract::Request,
) -> (
    crate::problem::ResponseForm,
    Result<(Verified, bytes::Bytes), EventRejection>,
) {
    use http_body_util::BodyExt;

    let (mut parts, body) = request.into_parts();
    let form = crate::problem::ResponseForm::of(&parts.headers);
    let Some(verified) = parts.extensions.remove::<Verified>() else {
        let problem = layer_missing(parts.uri.path());
        return (form, Err(EventRejection::new(problem, form)));
    };
    // The layer read the body under its cap and holds it in memory: collecting hands its frames
    // on (no copy for a body in one frame; one copy to join several). axum's `DefaultBodyLimit`
    // is not applied: the layer's `max_body_size` is the limit.
    let read = match body.collect().await {
        Ok(collected) => Ok((verified, collected.to_bytes())),
        Err(_) => Err(EventRejection::new(
            Problem::new(StatusCode::BAD_REQUEST, ProblemCode::BODY_UNREADABLE)
                .with_detail("the verified request body could not be read"),
            form,
        )),
    };
    (form, read)
}

/// An axum extractor for a delivery verified by [`VerifySignatureLayer`], read as a typed
/// ElevenLabs [`Event`]: the handler gets the event and the [`Verified`] proof (the signed
/// timestamp, the signature that matched), and runs only for verified, parsable deliveries.
///
/// It refuses to work without the layer: a request without a [`Verified`] extension (the layer
/// missing in front of the route, or layered after it) is answered
/// `500 verification_layer_missing` and logged at `error`, never handed on. A verified body
/// that is not an event (not JSON, not an object, no `type`) is `400 invalid_event`: the
/// sender signed it, so retrying would not help. An event of a type this version does not
/// know is extracted as [`Event::Unknown`]. See [`EventRejection`].
///
/// The event owns its strings ([`Event::into_owned`]), so the body is freed once it is parsed;
/// for a big `post_call_audio`, that is a copy of its base64. To parse without any copy, take
/// `Extension<Verified>` and the body's `Bytes` and use [`Event::from_slice`]. axum's
/// `DefaultBodyLimit` does not apply: the layer's `max_body_size` does.
///
/// ```no_run
/// use axum::{http::StatusCode, routing::post, Router};
/// use hookgate::{
///     elevenlabs::{Event, VerifiedEvent},
///     scheme::ElevenLabs,
///     VerifySignatureLayer,
/// };
///
/// async fn webhook(VerifiedEvent { verified, event, .. }: VerifiedEvent) -> StatusCode {
///     if let Event::SpeechToTextTranscription(stt) = &event {
///         let transcription = stt.data.transcription.as_ref();
///         let text = transcription.and_then(|t| t.transcripts().first()?.text.as_deref());
///         println!("signed at {}: {text:?}", verified.unix_timestamp());
///     }
///     // Store the event durably here, then answer 200.
///     StatusCode::OK
/// }
///
/// # #[tokio::main]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let app = Router::new()
///     .route("/webhooks/elevenlabs", post(webhook))
///     .layer(VerifySignatureLayer::new(ElevenLabs::new("whsec_test")?));
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
/// axum::serve(listener, app).await?;
/// # Ok(())
/// # }
/// ```
///
/// [`VerifySignatureLayer`]: crate::VerifySignatureLayer
#[cfg(feature = "axum")]
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct VerifiedEvent {
    /// The proof of verification: the signed timestamp, the matching signature.
    pub verified: Verified,
    /// The event, owning its strings.
    pub event: Event<'static>,
}

#[cfg(feature = "axum")]
impl<S: Send + Sync> axum::extract::FromRequest<S> for VerifiedEvent {
    type Rejection = EventRejection;

    async fn from_request(
        request: axum::extract::Request,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        let (form, read) = verified_body(request).await;
        let (verified, body) = read?;
        match parse_event(&body) {
            Ok(event) => Ok(Self {
                verified,
                event: event.into_owned(),
            }),
            Err(problem) => Err(EventRejection::new(problem, form)),
        }
    }
}

/// An axum extractor for a delivery verified by [`VerifySignatureLayer`], read as any JSON
/// type `T` of your own (with any scheme, not only ElevenLabs'): [`VerifiedEvent`] for your
/// own types, answering alike. A body that is not JSON, or not a `T`, is `400 invalid_event`;
/// a request without a [`Verified`] extension is `500 verification_layer_missing`.
///
/// ```no_run
/// use axum::{http::StatusCode, routing::post, Router};
/// use hookgate::{elevenlabs::VerifiedJson, scheme::ElevenLabs, VerifySignatureLayer};
/// use serde::Deserialize;
///
/// #[derive(Deserialize)]
/// struct Delivery {
///     #[serde(rename = "type")]
///     kind: String,
/// }
///
/// async fn webhook(VerifiedJson { verified, value, .. }: VerifiedJson<Delivery>) -> StatusCode {
///     println!("{} signed at {}", value.kind, verified.unix_timestamp());
///     StatusCode::OK
/// }
///
/// # #[tokio::main]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let app = Router::new()
///     .route("/webhooks/elevenlabs", post(webhook))
///     .layer(VerifySignatureLayer::new(ElevenLabs::new("whsec_test")?));
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
/// axum::serve(listener, app).await?;
/// # Ok(())
/// # }
/// ```
///
/// [`VerifySignatureLayer`]: crate::VerifySignatureLayer
#[cfg(feature = "axum")]
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct VerifiedJson<T> {
    /// The proof of verification: the signed timestamp, the matching signature.
    pub verified: Verified,
    /// The body, read as a `T`.
    pub value: T,
}

#[cfg(feature = "axum")]
impl<S: Send + Sync, T: serde::de::DeserializeOwned> axum::extract::FromRequest<S>
    for VerifiedJson<T>
{
    type Rejection = EventRejection;

    async fn from_request(
        request: axum::extract::Request,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        let (form, read) = verified_body(request).await;
        let (verified, body) = read?;
        match parse_json(&body) {
            Ok(value) => Ok(Self { verified, value }),
            Err(problem) => Err(EventRejection::new(problem, form)),
        }
    }
}

#[cfg(all(test, feature = "signature"))]
mod tests {
    use std::fmt;

    use bytes::Bytes;

    use super::*;
    use crate::signature::VerifiedBody;

    fn verified_request(body: VerifiedBody) -> http::Request<VerifiedBody> {
        let mut request = http::Request::new(body);
        request
            .extensions_mut()
            .insert(Verified::new(1_739_537_297, 0, [7; 32]));
        request
    }

    #[test]
    fn a_body_in_several_frames_is_joined_once_and_kept_joined() {
        let body = VerifiedBody::from_frames([
            Bytes::from_static(br#"{"type":"post_call_audio","#),
            Bytes::from_static(br#""data":{"conversation_id":"c1"}}"#),
        ]);
        let mut request = verified_request(body);
        let (verified, event) = verified_event(&mut request).unwrap();
        assert_eq!(verified.unix_timestamp(), 1_739_537_297);
        assert_eq!(event.event_id(), Some("c1"));
        assert_eq!(request.body().frames().count(), 1);
        let first = request.body().frames().next().unwrap().as_ptr();
        verified_event(&mut request).unwrap();
        assert_eq!(
            request.body().frames().next().unwrap().as_ptr(),
            first,
            "no second copy"
        );
    }

    #[test]
    fn the_event_borrows_from_the_body() {
        let bytes = Bytes::from_static(
            br#"{"type":"post_call_transcription","data":{"conversation_id":"conv_1"}}"#,
        );
        let range = bytes.as_ptr_range();
        let mut request = verified_request(VerifiedBody::from_bytes(bytes.clone()));
        let (_, event) = verified_event(&mut request).unwrap();
        let id = event.event_id().unwrap();
        assert!(range.contains(&id.as_ptr()), "borrowed, not copied");
    }

    #[test]
    fn an_empty_or_garbage_body_is_invalid_and_an_unknown_type_is_not() {
        for garbage in ["", "not json", "[1,2]", r#"{"data":{}}"#, r#"{"type":1}"#] {
            let mut request = verified_request(VerifiedBody::from_bytes(garbage));
            let problem = verified_event(&mut request).unwrap_err();
            assert_eq!(problem.status(), StatusCode::BAD_REQUEST, "{garbage}");
            assert_eq!(problem.code(), ProblemCode::INVALID_EVENT, "{garbage}");
            assert!(
                problem
                    .detail()
                    .unwrap()
                    .starts_with("the verified body is not an ElevenLabs webhook event: "),
                "{problem}"
            );
        }
        let mut request = verified_request(VerifiedBody::from_bytes(
            r#"{"type":"post_call_transcription_otel","data":{"x":1}}"#,
        ));
        let (_, event) = verified_event(&mut request).unwrap();
        assert!(matches!(event, Event::Unknown(_)));
        assert_eq!(event.event_type(), "post_call_transcription_otel");
    }

    /// The level, target and fields of every event logged.
    #[derive(Clone, Default)]
    struct Logged(std::sync::Arc<std::sync::Mutex<Vec<(tracing::Level, String, String)>>>);

    impl tracing::Subscriber for Logged {
        fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
            tracing::span::Id::from_u64(1)
        }
        fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
        fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
        fn event(&self, event: &tracing::Event<'_>) {
            struct Fields(String);
            impl tracing::field::Visit for Fields {
                fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn fmt::Debug) {
                    self.0.push_str(&format!("{}={value:?} ", field.name()));
                }
            }
            let mut fields = Fields(String::new());
            event.record(&mut fields);
            let metadata = event.metadata();
            self.0.lock().unwrap().push((
                *metadata.level(),
                metadata.target().to_owned(),
                fields.0,
            ));
        }
        fn enter(&self, _: &tracing::span::Id) {}
        fn exit(&self, _: &tracing::span::Id) {}
    }

    #[cfg(feature = "axum")]
    #[test]
    fn a_rejection_shows_its_problem() {
        let mut unverified = http::Request::new(VerifiedBody::from_bytes("{}"));
        let problem = verified_event(&mut unverified).unwrap_err();
        let rejection = EventRejection::new(problem.clone(), crate::problem::ResponseForm::Http);
        let shown = rejection.to_string();
        assert!(
            shown.starts_with("500 verification_layer_missing: "),
            "{shown}"
        );
        assert_eq!(shown, problem.to_string());
    }

    #[test]
    fn a_missing_layer_is_logged_at_error_and_garbage_at_warn() {
        let logged = Logged::default();
        tracing::subscriber::with_default(logged.clone(), || {
            let mut unverified = http::Request::new(VerifiedBody::from_bytes("{}"));
            let problem = verified_event(&mut unverified).unwrap_err();
            assert_eq!(problem.code(), ProblemCode::VERIFICATION_LAYER_MISSING);
            let mut garbage = verified_request(VerifiedBody::from_bytes("nope"));
            let problem = verified_event(&mut garbage).unwrap_err();
            assert_eq!(problem.code(), ProblemCode::INVALID_EVENT);
        });
        let logged = logged.0.lock().unwrap();
        assert_eq!(
            logged.len(),
            2,
            "{:?}",
            logged.iter().map(|l| &l.2).collect::<Vec<_>>()
        );
        let (level, target, fields) = &logged[0];
        assert_eq!(
            (*level, target.as_str()),
            (tracing::Level::ERROR, "hookgate::elevenlabs")
        );
        assert!(
            fields.contains("code=\"verification_layer_missing\""),
            "{fields}"
        );
        assert!(
            fields.contains("VerifySignatureLayer is missing"),
            "{fields}"
        );
        let (level, _, fields) = &logged[1];
        assert_eq!(*level, tracing::Level::WARN);
        assert!(fields.contains("code=\"invalid_event\""), "{fields}");
    }

    #[test]
    fn without_the_proof_nothing_is_parsed() {
        let mut request = http::Request::new(VerifiedBody::from_bytes(r#"{"type":"x"}"#));
        *request.uri_mut() = "/hooks".parse().unwrap();
        let problem = verified_json::<serde_json::Value>(&mut request).unwrap_err();
        assert_eq!(problem.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(problem.code(), ProblemCode::VERIFICATION_LAYER_MISSING);
        assert!(problem
            .detail()
            .unwrap()
            .contains("VerifySignatureLayer is missing in front of this handler"));
    }
}
