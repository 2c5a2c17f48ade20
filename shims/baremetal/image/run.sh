#!/usr/bin/env bash
# Builds the bare-metal test image and runs it under QEMU with GICv2 and
# GICv3, each at EL1 and at EL2 (virtualization=on), through runner.rs's
# run_image_on (compiled here with plain rustc), after running runner.rs's
# own unit tests. Usage: ./run.sh [--debug]
# `cargo xtask test baremetal` does the same, plus a run of the image built
# with `--features defmt` whose log it decodes with defmt-print.
set -euo pipefail
cd "$(dirname "$0")"
profile=release; flag=--release
if [[ "${1:-}" == "--debug" ]]; then profile=debug; flag=; fi
cargo build $flag
mkdir -p target/runner
cat > target/runner/main.rs <<'RS'
#[path = "../../runner.rs"]
mod runner;
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let elf = std::path::Path::new(&args[1]);
    let mut ok = true;
    for (v, el2) in [(2u8, false), (3, false), (2, true), (3, true)] {
        let what = format!("GICv{v}{}", if el2 { " at EL2" } else { "" });
        match runner::run_image_on(elf, v, el2, std::time::Duration::from_secs(60)) {
            Ok((p, f)) => { println!("{what}: {p} passed, {f} failed"); ok &= f == 0; }
            Err(e) => { println!("{what}: error: {e}"); ok = false; }
        }
    }
    std::process::exit(if ok { 0 } else { 1 });
}
RS
rustc --edition 2021 -O --test -o target/runner/runner-tests runner.rs
./target/runner/runner-tests -q
rustc --edition 2021 -O -o target/runner/run target/runner/main.rs
./target/runner/run "target/aarch64-unknown-none/$profile/virtnet-baremetal-image"
