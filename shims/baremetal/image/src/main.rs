//! Bare-metal aarch64 test image for QEMU `virt` (GICv2 or GICv3, detected
//! at boot), running its tests at EL1 with the MMU off.
//!
//! The virtio tests (`virtio_tests.rs`) put virtnet's device (`hyp.rs`:
//! `NetDevice` behind the core's `MmioTransport`, over the guest RAM of
//! `guest.rs`, its interrupt on GIC SPI 96) and the `virtio-drivers`
//! crate's `VirtIONet` driver together: 10,000 frames each way, twice (with
//! and without EVENT_IDX), every byte compared, every used-buffer interrupt
//! taken by the IRQ handler (`irq.rs`) and counted against what the device
//! raised; hostile-guest cases through the core's `TestDriver`; and the
//! check that the device side never calls the heap (`heap.rs`).
//!
//! * Started at EL1 (`-M virt`): the driver's transport calls the device's
//!   register block directly, in a critical section (`vio.rs`).
//! * Started at EL2 (`-M virt,virtualization=on`): a minimal hypervisor
//!   (`el2.rs`) sets up stage 2 with the virtio-mmio window unmapped and
//!   drops to EL1; the driver then uses virtio-drivers' own
//!   `MmioTransport`, whose loads and stores trap to EL2, where
//!   `virtnet_baremetal::trap::serve_data_abort` serves them from the device.
//!   The EL2 tests of real trapped syndromes are added.
//!
//! Prints `gic: vN`, `el2: yes|no`, then `test NAME ... ok|FAILED` for each
//! test and finally `N passed, N failed`, and exits through semihosting with
//! status 0 when every test passed, 1 otherwise (2 on panic, 3 on an
//! unexpected exception, 4 when the GIC cannot be set up). `runner.rs` runs
//! it; by hand:
//!
//! ```text
//! cd shims/baremetal/image && cargo build --release
//! qemu-system-aarch64 -M virt -cpu cortex-a72 -m 128M -nographic -semihosting \
//!     -kernel target/aarch64-unknown-none/release/virtnet-baremetal-image
//! ```
//! (add `,gic-version=3` after `virt` for GICv3 and `,virtualization=on` to
//! start at EL2; `./run.sh` runs all four).
//!
//! With `--features defmt` the image (and the core, at EL1 and at EL2) also
//! logs through defmt to `defmt.bin` in QEMU's working directory (filter:
//! `DEFMT_LOG`, `info` by default):
//! `defmt-print -e target/aarch64-unknown-none/release/virtnet-baremetal-image < defmt.bin`.
#![no_std]
#![no_main]

extern crate alloc;

mod boot;
mod driver;
mod el2;
mod frames;
mod guest;
mod heap;
mod hyp;
mod irq;
mod tests;
mod vio;
mod virtio_tests;

use virtnet_baremetal::{cpu, hprintln, semihosting};

/// Exit status when a test failed.
const EXIT_FAILED: u32 = 1;
/// Exit status on panic.
const EXIT_PANIC: u32 = 2;
/// Exit status when the platform cannot be set up.
const EXIT_SETUP: u32 = 4;

#[no_mangle]
extern "C" fn rust_main() -> ! {
    heap::init();
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
    hprintln!(
        "virtio path: {}",
        if vio::trapped() {
            "trapped (virtio-drivers' MmioTransport at EL1, device served at EL2)"
        } else {
            "direct (register calls at EL1)"
        }
    );
    // SAFETY: the GIC is configured; the IRQ handler touches atomics and the
    // device's registers, through a trap or inside a critical section.
    unsafe { cpu::enable_irqs() };

    let (mut passed, mut failed) = (0u32, 0u32);
    let (el2_tests, virtio_el2_tests) = if el2::active() {
        (tests::EL2_TESTS, virtio_tests::EL2_TESTS)
    } else {
        (&[][..], &[][..])
    };
    let all = tests::TESTS
        .iter()
        .chain(virtio_tests::TESTS)
        .chain(el2_tests)
        .chain(virtio_el2_tests)
        .chain(virtio_tests::FINAL_TESTS)
        .chain(tests::FINAL_TESTS);
    #[cfg(feature = "defmt")]
    defmt::info!(
        "virtnet-baremetal-image: GICv{=u8}, EL2 {=bool}, {=usize} tests",
        gic.version(),
        el2::active(),
        all.clone().count()
    );
    for t in all {
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
