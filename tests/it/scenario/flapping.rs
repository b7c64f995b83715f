//! Scenario 10: a flapping probe.
