//! `unit`: `cargo test` over the workspace, summing cargo's result lines.

use anyhow::Result;

use super::{Ctx, Tally};
use crate::util::run_cargo_tests;

/// Packages left out of `cargo test --workspace` (e.g. an interop package
/// whose tests need a VM and run in their own suite).
const EXCLUDE: &[&str] = &["virtnet-interop"];

/// Runs `cargo test --workspace --no-fail-fast`, less [`EXCLUDE`].
pub fn run(ctx: &Ctx) -> Result<Tally> {
    let mut cmd = ctx.cargo();
    cmd.args(["test", "--workspace", "--no-fail-fast"]);
    for pkg in EXCLUDE {
        cmd.args(["--exclude", pkg]);
    }
    run_cargo_tests(&mut cmd)
}
