//! Probes: one file per kind (spec, validation, implementation, tests).

pub mod http;
#[cfg(feature = "k8s")]
pub mod k8s;
pub mod launchd;
pub mod outcome;
pub mod script;
pub mod spec;

pub use outcome::{Outcome, ProbeResult, Status};
pub use spec::{Heal, ProbeConfig, ProbeKind};
