//! Integration tests: one binary, one module per feature. They run the real `talon` binary
//! against real files, processes and servers on loopback.

mod daemon;
mod heartbeat;
mod install;
mod metrics;
mod sdnotify;
mod server;
mod statuspage;
mod support;
mod validate;
mod watch;
