//! A Linux guest to drive virtnet with: Debian bookworm's kernel (from its
//! package, not built) and a busybox initramfs that loads the virtio-net
//! modules, then runs a script given by the caller.
//!
//! ```no_run
//! use std::time::Duration;
//! use xtask::guest::{init_script, ExtraFile, GuestAssets, Initramfs, READY_MARKER};
//! use xtask::qemu::{Net, Qemu, QemuConfig};
//! # fn main() -> anyhow::Result<()> {
//! let ctx = xtask::ctx::Ctx::new();
//! let assets = GuestAssets::ensure(&ctx.work_dir)?; // installs/downloads once, then cached
//! let init = init_script("ip link set eth0 up\nip -o link\necho DONE\n");
//! let extra = [ExtraFile::from_bytes("/etc/motd", "hi\n", 0o644)];
//! let initrd = Initramfs::build(&assets, &init, &extra, &assets.dir().join("my.cpio.gz"))?;
//! let mut cfg = QemuConfig::new(assets.vmlinuz(), initrd.path());
//! cfg.net = Net::User;
//! let mut vm = Qemu::spawn(&cfg)?;
//! vm.wait_for(READY_MARKER, Duration::from_secs(60))?;
//! let out = vm.wait_for("DONE", Duration::from_secs(30))?;
//! assert!(out.contains("eth0"));
//! # Ok(()) }
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::cpio::CpioWriter;
use crate::install::{apt_download, ensure_apt, ensure_qemu};
use crate::util::{capture_stdout, run_ok};

/// The kernel modules virtio-net over PCI needs, in load order.
pub const VIRTIO_NET_MODULES: [&str; 8] = [
    "virtio_ring",
    "virtio",
    "virtio_pci_legacy_dev",
    "virtio_pci_modern_dev",
    "virtio_pci",
    "failover",
    "net_failover",
    "virtio_net",
];

/// Printed on the console by [`INIT_PREAMBLE`] once the modules are loaded.
pub const READY_MARKER: &str = "VIRTNET-GUEST-READY";

/// Printed (followed by the module path) when an `insmod` fails.
pub const INSMOD_FAILED_MARKER: &str = "VIRTNET-INSMOD-FAILED";

/// Where the initramfs keeps the modules (`NN-name.ko`, loaded in name order).
pub const GUEST_MODULES_DIR: &str = "/lib/modules/virtnet";

/// The start of every `/init` made by [`init_script`]: mounts proc, sys,
/// dev (devtmpfs) and a tmpfs on /tmp, loads the modules in
/// [`GUEST_MODULES_DIR`] in order, brings `lo` up, and prints [`READY_MARKER`].
pub const INIT_PREAMBLE: &str = r#"#!/bin/sh
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
for m in /lib/modules/virtnet/*.ko; do
    [ -e "$m" ] || continue
    insmod "$m" || echo "VIRTNET-INSMOD-FAILED $m"
done
ip link set lo up
echo VIRTNET-GUEST-READY
"#;

/// The end of every `/init` made by [`init_script`]: power off at once (QEMU
/// then exits; with `-no-reboot` and `panic=-1` it also exits if `/init`
/// itself ends or fails).
pub const INIT_EPILOGUE: &str = "\npoweroff -f\n";

/// Builds an `/init` script: [`INIT_PREAMBLE`], then `body` (busybox `sh`),
/// then [`INIT_EPILOGUE`]. To keep the guest up for commands sent with
/// `Qemu::send_line`, end `body` with `exec sh` (or `setsid cttyhack sh`).
pub fn init_script(body: &str) -> String {
    format!("{INIT_PREAMBLE}{body}{INIT_EPILOGUE}")
}

/// The guest kernel and busybox, downloaded or installed once and cached
/// under `<work_dir>/guest/`.
#[derive(Debug, Clone)]
pub struct GuestAssets {
    dir: PathBuf,
    vmlinuz: PathBuf,
    modules_dir: PathBuf,
    kernel_version: String,
    busybox: PathBuf,
}

impl GuestAssets {
    /// Makes sure everything a guest needs is here, and returns where:
    /// QEMU 10 from bookworm-backports, `busybox-static` and `cpio` (apt,
    /// installed when missing), and the Debian kernel package
    /// (`apt-get download linux-image-amd64` names the real
    /// `linux-image-6.1.0-NN-amd64`, which is downloaded and `dpkg-deb -x`'d
    /// into `<work_dir>/guest/kernel/`; skipped when already there).
    ///
    /// `work_dir` is the workspace's scratch directory, normally
    /// `Ctx::work_dir` (`<workspace>/.work`).
    pub fn ensure(work_dir: &Path) -> Result<GuestAssets> {
        ensure_qemu()?;
        ensure_apt(&["busybox-static", "cpio"])?;
        let dir = work_dir.join("guest");
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let kernel_root = dir.join("kernel");
        if find_vmlinuz(&kernel_root).is_none() {
            download_kernel(&dir, &kernel_root)?;
        }
        let vmlinuz = find_vmlinuz(&kernel_root)
            .with_context(|| format!("no boot/vmlinuz-* in {}", kernel_root.display()))?;
        let kernel_version = vmlinuz
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix("vmlinuz-"))
            .context("kernel file name is not vmlinuz-VERSION")?
            .to_string();
        let modules_dir = ["lib/modules", "usr/lib/modules"]
            .iter()
            .map(|d| kernel_root.join(d).join(&kernel_version))
            .find(|d| d.is_dir())
            .with_context(|| {
                format!(
                    "no lib/modules/{kernel_version} in {}",
                    kernel_root.display()
                )
            })?;
        let busybox = busybox_path()?;
        Ok(GuestAssets {
            dir,
            vmlinuz,
            modules_dir,
            kernel_version,
            busybox,
        })
    }

    /// The cache directory, `<work_dir>/guest/`: a good place for initramfs images.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The kernel image to pass to QEMU's `-kernel`.
    pub fn vmlinuz(&self) -> &Path {
        &self.vmlinuz
    }

    /// The kernel's modules directory, `.../lib/modules/<version>/`.
    pub fn modules_dir(&self) -> &Path {
        &self.modules_dir
    }

    /// The kernel release, e.g. `6.1.0-44-amd64`.
    pub fn kernel_version(&self) -> &str {
        &self.kernel_version
    }

    /// The static busybox binary put into initramfs images.
    pub fn busybox(&self) -> &Path {
        &self.busybox
    }

    /// Finds module `name` (e.g. `virtio_net`) as `.ko`, `.ko.xz`, `.ko.zst`
    /// or `.ko.gz` under the modules directory. `Ok(None)` when the kernel
    /// has it built in (`modules.builtin`); an error when it has it neither way.
    pub fn find_module(&self, name: &str) -> Result<Option<PathBuf>> {
        let index = module_index(&self.modules_dir.join("kernel"))?;
        if let Some(path) = index.get(name) {
            return Ok(Some(path.clone()));
        }
        let builtin =
            fs::read_to_string(self.modules_dir.join("modules.builtin")).unwrap_or_default();
        let built_in = builtin
            .lines()
            .filter_map(|l| l.rsplit('/').next())
            .any(|f| {
                f.strip_suffix(".ko")
                    .is_some_and(|m| m.replace('-', "_") == name)
            });
        if built_in {
            return Ok(None);
        }
        bail!(
            "kernel module {name} is neither in {} nor built in",
            self.modules_dir.display()
        )
    }

    /// The contents of module `name`, decompressed; `None` if built in.
    pub fn module_bytes(&self, name: &str) -> Result<Option<Vec<u8>>> {
        let Some(path) = self.find_module(name)? else {
            return Ok(None);
        };
        let file = path.to_string_lossy();
        let data = if file.ends_with(".ko") {
            fs::read(&path)?
        } else if file.ends_with(".ko.gz") {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(fs::File::open(&path)?).read_to_end(&mut out)?;
            out
        } else {
            let (tool, pkg) = if file.ends_with(".ko.xz") {
                ("xz", "xz-utils")
            } else {
                ("zstd", "zstd")
            };
            ensure_apt(&[pkg])?;
            let out = crate::util::capture(Command::new(tool).arg("-dc").arg(&path))?;
            if !out.status.success() {
                bail!(
                    "{tool} -dc {file} failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            out.stdout
        };
        Ok(Some(data))
    }
}

/// `kernel_root/boot/vmlinuz-*`, if there is one.
fn find_vmlinuz(kernel_root: &Path) -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = fs::read_dir(kernel_root.join("boot"))
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("vmlinuz-"))
        })
        .collect();
    found.sort();
    found.pop()
}

/// Downloads the real kernel package behind `linux-image-amd64` and unpacks it into `kernel_root`.
fn download_kernel(dir: &Path, kernel_root: &Path) -> Result<()> {
    let debs = dir.join("debs");
    println!("downloading the Debian guest kernel into {}", dir.display());
    let meta = apt_download("linux-image-amd64", &debs)?;
    let depends = capture_stdout(Command::new("dpkg-deb").arg("-f").arg(&meta).arg("Depends"))?;
    let package = depends
        .split([',', '|'])
        .map(|d| d.split_whitespace().next().unwrap_or(""))
        .find(|p| p.starts_with("linux-image-") && p != &"linux-image-amd64")
        .with_context(|| format!("linux-image-amd64 depends on no linux-image-*: {depends}"))?
        .to_string();
    println!("linux-image-amd64 is {package}");
    let deb = apt_download(&package, &debs)?;
    let tmp = dir.join("kernel.tmp");
    let _ = fs::remove_dir_all(&tmp);
    run_ok(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&tmp))?;
    let _ = fs::remove_dir_all(kernel_root);
    fs::rename(&tmp, kernel_root)?;
    // The unpacked tree is the cache; the 70 MB package is not needed again.
    let _ = fs::remove_dir_all(&debs);
    Ok(())
}

/// The static busybox from the `busybox-static` package.
fn busybox_path() -> Result<PathBuf> {
    let files = capture_stdout(Command::new("dpkg").args(["-L", "busybox-static"]))?;
    files
        .lines()
        .map(PathBuf::from)
        .find(|p| p.file_name().is_some_and(|n| n == "busybox") && p.is_file())
        .context("busybox-static lists no busybox binary")
}

/// Maps module names to their files under `dir` (recursively).
fn module_index(dir: &Path) -> Result<BTreeMap<String, PathBuf>> {
    let mut index = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).with_context(|| format!("reading {}", d.display()))? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let Some(file) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let stem = [".ko", ".ko.xz", ".ko.zst", ".ko.gz"]
                .iter()
                .find_map(|ext| file.strip_suffix(ext));
            if let Some(stem) = stem {
                index.insert(stem.replace('-', "_"), path.clone());
            }
        }
    }
    Ok(index)
}

/// Where a file put into the initramfs comes from.
#[derive(Debug, Clone)]
pub enum FileSource {
    /// A file on the host, read at build time. Programs must be static
    /// (the initramfs has no C library).
    Host(PathBuf),
    /// Literal contents.
    Bytes(Vec<u8>),
}

/// An extra file for [`Initramfs::build`]. Missing parent directories are created.
#[derive(Debug, Clone)]
pub struct ExtraFile {
    /// Absolute path inside the guest, e.g. `/bin/virtnet-test`.
    pub guest_path: String,
    /// The contents.
    pub source: FileSource,
    /// Permission bits, e.g. `0o755` for a program.
    pub mode: u32,
}

impl ExtraFile {
    /// A host file copied to `guest_path` with permission bits `mode`.
    pub fn from_host(guest_path: &str, host: impl Into<PathBuf>, mode: u32) -> ExtraFile {
        ExtraFile {
            guest_path: guest_path.to_string(),
            source: FileSource::Host(host.into()),
            mode,
        }
    }

    /// A file with the given contents at `guest_path`.
    pub fn from_bytes(guest_path: &str, data: impl Into<Vec<u8>>, mode: u32) -> ExtraFile {
        ExtraFile {
            guest_path: guest_path.to_string(),
            source: FileSource::Bytes(data.into()),
            mode,
        }
    }
}

/// A gzip-compressed `newc` initramfs image on disk.
#[derive(Debug, Clone)]
pub struct Initramfs {
    path: PathBuf,
}

impl Initramfs {
    /// Writes an initramfs to `out` holding: busybox at `/bin/busybox` with
    /// a symlink for each applet (`busybox --list-full`), `/dev/console` and
    /// `/dev/null`, the modules of [`VIRTIO_NET_MODULES`] decompressed in
    /// [`GUEST_MODULES_DIR`] as `NN-name.ko` (built-in ones left out),
    /// `init` as `/init` (see [`init_script`]), and `extra`.
    pub fn build(
        assets: &GuestAssets,
        init: &str,
        extra: &[ExtraFile],
        out: &Path,
    ) -> Result<Initramfs> {
        let mut ar = Archive::default();
        for d in [
            "bin", "sbin", "usr/bin", "usr/sbin", "dev", "proc", "sys", "tmp", "run", "etc",
            "root", "var",
        ] {
            ar.dir(d)?;
        }
        ar.w.char_dev("dev/console", 0o600, 5, 1)?;
        ar.w.char_dev("dev/null", 0o666, 1, 3)?;

        let busybox = fs::read(assets.busybox())
            .with_context(|| format!("reading {}", assets.busybox().display()))?;
        ar.file("bin/busybox", 0o755, &busybox)?;
        let applets = capture_stdout(Command::new(assets.busybox()).arg("--list-full"))?;
        for applet in applets.lines().map(|l| l.trim().trim_start_matches('/')) {
            if applet.is_empty() || applet == "bin/busybox" {
                continue;
            }
            ar.parents(applet)?;
            ar.w.symlink(applet, "/bin/busybox")?;
        }

        for (i, name) in VIRTIO_NET_MODULES.iter().enumerate() {
            if let Some(data) = assets.module_bytes(name)? {
                ar.file(
                    &format!(
                        "{}/{i:02}-{name}.ko",
                        GUEST_MODULES_DIR.trim_start_matches('/')
                    ),
                    0o644,
                    &data,
                )?;
            }
        }

        ar.file("init", 0o755, init.as_bytes())?;
        for f in extra {
            let data = match &f.source {
                FileSource::Host(p) => {
                    fs::read(p).with_context(|| format!("reading {}", p.display()))?
                }
                FileSource::Bytes(b) => b.clone(),
            };
            ar.file(f.guest_path.trim_start_matches('/'), f.mode, &data)?;
        }

        let cpio = ar.w.finish()?;
        let tmp = out.with_extension("tmp");
        if let Some(parent) = out.parent() {
            fs::create_dir_all(parent)?;
        }
        let mut gz = flate2::write::GzEncoder::new(
            fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?,
            flate2::Compression::default(),
        );
        gz.write_all(&cpio)?;
        gz.finish()?.sync_all()?;
        fs::rename(&tmp, out)?;
        Ok(Initramfs {
            path: out.to_path_buf(),
        })
    }

    /// The image, for QEMU's `-initrd`.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// A cpio archive being built in memory that creates parent directories once.
struct Archive {
    w: CpioWriter<Vec<u8>>,
    dirs: BTreeSet<String>,
}

impl Default for Archive {
    fn default() -> Self {
        Archive {
            w: CpioWriter::new(Vec::new()),
            dirs: BTreeSet::new(),
        }
    }
}

impl Archive {
    /// Adds directory `path` (and its parents) unless already there.
    fn dir(&mut self, path: &str) -> Result<()> {
        self.parents(path)?;
        if self.dirs.insert(path.to_string()) {
            self.w.dir(path, 0o755)?;
        }
        Ok(())
    }

    /// Adds the parent directories of `path`.
    fn parents(&mut self, path: &str) -> Result<()> {
        if let Some((parent, _)) = path.rsplit_once('/') {
            if !parent.is_empty() {
                self.dir(parent)?;
            }
        }
        Ok(())
    }

    /// Adds a regular file (and its parent directories).
    fn file(&mut self, path: &str, mode: u32, data: &[u8]) -> Result<()> {
        self.parents(path)?;
        self.w.file(path, mode, data)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_script_has_preamble_body_and_poweroff() {
        let s = init_script("echo hi\n");
        assert!(s.starts_with("#!/bin/sh\n"));
        assert!(s.contains("insmod \"$m\""));
        assert!(s.contains(READY_MARKER));
        assert!(s.contains(INSMOD_FAILED_MARKER));
        assert!(s.ends_with("echo hi\n\npoweroff -f\n"));
    }

    #[test]
    fn archive_creates_parents_once() {
        let mut ar = Archive::default();
        ar.dir("usr/bin").unwrap();
        ar.file("usr/bin/x", 0o755, b"x").unwrap();
        ar.file("usr/sbin/y", 0o755, b"y").unwrap();
        let dirs: Vec<&str> = ar.dirs.iter().map(String::as_str).collect();
        assert_eq!(dirs, ["usr", "usr/bin", "usr/sbin"]);
    }
}
