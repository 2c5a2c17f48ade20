//! # virtnet: device-side virtio-net, `no_std`, allocation-free
//!
//! virtnet is the part of a virtio network card that a hypervisor or firmware
//! runs: it parses what a (possibly hostile) guest driver put in its
//! virtqueues and moves Ethernet frames between the guest and a host backend.
//!
//! The crate never allocates and never panics on guest input. Every
//! guest-written structure is read exactly once into a local copy and then
//! validated (VIRTIO 1.2 §2.7 for the split ring, §5.1.6 for the network
//! header). Guest memory is *borrowed* through the [`mem::GuestMemory`] trait
//! on every call; the core never holds a reference into it.
//!
//! Modules:
//! - [`mem`]: the guest-memory trait, [`mem::RegionMemory`] over host-mapped
//!   regions, and the safe [`mem::SliceMemory`] for tests.
//! - [`wire`]: little-endian wire structures (descriptors, rings, the
//!   virtio-net header).
//! - [`queue`]: the device side of the split virtqueue.
//! - [`pool`]: fixed frame pools with RAII slot handles.
//!
//! See the repository's `specs/` for the invariants (`I-MEM-*`, `I-QUEUE-*`,
//! `I-HDR-*`, `I-POOL-*`) that the tests pin.
#![no_std]
#![deny(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::arithmetic_side_effects,
        clippy::panic
    )
)]

#[cfg(test)]
extern crate std;

#[macro_use]
mod fmt;

pub mod device;
pub mod features;
pub mod mem;
pub mod mmio;
pub mod pool;
pub mod queue;
pub mod wire;

#[cfg(any(test, feature = "test-utils"))]
pub mod testing;

#[cfg(test)]
mod test_mem;

#[cfg(test)]
mod regressions;

/// The README's examples, compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
