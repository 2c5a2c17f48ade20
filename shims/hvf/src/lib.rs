//! virtnet on macOS Hypervisor.framework (Apple silicon): what a macOS VMM
//! needs to put the core's virtio-net device on the virtio-mmio transport.
//!
//! * [`exit`]: the vCPU exit handler. A data abort inside the device's
//!   window is decoded with the shared `virtnet-aarch64` decoder, served by
//!   the core's [`MmioTransport`](virtnet::mmio::MmioTransport), the loaded
//!   value written to the destination register, and the PC advanced by 4;
//!   anything else is returned to the embedder untouched.
//! * [`device::HvfNet`]: the transport at a guest-physical base, with
//!   `handle_exit` and `poll`.
//! * [`vcpu`]: the [`vcpu::Vcpu`] trait (X0..X30, PC) and, on macOS,
//!   `HvfVcpu` (`hv_vcpu_get_reg`/`hv_vcpu_set_reg`).
//! * [`irq`]: the interrupt line as a level-triggered SPI: `GicLine` over the
//!   [`irq::Gic`] trait (on macOS 15+, `HvfGic` calls
//!   `hv_gic_set_spi`), or `CallbackLine` into a VMM's own GIC model.
//! * [`memory`]: guest memory from the VMM's `hv_vm_map` mappings.
//! * [`unixgram`] (Unix): the vfkit/gvproxy datagram backend.
//! * `vmnet` (macOS, feature `vmnet`): a vmnet.framework backend.
//! * [`ffi`]: the hand-written Hypervisor.framework declarations.
//!
//! Everything that calls a framework is behind `#[cfg(target_os =
//! "macos")]`; the logic sits behind the `Vcpu` and `Gic` traits and is
//! tested on Linux with test doubles. See `specs/11-hvf.md` for the model
//! and the invariants `I-HVF-*`.
//!
//! The core's frame pools use `critical-section`; a VMM binary picks the
//! implementation (on macOS: `critical-section = { version = "1.2",
//! features = ["std"] }`).
#![cfg_attr(
    not(test),
    deny(
        clippy::indexing_slicing,
        clippy::arithmetic_side_effects,
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic
    )
)]

pub mod device;
pub mod exit;
pub mod ffi;
pub mod irq;
pub mod memory;
#[cfg(unix)]
pub mod unixgram;
pub mod vcpu;
#[cfg(all(target_os = "macos", feature = "vmnet"))]
pub mod vmnet;

pub use device::{HvfNet, TransportBus};
pub use exit::{handle_exit, ExitAction, ExitError, ExitReason, MmioBus, MmioWindow, VcpuExit};
pub use irq::{CallbackLine, Gic, GicLine};
pub use vcpu::Vcpu;
pub use virtnet_aarch64 as abort;

#[cfg(target_os = "macos")]
pub use irq::HvfGic;
#[cfg(target_os = "macos")]
pub use vcpu::HvfVcpu;
