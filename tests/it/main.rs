//! The one integration test binary: one module per feature.

mod agent;
mod heal;
mod notify;
