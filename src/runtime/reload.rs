//! Hot reload: re-read both config files, apply only what changed. A bad file never replaces the
//! running config: the error is shown on every surface until a good config replaces it.

use super::Runtime;
use super::inbox::ReloadTrigger;
use crate::core::{CoreConfig, Event};
use std::path::PathBuf;
use std::sync::Arc;

impl Runtime {
    pub(super) async fn reload(&mut self, trigger: ReloadTrigger) {
        // Parsing and validating run start-up code again: give it back once this settles.
        self.timers.trim_at = Some(self.clock.now() + super::actor::TRIM_AFTER);
        if let ReloadTrigger::FileChanged { path, exists } = &trigger {
            tracing::info!(path = %path.display(), exists, "config file changed");
        }
        let why = trigger.as_str();
        match super::boot::load(&self.opts) {
            Err((text, detail)) => {
                self.surfaces.metrics.reload(false);
                self.surfaces.config_error_detail = detail;
                tracing::error!(
                    trigger = why,
                    "config reload failed; keeping the last good config: {text}"
                );
                self.surfaces.config_error = Some(text);
            }
            Ok(new) => {
                let had_error = self.surfaces.config_error.take().is_some();
                self.surfaces.config_error_detail = None;
                if *self.cfg == new {
                    if had_error {
                        tracing::info!(
                            trigger = why,
                            "config fixed (unchanged from the running one)"
                        );
                        self.surfaces.metrics.reload(true);
                    }
                } else {
                    tracing::info!(trigger = why, probes = new.probes.len(), "config reloaded");
                    self.surfaces.metrics.reload(true);
                    for p in &self.cfg.probes {
                        if !new.probes.iter().any(|n| n.name == p.name) {
                            self.surfaces.metrics.forget_probe(&p.name);
                        }
                    }
                    let rebind = self.cfg.health != new.health;
                    let chat_changed =
                        self.cfg.notify != new.notify || self.cfg.search_path != new.search_path;
                    self.timers.schedule.sync(&new.probes, self.clock.now());
                    self.last
                        .retain(|n, _| new.probes.iter().any(|p| &p.name == n));
                    self.effects.probes.reconfigure(&new);
                    let core_cfg = CoreConfig::from_config(&new);
                    let redactor = new.redactor();
                    redactor.learn_all_from(&self.redactor);
                    self.redactor = Arc::new(redactor);
                    let worker_changed =
                        self.cfg.worker != new.worker || self.cfg.search_path != new.search_path;
                    self.cfg = Arc::new(new);
                    if let Some(a) = &self.surfaces.alerts {
                        a.send_replace(self.cfg.clone());
                    }
                    self.watch_pushes();
                    if worker_changed {
                        self.reconfigure_worker();
                    }
                    if rebind {
                        self.rebind_server().await;
                    }
                    // Pollers run under `run` (the daemon), which also watches the files.
                    if chat_changed && self.surfaces.watch.is_some() {
                        self.start_pollers();
                    }
                    self.update_log();
                    self.digest_tick();
                    self.step(Event::Reload {
                        at: self.clock.wall_ms(),
                        config: Box::new(core_cfg),
                    });
                }
            }
        }
        // The files to watch follow the config (`services_file` may have moved).
        if let Some(w) = &self.surfaces.watch {
            w.set_paths(self.watched_paths());
        }
    }

    /// The main config and the probes file.
    pub(super) fn watched_paths(&self) -> Vec<PathBuf> {
        let mut v = Vec::new();
        if let Some(m) = &self.cfg.sources.main {
            v.push(m.clone());
        }
        v.push(self.cfg.sources.services.clone());
        v
    }
}
