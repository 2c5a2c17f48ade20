//! `unit`: `cargo test` over the workspace, summing cargo's result lines,
//! and a smoke run of the core's benchmark (`crate::bench::smoke`).

use anyhow::Result;

use super::{Ctx, Tally};
use crate::util::run_cargo_tests;

/// Packages left out of `cargo test --workspace` (e.g. an interop package
/// whose tests need a VM and run in their own suite).
const EXCLUDE: &[&str] = &["virtnet-interop"];

/// Runs `cargo test --workspace --no-fail-fast`, less [`EXCLUDE`], then
/// the benchmark's smoke run.
pub fn run(ctx: &Ctx) -> Result<Tally> {
    let mut cmd = ctx.cargo();
    cmd.args(["test", "--workspace", "--no-fail-fast"]);
    for pkg in EXCLUDE {
        cmd.args(["--exclude", pkg]);
    }
    let mut tally = run_cargo_tests(&mut cmd)?;
    crate::bench::smoke(ctx, &mut tally)?;
    Ok(tally)
}
