//! The one integration test binary; one module per feature.

mod heartbeat;
mod install;
mod metrics;
mod sdnotify;
mod server;
mod statuspage;
mod watch;
