//! Probes: one file per kind holding its check (the kind's spec is in `config::probe::<kind>`),
//! and the [`engine`] that runs a set of them concurrently, each under its own timeout,
//! honouring `depends_on`.

pub mod cert;
pub mod ctx;
pub mod disk;
pub mod dns;
pub mod engine;
pub mod http;
#[cfg(feature = "k8s")]
pub mod k8s;
pub mod launchd;
pub mod logfile;
pub mod ping;
pub mod process;
pub mod push;
pub mod redis;
pub mod script;
pub mod systemd;
pub mod tcp;
pub mod tls;

pub use ctx::ProbeCtx;
pub use engine::Engine;
