//! Installers for what the xtask needs: rustup targets and components, Debian
//! packages (QEMU 10 from bookworm-backports among them) and `cargo install`ed
//! tools. Each one checks first, does nothing when the thing is present,
//! prints what it installs, and fails with a clear message of what is needed
//! when it cannot install (not root, no apt-get, no rustup).

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{bail, Context, Result};

use crate::util::{capture, capture_stdout, run_ok, which};

/// The apt source for bookworm-backports, exactly as the environment notes give it.
const BACKPORTS_SOURCES: &str = "Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n";
/// Where [`BACKPORTS_SOURCES`] is written.
const BACKPORTS_PATH: &str = "/etc/apt/sources.list.d/backports.sources";

/// Whether `apt-get update` already ran in this process.
static APT_UPDATED: AtomicBool = AtomicBool::new(false);

/// A `rustup` command for `toolchain` (`None`: the one active in the workspace).
fn rustup(toolchain: Option<&str>, args: &[&str]) -> Command {
    let mut cmd = Command::new("rustup");
    cmd.args(args);
    if let Some(tc) = toolchain {
        cmd.args(["--toolchain", tc]);
    }
    cmd
}

/// Fails with a clear message when `rustup` is not there.
fn need_rustup(what: &str) -> Result<()> {
    if which("rustup").is_none() {
        bail!("rustup is needed to install {what}, and it is not on PATH");
    }
    Ok(())
}

/// Ensures the rustup target `target` is installed for `toolchain`
/// (`None`: the active toolchain).
pub fn ensure_rustup_target(toolchain: Option<&str>, target: &str) -> Result<()> {
    need_rustup(&format!("the target {target}"))?;
    let installed = capture_stdout(&mut rustup(toolchain, &["target", "list", "--installed"]))?;
    if installed.lines().any(|l| l.trim() == target) {
        return Ok(());
    }
    println!("installing rustup target {target}");
    run_ok(&mut rustup(toolchain, &["target", "add", target]))
}

/// Ensures the rustup components (e.g. `miri`, `rust-src`, `clippy`) are
/// installed for `toolchain` (`None`: the active toolchain).
pub fn ensure_rustup_components(toolchain: Option<&str>, components: &[&str]) -> Result<()> {
    need_rustup(&format!("the components {components:?}"))?;
    let installed = capture_stdout(&mut rustup(
        toolchain,
        &["component", "list", "--installed"],
    ))?;
    // Installed components are listed with their host triple: `miri-x86_64-unknown-linux-gnu`.
    let missing: Vec<&str> = components
        .iter()
        .copied()
        .filter(|c| {
            !installed
                .lines()
                .any(|l| l.trim() == *c || l.trim().starts_with(&format!("{c}-")))
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    if let Some(tc) = toolchain {
        let list = capture_stdout(Command::new("rustup").args(["toolchain", "list"]))?;
        if !list.lines().any(|l| l.starts_with(tc)) {
            println!("installing rust toolchain {tc}");
            run_ok(Command::new("rustup").args([
                "toolchain",
                "install",
                tc,
                "--profile",
                "minimal",
            ]))?;
        }
    }
    println!("installing rustup components {}", missing.join(" "));
    let mut args = vec!["component", "add"];
    args.extend(&missing);
    run_ok(&mut rustup(toolchain, &args))
}

/// Whether the Debian package `pkg` is installed.
pub fn apt_installed(pkg: &str) -> bool {
    capture(Command::new("dpkg-query").args(["-W", "-f=${Status}", pkg]))
        .map(|o| {
            o.status.success()
                && String::from_utf8_lossy(&o.stdout).contains("install ok installed")
        })
        .unwrap_or(false)
}

/// Whether we run as root.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Fails with a clear message unless apt-get can be used to install `pkgs`.
fn need_apt(pkgs: &[&str], extra: &str) -> Result<()> {
    let what = format!("apt-get install -y {extra}{}", pkgs.join(" "));
    if which("apt-get").is_none() {
        bail!("missing Debian packages and no apt-get here; needed: {what}");
    }
    if !is_root() {
        bail!("missing Debian packages and not root; run as root: {what}");
    }
    Ok(())
}

/// Runs `apt-get update` (once per process unless `force`).
fn apt_update(force: bool) -> Result<()> {
    if !force && APT_UPDATED.load(Ordering::Relaxed) {
        return Ok(());
    }
    run_ok(Command::new("apt-get").args(["update", "-q"]))?;
    APT_UPDATED.store(true, Ordering::Relaxed);
    Ok(())
}

/// An `apt-get install` command, non-interactive.
fn apt_install_cmd(extra: &[&str], pkgs: &[&str]) -> Command {
    let mut cmd = Command::new("apt-get");
    cmd.env("DEBIAN_FRONTEND", "noninteractive")
        .args(["install", "-y", "-q"])
        .args(extra)
        .args(pkgs);
    cmd
}

/// Ensures the Debian packages `pkgs` are installed (from the default suite).
pub fn ensure_apt(pkgs: &[&str]) -> Result<()> {
    let missing: Vec<&str> = pkgs.iter().copied().filter(|p| !apt_installed(p)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    need_apt(&missing, "")?;
    println!("installing Debian packages {}", missing.join(" "));
    apt_update(false)?;
    run_ok(&mut apt_install_cmd(&[], &missing))
}

/// Ensures the bookworm-backports apt source exists; returns whether it had
/// to be added (then `apt-get update` must run again).
pub fn ensure_backports_source() -> Result<bool> {
    let path = Path::new(BACKPORTS_PATH);
    if path.exists() {
        return Ok(false);
    }
    let listed = capture(Command::new("grep").args([
        "-rqs",
        "bookworm-backports",
        "/etc/apt/sources.list",
        "/etc/apt/sources.list.d",
    ]))
    .map(|o| o.status.success())
    .unwrap_or(false);
    if listed {
        return Ok(false);
    }
    if !is_root() {
        bail!("the bookworm-backports apt source is missing and we are not root; as root, write {BACKPORTS_PATH}:\n{BACKPORTS_SOURCES}");
    }
    println!("adding the bookworm-backports apt source ({BACKPORTS_PATH})");
    std::fs::write(path, BACKPORTS_SOURCES).with_context(|| format!("writing {BACKPORTS_PATH}"))?;
    Ok(true)
}

/// The major version of `qemu-system-x86_64`, if it runs.
pub fn qemu_major() -> Option<u32> {
    let out = capture(Command::new("qemu-system-x86_64").arg("--version")).ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let version = text.split("version ").nth(1)?;
    version.split('.').next()?.trim().parse().ok()
}

/// Ensures QEMU 10 (`qemu-system-x86`, `qemu-system-arm`) from
/// bookworm-backports, as the environment notes say: bookworm's own 7.2
/// conflicts with the machine's `qemu-utils` 10.
pub fn ensure_qemu() -> Result<()> {
    const PKGS: [&str; 2] = ["qemu-system-x86", "qemu-system-arm"];
    let present = PKGS.iter().all(|p| apt_installed(p)) && qemu_major().is_some_and(|v| v >= 10);
    if present {
        return Ok(());
    }
    need_apt(&PKGS, "-t bookworm-backports ")?;
    println!(
        "installing QEMU 10 ({}) from bookworm-backports",
        PKGS.join(" ")
    );
    let added = ensure_backports_source()?;
    apt_update(added)?;
    run_ok(&mut apt_install_cmd(&["-t", "bookworm-backports"], &PKGS))?;
    match qemu_major() {
        Some(v) if v >= 10 => Ok(()),
        other => bail!("installed QEMU from bookworm-backports but qemu-system-x86_64 reports version {other:?}, not 10 or later"),
    }
}

/// Ensures the binary `bin` is available, else `cargo install --locked <krate>`.
pub fn ensure_cargo_install(krate: &str, bin: &str) -> Result<()> {
    if which(bin).is_some() {
        return Ok(());
    }
    println!("installing {bin} (cargo install {krate})");
    run_ok(Command::new("cargo").args(["install", "--locked", krate]))
}

/// Downloads the `.deb` of `pkg` into `dir` with `apt-get download` (no root
/// needed for that step, but fresh package lists are); returns its path.
pub fn apt_download(pkg: &str, dir: &Path) -> Result<std::path::PathBuf> {
    if which("apt-get").is_none() {
        bail!("apt-get is needed to download {pkg}");
    }
    std::fs::create_dir_all(dir)?;
    let download = |dir: &Path| {
        let mut cmd = Command::new("apt-get");
        cmd.current_dir(dir).args(["download", "-q", pkg]);
        crate::util::run(&mut cmd)
    };
    if !download(dir)? {
        if !is_root() {
            bail!("`apt-get download {pkg}` failed; the package lists may be stale: run `apt-get update` as root");
        }
        apt_update(false)?;
        if !download(dir)? {
            bail!("`apt-get download {pkg}` failed even after apt-get update");
        }
    }
    let prefix = format!("{pkg}_");
    let mut debs: Vec<_> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".deb"))
        })
        .collect();
    debs.sort();
    debs.pop().with_context(|| {
        format!(
            "apt-get download {pkg} left no {prefix}*.deb in {}",
            dir.display()
        )
    })
}
