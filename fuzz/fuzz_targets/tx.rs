//! Fuzz target `tx`: see `virtnet_fuzz::tx` for the input and the oracles.
#![no_main]

use libfuzzer_sys::fuzz_target;
use virtnet_fuzz::tx::{run, Input};

fuzz_target!(|input: Input| run(&input));
