//! Stores on a Redis or Valkey server, shared by several gateway instances (feature `redis`):
//! rate limits, failure blocks and deduplication.
//!
//! Make one [`RedisStore`] per server (a cheap-to-clone handle on one multiplexed
//! connection), then the stores of the layers from it:
//!
//! | store | made by | implements | for |
//! |---|---|---|---|
//! | [`RedisRateLimitStore`] | [`RedisStore::rate_limit_store`] | [`RateLimitStore`] | one limiter, e.g. the verified-traffic limit |
//! | the pair `(requests, failures)` | [`RedisStore::client_stores`] | [`RateLimitStore`] | the per-client limiter and the failure limiter together |
//! | [`RedisDedupeStore`] | [`RedisStore::dedupe_store`] | [`DedupeStore`] | deduplication |
//!
//! ```no_run
//! use std::{net::IpAddr, num::NonZeroU32, time::Duration};
//!
//! use hookgate::client_ip::ClientIp;
//! use hookgate::rate_limit::{FailureLimitLayer, FailurePolicy, GlobalKey, Rate, RateLimitLayer};
//! use hookgate::store::redis::RedisStore;
//! use tower::ServiceBuilder;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let per_minute = |n| Rate::per_minute(NonZeroU32::new(n).unwrap());
//! // Does not connect (nor fail) here: the connection is made on first use.
//! let redis = RedisStore::new("redis://10.0.0.5:6379/0")?
//!     .prefix("hookgate-prod")
//!     .timeout(Duration::from_millis(200))
//!     .observe(|call| {
//!         // e.g. a counter per (call.op, call.outcome.as_str()) and a latency histogram
//!         let _ = (call.op, call.outcome, call.elapsed);
//!     });
//!
//! // One hash per client for both limiters; the failure limiter goes inside the per-client
//! // limiter, so that it takes the block read by the request's rate check.
//! let (requests, failures) = redis.client_stores::<IpAddr>("clients", per_minute(120), per_minute(10));
//! let verified = redis.rate_limit_store::<()>("verified", per_minute(6_000));
//! let _dedupe = redis.dedupe_store("events");
//!
//! let onion = ServiceBuilder::new()
//!     .layer(RateLimitLayer::per_client_with_store(requests, ClientIp::peer()))
//!     .layer(FailureLimitLayer::with_store(
//!         failures,
//!         FailurePolicy::block_for(Duration::from_secs(600))?,
//!         ClientIp::peer(),
//!     ))
//!     // .layer(VerifySignatureLayer::new(scheme))
//!     .layer(RateLimitLayer::verified_with_store(verified, GlobalKey));
//! # let _ = onion;
//! # Ok(())
//! # }
//! ```
//!
//! A health check can call [`RedisStore::ping`], which answers the round-trip time.
//!
//! # Key layout
//!
//! Every key is `{prefix}:{name}:{key}`: the handle's [`prefix`](RedisStore::prefix) (default
//! `hookgate`), the name given to the store, and the key's text ([`StoreKey`]: an IP address,
//! `global` for `()`, ...; the event key for deduplication). A key text longer than
//! [`MAX_KEY_TEXT`] (200) bytes is replaced by `sha256:` and its hex SHA-256.
//!
//! | key | type | fields or value | expires |
//! |---|---|---|---|
//! | a [`rate_limit_store`](RedisStore::rate_limit_store)'s | hash | `r`: the TAT; `b`: the block's end (as a failure limiter's store) | once every time in it is past |
//! | a [`client_stores`](RedisStore::client_stores) pair's, **one per client** | hash | `r`: the requests' TAT; `f`: the failures' TAT; `b`: the block's end | once every time in it is past |
//! | a [`dedupe_store`](RedisStore::dedupe_store)'s, one per event | string | `c:<token>` while claimed; `d` once done | with the lease; after the keep time |
//!
//! Times in hashes are decimal integers of nanoseconds since the Unix epoch, on the server's
//! clock.
//!
//! # One round trip per decision
//!
//! Every call of every store is **one `EVALSHA`** of a Lua script on **one key**, declared as
//! such (`KEYS[1]`: the scripts would run unchanged on a Redis Cluster, each key in one slot;
//! the handle itself connects to one server): the script reads and updates the key atomically,
//! so two instances never interleave a read and a write. (After a server restart
//! the first call of each script loads it again: `NOSCRIPT`, `SCRIPT LOAD`, `EVALSHA`.)
//!
//! The per-client pair fuses the two limiters in front of verification: the requests store's
//! check reads the client's block in the same script as it takes the rate decision, and
//! passes it on with the decision ([`Decision::with_block`]); the failure limiter on the
//! failures store ([`RateLimitStore::block_list`] names the same list) takes it instead of
//! asking Redis. A request costs one round trip for both limiters; a failed verification one
//! more (counting it).
//!
//! # Time
//!
//! The scripts read the server's `TIME` (microseconds): instances need no synchronized clocks,
//! and agree on every key. Answers are durations. The GCRA arithmetic is exactly the one
//! documented on [`RateLimitStore`], the in-memory store's: same remaining counts, resets and
//! retry-afters, to the nanosecond (times are kept as whole seconds and nanoseconds, exact in
//! Lua's numbers; the divisions are done in Rust).
//!
//! # TTLs
//!
//! Every script that writes a key sets its expiry (`PEXPIRE`, `PX`): a limiter key disappears
//! once it is as good as a key never seen (its bursts refilled, its block over), computed from
//! all its fields, so a write never shortens a block; a claim expires with its lease, a done
//! mark after its keep time. Nothing needs cleaning up, and the server's memory follows the
//! active clients and events.
//!
//! # Timeouts, reconnection, and an unreachable server
//!
//! - Every call has an **outer timeout** ([`RedisStore::timeout`], default 250 ms), connecting
//!   included: a stuck connect or a stalled server fails the call, it never stalls the
//!   delivery. The connection's own response timeout is the same, and a connection attempt
//!   gives up after [`RedisStore::connect_timeout`] (default 1 s).
//! - [`RedisStore::new`] does not connect: the gateway starts while Redis is down. The
//!   connection is made on first use, and remade in the background after it breaks (retried
//!   with a backoff of 50 ms doubling up to 1 s); calls meanwhile fail fast or at their
//!   timeout, and succeed again once the server is back, on the same handle.
//! - A call that cannot be answered returns a [`StoreError`]; **the layers' policies decide**
//!   what a request gets then: the rate limiter fails open or closed as
//!   [`OnStoreError`](crate::rate_limit::OnStoreError) says, the failure limiter fails open,
//!   deduplication answers a retryable `503`.
//! - [`RedisStore::observe`] sees every call (operation, ok, error or timeout, duration), for
//!   metrics.
//!
//! # Servers
//!
//! Plain commands and Lua scripts only (`EVALSHA`, `HGETALL`, `HSET`, `PEXPIRE`, `GET`,
//! `SET PX`, `PTTL`, `DEL`, `TIME`), no modules: Redis 5 or later (scripts replicated by their
//! effects, as `TIME` needs), and Valkey. TLS (`rediss://`) is not supported; see
//! [`RedisStore::new`]. The URL, which may hold a password, is never logged, and the handle's
//! `Debug` leaves credentials out.
//!
//! [`RateLimitStore`]: crate::rate_limit::RateLimitStore
//! [`RateLimitStore::block_list`]: crate::rate_limit::RateLimitStore::block_list
//! [`Decision::with_block`]: crate::rate_limit::Decision::with_block
//! [`DedupeStore`]: crate::dedupe::DedupeStore
//! [`StoreError`]: crate::store::StoreError

mod connection;
mod dedupe;
mod key;
mod rate;

pub use self::{
    connection::{
        CallOutcome, RedisStore, StoreCall, StoreFuture, DEFAULT_CONNECT_TIMEOUT, DEFAULT_PREFIX,
        DEFAULT_TIMEOUT,
    },
    dedupe::RedisDedupeStore,
    key::{StoreKey, MAX_KEY_TEXT},
    rate::RedisRateLimitStore,
};
