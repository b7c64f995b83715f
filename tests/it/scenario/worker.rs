//! Scenarios 1–3: the worker killed, the worker hung, a stale process holding its port.
