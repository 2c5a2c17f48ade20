//! Bare-metal aarch64 test image for QEMU `virt` (GICv2 or GICv3, detected
//! at boot), running at EL1 with the MMU off. When QEMU starts it at EL2
//! (`-M virt,virtualization=on`), it first installs a minimal hypervisor
//! (`el2.rs`: stage 2 with a trapping MMIO window) and adds the tests of real
//! guest accesses decoded at EL2.
//!
//! Prints `gic: vN` and `el2: yes|no`, then `test NAME ... ok|FAILED` for each test and
//! finally `N passed, N failed`, and exits through semihosting with status 0
//! when every test passed, 1 otherwise (2 on panic, 3 on an unexpected
//! exception, 4 when the GIC cannot be set up). `runner.rs` runs it; by hand:
//!
//! ```text
//! cd shims/baremetal/image && cargo build --release
//! qemu-system-aarch64 -M virt -cpu cortex-a72 -m 128M -nographic -semihosting \
//!     -kernel target/aarch64-unknown-none/release/virtnet-baremetal-image
//! ```
//! (add `,gic-version=3` after `virt` for GICv3 and `,virtualization=on` to
//! start at EL2; `./run.sh` runs all four).
//!
//! With `--features defmt` the image also logs through defmt to `defmt.bin`
//! in QEMU's working directory (filter: `DEFMT_LOG`, `info` by default):
//! `defmt-print -e target/aarch64-unknown-none/release/virtnet-baremetal-image < defmt.bin`.
#![no_std]
#![no_main]

mod boot;
mod el2;
mod irq;
mod tests;

use virtnet_baremetal::{cpu, hprintln, semihosting};

/// Exit status when a test failed.
const EXIT_FAILED: u32 = 1;
/// Exit status on panic.
const EXIT_PANIC: u32 = 2;
/// Exit status when the platform cannot be set up.
const EXIT_SETUP: u32 = 4;

#[no_mangle]
extern "C" fn rust_main() -> ! {
    hprintln!("virtnet-baremetal-image: EL{}", cpu::current_el());
    if cpu::current_el() != 1 {
        hprintln!("expected to start at EL1");
        semihosting::exit(EXIT_SETUP);
    }
    let gic = match irq::init() {
        Ok(gic) => gic,
        Err(e) => {
            hprintln!("GIC setup failed: {e}");
            semihosting::exit(EXIT_SETUP);
        }
    };
    hprintln!("gic: v{}", gic.version());
    hprintln!("el2: {}", if el2::active() { "yes" } else { "no" });
    #[cfg(feature = "defmt")]
    defmt::info!(
        "virtnet-baremetal-image: GICv{=u8}, {=usize} tests",
        gic.version(),
        tests::TESTS.len()
    );
    // SAFETY: the GIC is configured and the IRQ handler only touches atomics.
    unsafe { cpu::enable_irqs() };

    let (mut passed, mut failed) = (0u32, 0u32);
    let el2_tests = if el2::active() { tests::EL2_TESTS } else { &[] };
    for t in tests::TESTS.iter().chain(el2_tests) {
        match (t.run)(&gic) {
            Ok(()) => {
                passed += 1;
                hprintln!("test {} ... ok", t.name);
            }
            Err(why) => {
                failed += 1;
                hprintln!("test {} ... FAILED", t.name);
                hprintln!("    {why}");
            }
        }
        #[cfg(feature = "defmt")]
        defmt::info!(
            "test {=str}: passed={=u32} failed={=u32}",
            t.name,
            passed,
            failed
        );
    }
    hprintln!("{passed} passed, {failed} failed");
    semihosting::exit(if failed == 0 { 0 } else { EXIT_FAILED })
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    cpu::disable_irqs();
    hprintln!("panicked: {info}");
    semihosting::exit(EXIT_PANIC)
}
