//! Scenario 12: /health under a slow-client flood.
