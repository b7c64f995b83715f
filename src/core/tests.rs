//! Table tests of the core.
