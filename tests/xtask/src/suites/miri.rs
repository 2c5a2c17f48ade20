//! `miri`: the core's tests under Miri (nightly) with strict provenance.

use anyhow::Result;

use super::{Ctx, Tally};
use crate::install::ensure_rustup_components;
use crate::util::{run_cargo_tests, run_ok};

/// Installs Miri when missing, runs `cargo miri setup`, then
/// `cargo +nightly miri test -p virtnet`.
pub fn run(ctx: &Ctx) -> Result<Tally> {
    ensure_rustup_components(Some("nightly"), &["miri", "rust-src"])?;
    run_ok(ctx.cargo_nightly().args(["miri", "setup"]))?;
    run_cargo_tests(
        ctx.cargo_nightly()
            .env("MIRIFLAGS", "-Zmiri-strict-provenance")
            .args(["miri", "test", "--no-fail-fast", "-p", "virtnet"]),
    )
}
