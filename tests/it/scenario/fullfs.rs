//! Scenario 9: the state dir on a small full filesystem.
