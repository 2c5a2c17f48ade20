//! `hvf`: the Hypervisor.framework shim. Builds it for
//! `aarch64-apple-darwin` (rlib only: Apple's linker is not available here),
//! with and without the `vmnet` feature, lints the macOS-only code, checks
//! the README's run-loop example (`shims/hvf/examples/run_loop.rs`) for that
//! target, verifies the README still holds exactly that code, and runs the
//! shim's platform-independent tests on the host.

use std::path::Path;

use anyhow::{Context, Result};

use super::{Ctx, Tally};
use crate::install::ensure_rustup_target;

/// The Apple silicon target.
const TARGET: &str = "aarch64-apple-darwin";
/// The README section holding the example.
const README_SECTION: &str = "## macOS (Hypervisor.framework)";
/// The example file and its markers.
const EXAMPLE: &str = "shims/hvf/examples/run_loop.rs";
const BEGIN: &str = "// README begin";
const END: &str = "// README end";

/// Runs the builds, the example check and the host tests.
pub fn run(ctx: &Ctx) -> Result<Tally> {
    ensure_rustup_target(None, TARGET)?;
    let mut tally = Tally::default();
    tally.check_cmd(
        &format!("virtnet-hvf rlib for {TARGET}"),
        ctx.cargo()
            .args(["build", "-p", "virtnet-hvf", "--lib", "--target", TARGET]),
    )?;
    tally.check_cmd(
        &format!("virtnet-hvf rlib for {TARGET} with feature vmnet"),
        ctx.cargo().args([
            "build",
            "-p",
            "virtnet-hvf",
            "--lib",
            "--target",
            TARGET,
            "--features",
            "vmnet",
        ]),
    )?;
    tally.check_cmd(
        &format!("clippy -D warnings on virtnet-hvf for {TARGET} (macOS-only code)"),
        ctx.cargo().args([
            "clippy",
            "-p",
            "virtnet-hvf",
            "--all-targets",
            "--all-features",
            "--target",
            TARGET,
            "--",
            "-D",
            "warnings",
        ]),
    )?;
    // Examples are binaries: building one needs Apple's linker. `cargo
    // check` type- and borrow-checks it for the target without linking.
    tally.check_cmd(
        &format!("README run-loop example (examples/run_loop.rs) checked for {TARGET}"),
        ctx.cargo().args([
            "check",
            "-p",
            "virtnet-hvf",
            "--example",
            "run_loop",
            "--target",
            TARGET,
        ]),
    )?;
    let same = readme_matches_example(&ctx.root);
    if let Err(e) = &same {
        println!("{e:#}");
    }
    tally.record(
        "README example is examples/run_loop.rs verbatim",
        same.is_ok(),
    );
    tally.check_cmd(
        "virtnet-hvf host tests (framework test doubles, real socketpair)",
        ctx.cargo().args(["test", "-p", "virtnet-hvf"]),
    )?;
    Ok(tally)
}

/// Compares the first Rust block of the README's macOS section with the
/// example's lines between the markers (dedented by their indentation).
fn readme_matches_example(root: &Path) -> Result<()> {
    let readme = std::fs::read_to_string(root.join("README.md")).context("reading README.md")?;
    let example = std::fs::read_to_string(root.join(EXAMPLE)).context("reading the example")?;
    let block = readme_block(&readme)?;
    let region = example_region(&example)?;
    if block == region {
        return Ok(());
    }
    let line = block
        .iter()
        .zip(&region)
        .position(|(a, b)| a != b)
        .unwrap_or(block.len().min(region.len()));
    anyhow::bail!(
        "README block ({} lines) and {EXAMPLE} region ({} lines) differ at line {}:\n  README:  {:?}\n  example: {:?}",
        block.len(),
        region.len(),
        line + 1,
        block.get(line),
        region.get(line)
    )
}

/// The lines of the first ```rust (or ```rust,ignore) block after
/// [`README_SECTION`].
fn readme_block(readme: &str) -> Result<Vec<String>> {
    let mut lines = readme
        .lines()
        .skip_while(|l| l.trim_end() != README_SECTION);
    anyhow::ensure!(
        lines.next().is_some(),
        "README.md has no `{README_SECTION}` section"
    );
    // `rust,ignore`: the core compiles the README's blocks as doctests, and
    // this one needs macOS; it is compiled from the example file instead.
    let mut lines = lines.skip_while(|l| !l.trim_end().starts_with("```rust"));
    anyhow::ensure!(
        lines.next().is_some(),
        "no ```rust block in the README section"
    );
    Ok(lines
        .take_while(|l| l.trim_end() != "```")
        .map(|l| l.trim_end().to_string())
        .collect())
}

/// The example's lines between the markers, dedented by the marker's
/// indentation.
fn example_region(example: &str) -> Result<Vec<String>> {
    let begin = example
        .lines()
        .find(|l| l.trim() == BEGIN)
        .with_context(|| format!("no `{BEGIN}` marker in {EXAMPLE}"))?;
    let indent = &begin[..begin.len() - begin.trim_start().len()];
    let region: Vec<String> = example
        .lines()
        .skip_while(|l| l.trim() != BEGIN)
        .skip(1)
        .take_while(|l| l.trim() != END)
        .map(|l| {
            let l = l.trim_end();
            l.strip_prefix(indent).unwrap_or(l).to_string()
        })
        .collect();
    anyhow::ensure!(
        example.lines().any(|l| l.trim() == END),
        "no `{END}` marker"
    );
    Ok(region)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extracts_and_compares() {
        let readme = "# x\n## macOS (Hypervisor.framework)\ntext\n```rust,ignore\nfn a() {\n    b();\n}\n```\n```rust\nno\n```\n";
        let example = "mod m {\n    // README begin\n    fn a() {\n        b();\n    }\n    // README end\n}\n";
        assert_eq!(readme_block(readme).unwrap(), ["fn a() {", "    b();", "}"]);
        assert_eq!(
            example_region(example).unwrap(),
            ["fn a() {", "    b();", "}"]
        );
        assert!(readme_block("# x\n```rust\n```\n").is_err());
        assert!(example_region("fn a() {}").is_err());
    }
}
