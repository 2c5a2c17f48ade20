//! Bare-metal aarch64 shim (placeholder).
#![no_std]
