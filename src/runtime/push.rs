//! The `push` probes' pings: the HTTP server checks a ping's token and forwards it here
//! ([`ControlRequest::Push`](crate::server::control::ControlRequest::Push)); the runtime
//! records it in the shared [`Pushes`](crate::probe::push::Pushes) the engine reads, and
//! persists it in the store's `kv` table. At start and after a reload every configured push
//! probe without a record gets one, so its first deadline counts from then (and survives a
//! restart).

use super::Runtime;
use crate::config::probe::ProbeKind;
use crate::probe::push::PushEvent;
use crate::server::control::ControlReply;

impl Runtime {
    /// Names of the configured `push` probes.
    fn push_probes(&self) -> impl Iterator<Item = &str> {
        self.cfg
            .probes
            .iter()
            .filter(|p| matches!(p.kind, ProbeKind::Push(_)))
            .map(|p| p.name.as_str())
    }

    /// Give every configured push probe a record (its deadline counts from now).
    pub(super) fn watch_pushes(&mut self) {
        let now = self.clock.wall_ms();
        let names: Vec<String> = self.push_probes().map(str::to_string).collect();
        for batch in self.pushes.watch(names.iter().map(String::as_str), now) {
            if let Some(h) = &self.history {
                h.write(batch);
            }
        }
    }

    /// A ping whose token the server checked.
    pub(super) fn on_push(&mut self, probe: &str, event: PushEvent, body: &str) -> ControlReply {
        if !self.push_probes().any(|p| p == probe) {
            return ControlReply::NotFound(format!("no push probe named `{probe}`"));
        }
        let now = self.clock.wall_ms();
        // A job's output may quote secrets Talon knows: masked before it is kept or stored.
        let body = self.redactor.clean(body);
        let batch = self.pushes.record(probe, event, &body, now);
        if let Some(h) = &self.history {
            h.write(batch);
        }
        tracing::info!(probe = %probe, event = event.as_str(), body_bytes = body.len(), "push: ping received");
        ControlReply::Done(format!("{probe}: {} recorded", event.as_str()))
    }
}
