//! Scenario 13: a program deleted from PATH after start.
