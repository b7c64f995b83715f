//! The daemon's shell: a small actor. One inbox, one loop, one `match`; the core decides, the
//! runtime executes.
//!
//! ```text
//!  effect tasks: probe cycles, re-probes,  ──┐
//!  heals, agents, deliveries                 │
//!  worker supervisor events ─────────────────┤
//!  config watcher, SIGHUP ───────────────────┼──► inbox (mpsc of Msg) ──► Runtime::handle(msg)
//!  ack / silence (HTTP, CLI) ────────────────┤            ▲                 │  core.step(event)
//!  SIGTERM / SIGINT, forwarded signals ──────┘            │                 │  → actions
//!                                        Msg::Timer (the loop's deadline)   ├─► effect tasks
//!                                                                           ├─► History (store writer thread)
//!                                                                           └─► status board, metrics, log
//! ```
//!
//! Nothing slow runs on the loop itself: probe runs, heals, agents and deliveries are tasks that
//! answer with a message, so a five-minute heal never delays probing, `/health` or shutdown.
//! Each effect is behind a trait in [`effects`] and is handed to [`Runtime::new`]; `cli/run.rs`
//! wires the real ones, the tests in `tests/` scripted ones under paused time. Wall time and
//! timers come from one injected [`crate::clock::Clock`].
//!
//! | file          | what it holds |
//! |---------------|---------------|
//! | `inbox.rs`    | [`Msg`], the one message type, and the [`Inbox`] every source sends to |
//! | `actor.rs`    | the [`Runtime`] state, the loop, `handle` (the one `match`), core steps, actions → effects, shutdown |
//! | `effects.rs`  | the effect traits and the jobs they are handed |
//! | `real.rs`     | the real effects `cli/run.rs` wires: engine, executors, store writer, supervisor |
//! | `exec.rs`     | the real heal, agent and delivery executors (prompt, outcomes, message model) |
//! | `probing.rs`  | scheduled probe runs and verification re-probes |
//! | `schedule.rs` | when each probe is due |
//! | `clockstep.rs` | steps of the wall clock: seen, logged, counted, every wall-clock deadline moved |
//! | `worker.rs`   | the supervised worker: start, reconfigure, stop, its events as the `worker` probe, operator controls and their record in history |
//! | `worker_only.rs` | `talon run --worker-only`: the worker alone, with the same controls, `worker.stopped` and history record (no core, no probes) |
//! | `reload.rs`   | hot reload: parse, diff, apply what changed |
//! | `surfaces.rs` | status board, timeline, ack/silence, HTTP server, log |
//! | `chat.rs`     | commands from chat: grammar, the Telegram long-poll task, what is kept about them |
//! | `digest.rs`   | the daily digest: when it is due, what the last 24 hours held, sending it |
//! | `commands.rs` | chat commands answered (same ack/silence handlers), who did what, incident messages |
//! | `push.rs`     | the `push` probes' pings: recorded, persisted, watched from start and reload |
//! | `sources.rs`  | [`Runtime::run`]: signals, config watcher, sd_notify, heartbeat into the inbox |
//! | `boot.rs`     | before the loop: config, log, lock, store, restored core |

mod actor;
mod alerts;
mod boot;
mod chat;
mod clockstep;
mod commands;
mod digest;
pub mod effects;
mod exec;
mod inbox;
mod probing;
mod push;
pub mod real;
mod reload;
mod schedule;
mod sources;
mod surfaces;
#[cfg(test)]
mod tests;
mod worker;
pub mod worker_only;

pub use actor::Runtime;
pub use boot::{Boot, RunOptions, StartError, create_private_dir, restore};
pub use effects::Effects;
pub use effects::{AgentJob, HealJob};
pub use inbox::{Inbox, Msg, ReloadTrigger};
