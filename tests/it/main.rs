//! Talon's integration tests: one binary, one module per feature.

#[cfg(feature = "k8s")]
mod k8s;
