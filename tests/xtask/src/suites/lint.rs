//! `lint`: formatting, clippy and rustdoc, each with warnings denied.

use anyhow::Result;

use super::{Ctx, Tally};
use crate::install::ensure_rustup_components;

/// Runs `cargo fmt --check`, clippy and rustdoc over the workspace.
pub fn run(ctx: &Ctx) -> Result<Tally> {
    ensure_rustup_components(None, &["rustfmt", "clippy"])?;
    let mut tally = Tally::default();
    tally.check_cmd(
        "cargo fmt --all --check",
        ctx.cargo().args(["fmt", "--all", "--check"]),
    )?;
    tally.check_cmd(
        "cargo clippy -D warnings",
        ctx.cargo().args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--all-features",
            "--",
            "-D",
            "warnings",
        ]),
    )?;
    tally.check_cmd(
        "cargo doc -D warnings",
        ctx.cargo()
            .env("RUSTDOCFLAGS", "-D warnings")
            .args(["doc", "--workspace", "--no-deps"]),
    )?;
    Ok(tally)
}
