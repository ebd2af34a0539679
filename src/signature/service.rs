use std::{
    sync::Arc,
    task::{Context, Poll},
    time::SystemTime,
};

use bytes::Buf;
use http::{Request, Response, StatusCode};
use http_body::Body;
use tower_service::Service;

use super::{
    future::ResponseFuture, layer::Limits, BufferBudget, VerifiedBody, VerifySignatureLayer,
};
use crate::{
    body::ProblemBody,
    problem::{Problem, ProblemCode, ResponseForm},
    Scheme,
};

/// Verifies the signature of each request before the inner service sees it: see the
/// [module docs](super).
#[derive(Debug)]
pub struct VerifySignature<S, Sch> {
    inner: S,
    scheme: Arc<Sch>,
    limits: Limits,
    budget: BufferBudget,
}

impl<S, Sch> VerifySignature<S, Sch> {
    /// Wraps `inner`, verifying with `scheme` under the default limits.
    pub fn new(inner: S, scheme: Sch) -> Self {
        Self::from_layer(inner, VerifySignatureLayer::new(scheme))
    }

    /// A layer, to configure limits and wrap services with.
    pub fn layer(scheme: Sch) -> VerifySignatureLayer<Sch> {
        VerifySignatureLayer::new(scheme)
    }

    pub(super) fn from_layer(inner: S, layer: VerifySignatureLayer<Sch>) -> Self {
        Self {
            inner,
            scheme: layer.scheme,
            limits: layer.limits,
            budget: layer.budget,
        }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone, Sch> Clone for VerifySignature<S, Sch> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            scheme: self.scheme.clone(),
            limits: self.limits,
            budget: self.budget.clone(),
        }
    }
}

impl<S, Sch, ReqBody, ResBody> Service<Request<ReqBody>> for VerifySignature<S, Sch>
where
    S: Service<Request<VerifiedBody>, Response = Response<ResBody>> + Clone,
    Sch: Scheme,
    ReqBody: Body,
    ReqBody::Data: Buf,
    ReqBody::Error: std::fmt::Display,
    ResBody: ProblemBody,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S, S::Future, Sch::Verifier, ReqBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        // The answer's form (gRPC or HTTP) is read from the request's headers only for a
        // rejection: here, or from the headers the future keeps until the body is verified.
        let form = || ResponseForm::of(request.headers());
        // Headers first: a forged flood without a fresh, well-formed header costs no body read.
        let verifier = match self.scheme.begin(request.headers(), SystemTime::now()) {
            Ok(verifier) => verifier,
            Err(error) => return ResponseFuture::rejected(error.to_problem(), form()),
        };

        let declared = request.body().size_hint().lower();
        if declared > self.limits.max_body_size as u64 {
            return ResponseFuture::rejected(too_large(self.limits.max_body_size), form());
        }
        // Nothing is reserved for a declared length: until the MAC is known, a request may be
        // forged, and a forged header with a fresh `t` costs nothing to make. The budget is
        // taken as bytes arrive, so holding it costs an attacker the bytes themselves.
        let permit = self.budget.permit();

        // Take the service that was driven to readiness; leave a fresh clone in its place.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        ResponseFuture::reading(request, declared, inner, verifier, permit, self.limits)
    }
}

pub(super) fn too_large(max: usize) -> Problem {
    Problem::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        ProblemCode::PAYLOAD_TOO_LARGE,
    )
    .with_detail(format!("the body is larger than the {max} byte limit"))
}

pub(super) fn budget_exhausted() -> Problem {
    Problem::new(
        StatusCode::SERVICE_UNAVAILABLE,
        ProblemCode::BUFFER_BUDGET_EXHAUSTED,
    )
    .with_detail("too many bodies are being received at once; retry later")
    .with_retry_after(super::BUDGET_RETRY_AFTER)
}
