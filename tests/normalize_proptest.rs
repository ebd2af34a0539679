//! Property: whatever the inner service does, the answer is a success, a retried status or the
//! handler's own permanent 4xx, and it agrees with the contract value the layer was built with.
#![cfg(feature = "normalize")]

use std::{
    convert::Infallible,
    future::Future,
    pin::Pin,
    sync::Once,
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use hookgate::{
    body::ResponseBody,
    normalize::{NormalizeCause, NormalizeStatusLayer, Normalized, SenderAction, SenderContract},
    problem::{Problem, ProblemCode},
};
use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body_util::Full;
use proptest::prelude::*;
use tower::{BoxError, Service, ServiceBuilder, ServiceExt};

const PLANNED_PANIC: &str = "planned panic";

/// What the inner service does.
#[derive(Clone, Debug)]
enum Outcome {
    Answer {
        status: u16,
        retry_after: Option<u16>,
        grpc: bool,
        hookgate_problem: bool,
    },
    Elapsed,
    Overloaded,
    OtherError,
    PanicInCall,
    PanicInFuture,
    ReadyError,
    /// Never answers: the layer's handler deadline must.
    Hang,
}

fn outcome() -> impl Strategy<Value = Outcome> {
    prop_oneof![
        6 => (100u16..=999, proptest::option::of(0u16..=3600), proptest::bool::weighted(0.1), proptest::bool::weighted(0.1))
            .prop_map(|(status, retry_after, grpc, hookgate_problem)| Outcome::Answer { status, retry_after, grpc, hookgate_problem }),
        // Statuses that matter most, more often.
        6 => (prop::sample::select(vec![200u16, 201, 204, 301, 302, 400, 404, 408, 410, 425, 429, 500, 502, 503, 504]), proptest::option::of(0u16..=3600))
            .prop_map(|(status, retry_after)| Outcome::Answer { status, retry_after, grpc: false, hookgate_problem: false }),
        1 => Just(Outcome::Elapsed),
        1 => Just(Outcome::Overloaded),
        1 => Just(Outcome::OtherError),
        1 => Just(Outcome::PanicInCall),
        1 => Just(Outcome::PanicInFuture),
        1 => Just(Outcome::ReadyError),
        1 => Just(Outcome::Hang),
    ]
}

fn action() -> impl Strategy<Value = SenderAction> {
    prop_oneof![
        Just(SenderAction::Success),
        Just(SenderAction::Retry),
        Just(SenderAction::Throttle),
        Just(SenderAction::Drop),
        Just(SenderAction::Disable),
    ]
}

/// The two profiles, and random valid contracts: random actions on random statuses, with the
/// layer's own answers (200, 503, 500) kept valid.
fn contract() -> impl Strategy<Value = SenderContract> {
    let random = proptest::collection::vec((100u16..=599, action()), 0..60).prop_map(|rules| {
        let mut builder = SenderContract::builder("random");
        for (status, action) in rules {
            builder = builder.on([status], action);
        }
        builder
            .on([200], SenderAction::Success)
            .on([500, 503], SenderAction::Retry)
            .build()
            .expect("200 success and 500/503 retried make a valid contract")
    });
    prop_oneof![
        Just(SenderContract::elevenlabs()),
        Just(SenderContract::standard_webhooks()),
        random,
    ]
}

fn inner_response(
    status: u16,
    retry_after: Option<u16>,
    grpc: bool,
    problem: bool,
) -> Response<Full<Bytes>> {
    let status = StatusCode::from_u16(status).unwrap();
    let mut response = if problem {
        // An inner hookgate layer's own answer (e.g. the rate limiter's 429).
        let (parts, _) = Problem::new(status, ProblemCode::RATE_LIMITED)
            .into_response::<Full<Bytes>>()
            .into_parts();
        Response::from_parts(parts, Full::new(Bytes::from_static(b"{}")))
    } else {
        let mut r = Response::new(Full::new(Bytes::from_static(b"inner")));
        *r.status_mut() = status;
        r
    };
    if let Some(secs) = retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    if grpc {
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        );
    }
    response
}

/// An inner service playing `outcome`.
#[derive(Clone, Debug)]
struct Scripted(Outcome);

impl Service<Request<Full<Bytes>>> for Scripted {
    type Response = Response<Full<Bytes>>;
    type Error = BoxError;
    type Future = ScriptedFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        match self.0 {
            Outcome::ReadyError => Poll::Ready(Err("store unreachable".into())),
            _ => Poll::Ready(Ok(())),
        }
    }

    fn call(&mut self, _req: Request<Full<Bytes>>) -> ScriptedFuture {
        if let Outcome::PanicInCall = self.0 {
            panic!("{PLANNED_PANIC} in call");
        }
        ScriptedFuture(Some(self.0.clone()))
    }
}

#[derive(Debug)]
struct ScriptedFuture(Option<Outcome>);

impl Future for ScriptedFuture {
    type Output = Result<Response<Full<Bytes>>, BoxError>;

    fn poll(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Some(Outcome::Hang) = self.0 {
            return Poll::Pending;
        }
        Poll::Ready(match self.0.take().expect("polled once") {
            Outcome::Answer {
                status,
                retry_after,
                grpc,
                hookgate_problem,
            } => Ok(inner_response(status, retry_after, grpc, hookgate_problem)),
            Outcome::Elapsed => Err(Box::new(tower::timeout::error::Elapsed::new())),
            Outcome::Overloaded => Err(Box::new(tower::load_shed::error::Overloaded::new())),
            Outcome::OtherError => Err("secret=hunter2".into()),
            Outcome::PanicInFuture => panic!("{PLANNED_PANIC} in the future"),
            Outcome::PanicInCall | Outcome::ReadyError | Outcome::Hang => {
                unreachable!("never called")
            }
        })
    }
}

/// Silences the planned panics only; every other panic (a failing property) is reported.
fn quiet_planned_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let planned = info
                .payload()
                .downcast_ref::<String>()
                .is_some_and(|m| m.starts_with(PLANNED_PANIC));
            if !planned {
                default(info);
            }
        }));
    });
}

fn run(contract: &SenderContract, outcome: &Outcome) -> Response<ResponseBody<Full<Bytes>>> {
    // The handler's body in the adapter, so an answer tells the handler's body from the layer's.
    let service = ServiceBuilder::new()
        .layer(
            NormalizeStatusLayer::new(contract.clone()).handler_deadline(Duration::from_secs(10)),
        )
        .map_response(|response: Response<Full<Bytes>>| response.map(ResponseBody::new))
        .service(Scripted(outcome.clone()));
    // A paused clock: the deadline fires without a real wait.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    // Bounded in virtual time too: a layer that never answers fails instead of hanging.
    let answer: Result<_, Infallible> = rt
        .block_on(async {
            tokio::time::timeout(
                Duration::from_secs(3600),
                service.oneshot(Request::new(Full::default())),
            )
            .await
        })
        .expect("the layer answers within an hour of virtual time");
    answer.unwrap()
}

/// What the inner service meant.
#[derive(Debug, PartialEq)]
enum Intent {
    Success,
    RetryLater,
    Reject,
    Untouchable,
}

fn intent(outcome: &Outcome) -> Intent {
    match *outcome {
        Outcome::Answer { grpc: true, .. } => Intent::Untouchable,
        Outcome::Answer {
            status: 400..=499,
            hookgate_problem: true,
            ..
        } => Intent::Untouchable,
        Outcome::Answer {
            status: 200..=299, ..
        } => Intent::Success,
        Outcome::Answer {
            status: 408 | 425 | 429,
            ..
        } => Intent::RetryLater,
        Outcome::Answer {
            status: 400..=499, ..
        } => Intent::Reject,
        _ => Intent::RetryLater,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn every_outcome_becomes_an_answer_the_contract_reads_as_meant(
        contract in contract(),
        outcome in outcome(),
    ) {
        quiet_planned_panics();
        let response = run(&contract, &outcome);
        let answer = response.status();
        let action = contract.action_for(answer);
        let normalized = response.extensions().get::<Normalized>().copied();
        let inner_status = match outcome {
            Outcome::Answer { status, .. } => Some(StatusCode::from_u16(status).unwrap()),
            _ => None,
        };

        if let Outcome::Hang = outcome {
            prop_assert_eq!(normalized.map(|n| n.cause), Some(NormalizeCause::Deadline));
        }

        match intent(&outcome) {
            Intent::Untouchable => {
                prop_assert_eq!(Some(answer), inner_status);
                prop_assert!(normalized.is_none());
            }
            Intent::Success => {
                prop_assert_eq!(action, SenderAction::Success);
                let inner = inner_status.unwrap();
                if contract.action_for(inner) == SenderAction::Success {
                    prop_assert_eq!(answer, inner);
                    prop_assert!(normalized.is_none());
                } else {
                    prop_assert_eq!(answer, contract.success_status());
                    prop_assert_eq!(normalized.map(|n| n.cause), Some(NormalizeCause::SuccessStatus));
                }
                prop_assert!(!response.body().is_problem(), "a success keeps the handler's body");
            }
            Intent::Reject => {
                prop_assert_eq!(Some(answer), inner_status, "the handler's own 4xx is kept");
                prop_assert!(normalized.is_none());
            }
            Intent::RetryLater => {
                prop_assert!(action.is_retried(), "{:?} answered {} which {} reads as {:?}", outcome, answer, contract.name(), action);
                prop_assert!((100..=599).contains(&answer.as_u16()));
                match normalized {
                    None => prop_assert_eq!(Some(answer), inner_status, "unchanged only if kept"),
                    Some(n) => {
                        prop_assert_eq!(n.original, inner_status);
                        prop_assert!(response.body().is_problem());
                        prop_assert_eq!(&response.headers()[header::CONTENT_TYPE], "application/problem+json");
                        let expected = match n.cause {
                            NormalizeCause::Timeout | NormalizeCause::Overloaded
                            | NormalizeCause::Deadline | NormalizeCause::RetryLaterStatus => contract.retry_later_status(),
                            _ => contract.failure_status(),
                        };
                        prop_assert_eq!(answer, expected);
                        if answer == contract.retry_later_status() && n.cause != NormalizeCause::Error {
                            prop_assert!(response.headers().contains_key(header::RETRY_AFTER));
                        }
                    }
                }
            }
        }

        // The ElevenLabs wording of the promise: 200, a retried status, or a permanent 4xx.
        if contract == SenderContract::elevenlabs() && intent(&outcome) != Intent::Untouchable {
            prop_assert!(
                answer == StatusCode::OK
                    || action.is_retried()
                    || (answer.is_client_error() && action == SenderAction::Drop)
            );
        }
    }
}
