//! The context every suite and command gets: where the workspace is.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Paths shared by all suites and commands.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// The workspace root (the directory holding the top `Cargo.toml`).
    pub root: PathBuf,
    /// Scratch space for downloads and build products: `<root>/.work`
    /// (git-ignored, kept between runs as a cache).
    pub work_dir: PathBuf,
}

impl Ctx {
    /// The context of the workspace this xtask was built from.
    pub fn new() -> Ctx {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .ancestors()
            .nth(2)
            .expect("tests/xtask lies two levels below the workspace root")
            .to_path_buf();
        let work_dir = root.join(".work");
        Ctx { root, work_dir }
    }

    /// A `cargo` command run in the workspace root with the toolchain the
    /// workspace selects.
    pub fn cargo(&self) -> Command {
        let mut cmd = Command::new("cargo");
        cmd.current_dir(&self.root);
        cmd
    }

    /// A `cargo +nightly` command run in the workspace root. A toolchain
    /// inherited from `cargo xtask` through `RUSTUP_TOOLCHAIN` is dropped.
    pub fn cargo_nightly(&self) -> Command {
        let mut cmd = Command::new("cargo");
        cmd.current_dir(&self.root)
            .env_remove("RUSTUP_TOOLCHAIN")
            .env_remove("RUSTC")
            .env_remove("RUSTDOC")
            .arg("+nightly");
        cmd
    }

    /// Cargo's target directory: `CARGO_TARGET_DIR` (relative to the
    /// workspace root when relative), else `<root>/target`.
    pub fn target_dir(&self) -> PathBuf {
        match std::env::var_os("CARGO_TARGET_DIR") {
            Some(d) if Path::new(&d).is_absolute() => PathBuf::from(d),
            Some(d) => self.root.join(d),
            None => self.root.join("target"),
        }
    }
}

impl Default for Ctx {
    fn default() -> Ctx {
        Ctx::new()
    }
}
