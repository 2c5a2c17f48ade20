//! `nostd`: the core builds for bare-metal targets with every combination of
//! its logging features, the bare-metal shims build, and the core pulls in
//! no crate outside an allow-list and no `alloc`/`std`.

use std::collections::BTreeSet;
use std::process::Command;

use anyhow::Result;

use super::{Ctx, Tally};
use crate::install::ensure_rustup_target;
use crate::util::{capture_stdout, display};

/// Bare-metal targets the core must build for.
const TARGETS: &[&str] = &["aarch64-unknown-none", "thumbv7em-none-eabihf"];

/// Every combination of the core's optional logging features.
const FEATURE_SETS: &[&str] = &["", "defmt", "log", "defmt,log"];

/// Shim packages built for `aarch64-unknown-none`.
const AARCH64_PACKAGES: &[&str] = &["virtnet-baremetal", "virtnet-aarch64"];

/// Crates the core may depend on (normal edges, all features), proc-macro
/// helpers included: measured with `cargo tree` and reviewed.
const ALLOWED_DEPS: &[&str] = &[
    "virtnet",
    "heapless",
    "hash32",
    "byteorder",
    "stable_deref_trait",
    "zerocopy",
    "zerocopy-derive",
    "bitflags",
    "critical-section",
    "log",
    "defmt",
    "defmt-macros",
    "defmt-parser",
    "proc-macro-error2",
    "proc-macro-error-attr2",
    "thiserror",
    "thiserror-impl",
    "proc-macro2",
    "quote",
    "syn",
    "unicode-ident",
];

/// Runs the builds and the dependency checks.
pub fn run(ctx: &Ctx) -> Result<Tally> {
    for target in TARGETS {
        ensure_rustup_target(None, target)?;
    }
    let mut tally = Tally::default();
    for target in TARGETS {
        for features in FEATURE_SETS {
            let mut cmd = ctx.cargo();
            cmd.args([
                "build",
                "-p",
                "virtnet",
                "--target",
                target,
                "--no-default-features",
            ]);
            if !features.is_empty() {
                cmd.args(["--features", features]);
            }
            let label = format!("virtnet on {target} with features [{features}]");
            tally.check_cmd(&label, &mut cmd)?;
        }
    }
    for pkg in AARCH64_PACKAGES {
        tally.check_cmd(
            &format!("{pkg} on aarch64-unknown-none"),
            ctx.cargo()
                .args(["build", "-p", pkg, "--target", "aarch64-unknown-none"]),
        )?;
    }
    tally.record("core dependencies within the allow-list", deps_allowed(ctx));
    tally.record("no extern crate alloc/std in core/src", no_alloc_std(ctx)?);
    Ok(tally)
}

/// Lists the core's normal dependencies for aarch64-unknown-none (all
/// features) and reports any outside [`ALLOWED_DEPS`].
fn deps_allowed(ctx: &Ctx) -> bool {
    let mut cmd = ctx.cargo();
    cmd.args([
        "tree",
        "-p",
        "virtnet",
        "-e",
        "normal",
        "--target",
        "aarch64-unknown-none",
        "--all-features",
        "--prefix",
        "none",
        "--format",
        "{p}",
    ]);
    println!("$ {}", display(&cmd));
    let text = match capture_stdout(&mut cmd) {
        Ok(text) => text,
        Err(e) => {
            println!("{e:#}");
            return false;
        }
    };
    let names: BTreeSet<&str> = text
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    println!(
        "core dependencies: {}",
        names.iter().copied().collect::<Vec<_>>().join(" ")
    );
    let extra: Vec<&str> = names
        .into_iter()
        .filter(|n| !ALLOWED_DEPS.contains(n))
        .collect();
    if !extra.is_empty() {
        println!(
            "not in the allow-list (tests/xtask/src/suites/nostd.rs): {}",
            extra.join(" ")
        );
    }
    extra.is_empty()
}

/// Greps `core/src` for `extern crate alloc` / `extern crate std`.
fn no_alloc_std(ctx: &Ctx) -> Result<bool> {
    let mut cmd = Command::new("grep");
    cmd.current_dir(&ctx.root)
        .args(["-rnE", "extern crate (alloc|std)", "core/src"]);
    println!("$ {}", display(&cmd));
    let out = crate::util::capture(&mut cmd)?;
    match out.status.code() {
        Some(1) => Ok(true),
        Some(0) => {
            print!("{}", String::from_utf8_lossy(&out.stdout));
            println!("the core must not use alloc or std");
            Ok(false)
        }
        _ => anyhow::bail!("grep failed: {}", String::from_utf8_lossy(&out.stderr)),
    }
}
