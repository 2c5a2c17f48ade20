//! Hypervisor.framework shim (placeholder).
