//! The test suites of `cargo xtask test`, one per file, registered in
//! [`SUITES`].
//!
//! To add a suite: write `src/suites/<name>.rs` with a
//! `pub fn run(ctx: &Ctx) -> anyhow::Result<Tally>`, declare the module
//! below, and add ONE line to [`SUITES`]. A suite records each check with
//! [`Tally::record`] (or sums test counts); the runner prints the closing
//! `<suite>: N passed, N failed` line. Returning an error counts as one
//! failure. Register only suites that really run something.

use anyhow::Result;

pub use crate::ctx::Ctx;
pub use crate::util::Tally;

mod baremetal;
mod dpdk;
mod fuzz;
mod hvf;
mod interop;
mod lint;
mod linux;
mod miri;
mod nostd;
mod unit;

/// One registered suite.
#[derive(Debug, Clone, Copy)]
pub struct Suite {
    /// Name used on the command line.
    pub name: &'static str,
    /// One-line description shown by `cargo xtask test --list`.
    pub description: &'static str,
    /// Runs the suite.
    pub run: fn(&Ctx) -> Result<Tally>,
}

/// Every suite, in the order `cargo xtask test` runs them: one line each.
#[rustfmt::skip]
pub const SUITES: &[Suite] = &[
    Suite { name: "lint", description: "rustfmt check, clippy -D warnings, rustdoc -D warnings", run: lint::run },
    Suite { name: "nostd", description: "core builds for aarch64-unknown-none and thumbv7em-none-eabihf, every feature set; dependency allow-list", run: nostd::run },
    Suite { name: "unit", description: "cargo test over the workspace", run: unit::run },
    Suite { name: "interop", description: "virtio-drivers' net driver over the mmio block (10k frames each way); differential vs rust-vmm virtio-queue", run: interop::run },
    Suite { name: "miri", description: "the core's tests under Miri with strict provenance", run: miri::run },
    Suite { name: "baremetal", description: "bare-metal aarch64 image under QEMU virt (GICv2/v3, EL1/EL2): virtio-drivers <-> virtnet 10k frames each way, GIC interrupts, hostile guest, defmt", run: baremetal::run },
    Suite { name: "hvf", description: "Hypervisor.framework shim: rlib for aarch64-apple-darwin (+vmnet), macOS clippy, README run-loop example checked, host tests with framework doubles", run: hvf::run },
    Suite { name: "linux", description: "Debian's Linux virtio_net under QEMU (TCG) on virtnet-vhost-user + TAP in a netns: link, ping both ways, 64 MiB TCP each way with SHA-256; defaults, mrg_rxbuf/offloads/event_idx/indirect off, reboot, reconnect", run: linux::run },
    Suite { name: "dpdk", description: "DPDK testpmd virtio-user (no VM, no hugepages) on virtnet-vhost-user: txonly into null, io loop through loopback, mrg_rxbuf 0/1 x in_order 0/1, --poll; no errors, counters agree", run: dpdk::run },
    Suite { name: "fuzz", description: "every cargo-fuzz target (queue, tx, rx, mmio, net_hdr) 60 s from the seed corpus under ASan; fails on crash, timeout or leak", run: fuzz::run },
];

/// Looks a suite up by name.
pub fn find(name: &str) -> Option<&'static Suite> {
    SUITES.iter().find(|s| s.name == name)
}
