//! Unit tests of the layer (in progress).
