//! Deduplication keys: [`EventKey`].

use std::{fmt, sync::Arc};

/// The key one event is deduplicated by: the same for every delivery of the event, different
/// for different events. Made from signed material only (see [`DedupeKey`](super::DedupeKey)).
///
/// Cheap to clone.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct EventKey(Arc<str>);

impl EventKey {
    /// A key from its text.
    #[must_use]
    pub fn new(key: impl Into<Arc<str>>) -> Self {
        Self(key.into())
    }

    /// The key's text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for EventKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for EventKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
