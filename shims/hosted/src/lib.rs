//! Hosted Linux shim (placeholder).
