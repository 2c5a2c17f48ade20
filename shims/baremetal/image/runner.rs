//! Host-side runner for the bare-metal test image: builds it and boots it
//! under `qemu-system-aarch64` (QEMU `virt`, GICv2 or GICv3, at EL1 or at
//! EL2), streams its output, enforces a timeout, parses the final
//! `N passed, N failed` line and, for an image built with the `defmt`
//! feature, decodes its defmt log (`defmt.bin`, written over semihosting in
//! QEMU's working directory) with `defmt-print`.
//!
//! Plain `std`, no dependencies: include it with `#[path]` (the
//! `cargo xtask test baremetal` suite does:
//! `#[path = "../../../../shims/baremetal/image/runner.rs"] mod runner;`).
//!
//! By hand (see `run.sh` next to this file, which does exactly this):
//!
//! ```text
//! cd shims/baremetal/image
//! cargo build --release          # .cargo/config.toml picks aarch64-unknown-none
//! ./run.sh                        # builds, then runs GICv2 and GICv3 through run_image
//! ```
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// The QEMU binary; override with the environment variable
/// `QEMU_SYSTEM_AARCH64`.
pub const QEMU: &str = "qemu-system-aarch64";

/// The image's target triple.
pub const TARGET: &str = "aarch64-unknown-none";

/// Builds the image in `image_dir` (the directory holding its Cargo.toml)
/// with `cargo build [--release] --target aarch64-unknown-none`, into
/// `image_dir/target`, and returns the ELF's path. See [`build_image_with`].
pub fn build_image(image_dir: &Path, release: bool) -> Result<PathBuf, String> {
    build_image_with(image_dir, release, &[], &image_dir.join("target"))
}

/// Builds the image in `image_dir` with the cargo `features` given (e.g.
/// `["defmt"]`) into `target_dir`, and returns the ELF's (absolute) path.
/// Environment variables that an outer cargo may have set for another
/// target (`RUSTFLAGS`, `CARGO_BUILD_TARGET`, ...) are removed. The
/// `aarch64-unknown-none` rustup target must be installed.
pub fn build_image_with(
    image_dir: &Path,
    release: bool,
    features: &[&str],
    target_dir: &Path,
) -> Result<PathBuf, String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(image_dir)
        .args(["build", "--target", TARGET, "--target-dir"])
        .arg(target_dir)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("CARGO_TARGET_DIR");
    if release {
        cmd.arg("--release");
    }
    if !features.is_empty() {
        cmd.args(["--features", &features.join(",")]);
    }
    println!("$ (in {}) {}", image_dir.display(), display(&cmd));
    let status = cmd
        .status()
        .map_err(|e| format!("cannot run cargo in {}: {e}", image_dir.display()))?;
    if !status.success() {
        return Err(format!("building the bare-metal image failed ({status})"));
    }
    let elf = target_dir
        .join(TARGET)
        .join(if release { "release" } else { "debug" })
        .join("virtnet-baremetal-image");
    if elf.is_file() {
        elf.canonicalize()
            .map_err(|e| format!("{}: {e}", elf.display()))
    } else {
        Err(format!("built, but {} is missing", elf.display()))
    }
}

/// The QEMU command line for `elf` on a `virt` machine with GIC version
/// `gic_version` (2 or 3), started at EL2 when `el2` (`virtualization=on`).
pub fn qemu_command(elf: &Path, gic_version: u8, el2: bool) -> Command {
    let qemu = std::env::var_os("QEMU_SYSTEM_AARCH64").unwrap_or_else(|| QEMU.into());
    let mut machine = String::from("virt");
    if el2 {
        machine.push_str(",virtualization=on");
    }
    if gic_version == 3 {
        machine.push_str(",gic-version=3");
    }
    let mut cmd = Command::new(qemu);
    cmd.args([
        "-M",
        machine.as_str(),
        "-cpu",
        "cortex-a72",
        "-m",
        "128M",
        "-nographic",
        "-semihosting",
        "-kernel",
    ])
    .arg(elf)
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    cmd
}

/// Boots `elf` under QEMU with GICv`gic_version` (2 or 3), printing its
/// output as it comes (prefixed with `[gicvN] `), and returns
/// `(passed, failed)` from the image's final `N passed, N failed` line.
///
/// # Errors
/// A message when QEMU cannot be started, when the run exceeds `timeout`
/// (QEMU is killed: a hang is a failure), when the tally line is missing,
/// when the image reports a different GIC version than asked for, or when
/// the exit status disagrees with the tally (0 with no failure, 1 with
/// failures; anything else is a panic, an unexpected exception or a setup
/// failure in the image).
pub fn run_image(elf: &Path, gic_version: u8, timeout: Duration) -> Result<(u32, u32), String> {
    run_image_on(elf, gic_version, false, timeout)
}

/// As [`run_image`]; with `el2`, QEMU starts the image at EL2
/// (`virtualization=on`): the image then installs its stage-2 trap handler,
/// serves the device from it, and adds the EL2 tests (its `el2: yes` line is
/// checked).
pub fn run_image_on(
    elf: &Path,
    gic_version: u8,
    el2: bool,
    timeout: Duration,
) -> Result<(u32, u32), String> {
    run(
        elf,
        &RunOptions {
            gic_version,
            el2,
            timeout,
            defmt_print: None,
        },
    )
    .map(|o| (o.passed, o.failed))
}

/// How to boot the image.
#[derive(Clone, Debug)]
pub struct RunOptions<'a> {
    /// GIC version, 2 or 3.
    pub gic_version: u8,
    /// Start at EL2 (`virtualization=on`).
    pub el2: bool,
    /// Kill QEMU and fail after this long.
    pub timeout: Duration,
    /// For an image built with the `defmt` feature: the `defmt-print`
    /// binary that decodes its log, which must then be complete (see
    /// [`check_defmt`]).
    pub defmt_print: Option<&'a Path>,
}

/// A judged run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// Tests passed (the tally line).
    pub passed: u32,
    /// Tests failed.
    pub failed: u32,
    /// The decoded defmt log (empty unless asked for).
    pub defmt: Vec<String>,
}

/// Boots `elf` as `opts` says, in a fresh working directory, and judges the
/// run (see [`run_image`]); with `opts.defmt_print`, also decodes and checks
/// the defmt log.
///
/// # Errors
/// As for [`run_image`], plus a missing, undecodable or incomplete defmt
/// log.
pub fn run(elf: &Path, opts: &RunOptions<'_>) -> Result<Outcome, String> {
    let (gic_version, el2) = (opts.gic_version, opts.el2);
    if gic_version != 2 && gic_version != 3 {
        return Err(format!("GIC version must be 2 or 3, not {gic_version}"));
    }
    let elf = elf
        .canonicalize()
        .map_err(|e| format!("{}: {e}", elf.display()))?;
    let workdir = fresh_dir(gic_version, el2)?;
    let outcome = run_in(&elf, opts, &workdir);
    let _ = std::fs::remove_dir_all(&workdir);
    outcome
}

fn run_in(elf: &Path, opts: &RunOptions<'_>, workdir: &Path) -> Result<Outcome, String> {
    let (gic_version, el2) = (opts.gic_version, opts.el2);
    let mut cmd = qemu_command(elf, gic_version, el2);
    cmd.current_dir(workdir);
    let prefix = format!("[gicv{gic_version}{}] ", if el2 { ",el2" } else { "" });
    println!("$ (in {}) {}", workdir.display(), display(&cmd));
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", cmd.get_program().to_string_lossy()))?;

    let (tx, rx) = mpsc::channel::<String>();
    let readers = [
        spawn_reader(child.stdout.take(), tx.clone(), prefix.clone()),
        spawn_reader(child.stderr.take(), tx, prefix.clone()),
    ];

    // On a timeout the readers are left detached: they end when the last
    // holder of QEMU's pipes goes away.
    let status = wait_with_timeout(&mut child, opts.timeout)?;
    // QEMU exited: its pipes are closed, so the readers end.
    for r in readers {
        let _ = r.join();
    }
    let lines: Vec<String> = rx.try_iter().collect();
    let (passed, failed) = check_run(&lines, gic_version, el2, status)?;
    let defmt = match opts.defmt_print {
        Some(tool) => {
            let decoded = decode_defmt(tool, elf, &workdir.join("defmt.bin"))?;
            for l in &decoded {
                println!("{prefix}defmt: {l}");
            }
            check_defmt(&decoded, passed, failed)?;
            decoded
        }
        None => Vec::new(),
    };
    Ok(Outcome {
        passed,
        failed,
        defmt,
    })
}

/// An empty directory for one QEMU run (semihosting writes `defmt.bin`
/// there).
fn fresh_dir(gic_version: u8, el2: bool) -> Result<PathBuf, String> {
    let dir = std::env::temp_dir().join(format!(
        "virtnet-baremetal-{}-gicv{gic_version}{}",
        std::process::id(),
        if el2 { "-el2" } else { "" }
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(dir)
}

/// Decodes the defmt log `bin` of `elf` with `defmt-print -e elf < bin`;
/// returns its lines.
pub fn decode_defmt(tool: &Path, elf: &Path, bin: &Path) -> Result<Vec<String>, String> {
    let input =
        std::fs::File::open(bin).map_err(|e| format!("no defmt log at {}: {e}", bin.display()))?;
    let out = Command::new(tool)
        .arg("-e")
        .arg(elf)
        .stdin(input)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", tool.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{} failed ({}): {}",
            tool.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim_end()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect())
}

/// Checks a decoded defmt log against the run's tally: one
/// `test NAME: passed=P failed=F` line per test, the last with the final
/// counts, and no ERROR line.
pub fn check_defmt(lines: &[String], passed: u32, failed: u32) -> Result<(), String> {
    let tests: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains(" test ") && l.contains(": passed="))
        .collect();
    let total = passed + failed;
    if tests.len() != total as usize {
        return Err(format!(
            "the defmt log has {} test lines for {total} tests",
            tests.len()
        ));
    }
    let last = format!("passed={passed} failed={failed}");
    if total > 0 && !tests.last().is_some_and(|l| l.ends_with(&last)) {
        return Err(format!(
            "the defmt log's last test line does not end with `{last}`"
        ));
    }
    if let Some(e) = lines.iter().find(|l| l.starts_with("ERROR")) {
        return Err(format!("the defmt log has an error: {e}"));
    }
    Ok(())
}

/// Reads `pipe` line by line, echoing each line with `prefix` and sending it
/// to `tx`.
fn spawn_reader<R: Read + Send + 'static>(
    pipe: Option<R>,
    tx: mpsc::Sender<String>,
    prefix: String,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let Some(pipe) = pipe else { return };
        let mut reader = BufReader::new(pipe);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let line = String::from_utf8_lossy(&buf)
                        .trim_end_matches(['\r', '\n'])
                        .to_string();
                    println!("{prefix}{line}");
                    let _ = tx.send(line);
                }
            }
        }
    })
}

/// Waits for `child` at most `timeout`; kills it on expiry.
fn wait_with_timeout(child: &mut Child, timeout: Duration) -> Result<ExitStatus, String> {
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Ok(status),
            Ok(None) if start.elapsed() >= timeout => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "QEMU timed out after {timeout:?} (killed): the image hung"
                ));
            }
            Ok(None) => thread::sleep(Duration::from_millis(20)),
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("waiting for QEMU failed: {e}"));
            }
        }
    }
}

/// Judges a finished run from its output lines and exit status.
fn check_run(
    lines: &[String],
    gic_version: u8,
    el2: bool,
    status: ExitStatus,
) -> Result<(u32, u32), String> {
    let reported = lines
        .iter()
        .rev()
        .find_map(|l| l.trim().strip_prefix("gic: v").map(str::to_string));
    match reported.as_deref() {
        Some(v) if v == gic_version.to_string() => {}
        Some(v) => {
            return Err(format!(
                "asked for GICv{gic_version}, the image found GICv{v}"
            ))
        }
        None => {
            return Err(format!(
                "no `gic: vN` line in the image's output ({status})"
            ))
        }
    }
    let want_el2 = if el2 { "yes" } else { "no" };
    match lines
        .iter()
        .rev()
        .find_map(|l| l.trim().strip_prefix("el2: "))
    {
        Some(v) if v == want_el2 => {}
        Some(v) => {
            return Err(format!(
                "expected `el2: {want_el2}`, the image says `el2: {v}`"
            ))
        }
        None => {
            return Err(format!(
                "no `el2: yes|no` line in the image's output ({status})"
            ))
        }
    }
    let Some((passed, failed)) = lines.iter().rev().find_map(|l| parse_tally(l)) else {
        return Err(format!(
            "no `N passed, N failed` line in the image's output ({status})"
        ));
    };
    match (status.code(), failed) {
        (Some(0), 0) => Ok((passed, failed)),
        (Some(1), f) if f > 0 => Ok((passed, failed)),
        (code, _) => Err(format!(
            "exit status {} does not match the tally {passed} passed, {failed} failed",
            code.map_or_else(|| status.to_string(), |c| c.to_string())
        )),
    }
}

/// Parses a line that is exactly `N passed, N failed` (surrounding spaces
/// allowed).
pub fn parse_tally(line: &str) -> Option<(u32, u32)> {
    let (p, f) = line.trim().split_once(", ")?;
    let passed = p.strip_suffix(" passed")?.parse().ok()?;
    let failed = f.strip_suffix(" failed")?.parse().ok()?;
    Some((passed, failed))
}

fn display(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    fn status(code: i32) -> ExitStatus {
        use std::os::unix::process::ExitStatusExt;
        ExitStatus::from_raw(code << 8)
    }

    #[test]
    fn defmt_logs_are_checked_against_the_tally() {
        let log = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let good = log(&[
            "INFO  image: GICv3",
            "INFO  test a: passed=1 failed=0",
            "WARN  virtqueue stopped",
            "INFO  test b: passed=1 failed=1",
        ]);
        assert_eq!(check_defmt(&good, 1, 1), Ok(()));
        assert!(check_defmt(&good, 2, 0).is_err(), "counts differ");
        assert!(
            check_defmt(&good[..2], 1, 1).is_err(),
            "a test line missing"
        );
        let mut bad = good.clone();
        bad.push("ERROR something".into());
        assert!(check_defmt(&bad, 1, 1).is_err(), "error line");
        assert!(check_defmt(&[], 0, 0).is_ok());
    }

    #[test]
    fn tally_lines() {
        assert_eq!(parse_tally("9 passed, 0 failed"), Some((9, 0)));
        assert_eq!(parse_tally("  3 passed, 2 failed \r"), Some((3, 2)));
        assert_eq!(parse_tally("test x ... ok"), None);
        assert_eq!(parse_tally("9 passed, 0 failed, 1 skipped"), None);
        assert_eq!(parse_tally("x passed, 0 failed"), None);
    }

    #[cfg(unix)]
    #[test]
    fn runs_are_judged() {
        let out = |tally: &str| -> Vec<String> {
            vec![
                "gic: v3".into(),
                "el2: no".into(),
                "test a ... ok".into(),
                tally.into(),
            ]
        };
        assert_eq!(
            check_run(&out("1 passed, 0 failed"), 3, false, status(0)),
            Ok((1, 0))
        );
        assert_eq!(
            check_run(&out("0 passed, 1 failed"), 3, false, status(1)),
            Ok((0, 1))
        );
        assert!(
            check_run(&out("1 passed, 0 failed"), 2, false, status(0)).is_err(),
            "GIC mismatch"
        );
        assert!(
            check_run(&out("1 passed, 0 failed"), 3, true, status(0)).is_err(),
            "EL2 mismatch"
        );
        assert!(
            check_run(&out("1 passed, 0 failed"), 3, false, status(1)).is_err(),
            "status disagrees"
        );
        assert!(
            check_run(&out("0 passed, 1 failed"), 3, false, status(0)).is_err(),
            "status disagrees"
        );
        assert!(
            check_run(&out("1 passed, 0 failed"), 3, false, status(3)).is_err(),
            "exception exit"
        );
        assert!(
            check_run(&out("panicked: x"), 3, false, status(2)).is_err(),
            "no tally"
        );
        assert!(
            check_run(&["1 passed, 0 failed".to_string()], 3, false, status(0)).is_err(),
            "no gic line"
        );
    }
}
