//! `talon check` end to end: the real binary, a temp config, real probes.
