//! `fuzz`: every fuzz target for 60 seconds from the seed corpus (after
//! the fuzz workspace's own tests: the seed corpus is current and every
//! corpus file replays clean, and its lints: the fuzz crate is a workspace
//! of its own, which the `lint` suite does not reach). Fails on any crash,
//! timeout or leak; one pass/fail line per target with its execution count
//! and coverage.

use anyhow::Result;

use super::{Ctx, Tally};
use crate::fuzz::{build, ensure_tools, fuzz_dir, run_target, targets};
use crate::install::ensure_rustup_components;
use crate::util::run_cargo_tests;

/// Seconds per target.
const SECS: u64 = 60;

/// Runs `cargo test`, `cargo fmt --check`, clippy and rustdoc (warnings
/// denied) in `fuzz/`, builds the targets, and fuzzes each for [`SECS`]
/// seconds.
pub fn run(ctx: &Ctx) -> Result<Tally> {
    ensure_tools()?;
    ensure_rustup_components(None, &["rustfmt", "clippy"])?;
    let cargo = || {
        let mut c = std::process::Command::new("cargo");
        c.current_dir(fuzz_dir(ctx));
        c
    };
    let mut tally = run_cargo_tests(cargo().args(["test", "--no-fail-fast"]))?;
    tally.check_cmd("fuzz: cargo fmt --check", cargo().args(["fmt", "--check"]))?;
    tally.check_cmd(
        "fuzz: cargo clippy -D warnings",
        cargo().args(["clippy", "--all-targets", "--", "-D", "warnings"]),
    )?;
    tally.check_cmd(
        "fuzz: cargo doc -D warnings",
        cargo()
            .env("RUSTDOCFLAGS", "-D warnings")
            .args(["doc", "--no-deps"]),
    )?;
    build(ctx)?;
    for t in targets(ctx)? {
        let r = run_target(ctx, &t, SECS, true)?;
        tally.record(&r.summary(), r.failure.is_none() && r.execs > 0);
    }
    Ok(tally)
}
