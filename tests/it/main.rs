//! Integration tests: one binary, one module per feature. They run the real `talon` binary
//! against real files, processes and servers on loopback.

mod check;
mod daemon;
mod heartbeat;
mod install;
mod metrics;
mod probes;
mod sdnotify;
mod server;
mod state;
mod statuspage;
mod store;
mod supervise;
mod support;
mod validate;
mod watch;
