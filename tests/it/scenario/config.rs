//! Scenario 8: a broken config via SIGHUP and via editor-style rename.
