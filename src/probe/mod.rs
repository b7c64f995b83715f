//! Probes: one file per kind (spec, validation, implementation, tests), and the [`engine`] that
//! runs a set of them concurrently, each under its own timeout, honouring `depends_on`.

pub mod disk;
pub mod engine;
pub mod http;
pub mod launchd;
pub mod outcome;
pub mod process;
pub mod redis;
pub mod script;
pub mod spec;
pub mod systemd;
pub mod tcp;

pub use engine::{Engine, ProbeCtx};
pub use outcome::{Outcome, ProbeResult, Status};
pub use spec::{Heal, ProbeConfig, ProbeKind};
