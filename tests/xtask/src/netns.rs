//! Network namespaces and TAP devices for tests, removed again on drop.
//! Keep all test traffic inside such namespaces (or on loopback).

use std::process::Command;

use anyhow::{bail, Result};

use crate::install::{ensure_apt, is_root};
use crate::util::{capture_stdout, run_ok};

/// A named network namespace (`ip netns add`), deleted on drop together with
/// the devices in it.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates namespace `name` with `lo` up, deleting a stale one of the
    /// same name first. Needs root and `iproute2` (installed when missing).
    pub fn create(name: &str) -> Result<Netns> {
        if !is_root() {
            bail!("creating network namespace {name} needs root");
        }
        ensure_apt(&["iproute2"])?;
        let list = capture_stdout(Command::new("ip").args(["netns", "list"]))?;
        if list
            .lines()
            .any(|l| l.split_whitespace().next() == Some(name))
        {
            run_ok(Command::new("ip").args(["netns", "delete", name]))?;
        }
        run_ok(Command::new("ip").args(["netns", "add", name]))?;
        let ns = Netns {
            name: name.to_string(),
        };
        run_ok(&mut ns.ip(&["link", "set", "lo", "up"]))?;
        Ok(ns)
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// An `ip -n <name> ARGS...` command (not started).
    pub fn ip(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["-n", &self.name]).args(args);
        cmd
    }

    /// Creates TAP device `dev` inside the namespace and sets it up.
    pub fn add_tap(&self, dev: &str) -> Result<()> {
        run_ok(&mut self.ip(&["tuntap", "add", "dev", dev, "mode", "tap"]))?;
        run_ok(&mut self.ip(&["link", "set", dev, "up"]))
    }

    /// A command that runs `program` inside the namespace
    /// (`ip netns exec <name> program`); add arguments and start it as usual.
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name, program]);
        cmd
    }

    /// Runs `argv` inside the namespace and returns its stdout; fails if it fails.
    pub fn run(&self, argv: &[&str]) -> Result<String> {
        let Some((program, args)) = argv.split_first() else {
            bail!("Netns::run needs a program");
        };
        capture_stdout(self.command(program).args(args))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.name])
            .status();
    }
}
