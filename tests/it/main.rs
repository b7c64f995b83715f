//! Integration tests: one binary, one module per feature. They run the real `talon` binary
//! against real files, processes and servers on loopback.

mod agent;
mod check;
mod daemon;
mod heal;
mod k8s;
mod notify;
mod probes;
mod state;
mod store;
mod supervise;
mod support;
mod validate;
