//! [`RedisStore`]: the connection every Redis-backed store shares, its settings, and the one
//! place a call to the server is timed out, observed and turned into a [`StoreError`].

use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::{Arc, OnceLock},
    time::{Duration, Instant},
};

use ::redis::{
    aio::{ConnectionManager, ConnectionManagerConfig},
    Client, FromRedisValue, RedisError, Script, ToRedisArgs,
};

use crate::{store::StoreError, ConfigError};

/// The future of every call to a Redis-backed store: boxed (the call crosses the network
/// anyway), `Send` and `'static`.
pub type StoreFuture<T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'static>>;

/// The key namespace of a [`RedisStore`] unless [`prefix`](RedisStore::prefix) sets another.
pub const DEFAULT_PREFIX: &str = "hookgate";

/// How long a call may take unless [`timeout`](RedisStore::timeout) says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(250);

/// How long one connection attempt may take unless
/// [`connect_timeout`](RedisStore::connect_timeout) says otherwise.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// How often a broken connection is retried in one reconnection, with delays from
/// [`RECONNECT_MIN_DELAY`] doubling up to [`RECONNECT_MAX_DELAY`] (with jitter). A reconnection
/// that fails throughout fails the calls waiting on it; the next call starts another.
const RECONNECT_RETRIES: usize = 6;
const RECONNECT_MIN_DELAY: Duration = Duration::from_millis(50);
/// Bounds how long the store stays down once the server is back.
const RECONNECT_MAX_DELAY: Duration = Duration::from_secs(1);

/// The shortest timeout a handle takes: a zero timeout would fail every call.
const MIN_TIMEOUT: Duration = Duration::from_millis(1);

/// One call of a Redis-backed store, as reported to an observer
/// ([`RedisStore::observe`]): for counting calls, errors and timeouts, and timing them, per
/// operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoreCall {
    /// What was called: `rate.check`, `rate.record_failure`, `rate.blocked` (a store made by
    /// [`RedisStore::rate_limit_store`]); `client.check`, `client.record_failure`,
    /// `client.blocked` (the pair made by [`RedisStore::client_stores`]); `dedupe.claim`,
    /// `dedupe.complete`, `dedupe.release`; `ping`.
    pub op: &'static str,
    /// How it ended.
    pub outcome: CallOutcome,
    /// How long it took, until its answer, error or timeout.
    pub elapsed: Duration,
}

/// How a [`StoreCall`] ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CallOutcome {
    /// The server answered.
    Ok,
    /// The call failed: no connection, a server error, an answer the store could not read.
    Error,
    /// No answer within the handle's [`timeout`](RedisStore::timeout).
    Timeout,
}

impl CallOutcome {
    /// `ok`, `error` or `timeout` (e.g. a metrics label).
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Error => "error",
            Self::Timeout => "timeout",
        }
    }
}

type Observer = Arc<dyn Fn(StoreCall) + Send + Sync>;

/// A handle on one Redis (or Valkey) server, shared by the stores made from it
/// ([`rate_limit_store`](RedisStore::rate_limit_store),
/// [`client_stores`](RedisStore::client_stores), [`dedupe_store`](RedisStore::dedupe_store)).
/// Cheap to clone: clones share one connection.
///
/// See the [module docs](super) for the key layout, timeouts, reconnection and what happens
/// while the server is down.
///
/// - **No connection at construction.** [`new`](RedisStore::new) only checks the URL: it
///   neither blocks nor fails when the server is down. The connection is made on the first
///   call (in the background, so a call that times out does not stall it) and remade after
///   every loss, while calls fail with a [`StoreError`] within their timeout.
/// - **One multiplexed connection** (redis-rs's `ConnectionManager`): concurrent calls are
///   pipelined on it, none waits for a connection of its own.
/// - **Settings** ([`prefix`](RedisStore::prefix), [`timeout`](RedisStore::timeout),
///   [`connect_timeout`](RedisStore::connect_timeout), [`observe`](RedisStore::observe)) take
///   and return the handle: set them before making stores. A handle whose timeouts change gets
///   a connection of its own.
/// - **`Debug` never shows credentials**: only the URL's scheme, host, port and database (or
///   socket path), with `***@` where a user or password was given.
#[derive(Clone)]
pub struct RedisStore {
    shared: Arc<Shared>,
}

struct Shared {
    client: Client,
    /// The URL without credentials or query, for `Debug`.
    server: String,
    prefix: Arc<str>,
    timeout: Duration,
    connect_timeout: Duration,
    observer: Option<Observer>,
    /// Made on the first call, inside the runtime that polls it.
    manager: OnceLock<Result<ConnectionManager, StoreError>>,
}

impl RedisStore {
    /// A handle on the server at `url`: `redis://[[user]:password@]host[:port][/db]` (also
    /// `valkey://`), or a Unix socket, `redis+unix:///path/to/socket` (also `unix://`).
    ///
    /// Does not connect: see the type docs. Needs no runtime; the stores' calls run on tokio.
    ///
    /// # Errors
    ///
    /// A URL that does not parse, or a TLS URL (`rediss://`, `valkeys://`): this feature
    /// carries no TLS client (it would add TLS dependencies to every build); reach the server
    /// over a private network, a Unix socket, or a local TLS tunnel. The error never holds the
    /// URL.
    pub fn new(url: &str) -> Result<Self, ConfigError> {
        let scheme = url.split_once("://").map_or("", |(scheme, _)| scheme);
        if scheme.eq_ignore_ascii_case("rediss") || scheme.eq_ignore_ascii_case("valkeys") {
            return Err(ConfigError::new(
                "redis: TLS URLs (rediss://) are not supported: use redis:// over a private \
                 network, a Unix socket or a local TLS tunnel",
            ));
        }
        let client = Client::open(url).map_err(|_| {
            ConfigError::new(
                "redis: the URL does not parse; expected redis://[[user]:password@]host[:port][/db] \
                 or redis+unix:///path",
            )
        })?;
        Ok(Self {
            shared: Arc::new(Shared {
                client,
                server: redact(url),
                prefix: Arc::from(DEFAULT_PREFIX),
                timeout: DEFAULT_TIMEOUT,
                connect_timeout: DEFAULT_CONNECT_TIMEOUT,
                observer: None,
                manager: OnceLock::new(),
            }),
        })
    }

    /// The namespace of every key the stores made afterwards write (default
    /// [`DEFAULT_PREFIX`], `hookgate`): keys are `{prefix}:{store name}:{key}`. Give instances
    /// that must share state the same prefix, and unrelated deployments on one server
    /// different ones.
    #[must_use]
    pub fn prefix(self, prefix: impl Into<Arc<str>>) -> Self {
        let prefix = prefix.into();
        self.update(false, |shared| shared.prefix = prefix)
    }

    /// The most a call may take, connecting included (default [`DEFAULT_TIMEOUT`], 250 ms; at
    /// least 1 ms): past it the call fails with a [`StoreError`] and the layer's failure
    /// policy decides. Also the connection's own response timeout, so a stalled server does
    /// not pile up requests either.
    #[must_use]
    pub fn timeout(self, timeout: Duration) -> Self {
        self.update(true, |shared| shared.timeout = timeout.max(MIN_TIMEOUT))
    }

    /// The most one connection attempt may take, TCP connect and handshake (default
    /// [`DEFAULT_CONNECT_TIMEOUT`], 1 s; at least 1 ms). Attempts run in the background: calls
    /// meanwhile fail after their own [`timeout`](RedisStore::timeout).
    #[must_use]
    pub fn connect_timeout(self, timeout: Duration) -> Self {
        self.update(true, |shared| {
            shared.connect_timeout = timeout.max(MIN_TIMEOUT);
        })
    }

    /// Calls `observer` after every call of the stores made afterwards (and of
    /// [`ping`](RedisStore::ping)), with its operation, outcome and duration: e.g. to count
    /// calls, errors and timeouts and record latency per operation. It runs on the calling
    /// task: keep it short and never block in it. (A call whose future is dropped before it
    /// ends, e.g. with the request it served, is not reported.)
    #[must_use]
    pub fn observe(self, observer: impl Fn(StoreCall) + Send + Sync + 'static) -> Self {
        let observer: Observer = Arc::new(observer);
        self.update(false, |shared| shared.observer = Some(observer))
    }

    /// Sends `PING` and answers how long the server took to answer (connecting included, if
    /// the handle was not connected): for health checks. Fails like every call: within the
    /// [`timeout`](RedisStore::timeout).
    pub fn ping(&self) -> impl Future<Output = Result<Duration, StoreError>> + Send + 'static {
        self.call("ping", |mut manager| async move {
            let start = Instant::now();
            ::redis::cmd("PING")
                .query_async::<()>(&mut manager)
                .await
                .map_err(|error| redis_error("ping", &error))?;
            Ok(start.elapsed())
        })
    }

    /// The key namespace, `{prefix}:{name}:`.
    pub(super) fn namespace(&self, name: &str) -> Arc<[u8]> {
        format!("{}:{name}:", self.shared.prefix)
            .into_bytes()
            .into()
    }

    /// Runs `work` on the connection, within the timeout, and reports it to the observer.
    pub(super) fn call<T, F, Fut>(&self, op: &'static str, work: F) -> StoreFuture<T>
    where
        T: Send + 'static,
        F: FnOnce(ConnectionManager) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, StoreError>> + Send,
    {
        let shared = Arc::clone(&self.shared);
        Box::pin(async move {
            let start = Instant::now();
            let answer =
                tokio::time::timeout(shared.timeout, async { work(shared.manager()?).await }).await;
            let (outcome, result) = match answer {
                Ok(Ok(value)) => (CallOutcome::Ok, Ok(value)),
                Ok(Err(error)) => (CallOutcome::Error, Err(error)),
                Err(_elapsed) => (
                    CallOutcome::Timeout,
                    Err(StoreError::new(format!(
                        "redis {op}: no answer within {:?}",
                        shared.timeout
                    ))),
                ),
            };
            if let Some(observer) = &shared.observer {
                observer(StoreCall {
                    op,
                    outcome,
                    elapsed: start.elapsed(),
                });
            }
            result
        })
    }

    /// A copy of the settings (sharing the connection unless `reconnect`) changed by `change`.
    fn update(self, reconnect: bool, change: impl FnOnce(&mut Shared)) -> Self {
        let mut shared = Arc::try_unwrap(self.shared).unwrap_or_else(|shared| Shared {
            client: shared.client.clone(),
            server: shared.server.clone(),
            prefix: Arc::clone(&shared.prefix),
            timeout: shared.timeout,
            connect_timeout: shared.connect_timeout,
            observer: shared.observer.clone(),
            manager: shared.manager.clone(),
        });
        change(&mut shared);
        if reconnect {
            shared.manager = OnceLock::new();
        }
        Self {
            shared: Arc::new(shared),
        }
    }
}

impl Shared {
    /// The connection, made on first use (so inside a tokio runtime): lazily, with a first
    /// attempt started in the background at once.
    fn manager(&self) -> Result<ConnectionManager, StoreError> {
        self.manager
            .get_or_init(|| {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(self.connect_timeout))
                    .set_response_timeout(Some(self.timeout))
                    .set_number_of_retries(RECONNECT_RETRIES)
                    .set_min_delay(RECONNECT_MIN_DELAY)
                    .set_max_delay(RECONNECT_MAX_DELAY);
                let manager = ConnectionManager::new_lazy_with_config(self.client.clone(), config)
                    .map_err(|error| redis_error("connect", &error))?;
                // Drives the first connection attempt even when the call that made the
                // manager times out first (reconnections run in the background already).
                let mut first = manager.clone();
                tokio::spawn(async move {
                    let _ = ::redis::cmd("PING").query_async::<()>(&mut first).await;
                });
                Ok(manager)
            })
            .clone()
    }
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shared = &self.shared;
        f.debug_struct("RedisStore")
            .field("server", &shared.server)
            .field("prefix", &shared.prefix)
            .field("timeout", &shared.timeout)
            .field("connect_timeout", &shared.connect_timeout)
            .field("observed", &shared.observer.is_some())
            .finish_non_exhaustive()
    }
}

/// Runs `script` on one key with `args`, on `manager`. `EVALSHA`; the script is loaded first
/// only if the server does not know it yet (after a restart, say).
pub(super) async fn eval<R: FromRedisValue>(
    mut manager: ConnectionManager,
    op: &'static str,
    script: &Script,
    key: Vec<u8>,
    args: impl ToRedisArgs,
) -> Result<R, StoreError> {
    let mut invocation = script.prepare_invoke();
    invocation.key(key).arg(args);
    invocation
        .invoke_async(&mut manager)
        .await
        .map_err(|error| redis_error(op, &error))
}

/// A Redis error as a store error (redis-rs's errors never hold the URL or credentials).
fn redis_error(op: &str, error: &RedisError) -> StoreError {
    StoreError::new(format!("redis {op}: {error}"))
}

/// An answer the store cannot read (a server that is not Redis, or a key written by someone
/// else).
pub(super) fn unexpected(op: &str, answer: &[i64]) -> StoreError {
    StoreError::new(format!("redis {op}: unexpected answer {answer:?}"))
}

/// `url` without credentials, query or fragment: `redis://***@host:6379/0`.
fn redact(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    // Everything up to the last `@` is credentials, even a password with `/` or `?` in it.
    let (credentials, rest) = match rest.rfind('@') {
        Some(at) => ("***@", &rest[at + 1..]),
        None => ("", rest),
    };
    let rest = rest.split(['?', '#']).next().unwrap_or_default();
    format!("{scheme}://{credentials}{rest}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_keeps_the_server_and_drops_credentials_and_queries() {
        assert_eq!(
            redact("redis://127.0.0.1:6379/2"),
            "redis://127.0.0.1:6379/2"
        );
        assert_eq!(
            redact("redis://user:s3cret@cache.internal:6380/1"),
            "redis://***@cache.internal:6380/1"
        );
        assert_eq!(redact("redis://:p/a?s@s#w@host/0"), "redis://***@host/0");
        assert_eq!(
            redact("redis+unix:///run/redis.sock?db=1&pass=s3cret"),
            "redis+unix:///run/redis.sock"
        );
        assert_eq!(redact("no scheme"), "://no scheme");
    }

    #[test]
    fn debug_never_shows_the_password() {
        let store = RedisStore::new("redis://admin:hunter2@10.0.0.5:6379/0").unwrap();
        let debug = format!("{store:?}");
        assert!(
            !debug.contains("hunter2") && !debug.contains("admin"),
            "{debug}"
        );
        assert!(debug.contains("10.0.0.5:6379/0"), "{debug}");
    }

    #[test]
    fn urls_are_checked_without_connecting_and_errors_hold_no_url() {
        assert!(RedisStore::new("redis://127.0.0.1:1/0").is_ok());
        assert!(RedisStore::new("redis+unix:///tmp/none.sock").is_ok());
        for url in [
            "rediss://:hunter2@cache.example:6379",
            "VALKEYS://cache.example",
            "nonsense://:hunter2@cache.example",
        ] {
            let error = RedisStore::new(url).unwrap_err().to_string();
            assert!(
                !error.contains("hunter2") && !error.contains("cache.example"),
                "{error}"
            );
        }
        assert!(RedisStore::new("rediss://host")
            .unwrap_err()
            .to_string()
            .contains("TLS"));
    }

    #[test]
    fn settings_apply_and_timeouts_are_at_least_a_millisecond() {
        let store = RedisStore::new("redis://127.0.0.1/0").unwrap();
        let shared = &store.shared;
        assert_eq!(
            (&*shared.prefix, shared.timeout, shared.connect_timeout),
            (DEFAULT_PREFIX, DEFAULT_TIMEOUT, DEFAULT_CONNECT_TIMEOUT)
        );
        let store = store
            .prefix("gw")
            .timeout(Duration::ZERO)
            .connect_timeout(Duration::from_millis(300))
            .observe(|_| {});
        let shared = &store.shared;
        assert_eq!(&*shared.prefix, "gw");
        assert_eq!(shared.timeout, MIN_TIMEOUT);
        assert_eq!(shared.connect_timeout, Duration::from_millis(300));
        assert!(shared.observer.is_some());
        assert_eq!(&*store.namespace("clients"), b"gw:clients:");
        // A clone changed later keeps the original's settings apart.
        let other = store.clone().prefix("other");
        assert_eq!(&*store.namespace("x"), b"gw:x:");
        assert_eq!(&*other.namespace("x"), b"other:x:");
        assert_eq!(
            RedisStore::new("redis://127.0.0.1/0")
                .unwrap()
                .connect_timeout(Duration::ZERO)
                .shared
                .connect_timeout,
            MIN_TIMEOUT
        );
        assert_eq!(CallOutcome::Timeout.as_str(), "timeout");
        assert_eq!(CallOutcome::Error.as_str(), "error");
        assert_eq!(CallOutcome::Ok.as_str(), "ok");
    }
}
