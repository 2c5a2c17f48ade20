//! virtnet's fuzz targets, as a library: each target's input type and
//! `run` function live here (the `fuzz_targets/*.rs` binaries only call
//! them), so the seed corpus, the corpus replay test and the core's
//! regression tests run the very same code without libFuzzer.
//!
//! See `specs/09-fuzzing.md` for the targets, their oracles and the runs.

use virtnet::mem::{ChainHint, GuestAddress, GuestMemory, MemError};
use virtnet::queue::QueueLayout;

pub mod driver;
pub mod encode;
pub mod mmio;
pub mod net;
pub mod net_hdr;
pub mod queue;
pub mod ram;
pub mod rx;
pub mod seeds;
pub mod tx;

// The recording memory wrapper and the reference chain walk, shared with
// the core's unit tests (`core/src/regressions.rs` includes the same file).
// Its docs are the file's own inner docs: an outer doc comment here would
// make rustdoc resolve their links from this module instead.
#[path = "../common/recording.rs"]
pub mod recording;

/// Oracle checks that passed, by kind, in this thread: the seed tests use
/// them to prove a seed reaches the check it was written for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Checks {
    /// Accepted chains compared with the reference walk (`queue`).
    pub chains: u64,
    /// Transmitted frames matched byte for byte (`tx`).
    pub tx_frames: u64,
    /// Received frames read back and matched (`rx`).
    pub rx_frames: u64,
    /// Kicks or polls through the register block that moved frames (`mmio`).
    pub mmio_moves: u64,
    /// Chain hints whose one-region decision was a buffer, compared with
    /// plain reads (every target with a device queue).
    pub hint_buffers: u64,
}

thread_local! {
    static CHECKS: std::cell::Cell<Checks> = std::cell::Cell::new(Checks::default());
}

/// Count a passed check.
pub fn count(f: impl FnOnce(&mut Checks)) {
    CHECKS.with(|c| {
        let mut v = c.get();
        f(&mut v);
        c.set(v);
    });
}

/// Take (and zero) the counts of this thread.
pub fn take_checks() -> Checks {
    CHECKS.with(|c| c.replace(Checks::default()))
}

/// The targets, by name.
pub const TARGETS: &[&str] = &["queue", "tx", "rx", "mmio", "net_hdr"];

fn decode<'a, T: arbitrary::Arbitrary<'a>>(bytes: &'a [u8]) -> Option<T> {
    T::arbitrary_take_rest(arbitrary::Unstructured::new(bytes)).ok()
}

/// Decode `bytes` as libFuzzer would hand them to target `name`, and run
/// it (panics on an oracle failure). `false` for an unknown target; inputs
/// that do not decode are skipped, as libFuzzer skips them.
pub fn run_target(name: &str, bytes: &[u8]) -> bool {
    macro_rules! go {
        ($m:ident) => {{
            if let Some(i) = decode::<$m::Input>(bytes) {
                $m::run(&i);
            }
            true
        }};
    }
    match name {
        "queue" => go!(queue),
        "tx" => go!(tx),
        "rx" => go!(rx),
        "mmio" => go!(mmio),
        "net_hdr" => go!(net_hdr),
        _ => false,
    }
}

/// The decoded input of target `name`, pretty-printed (for triage).
pub fn describe(name: &str, bytes: &[u8]) -> String {
    macro_rules! show {
        ($m:ident) => {
            format!("{:#?}", decode::<$m::Input>(bytes))
        };
    }
    match name {
        "queue" => show!(queue),
        "tx" => show!(tx),
        "rx" => show!(rx),
        "mmio" => show!(mmio),
        "net_hdr" => show!(net_hdr),
        _ => String::from("unknown target"),
    }
}
