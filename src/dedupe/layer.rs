//! [`DeduplicateLayer`] and its settings.

use std::{fmt, sync::Arc, time::Duration};

use tower_layer::Layer;

use super::{
    service::{Deduplicate, Shared},
    DedupeKey, MemoryDedupeStore,
};
use crate::{store::LogGate, ConfigError};

/// Handles every event once, however often it is delivered; see the [module docs](super) for
/// the states, the answers and the failure policy.
///
/// Put it **inside** [`VerifySignatureLayer`](crate::VerifySignatureLayer): its service takes
/// a `Request<VerifiedBody>`, so a stack without verification in front does not compile, and
/// its keys are made from what the signature covers. A key read from the body (the
/// ElevenLabs key, JSON pointers, [`DedupeKey::from_fn`]) needs it in one piece: a body that
/// arrived in several frames is gathered into one, once, before the key is read, and the
/// handler gets that one frame (its `VerifiedBody::to_bytes` is then free).
///
/// ```
/// use std::time::Duration;
/// use hookgate::dedupe::{DedupeKey, DeduplicateLayer, MemoryDedupeStore};
///
/// // The defaults: ElevenLabs keys, in memory, a 60 s lease, done marks kept 24 h.
/// let layer = DeduplicateLayer::new(DedupeKey::elevenlabs());
/// // Settings are checked: a zero keep time would forget every event at once.
/// assert!(DeduplicateLayer::new(DedupeKey::signature()).keep_done(Duration::ZERO).is_err());
/// let layer = DeduplicateLayer::with_store(MemoryDedupeStore::new(), DedupeKey::message_id())
///     .lease(Duration::from_secs(120))?
///     .keep_done(Duration::from_secs(7 * 24 * 3600))?;
/// # Ok::<(), hookgate::ConfigError>(())
/// ```
#[must_use]
pub struct DeduplicateLayer<St = MemoryDedupeStore> {
    store: Arc<St>,
    key: DedupeKey,
    lease: Duration,
    keep_done: Duration,
    logs: Arc<Logs>,
}

/// The rate-bounded log lines, shared by every service of one layer.
#[derive(Debug)]
pub(crate) struct Logs {
    /// The store failed (claim or settle).
    pub(crate) store: LogGate,
    /// No key could be made (unverified requests, bodies without the key's fields).
    pub(crate) key: LogGate,
}

impl DeduplicateLayer {
    /// Deduplicates on `key`, in a [`MemoryDedupeStore`] (one instance; a store shared by
    /// several instances goes through [`with_store`](Self::with_store)).
    pub fn new(key: DedupeKey) -> Self {
        Self::with_store(MemoryDedupeStore::new(), key)
    }
}

impl<St> DeduplicateLayer<St> {
    /// The default lease: 60 s.
    pub const DEFAULT_LEASE: Duration = Duration::from_secs(60);
    /// The default time a done mark is kept: 24 hours.
    pub const DEFAULT_KEEP_DONE: Duration = Duration::from_secs(24 * 60 * 60);

    /// Deduplicates on `key`, in `store`.
    pub fn with_store(store: St, key: DedupeKey) -> Self {
        Self {
            store: Arc::new(store),
            key,
            lease: Self::DEFAULT_LEASE,
            keep_done: Self::DEFAULT_KEEP_DONE,
            logs: Arc::new(Logs {
                store: LogGate::new(),
                key: LogGate::new(),
            }),
        }
    }

    /// How long a delivery's claim lasts (default 60 s). Make it outlive the handler's
    /// deadline (a tower `TimeoutLayer`, the sender's own timeout): when a claim expires
    /// while its handler still runs, a redelivery can claim the key and be handled too.
    ///
    /// # Errors
    ///
    /// When `lease` is zero: every claim would expire at once and nothing would be deduplicated.
    pub fn lease(mut self, lease: Duration) -> Result<Self, ConfigError> {
        if lease.is_zero() {
            return Err(ConfigError::new(
                "dedupe: the lease must be longer than zero",
            ));
        }
        self.lease = lease;
        Ok(self)
    }

    /// How long a handled event's key is remembered (default 24 hours). Keep it at least the
    /// sender's signature tolerance (30 minutes for ElevenLabs), so that a captured delivery
    /// cannot be replayed once its key is forgotten, and at least as long as the sender keeps
    /// redelivering.
    ///
    /// # Errors
    ///
    /// When `keep` is zero: every handled event would be forgotten at once.
    pub fn keep_done(mut self, keep: Duration) -> Result<Self, ConfigError> {
        if keep.is_zero() {
            return Err(ConfigError::new(
                "dedupe: done marks must be kept longer than zero (at least the sender's signature tolerance)",
            ));
        }
        self.keep_done = keep;
        Ok(self)
    }

    /// The store, shared by every service this layer makes.
    #[must_use]
    pub fn store(&self) -> &St {
        &self.store
    }

    /// How keys are made.
    pub fn key(&self) -> &DedupeKey {
        &self.key
    }
}

impl<St> Clone for DeduplicateLayer<St> {
    fn clone(&self) -> Self {
        Self {
            store: Arc::clone(&self.store),
            key: self.key.clone(),
            lease: self.lease,
            keep_done: self.keep_done,
            logs: Arc::clone(&self.logs),
        }
    }
}

impl<St: fmt::Debug> fmt::Debug for DeduplicateLayer<St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeduplicateLayer")
            .field("store", &self.store)
            .field("key", &self.key)
            .field("lease", &self.lease)
            .field("keep_done", &self.keep_done)
            .finish()
    }
}

impl<S, St> Layer<S> for DeduplicateLayer<St> {
    type Service = Deduplicate<S, St>;

    fn layer(&self, inner: S) -> Self::Service {
        Deduplicate::new(
            inner,
            Arc::new(Shared {
                store: Arc::clone(&self.store),
                key: self.key.clone(),
                lease: self.lease,
                keep_done: self.keep_done,
                logs: Arc::clone(&self.logs),
            }),
        )
    }
}
