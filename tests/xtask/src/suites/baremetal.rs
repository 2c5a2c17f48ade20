//! `baremetal`: the bare-metal aarch64 test image under QEMU `virt`.
//!
//! Installs what is missing (the `aarch64-unknown-none` rustup target, QEMU
//! 10 from bookworm-backports, `defmt-print`), builds the image (its own
//! workspace, `shims/baremetal/image`), and boots it with GICv2 and GICv3,
//! each at EL1 (driver and device in one program, direct register calls)
//! and at EL2 (virtio-drivers' MMIO transport at EL1 trapping to the device
//! at EL2). Then it builds the image with the `defmt` feature and boots it
//! once more (GICv3, EL2), decoding its defmt log with `defmt-print`.
//!
//! Every run has a timeout; a hang, a missing tally line, an exit status
//! that disagrees with the tally or a failed test is a failure (judged by
//! `runner.rs`, shared with `shims/baremetal/image/run.sh`). The tally adds
//! up the image's tests over all runs. About 45 s once built (five QEMU
//! runs of 5-8 s each); the first build of the two images takes about a
//! minute more, a first `cargo install defmt-print` a few minutes.

use std::time::{Duration, Instant};

use anyhow::Result;

use super::{Ctx, Tally};
use crate::install::{ensure_cargo_install, ensure_qemu, ensure_rustup_target};
use crate::util::which;

#[path = "../../../../shims/baremetal/image/runner.rs"]
mod runner;

/// Per-run limit: a run takes 5-8 s under TCG on 2 cores.
const TIMEOUT: Duration = Duration::from_secs(180);

/// Runs the suite.
pub fn run(ctx: &Ctx) -> Result<Tally> {
    ensure_rustup_target(None, runner::TARGET)?;
    ensure_qemu()?;
    let image_dir = ctx.root.join("shims/baremetal/image");
    let mut tally = Tally::default();
    let started = Instant::now();

    let elf = match runner::build_image(&image_dir, true) {
        Ok(elf) => elf,
        Err(e) => {
            println!("{e}");
            tally.record("build the bare-metal image", false);
            return Ok(tally);
        }
    };
    for (gic, el2) in [(2u8, false), (3, false), (2, true), (3, true)] {
        let what = format!("GICv{gic} at EL{}", if el2 { 2 } else { 1 });
        judge(
            &mut tally,
            &what,
            runner::run_image_on(&elf, gic, el2, TIMEOUT),
        );
    }

    // The defmt build: the same tests, with the image's and the core's
    // defmt log written over semihosting and decoded on the host.
    ensure_cargo_install("defmt-print", "defmt-print")?;
    let tool = which("defmt-print");
    // Same target directory: the dependencies shared with the first build
    // are reused (the ELF of the first build is overwritten, its runs are
    // done).
    let defmt_elf =
        runner::build_image_with(&image_dir, true, &["defmt"], &image_dir.join("target"));
    match (tool, defmt_elf) {
        (Some(tool), Ok(elf)) => {
            let opts = runner::RunOptions {
                gic_version: 3,
                el2: true,
                timeout: TIMEOUT,
                defmt_print: Some(&tool),
            };
            let r = runner::run(&elf, &opts).map(|o| {
                println!(
                    "defmt log: {} lines decoded by {}, one per test, final counts match",
                    o.defmt.len(),
                    tool.display()
                );
                (o.passed, o.failed)
            });
            judge(&mut tally, "GICv3 at EL2, defmt build, log decoded", r);
        }
        (None, _) => tally.record("defmt-print available after installing it", false),
        (_, Err(e)) => {
            println!("{e}");
            tally.record("build the bare-metal image with --features defmt", false);
        }
    }
    println!("bare-metal runs took {:.1?}", started.elapsed());
    Ok(tally)
}

/// Adds one run's tests to the tally, or one failure for a run that could
/// not be judged (timeout, no tally, wrong exit status, wrong GIC/EL).
fn judge(tally: &mut Tally, what: &str, r: Result<(u32, u32), String>) {
    match r {
        Ok((passed, failed)) => {
            println!("{what}: {passed} passed, {failed} failed");
            tally.passed += u64::from(passed);
            tally.failed += u64::from(failed);
        }
        Err(e) => {
            println!("{what}: {e}");
            tally.record(what, false);
        }
    }
}
