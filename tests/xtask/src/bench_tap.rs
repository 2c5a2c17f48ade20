//! `cargo xtask bench tap`: what a frame written to or read from a TAP
//! interface costs, one `writev` / `readv` per frame (the TAP backend's
//! path) against `io_uring` batches, the one way Linux offers to batch TAP
//! reads and writes. The measurement is `shims/hosted/examples/tap_batch.rs`;
//! this builds it, creates a network namespace with a TAP interface, runs
//! it there and prints its table. It passes no judgement
//! (specs/10-performance.md, "TAP reads and writes").

use anyhow::Result;

use crate::ctx::Ctx;
use crate::netns::Netns;
use crate::rig::build_hosted;
use crate::util::run_ok;

/// The namespace and the interface the measurement writes to.
const NETNS: &str = "virtnet-bench-tap";
const TAP: &str = "vntap0";

/// `cargo xtask bench tap`.
pub fn bench(ctx: &Ctx) -> Result<()> {
    let example = build_hosted(ctx, "--example", "tap_batch")?;
    let ns = Netns::create(NETNS)?;
    ns.add_tap(TAP)?;
    // No IPv6 on the interface: its neighbour discovery would send frames
    // that the read measurement counts as missing.
    ns.run(&[
        "sysctl",
        "-q",
        "-w",
        &format!("net.ipv6.conf.{TAP}.disable_ipv6=1"),
    ])?;
    let program = example.to_string_lossy();
    run_ok(ns.command(&program).args(["--tap", TAP]))?;
    println!();
    println!("{}", crate::bench::machine());
    println!("command: cargo xtask bench tap");
    Ok(())
}
