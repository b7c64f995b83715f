//! Scenario 11: hung probes and heals with grandchildren for many cycles: nothing leaks.
