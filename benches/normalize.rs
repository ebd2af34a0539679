//! Placeholder until the layer lands.

fn main() {}
