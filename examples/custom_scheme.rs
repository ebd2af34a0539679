//! A scheme hookgate does not ship, written as any other crate would write it: GitHub's
//! `X-Hub-Signature-256`, with nothing but hookgate's public API and the `hmac`, `sha2` and
//! `hex` crates.
//!
//! ```text
//! cargo run --example custom_scheme   # checks GitHub's test vector, exits non-zero if it fails
//! ```
//!
//! GitHub sends `X-Hub-Signature-256: sha256=<lower-case hex HMAC-SHA256 of the raw body>`,
//! keyed with the webhook secret. It signs **no timestamp**: there is no freshness to check in
//! `begin`, and the [`Verified`] the scheme makes carries the time of receipt
//! ([`Verified::received_at`], with `is_timestamp_signed() == false`). Freshness is each
//! scheme's own check, so the layer never refuses such a delivery as stale; it also means a
//! captured delivery verifies again at any time: deduplicate on `X-GitHub-Delivery` or on
//! [`Verified::signature`].

use std::{
    convert::Infallible,
    error::Error,
    fmt,
    sync::atomic::{AtomicUsize, Ordering},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use hmac::{Hmac, Mac};
use hookgate::{
    problem::ProblemCode,
    scheme::{
        decode_hex_signature, single_header, Malformed, Scheme, Verified, Verifier, VerifyError,
    },
    signature::VerifiedBody,
    VerifySignatureLayer,
};
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use sha2::Sha256;
use tower::{service_fn, Layer, ServiceExt};

type HmacSha256 = Hmac<Sha256>;

/// GitHub's webhook signature, `X-Hub-Signature-256: sha256=<hex>`.
#[derive(Clone)]
struct GitHub {
    // Keyed once; each request clones the keyed state. The secret itself is not kept.
    keyed: HmacSha256,
}

impl GitHub {
    const HEADER: HeaderName = HeaderName::from_static("x-hub-signature-256");
    /// The header as GitHub's documentation spells it, for error texts.
    const HEADER_DISPLAY: &'static str = "X-Hub-Signature-256";

    fn new(secret: &str) -> Result<Self, &'static str> {
        if secret.is_empty() {
            return Err("the GitHub webhook secret is empty");
        }
        let keyed = HmacSha256::new_from_slice(secret.as_bytes())
            .map_err(|_| "HMAC takes keys of any length")?;
        Ok(Self { keyed })
    }

    /// The header value GitHub sends for `body`: for playing the sender.
    fn sign(&self, body: &[u8]) -> String {
        let mut mac = self.keyed.clone();
        mac.update(body);
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    }

    fn malformed(reason: Malformed) -> VerifyError {
        VerifyError::Malformed {
            header: Self::HEADER_DISPLAY,
            reason,
        }
    }
}

// Secrets never show in Debug output.
impl fmt::Debug for GitHub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GitHub")
            .field("secret", &"[redacted]")
            .finish()
    }
}

impl Scheme for GitHub {
    type Verifier = GitHubVerifier;

    fn begin(&self, headers: &HeaderMap, now: SystemTime) -> Result<GitHubVerifier, VerifyError> {
        // Absent: 401 missing_signature; repeated with other values or not text: 400.
        let value = single_header(headers, &Self::HEADER, Self::HEADER_DISPLAY)?;
        let hex = value
            .strip_prefix("sha256=")
            .ok_or_else(|| Self::malformed(Malformed::MissingSignature))?;
        let signature = decode_hex_signature::<32>(hex, 1).map_err(Self::malformed)?;
        // No signed timestamp, so nothing to check against `now`: it is the time of receipt.
        Ok(GitHubVerifier {
            mac: self.keyed.clone(),
            signature,
            received: now,
        })
    }
}

/// One request's verification: the MAC fed the body frame by frame.
struct GitHubVerifier {
    mac: HmacSha256,
    signature: [u8; 32],
    received: SystemTime,
}

impl Verifier for GitHubVerifier {
    fn update(&mut self, chunk: &[u8]) {
        self.mac.update(chunk);
    }

    fn finish(self) -> Result<Verified, VerifyError> {
        // `verify_slice` compares in constant time.
        match self.mac.verify_slice(&self.signature) {
            Ok(()) => Ok(Verified::received_at(self.received, 0, self.signature)),
            Err(_) => Err(VerifyError::SignatureMismatch {
                signatures: 1,
                secrets: 1,
            }),
        }
    }
}

// GitHub's documented test vector.
const SECRET: &str = "It's a Secret to Everybody";
const PAYLOAD: &str = "Hello, World!";
const SIGNATURE: &str = "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

/// How many requests reached the handler.
static HANDLED: AtomicUsize = AtomicUsize::new(0);

/// The handler: runs only for verified deliveries, answers with the bytes it got and the
/// signature that matched.
async fn handle(request: Request<VerifiedBody>) -> Result<Response<Full<Bytes>>, Infallible> {
    HANDLED.fetch_add(1, Ordering::SeqCst);
    let Some(verified) = request.extensions().get::<Verified>().cloned() else {
        let mut response = Response::new(Full::new(Bytes::from_static(b"no Verified")));
        *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        return Ok(response);
    };
    let body = request.into_body().to_bytes();
    println!(
        "  handler: {} bytes, signature {}, timestamp signed: {}",
        body.len(),
        verified.signature(),
        verified.is_timestamp_signed()
    );
    let mut response = Response::new(Full::new(body));
    response.headers_mut().insert(
        "x-verified-signature",
        HeaderValue::from_str(&verified.signature().to_hex()).expect("hex is a header value"),
    );
    Ok(response)
}

fn check(ok: bool, what: &str) -> Result<(), Box<dyn Error>> {
    if ok {
        println!("ok: {what}");
        Ok(())
    } else {
        Err(format!("FAILED: {what}").into())
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn Error>> {
    let scheme = GitHub::new(SECRET)?;
    check(
        scheme.sign(PAYLOAD.as_bytes()) == format!("sha256={SIGNATURE}"),
        "signing GitHub's test payload gives GitHub's test signature",
    )?;
    check(
        !format!("{scheme:?}").contains("Everybody"),
        "the secret is not in the scheme's Debug output",
    )?;

    // Without a tower stack: any `now` verifies, the vector was signed long ago and signs no time.
    let mut headers = HeaderMap::new();
    headers.insert(GitHub::HEADER, format!("sha256={SIGNATURE}").parse()?);
    let in_2100 = UNIX_EPOCH + Duration::from_secs(4_102_444_800);
    let verified = scheme.verify(&headers, PAYLOAD.as_bytes(), in_2100)?;
    check(
        verified.signature().to_hex() == SIGNATURE
            && !verified.is_timestamp_signed()
            && verified.timestamp() == in_2100
            && verified.secret_index() == 0,
        "Scheme::verify accepts the vector at any time; the timestamp is the time of receipt",
    )?;

    // Under VerifySignatureLayer, around a tower::service_fn handler.
    let service = VerifySignatureLayer::new(scheme).layer(service_fn(handle));
    let post = |signature: Option<String>| {
        let mut request = Request::post("/webhooks/github");
        if let Some(signature) = signature {
            request = request.header(GitHub::HEADER, signature);
        }
        request
            .header("x-github-event", "ping")
            .body(Full::new(Bytes::from_static(PAYLOAD.as_bytes())))
    };

    println!("genuine delivery (GitHub's test vector):");
    let response = service
        .clone()
        .oneshot(post(Some(format!("sha256={SIGNATURE}")))?)
        .await?;
    let status = response.status();
    let matched = response.headers().get("x-verified-signature").cloned();
    let body = response.into_body().collect().await?.to_bytes();
    println!("  -> {status}");
    check(
        status == StatusCode::OK
            && HANDLED.load(Ordering::SeqCst) == 1
            && matched.is_some_and(|m| m == SIGNATURE)
            && body == PAYLOAD.as_bytes(),
        "the vector verifies: 200, the handler got the exact payload and the signature",
    )?;

    // One hex digit changed.
    let wrong = format!("sha256={}8", &SIGNATURE[..63]);
    let cases = [
        (
            "wrong signature",
            Some(wrong),
            StatusCode::UNAUTHORIZED,
            ProblemCode::SIGNATURE_MISMATCH,
        ),
        (
            "missing header",
            None,
            StatusCode::UNAUTHORIZED,
            ProblemCode::MISSING_SIGNATURE,
        ),
        (
            "SHA-1 signature only",
            Some(format!("sha1={}", "0".repeat(40))),
            StatusCode::BAD_REQUEST,
            ProblemCode::MALFORMED_SIGNATURE,
        ),
    ];
    for (name, signature, want_status, want_code) in cases {
        println!("{name}:");
        let handled = HANDLED.load(Ordering::SeqCst);
        let response = service.clone().oneshot(post(signature)?).await?;
        let status = response.status();
        let code = response.extensions().get::<ProblemCode>().copied();
        let body = response.into_body().collect().await?.to_bytes();
        println!("  -> {status} {}", String::from_utf8_lossy(&body));
        check(
            status == want_status
                && code == Some(want_code)
                && HANDLED.load(Ordering::SeqCst) == handled,
            &format!(
                "{name}: {} {}, the handler never ran",
                want_status.as_u16(),
                want_code.as_str()
            ),
        )?;
    }
    Ok(())
}
