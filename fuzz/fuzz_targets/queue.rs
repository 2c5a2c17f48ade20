//! Fuzz target `queue`: see `virtnet_fuzz::queue` for the input and the oracles.
#![no_main]

use libfuzzer_sys::fuzz_target;
use virtnet_fuzz::queue::{run, Input};

fuzz_target!(|input: Input| run(&input));
