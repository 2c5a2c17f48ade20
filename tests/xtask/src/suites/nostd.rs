//! `nostd`: the core builds for bare-metal targets with every combination of
//! its logging features, the bare-metal shims build, and the core pulls in
//! no crate outside an allow-list and no `alloc`/`std`.

use anyhow::{Context, Result};
use std::collections::BTreeSet;

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

/// Looks through `core/src` (like `grep -rnE 'extern crate (alloc|std)'`)
/// for `extern crate alloc` / `extern crate std`. A line right after
/// `#[cfg(test)]` is allowed: std for the core's own unit tests only, which
/// the bare-metal builds above prove stays out of the library.
fn no_alloc_std(ctx: &Ctx) -> Result<bool> {
    let dir = ctx.root.join("core/src");
    println!(
        "looking for `extern crate (alloc|std)` in {}",
        dir.display()
    );
    let mut found = Vec::new();
    let mut stack = vec![dir];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).with_context(|| format!("reading {}", d.display()))? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path)?;
                found.extend(extern_crate_lines(&text).into_iter().map(|(n, l)| {
                    format!(
                        "{}:{n}: {l}",
                        path.strip_prefix(&ctx.root).unwrap_or(&path).display()
                    )
                }));
            }
        }
    }
    for f in &found {
        println!("{f}");
    }
    if !found.is_empty() {
        println!("the core must not use alloc or std");
    }
    Ok(found.is_empty())
}

/// The (1-based line number, line) of each `extern crate alloc|std` in
/// `text` that is not gated by a `#[cfg(test)]` on the line before.
fn extern_crate_lines(text: &str) -> Vec<(usize, &str)> {
    let mut found = Vec::new();
    let mut prev = "";
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        let hit = ["extern crate alloc", "extern crate std"]
            .iter()
            .any(|p| t.contains(p) && !t.starts_with("//"));
        if hit && prev != "#[cfg(test)]" {
            found.push((i + 1, line));
        }
        if !t.is_empty() {
            prev = t;
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::extern_crate_lines;

    #[test]
    fn test_only_std_is_allowed() {
        let src = "#![no_std]\n#[cfg(test)]\nextern crate std;\nextern crate alloc;\n";
        assert_eq!(extern_crate_lines(src), [(4, "extern crate alloc;")]);
        assert_eq!(extern_crate_lines("extern crate std;\n").len(), 1);
    }
}
