//! Fuzzing: `cargo xtask fuzz [TARGET] [--minutes N]` and the `fuzz` suite.
//!
//! The targets live in `fuzz/` (a cargo-fuzz workspace of its own, built
//! with `cargo +nightly fuzz build`: release, debug assertions,
//! AddressSanitizer). A run starts from the committed seed corpus
//! `fuzz/corpus/<target>` and grows a working corpus in
//! `fuzz/target/corpus/<target>` (git-ignored); libFuzzer's output goes to
//! `fuzz/target/logs/<target>.log`, and a crashing input to
//! `fuzz/artifacts/<target>/`. What a run found is read from libFuzzer's
//! final statistics: executions, edges covered (`cov:`), features (`ft:`),
//! and the failure, if any (crash, timeout, leak, out of memory).
//!
//! `cargo xtask fuzz seeds` rewrites the seed corpus from
//! `fuzz/src/seeds.rs` (`fuzz/tests/seeds.rs` checks it is current).

use std::fs::File;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::ctx::Ctx;
use crate::install::ensure_cargo_install;
use crate::util::{display, echo, run_ok};

/// Seconds libFuzzer lets one input run before calling it a timeout.
pub const TIMEOUT_SECS: u32 = 10;

/// What one fuzzing run found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Run {
    /// The target.
    pub target: String,
    /// Inputs executed.
    pub execs: u64,
    /// Edges covered (libFuzzer's `cov:`).
    pub cov: Option<u64>,
    /// Features (libFuzzer's `ft:`).
    pub ft: Option<u64>,
    /// Corpus size at the end.
    pub corpus: Option<u64>,
    /// The failure, if any: `crash`, `timeout`, `leak`, `oom`, or
    /// `exit status N` when libFuzzer died without saying why.
    pub failure: Option<String>,
    /// The input that failed.
    pub artifact: Option<String>,
    /// Wall-clock seconds.
    pub secs: u64,
    /// The log file.
    pub log: PathBuf,
}

impl Run {
    /// One line for humans.
    pub fn summary(&self) -> String {
        let num = |v: Option<u64>| v.map_or_else(|| "?".to_string(), |v| v.to_string());
        let mut s = format!(
            "{}: {} executions in {} s, cov {} edges, ft {}, corpus {}",
            self.target,
            self.execs,
            self.secs,
            num(self.cov),
            num(self.ft),
            num(self.corpus)
        );
        match &self.failure {
            None => s.push_str(", no crash"),
            Some(f) => {
                s.push_str(&format!(", FAILED: {f}"));
                if let Some(a) = &self.artifact {
                    s.push_str(&format!(" (input {a})"));
                }
            }
        }
        s
    }
}

/// The value after `key` in a libFuzzer line (`cov: 123` → 123).
fn field(line: &str, key: &str) -> Option<u64> {
    let rest = &line[line.find(key)? + key.len()..];
    let digits: String = rest
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().ok()
}

/// Reads a libFuzzer log into a [`Run`] (execs, coverage, failure).
pub fn parse_log(target: &str, text: &str) -> Run {
    let mut r = Run {
        target: target.to_string(),
        ..Run::default()
    };
    for line in text.lines() {
        if let Some(n) = line
            .strip_prefix("stat::number_of_executed_units:")
            .and_then(|v| v.trim().parse().ok())
        {
            r.execs = n;
        }
        // Status lines: `#1234\tNEW    cov: 10 ft: 20 corp: 3/4b ...`.
        if line.starts_with('#') && line.contains("cov: ") {
            if let Some(n) = line[1..]
                .split_whitespace()
                .next()
                .and_then(|v| v.parse().ok())
            {
                r.execs = r.execs.max(n);
            }
            r.cov = field(line, "cov:").or(r.cov);
            r.ft = field(line, "ft:").or(r.ft);
            r.corpus = field(line, "corp:").or(r.corpus);
        }
        if let Some(n) = line
            .strip_prefix("Done ")
            .and_then(|v| v.split(' ').next()?.parse().ok())
        {
            r.execs = r.execs.max(n);
        }
        let failure = if line.contains("ERROR: libFuzzer: timeout")
            || line.contains("SUMMARY: libFuzzer: timeout")
        {
            Some("timeout")
        } else if line.contains("ERROR: LeakSanitizer")
            || line.contains("libFuzzer: detected memory leaks")
        {
            Some("leak")
        } else if line.contains("out-of-memory") {
            Some("oom")
        } else if line.contains("libFuzzer: deadly signal")
            || line.contains("ERROR: AddressSanitizer")
            || line.contains("panicked at")
        {
            Some("crash")
        } else {
            None
        };
        if let (Some(f), None) = (failure, &r.failure) {
            r.failure = Some(f.to_string());
        }
        if let Some(rest) = line.split("Test unit written to ").nth(1) {
            r.artifact = Some(rest.trim().to_string());
        }
    }
    r
}

/// The fuzz workspace.
pub fn fuzz_dir(ctx: &Ctx) -> PathBuf {
    ctx.root.join("fuzz")
}

/// The targets: the files of `fuzz/fuzz_targets`, sorted.
pub fn targets(ctx: &Ctx) -> Result<Vec<String>> {
    let dir = fuzz_dir(ctx).join("fuzz_targets");
    let mut v: Vec<String> = std::fs::read_dir(&dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| {
            let p = e.ok()?.path();
            if p.extension()? != "rs" {
                return None;
            }
            Some(p.file_stem()?.to_string_lossy().into_owned())
        })
        .collect();
    v.sort();
    Ok(v)
}

/// Installs cargo-fuzz when missing (the nightly toolchain is installed by
/// the miri suite's installer as well; cargo-fuzz needs it to build).
pub fn ensure_tools() -> Result<()> {
    crate::install::ensure_rustup_components(Some("nightly"), &["rustc", "cargo"])?;
    ensure_cargo_install("cargo-fuzz", "cargo-fuzz")
}

/// `cargo +nightly fuzz build` (all targets): release, debug assertions,
/// AddressSanitizer.
pub fn build(ctx: &Ctx) -> Result<()> {
    run_ok(ctx.cargo_nightly().args(["fuzz", "build"]))
}

/// Fuzz `target` for `secs` seconds from the seed corpus, quietly (the
/// log goes to a file); a failure is reported in the result, not as an
/// error. `fresh`: start from the seeds alone (an empty working corpus, as
/// the suite does), else go on growing `fuzz/target/corpus/<target>`.
pub fn run_target(ctx: &Ctx, target: &str, secs: u64, fresh: bool) -> Result<Run> {
    let dir = fuzz_dir(ctx);
    let work = if fresh {
        let w = dir.join("target/suite-corpus").join(target);
        if w.exists() {
            std::fs::remove_dir_all(&w).with_context(|| format!("clearing {}", w.display()))?;
        }
        w
    } else {
        dir.join("target/corpus").join(target)
    };
    let seeds = dir.join("corpus").join(target);
    let logs = dir.join("target/logs");
    std::fs::create_dir_all(&work)?;
    std::fs::create_dir_all(&seeds)?;
    std::fs::create_dir_all(&logs)?;
    let log = logs.join(format!("{target}.log"));
    let mut cmd = ctx.cargo_nightly();
    cmd.args(["fuzz", "run", target])
        .arg(&work)
        .arg(&seeds)
        .arg("--")
        .arg(format!("-max_total_time={secs}"))
        .arg(format!("-timeout={TIMEOUT_SECS}"))
        .arg("-rss_limit_mb=4096")
        .arg("-detect_leaks=1")
        .arg("-print_final_stats=1");
    echo(&cmd);
    println!("  (libFuzzer output: {})", log.display());
    let out = File::create(&log).with_context(|| format!("creating {}", log.display()))?;
    let err = out.try_clone()?;
    let start = Instant::now();
    let status = cmd
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .status()
        .with_context(|| format!("cannot start `{}`", display(&cmd)))?;
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let mut r = parse_log(target, &text);
    r.secs = start.elapsed().as_secs();
    r.log = log;
    if !status.success() && r.failure.is_none() {
        r.failure = Some(format!("exit status {status}"));
    }
    if r.failure.is_some() {
        // The last lines say what happened.
        let lines: Vec<&str> = text.lines().collect();
        for l in &lines[lines.len().saturating_sub(40)..] {
            println!("  | {l}");
        }
    }
    Ok(r)
}

/// Rewrites the seed corpus (`fuzz/tests/seeds.rs` with
/// `VIRTNET_FUZZ_WRITE_SEEDS=1`).
pub fn write_seeds(ctx: &Ctx) -> Result<()> {
    run_ok(
        Command::new("cargo")
            .current_dir(fuzz_dir(ctx))
            .env("VIRTNET_FUZZ_WRITE_SEEDS", "1")
            .args(["test", "--test", "seeds"]),
    )
}

/// `cargo xtask fuzz [TARGET] [--minutes N]`.
pub fn command(ctx: &Ctx, target: Option<&str>, minutes: u32) -> Result<()> {
    if target == Some("seeds") {
        return write_seeds(ctx);
    }
    let all = targets(ctx)?;
    let chosen: Vec<String> = match target {
        None => all,
        Some(t) if all.iter().any(|a| a == t) => vec![t.to_string()],
        Some(t) => bail!(
            "unknown fuzz target `{t}`; targets: {} (or `seeds` to rewrite the seed corpus)",
            all.join(", ")
        ),
    };
    ensure_tools()?;
    build(ctx)?;
    let secs = u64::from(minutes.max(1)) * 60;
    let mut runs = Vec::new();
    for t in &chosen {
        let r = run_target(ctx, t, secs, false)?;
        println!("{}", r.summary());
        runs.push(r);
    }
    println!(
        "----- fuzzing summary ({} min per target) -----",
        minutes.max(1)
    );
    for r in &runs {
        println!("{}", r.summary());
    }
    let failed: Vec<&str> = runs
        .iter()
        .filter(|r| r.failure.is_some())
        .map(|r| r.target.as_str())
        .collect();
    if !failed.is_empty() {
        bail!(
            "fuzzing found failures in: {} (inputs under fuzz/artifacts/; reproduce with `cargo +nightly fuzz run <target> <input>` in the repository root)",
            failed.join(", ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_final_stats_and_status_lines() {
        let log = "INFO: Seed: 1\n#2\tINITED cov: 10 ft: 11 corp: 3/30b exec/s: 0 rss: 40Mb\n\
                   #8192\tpulse  cov: 917 ft: 2634 corp: 320/16191b lim: 115 exec/s: 4096 rss: 257Mb\n\
                   #216309\tDONE   cov: 1191 ft: 4747 corp: 712/85Kb lim: 536 exec/s: 897 rss: 413Mb\n\
                   Done 216309 runs in 241 second(s)\n\
                   stat::number_of_executed_units: 216309\nstat::peak_rss_mb: 413\n";
        let r = parse_log("queue", log);
        assert_eq!(r.execs, 216309);
        assert_eq!(r.cov, Some(1191));
        assert_eq!(r.ft, Some(4747));
        assert_eq!(r.corpus, Some(712));
        assert_eq!(r.failure, None);
    }

    #[test]
    fn reads_crashes_timeouts_and_leaks() {
        let crash = "#100\tNEW cov: 5 ft: 6 corp: 1/1b\nthread '<unnamed>' panicked at src/x.rs:1:1:\n\
                     ==1== ERROR: libFuzzer: deadly signal\n\
                     artifact_prefix='/f/artifacts/tx/'; Test unit written to /f/artifacts/tx/crash-abc\n";
        let r = parse_log("tx", crash);
        assert_eq!(r.failure.as_deref(), Some("crash"));
        assert_eq!(r.artifact.as_deref(), Some("/f/artifacts/tx/crash-abc"));
        assert_eq!(r.execs, 100);
        let t = parse_log(
            "rx",
            "==5== ERROR: libFuzzer: timeout after 10 seconds\nSUMMARY: libFuzzer: timeout\n",
        );
        assert_eq!(t.failure.as_deref(), Some("timeout"));
        let l = parse_log("rx", "==5==ERROR: LeakSanitizer: detected memory leaks\n");
        assert_eq!(l.failure.as_deref(), Some("leak"));
    }
}
