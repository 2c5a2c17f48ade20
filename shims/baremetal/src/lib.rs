//! virtnet on bare-metal aarch64: the platform pieces around the device.
//!
//! * [`gic`]: GICv2 and GICv3 drivers, enough to route, raise (set pending),
//!   acknowledge and complete shared peripheral interrupts (SPIs), and the
//!   [`gic::IrqLine`] through which the device's used-buffer and
//!   configuration-change interrupts reach a CPU.
//! * `semihosting` (aarch64 only): console output and exit through the Arm
//!   semihosting interface (`hlt #0xf000`), as QEMU's `-semihosting` offers.
//! * `cpu` (aarch64 only): DAIF masking, `MPIDR_EL1`, `wfi`, barriers.
//! * Feature `critical-section-single-core`: a `critical-section`
//!   implementation for one core that masks all of DAIF.
//! * Feature `defmt-semihosting`: a defmt global logger writing to the host
//!   file `defmt.bin` over semihosting.
//! * [`memory`]: the device's view of guest memory over identity-mapped or
//!   offset-mapped physical RAM ranges (the core's `RegionMemory`).
//! * [`trap`]: serving a trapped guest load or store to the virtio-mmio
//!   window from the core's `MmioTransport` (decoded by `virtnet-aarch64`,
//!   re-exported here as [`abort`]), writing the loaded value back.
//!
//! The library builds for any target so that its logic is tested on the
//! host; everything that executes aarch64 instructions is behind
//! `#[cfg(target_arch = "aarch64")]`. See `specs/06-baremetal.md` for the
//! memory, interrupt and locking model and the invariants `I-BM-*`.
#![no_std]
#![cfg_attr(
    not(test),
    deny(
        clippy::indexing_slicing,
        clippy::arithmetic_side_effects,
        clippy::unwrap_used,
        clippy::expect_used
    )
)]

pub use virtnet_aarch64 as abort;

#[cfg(target_arch = "aarch64")]
pub mod cpu;
pub mod gic;
pub mod memory;
#[cfg(target_arch = "aarch64")]
pub mod semihosting;
pub mod trap;

#[cfg(all(
    feature = "critical-section-single-core",
    target_arch = "aarch64",
    target_os = "none"
))]
mod single_core_cs;

#[cfg(all(feature = "defmt-semihosting", target_arch = "aarch64"))]
mod defmt_logger;

#[cfg(test)]
extern crate std;
