//! Scenario 4: a real redis-server stopped, healed by the probe's heal.
