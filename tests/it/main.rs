//! Integration tests: one binary, one module per feature. They run the real `talon` binary
//! against real files, processes and servers on loopback.

mod check;
mod daemon;
mod k8s;
mod probes;
mod state;
mod store;
mod supervise;
mod support;
mod validate;
