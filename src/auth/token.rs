//! [`RequireTokenLayer`]: only requests presenting an accepted static token.

use std::{
    fmt,
    sync::Arc,
    task::{Context, Poll},
};

use http::{header, HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode};
use sha2::{Digest as _, Sha256};
use subtle::{Choice, ConditionallySelectable, ConstantTimeEq};
use tower_layer::Layer;
use tower_service::Service;

use crate::{
    body::ProblemBody,
    future::ResponseFuture,
    problem::{Problem, ProblemCode, ResponseForm},
    ConfigError,
};

type TokenDigest = [u8; 32];

/// Requires one of the accepted static tokens, as a bearer token or in a header of your
/// choice, compared in constant time: see the [module docs](super).
///
/// ```
/// use std::convert::Infallible;
/// use hookgate::auth::{Authenticated, RequireTokenLayer};
/// use http::{HeaderName, Request, Response, StatusCode};
/// use tower::{service_fn, Layer, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let layer = RequireTokenLayer::header(
///     HeaderName::from_static("x-webhook-token"),
///     ["2f7c0e4b9a61d3f58e0c7b2a", "old-token-being-retired"],
/// )?;
/// // Tokens never show.
/// assert!(!format!("{layer:?}").contains("2f7c"));
/// let service = layer.layer(service_fn(|request: Request<()>| async move {
///     let which = request.extensions().get::<Authenticated>().unwrap().token_index();
///     Ok::<_, Infallible>(Response::new(format!("token {which}")))
/// }));
///
/// let request = Request::post("/hooks")
///     .header("x-webhook-token", "old-token-being-retired")
///     .body(())?;
/// let response = service.clone().oneshot(request).await?;
/// assert_eq!(response.into_body(), "token 1");
///
/// let request = Request::post("/hooks").header("x-webhook-token", "guess").body(())?;
/// assert_eq!(service.oneshot(request).await?.status(), StatusCode::UNAUTHORIZED);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
#[must_use]
pub struct RequireTokenLayer {
    config: Arc<Config>,
}

struct Config {
    form: Form,
    digests: Vec<TokenDigest>,
}

#[derive(Debug)]
enum Form {
    /// `Authorization: Bearer <token>`.
    Bearer,
    /// `<name>: <token>`.
    Header(HeaderName),
}

impl RequireTokenLayer {
    /// Requires `Authorization: Bearer <token>` with one of `tokens` (several for a rotation).
    ///
    /// # Errors
    ///
    /// No token, or a token that is empty or cannot be a bearer token: one with a space, a tab
    /// or a control character.
    pub fn bearer<I>(tokens: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator,
        I::Item: AsRef<[u8]>,
    {
        Self::new(Form::Bearer, tokens)
    }

    /// Requires the header `name` with one of `values` (several for a rotation), e.g. a
    /// `X-Webhook-Token` set on the sender's side.
    ///
    /// # Errors
    ///
    /// No value, or a value that is empty or could never arrive as a header's value: one with a
    /// control character, or starting or ending with a space or a tab (HTTP strips those).
    pub fn header<I>(name: HeaderName, values: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator,
        I::Item: AsRef<[u8]>,
    {
        Self::new(Form::Header(name), values)
    }

    fn new<I>(form: Form, tokens: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator,
        I::Item: AsRef<[u8]>,
    {
        let mut digests = Vec::new();
        for (index, token) in tokens.into_iter().enumerate() {
            let token = token.as_ref();
            // The messages name the token by its position, never by its value.
            let position = index + 1;
            if token.is_empty() {
                return Err(ConfigError::new(format!("token {position} is empty")));
            }
            if HeaderValue::from_bytes(token).is_err() {
                return Err(ConfigError::new(format!(
                    "token {position} contains a control character: it cannot be sent in a header"
                )));
            }
            let blank = |byte: &u8| matches!(byte, b' ' | b'\t');
            let unusable = match form {
                Form::Bearer => token.iter().any(blank),
                Form::Header(_) => {
                    token.first().is_some_and(blank) || token.last().is_some_and(blank)
                }
            };
            if unusable {
                return Err(ConfigError::new(match form {
                    Form::Bearer => format!("token {position} contains a space or a tab: a bearer token cannot"),
                    Form::Header(_) => format!(
                        "token {position} starts or ends with a space or a tab, which HTTP strips from header values"
                    ),
                }));
            }
            digests.push(Sha256::digest(token).into());
        }
        if digests.is_empty() {
            return Err(ConfigError::new("no token given: at least one is needed"));
        }
        Ok(Self {
            config: Arc::new(Config { form, digests }),
        })
    }

    /// What the request's credentials are worth.
    fn check(&self, headers: &HeaderMap) -> Outcome {
        let name = match &self.config.form {
            Form::Bearer => &header::AUTHORIZATION,
            Form::Header(name) => name,
        };
        let mut values = headers.get_all(name).iter();
        let Some(first) = values.next() else {
            return Outcome::Missing;
        };
        if values.any(|other| other != first) {
            return Outcome::Invalid;
        }
        let value = trim(first.as_bytes());
        if value.is_empty() {
            return Outcome::Missing;
        }
        let token = match self.config.form {
            Form::Header(_) => value,
            Form::Bearer => match bearer_token(value) {
                Some(token) => token,
                None => return Outcome::Invalid,
            },
        };
        match self.find(token) {
            Some(index) => Outcome::Accepted(index),
            None => Outcome::Invalid,
        }
    }

    /// The index of the accepted token equal to `token`: every accepted digest is compared in
    /// constant time, with no early exit.
    fn find(&self, token: &[u8]) -> Option<usize> {
        let digest: TokenDigest = Sha256::digest(token).into();
        let mut found = Choice::from(0);
        let mut index = 0u64;
        for (i, accepted) in self.config.digests.iter().enumerate() {
            let matched = digest.ct_eq(accepted);
            // The first match is kept: later ones do not overwrite it.
            index.conditional_assign(&(i as u64), matched & !found);
            found |= matched;
        }
        bool::from(found).then_some(index as usize)
    }

    /// The answer to a request refused for `outcome`.
    fn refuse<B: ProblemBody>(&self, outcome: Outcome, form: ResponseForm) -> Response<B> {
        let missing = matches!(outcome, Outcome::Missing);
        let code = if missing {
            ProblemCode::MISSING_CREDENTIALS
        } else {
            ProblemCode::INVALID_CREDENTIALS
        };
        let detail = match (&self.config.form, missing) {
            (Form::Bearer, true) => "the request carries no Authorization: Bearer token".to_owned(),
            (Form::Bearer, false) => {
                "the Authorization header carries no accepted Bearer token".to_owned()
            }
            (Form::Header(name), true) => format!("the {name} header is missing"),
            (Form::Header(name), false) => format!("the {name} header carries no accepted token"),
        };
        tracing::debug!(code = code.as_str(), "webhook rejected");
        let mut response = Problem::new(StatusCode::UNAUTHORIZED, code)
            .with_detail(detail)
            .into_response_for(form);
        if let Form::Bearer = self.config.form {
            let challenge = if missing {
                HeaderValue::from_static("Bearer")
            } else {
                HeaderValue::from_static("Bearer error=\"invalid_token\"")
            };
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, challenge);
        }
        response
    }
}

/// What a request's credentials are worth.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    /// Accepted token number `.0`, in the order given.
    Accepted(usize),
    /// No token at all.
    Missing,
    /// A token that is not accepted, or credentials that are ambiguous or malformed.
    Invalid,
}

/// `value` without the spaces and tabs around it.
fn trim(value: &[u8]) -> &[u8] {
    let blank = |byte: &u8| matches!(byte, b' ' | b'\t');
    let start = value.iter().position(|b| !blank(b)).unwrap_or(value.len());
    let end = value
        .iter()
        .rposition(|b| !blank(b))
        .map_or(start, |end| end + 1);
    &value[start..end]
}

/// The token of `Bearer <token>` (the scheme word in any case, then one or more spaces, RFC
/// 9110 section 11.4); `None` for another scheme or no token.
fn bearer_token(value: &[u8]) -> Option<&[u8]> {
    const SCHEME: &[u8] = b"bearer";
    let (scheme, rest) = value.split_at_checked(SCHEME.len())?;
    if !scheme.eq_ignore_ascii_case(SCHEME) || rest.first() != Some(&b' ') {
        return None;
    }
    let token = trim(rest);
    (!token.is_empty()).then_some(token)
}

impl fmt::Debug for RequireTokenLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequireTokenLayer")
            .field("form", &self.config.form)
            .field(
                "tokens",
                &format_args!("[{} redacted]", self.config.digests.len()),
            )
            .finish()
    }
}

impl<S> Layer<S> for RequireTokenLayer {
    type Service = RequireToken<S>;

    fn layer(&self, inner: S) -> RequireToken<S> {
        RequireToken {
            inner,
            layer: self.clone(),
        }
    }
}

/// Service of [`RequireTokenLayer`].
#[derive(Clone, Debug)]
pub struct RequireToken<S> {
    inner: S,
    layer: RequireTokenLayer,
}

/// Proof that a request presented an accepted token, inserted into its extensions by
/// [`RequireTokenLayer`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Authenticated {
    token_index: usize,
}

impl Authenticated {
    /// Which accepted token matched, in the order given to the constructor (0 for the first).
    /// Watch it during a rotation to know when the old token is no longer used.
    #[must_use]
    pub fn token_index(&self) -> usize {
        self.token_index
    }
}

impl<S, B, ResBody> Service<Request<B>> for RequireToken<S>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
    ResBody: ProblemBody,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        match self.layer.check(request.headers()) {
            Outcome::Accepted(token_index) => {
                request
                    .extensions_mut()
                    .insert(Authenticated { token_index });
                ResponseFuture::inner(self.inner.call(request))
            }
            refused => ResponseFuture::answered(
                self.layer
                    .refuse(refused, ResponseForm::of(request.headers())),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use http_body_util::BodyExt;
    use tower::{service_fn, ServiceExt};

    use super::*;

    const TOKEN: &str = "3q2-7Vx_Zk9.pL0~a+b/c=";

    fn ok() -> impl Service<Request<()>, Response = Response<String>, Error = Infallible> + Clone {
        service_fn(|request: Request<()>| async move {
            let index = request
                .extensions()
                .get::<Authenticated>()
                .map(|a| a.token_index().to_string())
                .unwrap_or_default();
            Ok::<_, Infallible>(Response::new(index))
        })
    }

    fn request(headers: &[(&str, &[u8])]) -> Request<()> {
        let mut request = Request::new(());
        for (name, value) in headers {
            request.headers_mut().append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_bytes(value).unwrap(),
            );
        }
        request
    }

    /// Status, problem code (or the handler's body), and `WWW-Authenticate`.
    async fn answer(
        layer: &RequireTokenLayer,
        headers: &[(&str, &[u8])],
    ) -> (StatusCode, String, Option<String>) {
        let response = layer.layer(ok()).oneshot(request(headers)).await.unwrap();
        let status = response.status();
        let challenge = response
            .headers()
            .get(header::WWW_AUTHENTICATE)
            .map(|v| v.to_str().unwrap().to_owned());
        let code = response.extensions().get::<ProblemCode>().copied();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let text = match code {
            Some(code) => {
                let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
                assert_eq!(json["code"], code.as_str());
                assert_eq!(json["status"], 401);
                let detail = json["detail"].as_str().unwrap();
                assert!(!detail.contains(TOKEN), "{detail}");
                code.to_string()
            }
            None => String::from_utf8(body.to_vec()).unwrap(),
        };
        (status, text, challenge)
    }

    fn bearer() -> RequireTokenLayer {
        RequireTokenLayer::bearer([TOKEN, "second-token"]).unwrap()
    }

    fn custom() -> RequireTokenLayer {
        RequireTokenLayer::header(HeaderName::from_static("x-webhook-token"), [TOKEN]).unwrap()
    }

    const MISSING: (StatusCode, &str, Option<&str>) = (
        StatusCode::UNAUTHORIZED,
        "missing_credentials",
        Some("Bearer"),
    );
    const INVALID: (StatusCode, &str, Option<&str>) = (
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
        Some("Bearer error=\"invalid_token\""),
    );

    async fn bearer_answer(values: &[&[u8]]) -> (StatusCode, String, Option<String>) {
        let headers: Vec<(&str, &[u8])> = values.iter().map(|v| ("authorization", *v)).collect();
        answer(&bearer(), &headers).await
    }

    fn expect(
        got: (StatusCode, String, Option<String>),
        want: (StatusCode, &str, Option<&str>),
        case: &str,
    ) {
        assert_eq!((got.0, got.1.as_str(), got.2.as_deref()), want, "{case}");
    }

    #[tokio::test]
    async fn accepted_refused_and_missing_bearer_tokens() {
        let accepted = (StatusCode::OK, "0", None);
        expect(
            bearer_answer(&[format!("Bearer {TOKEN}").as_bytes()]).await,
            accepted,
            "accepted",
        );
        expect(bearer_answer(&[]).await, MISSING, "no header");
        for (case, value) in [
            ("wrong", "Bearer wrong-token".to_owned()),
            ("prefix", format!("Bearer {}", &TOKEN[..TOKEN.len() - 1])),
            ("longer", format!("Bearer {TOKEN}x")),
            (
                "case of the token",
                format!("Bearer {}", TOKEN.to_uppercase()),
            ),
            ("other scheme", format!("Basic {TOKEN}")),
            ("no space", format!("Bearer{TOKEN}")),
            ("no token", "Bearer".to_owned()),
            ("blank token", "Bearer   ".to_owned()),
            ("bare token", TOKEN.to_owned()),
            ("two tokens", format!("Bearer {TOKEN} {TOKEN}")),
        ] {
            expect(bearer_answer(&[value.as_bytes()]).await, INVALID, case);
        }
        expect(bearer_answer(&[b""]).await, MISSING, "empty");
        expect(bearer_answer(&[b" \t "]).await, MISSING, "blank");
    }

    #[tokio::test]
    async fn every_accepted_token_is_accepted_with_its_index() {
        let layer =
            RequireTokenLayer::bearer(["a-token", "b-token", "c-token", "a-token"]).unwrap();
        for (token, index) in [("a-token", "0"), ("b-token", "1"), ("c-token", "2")] {
            let value = format!("Bearer {token}");
            let got = answer(&layer, &[("authorization", value.as_bytes())]).await;
            expect(got, (StatusCode::OK, index, None), token);
        }
        let got = answer(&layer, &[("authorization", b"Bearer d-token")]).await;
        expect(got, INVALID, "not accepted");
        assert_eq!(layer.find(b"c-token"), Some(2));
        assert_eq!(layer.find(b"a-token"), Some(0));
        assert_eq!(layer.find(b""), None);
    }

    #[tokio::test]
    async fn the_scheme_word_is_case_insensitive_and_spaces_are_lenient() {
        for value in [
            format!("bearer {TOKEN}"),
            format!("BEARER {TOKEN}"),
            format!("BeArEr {TOKEN}"),
            format!("Bearer    {TOKEN}"),
            format!("  Bearer {TOKEN}\t"),
        ] {
            expect(
                bearer_answer(&[value.as_bytes()]).await,
                (StatusCode::OK, "0", None),
                &value,
            );
        }
    }

    #[tokio::test]
    async fn several_header_lines_must_agree() {
        let good = format!("Bearer {TOKEN}");
        expect(
            bearer_answer(&[good.as_bytes(), good.as_bytes()]).await,
            (StatusCode::OK, "0", None),
            "identical lines",
        );
        expect(
            bearer_answer(&[good.as_bytes(), b"Bearer other"]).await,
            INVALID,
            "good first",
        );
        expect(
            bearer_answer(&[b"Bearer other", good.as_bytes()]).await,
            INVALID,
            "good last",
        );
        let got = answer(
            &custom(),
            &[
                ("x-webhook-token", TOKEN.as_bytes()),
                ("x-webhook-token", b"x"),
            ],
        )
        .await;
        expect(
            got,
            (StatusCode::UNAUTHORIZED, "invalid_credentials", None),
            "custom header",
        );
    }

    #[tokio::test]
    async fn non_utf8_values_are_refused_or_accepted_byte_for_byte() {
        expect(
            bearer_answer(&[b"Bearer \xff\xfe-token"]).await,
            INVALID,
            "non-UTF-8 token",
        );
        expect(
            bearer_answer(&[b"B\xe9arer x"]).await,
            INVALID,
            "non-UTF-8 scheme",
        );
        // A configured value with obs-text bytes is compared as bytes.
        let layer =
            RequireTokenLayer::header(HeaderName::from_static("x-token"), [b"caf\xe9".as_slice()])
                .unwrap();
        let got = answer(&layer, &[("x-token", b"caf\xe9")]).await;
        expect(got, (StatusCode::OK, "0", None), "obs-text");
        let got = answer(&layer, &[("x-token", "café".as_bytes())]).await;
        expect(
            got,
            (StatusCode::UNAUTHORIZED, "invalid_credentials", None),
            "UTF-8 is other bytes",
        );
    }

    #[tokio::test]
    async fn a_custom_header_carries_the_token_as_is() {
        let layer = custom();
        let got = answer(&layer, &[("x-webhook-token", TOKEN.as_bytes())]).await;
        expect(got, (StatusCode::OK, "0", None), "accepted");
        let padded = format!(" {TOKEN}\t");
        let got = answer(&layer, &[("X-Webhook-Token", padded.as_bytes())]).await;
        expect(got, (StatusCode::OK, "0", None), "spaces around");
        let unauthorized = |code| (StatusCode::UNAUTHORIZED, code, None);
        let got = answer(&layer, &[]).await;
        expect(got, unauthorized("missing_credentials"), "absent");
        let got = answer(&layer, &[("x-webhook-token", b"")]).await;
        expect(got, unauthorized("missing_credentials"), "empty");
        let got = answer(&layer, &[("x-webhook-token", b"  ")]).await;
        expect(got, unauthorized("missing_credentials"), "blank");
        let bearer = format!("Bearer {TOKEN}");
        let got = answer(&layer, &[("x-webhook-token", bearer.as_bytes())]).await;
        expect(got, unauthorized("invalid_credentials"), "a bearer value");
        let got = answer(&layer, &[("authorization", bearer.as_bytes())]).await;
        expect(got, unauthorized("missing_credentials"), "another header");
    }

    #[test]
    fn readiness_is_the_inner_services() {
        /// Never ready; never called.
        struct NotReady;
        impl Service<Request<()>> for NotReady {
            type Response = Response<String>;
            type Error = Infallible;
            type Future = std::future::Ready<Result<Response<String>, Infallible>>;
            fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
                Poll::Pending
            }
            fn call(&mut self, _: Request<()>) -> Self::Future {
                unreachable!("never ready")
            }
        }
        let mut service = bearer().layer(NotReady);
        let mut cx = Context::from_waker(std::task::Waker::noop());
        assert!(service.poll_ready(&mut cx).is_pending());
        let mut ready = bearer().layer(ok());
        assert!(matches!(ready.poll_ready(&mut cx), Poll::Ready(Ok(()))));
    }

    #[tokio::test]
    async fn grpc_requests_get_unauthenticated() {
        let service = bearer().layer(ok());
        let mut grpc = request(&[("content-type", b"application/grpc")]);
        grpc.headers_mut().insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer nope"),
        );
        let response = service.clone().oneshot(grpc).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["grpc-status"], "16");
        assert_eq!(
            response.extensions().get::<ProblemCode>(),
            Some(&ProblemCode::INVALID_CREDENTIALS)
        );
        let message = response.headers()["grpc-message"].to_str().unwrap();
        assert!(message.starts_with("invalid_credentials"), "{message}");
        let grpc = request(&[("content-type", b"application/grpc+proto")]);
        let response = service.oneshot(grpc).await.unwrap();
        assert_eq!(response.headers()["grpc-status"], "16");
        assert_eq!(
            response.extensions().get::<ProblemCode>(),
            Some(&ProblemCode::MISSING_CREDENTIALS)
        );
    }

    #[tokio::test]
    async fn problem_bodies_name_the_header_never_the_token() {
        let response = custom()
            .layer(ok())
            .oneshot(request(&[("x-webhook-token", b"guess")]))
            .await
            .unwrap();
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            json["detail"],
            "the x-webhook-token header carries no accepted token"
        );
        assert!(!String::from_utf8_lossy(&body).contains("guess"));
    }

    #[test]
    fn constructors_refuse_unusable_tokens_without_naming_them() {
        let bearer_error = |tokens: &[&[u8]]| {
            RequireTokenLayer::bearer(tokens.iter().copied())
                .unwrap_err()
                .to_string()
        };
        assert!(bearer_error(&[]).contains("no token"));
        assert_eq!(bearer_error(&[b"ok", b""]), "token 2 is empty");
        assert!(bearer_error(&[b"has space"]).contains("space"));
        assert!(bearer_error(&[b"has\ttab"]).contains("tab"));
        assert!(bearer_error(&[b"line\nbreak"]).contains("control character"));
        assert!(bearer_error(&[b"nul\0"]).contains("control character"));
        let name = HeaderName::from_static("x-token");
        let header_error = |values: &[&[u8]]| {
            RequireTokenLayer::header(name.clone(), values.iter().copied())
                .unwrap_err()
                .to_string()
        };
        assert!(header_error(&[]).contains("no token"));
        assert_eq!(header_error(&[b""]), "token 1 is empty");
        assert!(header_error(&[b" lead"]).contains("starts or ends"));
        assert!(header_error(&[b"trail\t"]).contains("starts or ends"));
        assert!(header_error(&[b"cr\r"]).contains("control character"));
        // Inner spaces are fine in a header value.
        assert!(RequireTokenLayer::header(name.clone(), ["a b"]).is_ok());
        for error in [
            bearer_error(&[b"secret value"]),
            header_error(&[b" secret"]),
        ] {
            assert!(!error.contains("secret"), "{error}");
        }
    }

    #[test]
    fn debug_shows_neither_tokens_nor_digests() {
        let layer = bearer();
        let debug = format!("{layer:?}");
        assert_eq!(
            debug,
            "RequireTokenLayer { form: Bearer, tokens: [2 redacted] }"
        );
        let service = format!("{:?}", custom().layer(()));
        assert!(service.contains("Header(\"x-webhook-token\")"), "{service}");
        assert!(!service.contains(TOKEN));
        assert!(!service.contains(&hex::encode(Sha256::digest(TOKEN))[..8]));
    }

    #[test]
    fn bearer_tokens_are_parsed_exactly() {
        assert_eq!(bearer_token(b"Bearer abc"), Some(&b"abc"[..]));
        assert_eq!(bearer_token(b"bearer  abc "), Some(&b"abc"[..]));
        assert_eq!(bearer_token(b"Bearer a b"), Some(&b"a b"[..]));
        assert_eq!(bearer_token(b"Bearer\tabc"), None);
        assert_eq!(bearer_token(b"Bearer"), None);
        assert_eq!(bearer_token(b"Beare"), None);
        assert_eq!(bearer_token(b"Bearer "), None);
        assert_eq!(bearer_token(b"Bearers abc"), None);
        assert_eq!(trim(b" \t a b \t"), b"a b");
        assert_eq!(trim(b"   "), b"");
        assert_eq!(trim(b""), b"");
        assert_eq!(trim(b"x"), b"x");
    }
}
