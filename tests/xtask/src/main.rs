//! `cargo xtask`: virtnet's developer command line.

use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use xtask::ctx::Ctx;
use xtask::suites::{self, Tally, SUITES};

/// virtnet's developer commands.
#[derive(Parser)]
#[command(name = "cargo xtask", about = "virtnet's developer commands")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

/// The subcommands.
#[derive(Subcommand)]
enum Cmd {
    /// Run test suites (all, in order, when none is named).
    Test {
        /// Suites to run (see --list).
        suites: Vec<String>,
        /// List the suites with a one-line description.
        #[arg(long)]
        list: bool,
    },
    /// Boot a Linux guest on virtnet's vhost-user backend and show it working.
    Demo,
    /// Run a benchmark.
    Bench {
        /// Which benchmark.
        #[arg(value_enum)]
        which: Bench,
    },
    /// Fuzz the core (all targets, or one).
    Fuzz {
        /// The fuzz target.
        target: Option<String>,
        /// How long to fuzz each target.
        #[arg(long, default_value_t = 1)]
        minutes: u32,
    },
    /// Check the Linux guest harness: boot with QEMU's user network.
    #[command(hide = true)]
    GuestSelftest,
    /// Check the network-namespace helper.
    #[command(hide = true)]
    NetnsSelftest,
}

/// The benchmarks.
#[derive(Clone, Copy, ValueEnum)]
enum Bench {
    /// The core's data path alone.
    Core,
    /// Against DPDK's virtio-user driver.
    Dpdk,
    /// TAP reads and writes: one system call per frame against io_uring batches.
    Tap,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let ctx = Ctx::new();
    match cli.command {
        Cmd::Test { suites, list } => test(&ctx, &suites, list),
        Cmd::Demo => outcome(xtask::demo::demo(&ctx)),
        Cmd::Bench { which } => match which {
            Bench::Core => outcome(xtask::bench::core(&ctx)),
            Bench::Dpdk => outcome(xtask::bench_dpdk::bench(&ctx)),
            Bench::Tap => outcome(xtask::bench_tap::bench(&ctx)),
        },
        Cmd::Fuzz { target, minutes } => {
            outcome(xtask::fuzz::command(&ctx, target.as_deref(), minutes))
        }
        Cmd::GuestSelftest => outcome(xtask::selftest::guest_selftest(&ctx)),
        Cmd::NetnsSelftest => outcome(xtask::selftest::netns_selftest(&ctx)),
    }
}

/// Maps a command's result to an exit status, printing the error.
fn outcome(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `cargo xtask test`.
fn test(ctx: &Ctx, names: &[String], list: bool) -> ExitCode {
    if list {
        for s in SUITES {
            println!("{:<10} {}", s.name, s.description);
        }
        return ExitCode::SUCCESS;
    }
    let mut chosen = Vec::new();
    for name in names {
        match suites::find(name) {
            Some(s) => chosen.push(s),
            None => {
                let known: Vec<&str> = SUITES.iter().map(|s| s.name).collect();
                eprintln!("unknown suite `{name}`; suites: {}", known.join(", "));
                return ExitCode::from(2);
            }
        }
    }
    if chosen.is_empty() {
        chosen = SUITES.iter().collect();
    }
    let mut total = Tally::default();
    for suite in chosen {
        println!("===== suite {} =====", suite.name);
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (suite.run)(ctx)));
        let tally = match result {
            Ok(Ok(t)) => t,
            Ok(Err(e)) => {
                println!("error in suite {}: {e:#}", suite.name);
                Tally {
                    passed: 0,
                    failed: 1,
                }
            }
            Err(_) => {
                println!("error in suite {}: it panicked", suite.name);
                Tally {
                    passed: 0,
                    failed: 1,
                }
            }
        };
        println!(
            "{}: {} passed, {} failed",
            suite.name, tally.passed, tally.failed
        );
        total.add(tally);
    }
    println!("total: {} passed, {} failed", total.passed, total.failed);
    if total.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
