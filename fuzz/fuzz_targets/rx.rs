//! Fuzz target `rx`: see `virtnet_fuzz::rx` for the input and the oracles.
#![no_main]

use libfuzzer_sys::fuzz_target;
use virtnet_fuzz::rx::{run, Input};

fuzz_target!(|input: Input| run(&input));
