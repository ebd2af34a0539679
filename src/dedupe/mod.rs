//! Deduplication: every event handled once, however often it is delivered (feature
//! `dedupe`).
//!
//! (Module docs, `DeduplicateLayer`, `DedupeKey` and `MemoryDedupeStore`: in progress.)

mod key;
mod store;

pub use self::{
    key::EventKey,
    store::{Claim, DedupeStore, LeaseToken, Settled},
};
pub use crate::store::{Check, StoreError};
