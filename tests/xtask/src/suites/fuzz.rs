//! `fuzz`: every fuzz target for 60 seconds from the seed corpus (after
//! the fuzz workspace's own tests: the seed corpus is current and every
//! corpus file replays clean). Fails on any crash, timeout or leak; one
//! pass/fail line per target with its execution count and coverage.

use anyhow::Result;

use super::{Ctx, Tally};
use crate::fuzz::{build, ensure_tools, fuzz_dir, run_target, targets};
use crate::util::run_cargo_tests;

/// Seconds per target.
const SECS: u64 = 60;

/// Runs `cargo test` in `fuzz/`, builds the targets, and fuzzes each for
/// [`SECS`] seconds.
pub fn run(ctx: &Ctx) -> Result<Tally> {
    ensure_tools()?;
    let mut cmd = std::process::Command::new("cargo");
    cmd.current_dir(fuzz_dir(ctx))
        .args(["test", "--no-fail-fast"]);
    let mut tally = run_cargo_tests(&mut cmd)?;
    build(ctx)?;
    for t in targets(ctx)? {
        let r = run_target(ctx, &t, SECS, true)?;
        tally.record(&r.summary(), r.failure.is_none() && r.execs > 0);
    }
    Ok(tally)
}
