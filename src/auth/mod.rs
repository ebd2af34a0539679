//! Static-token authentication: [`RequireTokenLayer`] lets through only requests that present
//! one of the accepted tokens, as a bearer token (`Authorization: Bearer <token>`) or as the
//! value of a header of your choice.
//!
//! ```
//! use std::convert::Infallible;
//! use hookgate::{auth::RequireTokenLayer, problem::ProblemCode};
//! use http::{Request, Response, StatusCode};
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // The current token and, during a rotation, the previous one.
//! let service = ServiceBuilder::new()
//!     .layer(RequireTokenLayer::bearer(["current-token", "previous-token"])?)
//!     .service_fn(|_: Request<()>| async { Ok::<_, Infallible>(Response::new(String::new())) });
//!
//! let request = Request::post("/hooks")
//!     .header("authorization", "Bearer previous-token")
//!     .body(())?;
//! assert_eq!(service.clone().oneshot(request).await?.status(), StatusCode::OK);
//!
//! let response = service.oneshot(Request::post("/hooks").body(())?).await?;
//! assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
//! assert_eq!(response.headers()["www-authenticate"], "Bearer");
//! assert_eq!(response.extensions().get::<ProblemCode>(), Some(&ProblemCode::MISSING_CREDENTIALS));
//! # Ok(())
//! # }
//! ```
//!
//! ## When to use it
//!
//! A static token is what senders that do not sign their deliveries offer: a shared secret sent
//! with every request, in `Authorization: Bearer` or in a custom header. It **authenticates the
//! sender** (whoever knows the token), and nothing more:
//!
//! - it does **not protect the body's integrity**: anyone who can alter a request on its way
//!   (a proxy, a load balancer, anything that terminates TLS before you) can change the body
//!   and keep the token;
//! - it does **not protect against replay**: a captured request is accepted again, byte for
//!   byte, for as long as its token is accepted. Deduplicate on an event id of the body;
//! - the secret itself travels in every request, so one request that leaks (a log line, a
//!   proxy's trace, a misdirected delivery) leaks the credential. An HMAC signature leaks only
//!   a signature of that one body and timestamp.
//!
//! So: **prefer an HMAC signature** wherever the sender offers one
//! (`VerifySignatureLayer` with [`ElevenLabs`](crate::scheme::ElevenLabs) or
//! `StandardWebhooks`), and **always require
//! HTTPS** (`RequireHttpsLayer`, feature `client-checks`), without which the token is sent in
//! the clear. Pick long random tokens (32 bytes from a CSPRNG, in hex or base64).
//!
//! ## ElevenLabs
//!
//! ElevenLabs signs webhooks with HMAC (`ElevenLabs-Signature`), which hookgate verifies and
//! which is the better choice. Its API also knows other authentication methods for webhooks:
//!
//! - **Custom headers (confirmed).** A webhook can carry fixed request headers of your choice
//!   on every delivery. Put a random token in one, say `X-Webhook-Token`, and check it with
//!   [`RequireTokenLayer::header`]; or put `Authorization: Bearer <token>` there and use
//!   [`RequireTokenLayer::bearer`].
//! - **OAuth2 (wire format not confirmed).** The API lists `oauth2` (beside `hmac` and `mtls`)
//!   as a webhook authentication method, and older documentation described configuring it with
//!   a client id, a client secret, a token URL and an optional scope: ElevenLabs would then be
//!   an OAuth2 client-credentials client of *your* token URL and present the access token it
//!   obtains as `Authorization: Bearer <token>`. What exactly it sends (how often it fetches a
//!   token, whether it caches it, which header form) is not documented, and the public API
//!   creates HMAC webhooks only. [`RequireTokenLayer::bearer`] fits if your token endpoint
//!   issues fixed tokens, which you then list here; test against a real delivery before
//!   relying on it.
//!
//! ## What it answers
//!
//! | request | answer |
//! |---|---|
//! | no token (header absent or empty) | `401 missing_credentials` |
//! | a token that is not accepted; another scheme than `Bearer`; `Bearer` without a token; the header on several lines with different values | `401 invalid_credentials` |
//!
//! The bearer form adds `WWW-Authenticate: Bearer` (`Bearer error="invalid_token"` for a
//! refused token), as RFC 6750 asks. Bodies are problem+json ([`crate::problem`]); a gRPC
//! request gets a trailers-only `UNAUTHENTICATED` (16). `FailureLimitLayer` (feature
//! `rate-limit`) counts both answers as failed verifications, so a client guessing tokens is
//! blocked like one sending bad signatures: put this layer where `VerifySignatureLayer` would
//! go, inside the failure limiter. A request let through carries an [`Authenticated`]
//! extension saying which token matched.
//!
//! ## How tokens are compared
//!
//! The layer keeps only the SHA-256 digest of each accepted token, never the token. A request's
//! token is hashed once, and its digest compared with every accepted digest in constant time
//! (`subtle`), with no early exit: neither the length of an accepted token nor how much of it a
//! guess got right shows in the time taken. The scheme word `Bearer` is case-insensitive (RFC
//! 9110), the token itself is compared byte for byte. Tokens never appear in `Debug` output,
//! logs or answers.

mod token;

pub use token::{Authenticated, RequireToken, RequireTokenLayer};
