//! Harness crate: see tests/.
