//! Fuzz target `mmio`: see `virtnet_fuzz::mmio` for the input and the oracles.
#![no_main]

use libfuzzer_sys::fuzz_target;
use virtnet_fuzz::mmio::{run, Input};

fuzz_target!(|input: Input| run(&input));
