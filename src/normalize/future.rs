//! [`ResponseFuture`], and the rewriting it applies to the inner service's outcome: an answer
//! the sender already reads the way the handler meant it passes on, every other outcome becomes
//! the contract's answer.

use std::{
    convert::Infallible,
    fmt,
    future::Future,
    panic::{catch_unwind, AssertUnwindSafe},
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use http::{header, HeaderValue, Response, StatusCode};
use pin_project_lite::pin_project;
use tokio::time::Sleep;

use super::{
    cause::{NormalizeCause, Normalized},
    contract::SenderAction,
    layer::Settings,
    BoxError,
};
use crate::{
    body::ProblemBody,
    problem::{is_grpc, Problem, ProblemCode, ResponseForm},
};

pin_project! {
    /// Response future of [`NormalizeStatus`](super::NormalizeStatus): resolves to the
    /// normalized response, never to an error.
    pub struct ResponseFuture<F> {
        #[pin]
        kind: Kind<F>,
        #[pin]
        deadline: Option<Sleep>,
        settings: Arc<Settings>,
        form: ResponseForm,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Inner { #[pin] future: F },
        Failed { cause: Option<NormalizeCause> },
    }
}

impl<F> ResponseFuture<F> {
    /// The inner service's future, under the layer's handler deadline if it has one.
    pub(super) fn inner(future: F, settings: Arc<Settings>, form: ResponseForm) -> Self {
        Self {
            kind: Kind::Inner { future },
            deadline: settings.handler_deadline.map(tokio::time::sleep),
            settings,
            form,
        }
    }

    /// The answer to a failure the service caught before there was an inner future.
    pub(super) fn failed(
        cause: NormalizeCause,
        settings: Arc<Settings>,
        form: ResponseForm,
    ) -> Self {
        Self {
            kind: Kind::Failed { cause: Some(cause) },
            deadline: None,
            settings,
            form,
        }
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.kind {
            Kind::Inner { .. } => "inner",
            Kind::Failed { .. } => "failed",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .field("deadline", &self.deadline.as_ref().map(Sleep::deadline))
            .finish()
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    E: Into<BoxError>,
    B: ProblemBody,
{
    type Output = Result<Response<B>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let settings: &Settings = this.settings;
        let form = *this.form;
        let future = match this.kind.project() {
            KindProj::Inner { future } => future,
            KindProj::Failed { cause } => {
                let cause = cause
                    .take()
                    .expect("ResponseFuture polled after completion");
                return Poll::Ready(Ok(failure_response(cause, None, None, settings, form)));
            }
        };
        match catch_unwind(AssertUnwindSafe(|| future.poll(cx))) {
            Ok(Poll::Ready(Ok(response))) => Poll::Ready(Ok(normalize(response, settings, form))),
            Ok(Poll::Ready(Err(error))) => {
                let cause = NormalizeCause::of_error(&error.into(), "response future");
                Poll::Ready(Ok(failure_response(cause, None, None, settings, form)))
            }
            Err(payload) => {
                let cause = NormalizeCause::of_panic(payload, "response future");
                Poll::Ready(Ok(failure_response(cause, None, None, settings, form)))
            }
            Ok(Poll::Pending) => match this.deadline.as_pin_mut().map(|d| d.poll(cx)) {
                Some(Poll::Ready(())) => {
                    tracing::warn!(
                        deadline = ?settings.handler_deadline.unwrap_or_default(),
                        "handler did not answer before the deadline; answered 503"
                    );
                    Poll::Ready(Ok(failure_response(
                        NormalizeCause::Deadline,
                        None,
                        None,
                        settings,
                        form,
                    )))
                }
                _ => Poll::Pending,
            },
        }
    }
}

/// Applies the contract to a response of the inner service.
fn normalize<B: ProblemBody>(
    response: Response<B>,
    settings: &Settings,
    form: ResponseForm,
) -> Response<B> {
    let contract = &settings.contract;
    let status = response.status();
    let code = status.as_u16();
    // The fast path: the sender already reads the answer the way the handler meant it.
    let kept = match code {
        // A success, where the sender counts it as one.
        200..=299 => contract.action_for(status) == SenderAction::Success,
        // "Not now" and "something broke", where the sender retries them.
        408 | 425 | 429 | 500..=599 => contract.action_for(status).is_retried(),
        // Any other 4xx: the handler's own, deliberate rejection.
        400..=499 => true,
        // Informational statuses, redirects and statuses outside 100-599: never.
        _ => false,
    };
    if kept || is_grpc(response.headers()) {
        return response;
    }
    match code {
        // A hookgate layer's own "retry later" (a flood limit, a blocked client, a slow body)
        // under a contract that drops this status: the same problem, answered retryably. Such
        // an answer can reach a genuine delivery, which must never be dropped for it.
        408 | 425 | 429 if response.extensions().get::<Problem>().is_some() => {
            retry_later_rejection(response, settings)
        }
        200..=299 => {
            let success_status = contract.success_status();
            tracing::debug!(
                original = code,
                answer = success_status.as_u16(),
                "success status rewritten for the sender"
            );
            let mut response = response;
            *response.status_mut() = success_status;
            response.extensions_mut().insert(Normalized {
                original: Some(status),
                cause: NormalizeCause::SuccessStatus,
            });
            response
        }
        300..=399 => failure_response(NormalizeCause::Redirect, Some(status), None, settings, form),
        408 | 425 | 429 => {
            let retry_after = response.headers().get(header::RETRY_AFTER).cloned();
            failure_response(
                NormalizeCause::RetryLaterStatus,
                Some(status),
                retry_after,
                settings,
                form,
            )
        }
        _ => failure_response(
            NormalizeCause::UnexpectedStatus,
            Some(status),
            None,
            settings,
            form,
        ),
    }
}

/// A hookgate layer's retry-later 4xx, answered with the contract's retry-later status: the same
/// problem code, detail and headers (`Retry-After`, rate-limit fields), only the status moved.
fn retry_later_rejection<B: ProblemBody>(
    response: Response<B>,
    settings: &Settings,
) -> Response<B> {
    let (mut parts, body) = response.into_parts();
    let Some(problem) = parts.extensions.remove::<Problem>() else {
        return Response::from_parts(parts, body);
    };
    let original = parts.status;
    let mut problem = problem.with_status(settings.contract.retry_later_status());
    if problem.retry_after().is_none() {
        // A retry-later answer says when: the layer's own wait where the problem named none.
        problem = problem.with_retry_after(settings.retry_after);
        if let Some(secs) = problem.retry_after_secs() {
            parts
                .headers
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
    }
    parts.status = problem.status();
    parts.extensions.insert(Normalized {
        original: Some(original),
        cause: NormalizeCause::RetryLaterStatus,
    });
    tracing::debug!(
        original = original.as_u16(),
        answer = parts.status.as_u16(),
        code = problem.code().as_str(),
        "retry-later rejection moved to the contract's retry-later status"
    );
    let body = B::from_problem(problem.to_json());
    // Still the problem this answer is, for a layer further out.
    parts.extensions.insert(problem);
    Response::from_parts(parts, body)
}

/// The problem+json answer for `cause`, with the [`Normalized`] extension.
fn failure_response<B: ProblemBody>(
    cause: NormalizeCause,
    original: Option<StatusCode>,
    inner_retry_after: Option<HeaderValue>,
    settings: &Settings,
    form: ResponseForm,
) -> Response<B> {
    let retry_later = settings.contract.retry_later_status();
    let failure = settings.contract.failure_status();
    let (status, code) = match cause {
        NormalizeCause::Timeout | NormalizeCause::Deadline => {
            (retry_later, ProblemCode::HANDLER_TIMEOUT)
        }
        NormalizeCause::Overloaded => (retry_later, ProblemCode::HANDLER_OVERLOADED),
        NormalizeCause::RetryLaterStatus => (retry_later, ProblemCode::HANDLER_THROTTLED),
        NormalizeCause::Redirect => (failure, ProblemCode::HANDLER_REDIRECTED),
        NormalizeCause::Panic => (failure, ProblemCode::HANDLER_PANICKED),
        NormalizeCause::Error
        | NormalizeCause::UnexpectedStatus
        | NormalizeCause::SuccessStatus => (failure, ProblemCode::HANDLER_ERROR),
    };
    let mut problem = Problem::new(status, code).with_detail(cause.detail());
    // A `Retry-After` the inner service set in delta-seconds goes into the body too; an
    // HTTP-date is copied to the header as it is; anything else is no wait at all, and the
    // layer's own applies.
    let mut verbatim_retry_after = None;
    let inner = inner_retry_after
        .as_ref()
        .and_then(|v| v.to_str().ok())
        .map(str::trim);
    if let Some(secs) = inner.and_then(|text| text.parse::<u64>().ok()) {
        problem = problem.with_retry_after(Duration::from_secs(secs));
    } else if inner.is_some_and(|text| httpdate::parse_http_date(text).is_ok()) {
        verbatim_retry_after = inner_retry_after;
    } else if cause.is_retry_later() {
        problem = problem.with_retry_after(settings.retry_after);
    }
    let mut response = problem.into_response_for(form);
    if let Some(value) = verbatim_retry_after {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
        .extensions_mut()
        .insert(Normalized { original, cause });
    if let Some(original) = original {
        tracing::debug!(
            original = original.as_u16(),
            answer = status.as_u16(),
            cause = cause.as_str(),
            "status rewritten for the sender"
        );
    }
    response
}
