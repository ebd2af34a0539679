//! The problem codes only the gateway answers with (the layers' own are on
//! [`ProblemCode`]): routing, destinations and connections. Stable strings, like the layers'.

use crate::problem::ProblemCode;

/// 404: nothing is received at this path.
pub const NOT_FOUND: ProblemCode = ProblemCode::new("not_found", "Nothing is received here");
/// 405: deliveries are POSTed.
pub const METHOD_NOT_ALLOWED: ProblemCode =
    ProblemCode::new("method_not_allowed", "Method not allowed");
/// 503: the sink could not store the event (disk full, permissions); retry later.
pub const SINK_UNAVAILABLE: ProblemCode =
    ProblemCode::new("sink_unavailable", "Event could not be stored");
/// 502: the upstream reset the connection or answered with something that is not HTTP.
pub const UPSTREAM_FAILED: ProblemCode = ProblemCode::new("upstream_failed", "Upstream failed");
/// 503: the upstream refused the connection or could not be reached.
pub const UPSTREAM_UNAVAILABLE: ProblemCode =
    ProblemCode::new("upstream_unavailable", "Upstream unavailable");
/// 504: the upstream did not answer in time.
pub const UPSTREAM_TIMEOUT: ProblemCode =
    ProblemCode::new("upstream_timeout", "Upstream did not answer in time");
/// 503: the gateway holds as many connections as it may (in all, or from this client); the
/// connection is closed after this answer.
pub const TOO_MANY_CONNECTIONS: ProblemCode =
    ProblemCode::new("too_many_connections", "Too many connections");
