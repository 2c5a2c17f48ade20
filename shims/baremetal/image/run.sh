#!/usr/bin/env bash
# Builds the bare-metal test image and runs it under QEMU with GICv2 and
# GICv3 through runner.rs's run_image (compiled here with plain rustc), after
# running runner.rs's own unit tests. Usage: ./run.sh [--debug]
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
    for v in [2u8, 3] {
        match runner::run_image(elf, v, std::time::Duration::from_secs(60)) {
            Ok((p, f)) => { println!("GICv{v}: {p} passed, {f} failed"); ok &= f == 0; }
            Err(e) => { println!("GICv{v}: error: {e}"); ok = false; }
        }
    }
    std::process::exit(if ok { 0 } else { 1 });
}
RS
rustc --edition 2021 -O --test -o target/runner/runner-tests runner.rs
./target/runner/runner-tests -q
rustc --edition 2021 -O -o target/runner/run target/runner/main.rs
./target/runner/run "target/aarch64-unknown-none/$profile/virtnet-baremetal-image"
