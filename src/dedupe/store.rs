//! Where deduplication state lives: the [`DedupeStore`] trait.

use std::{fmt, future::Future, time::Duration};

use super::EventKey;
use crate::store::{Check, StoreError};

/// Identifies one claim of a key, so that only the delivery holding the claim can settle it.
///
/// 128 random bits, made by the layer for each delivery it claims a key for: two instances
/// never make the same token, so a late answer of a delivery whose lease expired cannot
/// settle a newer delivery's claim.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct LeaseToken(u128);

impl LeaseToken {
    /// A token from its 128 bits.
    #[must_use]
    pub const fn from_u128(bits: u128) -> Self {
        Self(bits)
    }

    /// A fresh random token.
    #[must_use]
    pub fn random() -> Self {
        Self(fastrand::u128(..))
    }

    /// The token's 128 bits.
    #[must_use]
    pub const fn as_u128(self) -> u128 {
        self.0
    }
}

impl fmt::Debug for LeaseToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LeaseToken({:032x})", self.0)
    }
}

/// What a store answers to [`DedupeStore::claim`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Claim {
    /// The key was free (never seen, released, or its lease or done mark expired): it is now
    /// claimed with the caller's token, for the lease asked.
    Claimed,
    /// The key is done: an earlier delivery of the event was handled.
    Done,
    /// Another delivery holds the key's claim, for `lease_left` more at most.
    InFlight {
        /// How long the other delivery's lease still runs.
        lease_left: Duration,
    },
}

/// What a store answers to [`DedupeStore::complete`] and [`DedupeStore::release`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Settled {
    /// The caller's claim held: the key is now done (or free).
    Settled,
    /// The caller's claim was gone: its lease expired, and the key was claimed again or
    /// expired. Nothing was changed.
    LeaseLost,
}

/// Holds the state of every deduplication key: in memory
/// ([`MemoryDedupeStore`](super::MemoryDedupeStore), the default) or in a store shared by
/// several instances.
///
/// A key is **free** (never seen, released, or expired), **claimed** by one delivery (a lease
/// with a token and a time to live), or **done** (kept for a time to live). Every transition
/// is one atomic decision on one key, designed as one round trip to a shared store (a Redis
/// Lua script, say):
///
/// ```text
///            claim(token, lease)                 complete(token, keep)
///   free ───────────────────────▶ claimed ─────────────────────────────▶ done
///    ▲                              │  │                                   │
///    └──── release(token) ──────────┘  └── lease expires ──▶ free ◀─ keep expires
/// ```
///
/// - [`complete`](DedupeStore::complete) and [`release`](DedupeStore::release) change the key
///   **only while the caller's token holds the claim**, and answer
///   [`Settled::LeaseLost`] otherwise: a handler that outlived its lease must not mark done,
///   or free, a claim a newer delivery holds.
/// - **Time is the store's** (Redis `TIME` for a shared store): answers carry durations.
/// - **Bounded memory**: claims and done marks expire by themselves.
/// - **Failures**: when the store cannot answer, return a [`StoreError`]; the layer then
///   answers a retryable `503` (never a `200` for an event neither stored nor handled).
pub trait DedupeStore {
    /// The future of a [`claim`](DedupeStore::claim) the store cannot answer at once.
    type ClaimFuture: Future<Output = Result<Claim, StoreError>>;

    /// The future of a [`complete`](DedupeStore::complete) or
    /// [`release`](DedupeStore::release) the store cannot answer at once.
    type SettleFuture: Future<Output = Result<Settled, StoreError>>;

    /// Claims `key` for one delivery, with `token`, for `lease`; see [`Claim`].
    fn claim(
        &self,
        key: &EventKey,
        token: LeaseToken,
        lease: Duration,
    ) -> Check<Self::ClaimFuture, Claim>;

    /// Marks `key` done for `keep` if `token` still holds its claim.
    fn complete(
        &self,
        key: &EventKey,
        token: LeaseToken,
        keep: Duration,
    ) -> Check<Self::SettleFuture, Settled>;

    /// Frees `key` if `token` still holds its claim, so that a retry goes through.
    fn release(&self, key: &EventKey, token: LeaseToken) -> Check<Self::SettleFuture, Settled>;
}

/// A shared store: one store behind several layers (several routes deduplicating against the
/// same keys), or kept at hand to watch it.
impl<T: DedupeStore + ?Sized> DedupeStore for std::sync::Arc<T> {
    type ClaimFuture = T::ClaimFuture;
    type SettleFuture = T::SettleFuture;

    fn claim(
        &self,
        key: &EventKey,
        token: LeaseToken,
        lease: Duration,
    ) -> Check<Self::ClaimFuture, Claim> {
        (**self).claim(key, token, lease)
    }

    fn complete(
        &self,
        key: &EventKey,
        token: LeaseToken,
        keep: Duration,
    ) -> Check<Self::SettleFuture, Settled> {
        (**self).complete(key, token, keep)
    }

    fn release(&self, key: &EventKey, token: LeaseToken) -> Check<Self::SettleFuture, Settled> {
        (**self).release(key, token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_its_bits_and_shows_them_in_hex() {
        let token = LeaseToken::from_u128(0x2a);
        assert_eq!(token.as_u128(), 0x2a);
        assert_eq!(LeaseToken::from_u128(u128::MAX).as_u128(), u128::MAX);
        assert_eq!(
            format!("{token:?}"),
            "LeaseToken(0000000000000000000000000000002a)"
        );
    }

    #[test]
    fn random_tokens_differ() {
        let tokens: std::collections::HashSet<LeaseToken> =
            (0..1000).map(|_| LeaseToken::random()).collect();
        assert_eq!(tokens.len(), 1000);
    }
}
