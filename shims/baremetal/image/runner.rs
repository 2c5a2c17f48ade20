//! Host-side runner for the bare-metal test image: builds it and boots it
//! under `qemu-system-aarch64` (QEMU `virt`, GICv2 or GICv3), streams its
//! output, enforces a timeout and parses the final `N passed, N failed` line.
//!
//! Plain `std`, no dependencies: include it with
//! `#[path = "../../shims/baremetal/image/runner.rs"] mod baremetal_runner;`.
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
/// `image_dir/target`, and returns the ELF's path. Environment variables that
/// an outer cargo may have set for another target (`RUSTFLAGS`,
/// `CARGO_BUILD_TARGET`, ...) are removed. The `aarch64-unknown-none` rustup
/// target must be installed.
pub fn build_image(image_dir: &Path, release: bool) -> Result<PathBuf, String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let target_dir = image_dir.join("target");
    let mut cmd = Command::new(cargo);
    cmd.current_dir(image_dir)
        .args(["build", "--target", TARGET, "--target-dir"])
        .arg(&target_dir)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("CARGO_TARGET_DIR");
    if release {
        cmd.arg("--release");
    }
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
        Ok(elf)
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
/// (`virtualization=on`): the image then installs its stage-2 trap handler
/// and adds the tests of guest MMIO accesses decoded at EL2 (its `el2: yes`
/// line is checked).
pub fn run_image_on(
    elf: &Path,
    gic_version: u8,
    el2: bool,
    timeout: Duration,
) -> Result<(u32, u32), String> {
    if gic_version != 2 && gic_version != 3 {
        return Err(format!("GIC version must be 2 or 3, not {gic_version}"));
    }
    let mut cmd = qemu_command(elf, gic_version, el2);
    let prefix = format!("[gicv{gic_version}{}] ", if el2 { ",el2" } else { "" });
    println!("$ {}", display(&cmd));
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", cmd.get_program().to_string_lossy()))?;

    let (tx, rx) = mpsc::channel::<String>();
    let readers = [
        spawn_reader(child.stdout.take(), tx.clone(), prefix.clone()),
        spawn_reader(child.stderr.take(), tx, prefix),
    ];

    // On a timeout the readers are left detached: they end when the last
    // holder of QEMU's pipes goes away.
    let status = wait_with_timeout(&mut child, timeout)?;
    // QEMU exited: its pipes are closed, so the readers end.
    for r in readers {
        let _ = r.join();
    }
    let lines: Vec<String> = rx.try_iter().collect();
    check_run(&lines, gic_version, el2, status)
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
