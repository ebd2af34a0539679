//! Status normalization (in progress).
