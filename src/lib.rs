//! # Talon
//!
//! A single-binary watchdog daemon for a host and the services on it: it supervises a worker
//! process, probes infrastructure on a loop, and escalates persistent failure from a
//! deterministic heal, to an AI agent's diagnosis, to a human — and says when it recovered.
//!
//! ## Layout
//!
//! | module        | what lives there |
//! |---------------|------------------|
//! | [`cli`]       | one file per verb (`validate`, `config`, `init`, …); stdout handling |
//! | [`config`]    | raw serde structs → validated [`config::Config`]; diagnostics with file:line:column; the compiled PATH |
//! | [`core`]      | the escalation state machine, pure: timestamped events in, actions out (`docs/state-machine.md`) |
//! | [`clock`]     | the one source of "now": tokio's `Instant` for timers, wall ms from an injected [`clock::Clock`] |
//! | [`runtime`]   | the daemon as a small actor: one inbox of typed messages, each handled in one place; effects behind traits |
//! | [`store`]     | SQLite history and persisted core state, writer thread, JSON snapshots, single-instance lock, the state dir's layout |
//! | [`probe`]     | one file per probe kind (spec, validation, implementation, tests) |
//! | [`escalate`]  | executors of the ladder: heal runner, agent runner, prompt builder, redaction |
//! | [`notify`]    | one file per notification channel kind; the message model and fan-out |
//! | [`notify`]    | one file per notification channel kind |
//! | [`server`]    | HTTP: `/health`, `/status`, `/metrics`, the status page, token-protected ack/silence |
//! | [`metrics`]   | the Prometheus metrics the runtime records and `/metrics` renders |
//! | [`logging`]   | JSON log lines with size rotation and redaction; human lines on a terminal |
//! | [`rotate`]    | the one size-rotated append-only file (Talon's log, the worker's output) |
//! | [`format`]    | the one date rendering (`utc`, `rfc3339`) and duration formatter (`duration`; `latency` for measurements) |
//! | [`watch`]     | config file change detection (polling stamps; survives rename-over saves) |
//! | [`sdnotify`]  | systemd notify protocol: READY, STATUS, STOPPING, progress-gated WATCHDOG |
//! | [`heartbeat`] | outbound dead-man-switch pings while the system is OK |
//! | [`supervise`] | the worker actor: spawn, health, sync, restart with backoff, port reclaim, external owner |
//!
//! ## Theory of operation
//!
//! Configuration is two TOML files: the main config and a probes file (`services_file`). Both are
//! parsed into raw structs and validated into one [`config::Config`] with real types; every
//! problem is collected and reported with its position, and `talon validate` also resolves every
//! program Talon will ever run on its own compiled PATH — so the failure that started this project
//! (a recovery tool missing from a service manager's minimal PATH) is caught before it matters.
//!
//! The daemon's decisions are pure: a core state machine takes timestamped events and returns
//! actions; the runtime at the edges executes them concurrently and feeds results back as events.

pub mod cli;
pub mod clock;
pub mod config;
pub mod core;
pub mod escalate;
pub mod format;
pub mod heartbeat;
pub mod logging;
pub mod metrics;
pub mod net;
pub mod notify;
pub mod probe;
pub mod proc;
pub mod redact;
pub mod rotate;
pub mod runtime;
pub mod sdnotify;
pub mod server;
pub mod store;
pub mod supervise;
pub mod watch;
