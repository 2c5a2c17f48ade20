//! aarch64 data-abort decoding (placeholder).
#![no_std]
