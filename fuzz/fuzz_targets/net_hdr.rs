//! Fuzz target `net_hdr`: see `virtnet_fuzz::net_hdr` for the input and the oracles.
#![no_main]

use libfuzzer_sys::fuzz_target;
use virtnet_fuzz::net_hdr::{run, Input};

fuzz_target!(|input: Input| run(&input));
