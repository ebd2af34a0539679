//! The error returned when a layer or scheme is configured with values it cannot work with.

use std::{borrow::Cow, error::Error, fmt};

/// A configuration value a layer or scheme cannot work with: an empty secret, a zero quota, an
/// invalid CIDR. Returned by fallible constructors, so an invalid layer is never built.
///
/// The message names the setting and why it was refused; it never contains a secret.
#[derive(Clone, PartialEq, Eq)]
pub struct ConfigError {
    message: Cow<'static, str>,
}

impl ConfigError {
    pub(crate) fn new(message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            message: message.into(),
        }
    }
}

impl fmt::Debug for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ConfigError").field(&self.message).finish()
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl Error for ConfigError {}
