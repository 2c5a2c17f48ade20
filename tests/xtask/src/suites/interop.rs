//! `interop`: virtnet against independent implementations, in release mode:
//! the `virtio-drivers` crate's network driver over the virtio-mmio block
//! (10,000 frames each way, EVENT_IDX on and off) and the differential tests
//! against rust-vmm's `virtio-queue`.

use anyhow::Result;

use super::{Ctx, Tally};
use crate::util::run_cargo_tests;

/// Runs `cargo test --release -p virtnet-interop`.
pub fn run(ctx: &Ctx) -> Result<Tally> {
    let mut cmd = ctx.cargo();
    cmd.args([
        "test",
        "--release",
        "--no-fail-fast",
        "-p",
        "virtnet-interop",
    ]);
    run_cargo_tests(&mut cmd)
}
