//! Integration tests: one binary, one module per feature. They run the real `talon` binary
//! against real files, processes and servers on loopback.

mod agent;
mod check;
mod daemon;
mod defaults;
mod dns;
mod effective;
mod email;
mod fleet;
mod fuzz;
mod guard;
mod heal;
mod heartbeat;
mod helper;
mod install;
#[cfg(feature = "k8s")]
mod k8s;
mod layout;
mod logfile;
mod memory;
mod metrics;
mod notify;
mod ping;
mod policy;
mod probes;
mod push;
mod scenario;
mod sdnotify;
mod secrets;
mod security;
mod server;
mod state;
mod statuspage;
mod store;
mod supervise;
mod support;
mod telegram;
mod tls;
mod validate;
mod watch;
