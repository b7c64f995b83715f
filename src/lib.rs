//! # Talon
//!
//! A single-binary watchdog daemon for a host and the services on it: it supervises a worker
//! process, probes infrastructure on a loop, and escalates persistent failure from a
//! deterministic heal, to an AI agent's diagnosis, to a human — and says when it recovered.
//!
//! ## Layout
//!
//! Rooms (top-level modules) in floors, bottom to top; every import points down
//! (`docs/architecture.md` has the picture, `tests/it/layout.rs` enforces the order).
//!
//! | floor | module | what lives there |
//! |---|---|---|
//! | 1 | [`format`](mod@format), [`redact`], [`rotate`], [`clock`], [`net`], [`watch`], [`sdnotify`] | leaves: the one date and duration formatter; secret masking; the one size-rotated file (Talon's log, the worker's output); the one source of "now" (tokio's `Instant`, an injected wall [`clock::Clock`]); the one HTTP client builder (installs the TLS provider); config change stamps; systemd notify |
//! | 2 | [`config`] | the files → one validated [`config::Config`]: spans and diagnostics with file:line:column, the compiled PATH, each probe kind's spec (`config/probe/<kind>.rs`) and each channel kind's spec (`config/channel/<kind>.rs`), every default |
//! | 3 | [`core`] | pure decisions: `ProbeResult`, the escalation state machine (timestamped events in, actions out; `docs/state-machine.md`) |
//! | 4 | [`store`] | SQLite history and persisted core state, writer thread, JSON snapshots, single-instance lock; `store/layout.rs` names every file of the state dir |
//! | 3 | [`proc`], [`logging`], [`metrics`] | the one subprocess runner and its one stop path (TERM → grace → KILL → reap); JSON logs with rotation and redaction; the Prometheus registry |
//! | 5 | [`probe`], [`escalate`], [`supervise`] | each probe kind's check and the concurrent engine; heal runner, agent runner, prompt; the worker actor (spawn, health, sync, restart with backoff, port reclaim, external owner) |
//! | 6 | [`notify`], [`server`] | each channel's delivery and the fan-out; `/health`, `/status`, `/metrics`, the status page, token-protected ack/silence |
//! | 7 | [`heartbeat`] | dead-man pings while the system is OK |
//! | 8 | [`runtime`] | the daemon as a small actor: one inbox of typed messages, each handled in one place; effects behind traits |
//! | 9 | [`cli`] | one file per verb; stdout handling |
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
pub mod memory;
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
