//! The virtio tests: virtio-drivers' network driver exchanging frames with
//! virtnet's device over the virtio-mmio register block, the used-buffer
//! interrupt through the GIC, hostile-guest cases, the empty heap on the
//! device's path.
//!
//! Each runs over the path of the run (`vio`): trapped loads and stores
//! served at EL2 when the image was started at EL2, direct calls otherwise.

use core::ptr::NonNull;
use core::sync::atomic::Ordering;

use virtio_drivers::device::net::VirtIONet;
use virtio_drivers::transport::mmio::{MmioTransport, VirtIOHeader};
use virtio_drivers::transport::Transport;
use virtnet::features::Features;
use virtnet::mem::{GuestAddress, GuestMemory, RegionMemory};
use virtnet::mmio::{regs, DeviceStatus, WINDOW_SIZE};
use virtnet::testing::TestDriver;
use virtnet::wire::{DescFlags, Descriptor};
use virtnet_baremetal::memory::guest_memory;
use virtnet_baremetal::{cpu, hprintln};

use crate::driver::{self, ImageHal, RegTransport};
use crate::frames::{FrameGen, Rng, MAX_LEN, RX_SEED, TX_SEED};
use crate::irq::{self, Gic, ISR_CONFIG, ISR_EMPTY, ISR_VRING, VIRTIO_IRQS};
use crate::tests::{check, Outcome, Test};
use crate::{el2, guest, heap, hyp, vio};
use hyp::{op, Stat};

/// Frames exchanged each way by the main exchange.
pub const FRAMES: u64 = 10_000;
/// The driver's queue size.
const QUEUE: usize = 64;
/// The driver's receive buffer size.
const RX_BUF_LEN: usize = 2048;

/// The virtio tests, in order.
pub const TESTS: &[Test] = &[
    Test {
        name: "virtio_drivers_exchange_10000_frames_each_way_event_idx",
        run: exchange_event_idx,
    },
    Test {
        name: "virtio_drivers_exchange_10000_frames_each_way_no_event_idx",
        run: exchange_no_event_idx,
    },
    Test {
        name: "hostile_avail_idx_beyond_size_needs_reset_with_config_irq",
        run: hostile_avail_idx,
    },
    Test {
        name: "hostile_descriptor_loop_returns_head_with_len_0",
        run: hostile_loop,
    },
    Test {
        name: "hostile_buffers_outside_guest_ram_are_refused",
        run: hostile_outside,
    },
    Test {
        name: "hostile_ring_outside_guest_ram_refused_at_queue_ready",
        run: hostile_ring_outside,
    },
    Test {
        name: "hostile_queue_sel_out_of_range_reads_0_ignores_writes",
        run: hostile_queue_sel,
    },
];

/// Tests that need the EL2 hypervisor.
pub const EL2_TESTS: &[Test] = &[Test {
    name: "el2_refused_virtio_access_injects_an_abort",
    run: el2_refused_injects_abort,
}];

/// Run after everything else that touches the device.
pub const FINAL_TESTS: &[Test] = &[Test {
    name: "heap_stays_empty_in_the_device_path",
    run: heap_stays_empty,
}];

fn path() -> &'static str {
    if vio::trapped() {
        "trapped: driver at EL1, device at EL2"
    } else {
        "direct: driver and device at EL1"
    }
}

fn millis_since(start: u64) -> u64 {
    (cpu::counter() - start) * 1000 / cpu::counter_frequency().max(1)
}

fn exchange_event_idx(gic: &Gic) -> Outcome {
    exchange(gic, true, FRAMES)
}

fn exchange_no_event_idx(gic: &Gic) -> Outcome {
    exchange(gic, false, FRAMES)
}

/// Byte counts of an exchange.
struct Moved {
    tx_bytes: u64,
    rx_bytes: u64,
}

/// virtio-drivers' `VirtIONet` against the device: `frames` each way,
/// every byte compared (TX by the device's backend, RX by the driver), then
/// the interrupt accounting (I-BM-12, I-BM-13).
fn exchange(_gic: &Gic, event_idx: bool, frames: u64) -> Outcome {
    let flags = if event_idx { hyp::CREATE_EVENT_IDX } else { 0 };
    check(
        vio::host(op::PING, 0) == hyp::PONG,
        "host channel does not answer",
    )?;
    check(vio::host(op::CREATE, flags) == 0, "device creation failed")?;
    driver::reset_dma();
    let irqs0 = VIRTIO_IRQS.load(Ordering::SeqCst);
    let vring0 = ISR_VRING.load(Ordering::SeqCst);
    let empty0 = ISR_EMPTY.load(Ordering::SeqCst);
    let traps0 = el2::VIRTIO_TRAPS.load(Ordering::SeqCst);
    let hvcs0 = el2::HVCS.load(Ordering::SeqCst);
    let allocs0 = heap::DRIVER_ALLOCS.load(Ordering::SeqCst);
    let direct0 = driver::SHARED_DIRECT.load(Ordering::SeqCst);
    let bounced0 = driver::SHARED_BOUNCED.load(Ordering::SeqCst);
    let start = cpu::counter();
    let moved = if vio::trapped() {
        let header =
            NonNull::new(hyp::VIRTIO_BASE as usize as *mut VirtIOHeader).ok_or("null window")?;
        // SAFETY: the window is the device's register block (header and
        // config space, WINDOW_SIZE bytes), reached by loads and stores that
        // trap to EL2; nothing else accesses it while the transport lives.
        let t = unsafe { MmioTransport::new(header, WINDOW_SIZE as usize) }
            .map_err(|_| "virtio-drivers refused the register block")?;
        drive(t, event_idx, frames)?
    } else {
        drive(RegTransport, event_idx, frames)?
    };
    let ms = millis_since(start);

    // The device's side of the exchange.
    let s = |k| vio::stat(k);
    check(s(Stat::TxPackets) == frames, "device TX packet count")?;
    check(s(Stat::BackendTx) == frames, "backend TX frame count")?;
    if s(Stat::TxMismatches) != 0 {
        hprintln!(
            "    {} TX frames differed, first #{}",
            s(Stat::TxMismatches),
            s(Stat::FirstBadTx) - 1
        );
        return Err("TX frames corrupted");
    }
    check(s(Stat::RxPackets) == frames, "device RX packet count")?;
    check(
        s(Stat::TxDropped) == 0 && s(Stat::RxDropped) == 0,
        "frames dropped",
    )?;
    check(s(Stat::QueueErrors) == 0, "queue errors")?;
    check(s(Stat::RxCredit) == 0, "frames left undelivered")?;
    check(s(Stat::PoolDeficit) == 0, "frame pool slots leaked")?;

    // Interrupts: every raise that did not find the SPI pending is one
    // delivery to the IRQ handler, which found InterruptStatus non-zero.
    let raised = s(Stat::Raised);
    let coalesced = s(Stat::Coalesced);
    let expected = (raised - coalesced) as u32;
    irq::wait_for(&VIRTIO_IRQS, irqs0 + expected, 100);
    irq::spin_micros(2000);
    let irqs = VIRTIO_IRQS.load(Ordering::SeqCst) - irqs0;
    let vring = ISR_VRING.load(Ordering::SeqCst) - vring0;
    let empty = ISR_EMPTY.load(Ordering::SeqCst) - empty0;
    let notifications = s(Stat::Notifications);
    let traps = el2::VIRTIO_TRAPS.load(Ordering::SeqCst) - traps0;
    let hvcs = el2::HVCS.load(Ordering::SeqCst) - hvcs0;
    let allocs = heap::DRIVER_ALLOCS.load(Ordering::SeqCst) - allocs0;
    hprintln!(
        "    [{}] event_idx={}: {frames} frames each way ({} B tx, {} B rx) in {ms} ms",
        path(),
        event_idx,
        moved.tx_bytes,
        moved.rx_bytes
    );
    hprintln!(
        "    interrupts: {irqs} taken by the IRQ handler ({vring} with the used-buffer bit, {empty} with status 0); device raised {raised} ({coalesced} coalesced while pending), {notifications} used-buffer notifications"
    );
    hprintln!(
        "    {traps} trapped register accesses, {hvcs} hypercalls, {} buffers shared in place, {} bounced, {allocs} driver heap allocations",
        driver::SHARED_DIRECT.load(Ordering::SeqCst) - direct0,
        driver::SHARED_BOUNCED.load(Ordering::SeqCst) - bounced0
    );
    #[cfg(feature = "defmt")]
    defmt::info!(
        "exchange event_idx={=bool}: {=u64} frames each way, {=u32} interrupts taken, device raised {=u64} ({=u64} coalesced)",
        event_idx,
        frames,
        irqs,
        raised,
        coalesced
    );
    check(irqs > 0, "no used-buffer interrupt reached the IRQ handler")?;
    check(
        irqs == expected,
        "interrupts taken differ from the device's raises minus coalesced ones",
    )?;
    check(vring == irqs, "an interrupt without the used-buffer bit")?;
    check(empty == 0, "an interrupt found InterruptStatus 0")?;
    check(
        raised == notifications,
        "raises differ from the device's used-buffer notifications",
    )?;
    if vio::trapped() {
        check(
            traps > frames,
            "the driver's register accesses did not trap",
        )?;
    }
    check(allocs >= frames, "the driver did not use its heap")?;
    check(vio::host(op::DESTROY, 0) == 0, "destroy")
}

fn drive<T: Transport>(t: T, event_idx: bool, frames: u64) -> Result<Moved, &'static str> {
    let mut net = VirtIONet::<ImageHal, T, QUEUE>::new(t, RX_BUF_LEN)
        .map_err(|_| "virtio-drivers: VirtIONet::new failed")?;
    check(net.mac_address() == hyp::MAC, "MAC address")?;
    let neg = Features::from_bits_retain(vio::stat(Stat::Negotiated));
    check(
        neg.contains(Features::RING_EVENT_IDX) == event_idx,
        "EVENT_IDX negotiation",
    )?;
    check(
        neg.contains(Features::RING_INDIRECT_DESC | Features::VERSION_1),
        "INDIRECT_DESC and VERSION_1 not negotiated",
    )?;
    let mut txg = FrameGen::new(TX_SEED);
    let mut rxg = FrameGen::new(RX_SEED);
    let mut rng = Rng::new(0x5eed ^ u64::from(event_idx));
    let mut buf = [0u8; MAX_LEN];
    let mut moved = Moved {
        tx_bytes: 0,
        rx_bytes: 0,
    };
    while txg.count() < frames || rxg.count() < frames {
        // Driver -> device: a burst of sends (each waits for its used
        // buffer; the device compares it to the TX sequence).
        let burst = (rng.range(1, 8) as u64).min(frames - txg.count());
        for _ in 0..burst {
            let len = txg.next_into(&mut buf);
            let mut tb = net.new_tx_buffer(len);
            tb.packet_mut().copy_from_slice(&buf[..len]);
            net.send(tb).map_err(|_| "send failed")?;
            moved.tx_bytes += len as u64;
        }
        // Device -> driver: the host side hands the backend a burst, the
        // device delivers it into the posted receive buffers.
        let burst = (rng.range(1, 8) as u64).min(frames - rxg.count());
        if burst == 0 {
            continue;
        }
        check(
            vio::host(op::INJECT, burst) == burst,
            "the device did not deliver the frames it was given",
        )?;
        for _ in 0..burst {
            let rx = net
                .receive()
                .map_err(|_| "a delivered frame was not received")?;
            let len = rxg.next_into(&mut buf);
            if rx.packet() != &buf[..len] {
                hprintln!(
                    "    RX frame #{} differs ({} bytes, expected {len})",
                    rxg.count() - 1,
                    rx.packet().len()
                );
                return Err("RX frame corrupted");
            }
            moved.rx_bytes += len as u64;
            net.recycle_rx_buffer(rx).map_err(|_| "recycle failed")?;
        }
        check(net.receive().is_err(), "an extra frame was received")?;
    }
    // Dropping the driver unsets its queues (QueueReady = 0).
    drop(net);
    let mut probe = RegTransport;
    if !vio::trapped() {
        check(
            !probe.queue_used(0) && !probe.queue_used(1),
            "queues still ready after the driver left",
        )?;
    }
    Ok(moved)
}

// ------------------------------------------------------------ hostile guest

/// The driver's view of its own RAM, for `TestDriver` (identity-mapped).
fn driver_mem() -> Result<RegionMemory<1>, &'static str> {
    // SAFETY: the guest RAM static is only accessed through raw pointers;
    // the tests write rings and buffers in the scratch area, which nothing
    // else uses while they run.
    unsafe { guest_memory::<1>(&[guest::range()]) }.map_err(|_| "guest memory")
}

const RXQ: usize = guest::SCRATCH;
const TXQ: usize = guest::SCRATCH + 0x1000;
const BUFS: usize = guest::SCRATCH + 0x4000;
const QSIZE: u16 = 16;

/// Creates a fresh device (sink backend) and brings it up through the
/// register path with VERSION_1 (+ `extra` features) and the given queues.
fn bring_up(queues: &[(u16, &TestDriver)], extra: Features) -> Outcome {
    check(
        vio::host(op::CREATE, hyp::CREATE_SINK) == 0,
        "device creation failed",
    )?;
    let f = (Features::VERSION_1 | extra).bits();
    vio::write32(regs::STATUS, 0);
    vio::write32(regs::STATUS, 3);
    vio::write32(regs::DRIVER_FEATURES_SEL, 0);
    vio::write32(regs::DRIVER_FEATURES, f as u32);
    vio::write32(regs::DRIVER_FEATURES_SEL, 1);
    vio::write32(regs::DRIVER_FEATURES, (f >> 32) as u32);
    vio::write32(regs::STATUS, 11);
    check(vio::read32(regs::STATUS) == 11, "FEATURES_OK refused")?;
    for &(q, d) in queues {
        program_queue(q, d);
        check(vio::read32(regs::QUEUE_READY) == 1, "queue refused")?;
    }
    vio::write32(regs::STATUS, 15);
    check(vio::read32(regs::STATUS) == 15, "DRIVER_OK refused")
}

fn program_queue(q: u16, d: &TestDriver) {
    vio::write32(regs::QUEUE_SEL, q.into());
    vio::write32(regs::QUEUE_NUM, d.layout.size.into());
    for (lo, a) in [
        (regs::QUEUE_DESC_LOW, d.layout.desc_table.0),
        (regs::QUEUE_DRIVER_LOW, d.layout.avail_ring.0),
        (regs::QUEUE_DEVICE_LOW, d.layout.used_ring.0),
    ] {
        vio::write32(lo, a as u32);
        vio::write32(lo + 4, (a >> 32) as u32);
    }
    vio::write32(regs::QUEUE_READY, 1);
}

fn needs_reset() -> bool {
    u32::from(DeviceStatus::DEVICE_NEEDS_RESET.bits()) & vio::read32(regs::STATUS) != 0
}

/// A 12-byte zero header and a 60-byte frame at `at`; returns the length.
fn put_frame(mem: &RegionMemory<1>, at: u64) -> Result<u32, &'static str> {
    let mut f = [0u8; 72];
    for (i, b) in f.iter_mut().enumerate().skip(12) {
        *b = i as u8;
    }
    mem.write(GuestAddress(at), &f).map_err(|_| "write")?;
    Ok(72)
}

/// Case: avail idx more than the queue size ahead (I-QUEUE-3, I-BM-13,
/// I-BM-14): the device
/// sets DEVICE_NEEDS_RESET, delivers a configuration-change interrupt
/// through the GIC, and stops; a reset recovers it.
fn hostile_avail_idx(_gic: &Gic) -> Outcome {
    let mem = driver_mem()?;
    let tx = TestDriver::new(&mem, guest::addr(TXQ), QSIZE).map_err(|_| "ring")?;
    bring_up(&[(1, &tx)], Features::empty())?;
    let config0 = ISR_CONFIG.load(Ordering::SeqCst);
    tx.set_avail_idx(&mem, 1000).map_err(|_| "write")?;
    vio::write32(regs::QUEUE_NOTIFY, 1);
    check(needs_reset(), "DEVICE_NEEDS_RESET not set")?;
    check(
        irq::wait_for(&ISR_CONFIG, config0 + 1, 100),
        "no configuration-change interrupt reached the IRQ handler",
    )?;
    check(vio::stat(Stat::QueueErrors) == 1, "queue error not counted")?;
    vio::write32(regs::QUEUE_NOTIFY, 1);
    check(
        vio::stat(Stat::TxPackets) == 0 && vio::stat(Stat::QueueErrors) == 1,
        "a broken queue was processed again",
    )?;
    vio::write32(regs::STATUS, 0);
    check(
        vio::read32(regs::STATUS) == 0,
        "reset did not clear the status",
    )
}

/// Case: a descriptor loop (0 -> 1 -> 0): the head comes back with len 0,
/// the device stays usable, the next good frame goes through (I-BM-14).
fn hostile_loop(_gic: &Gic) -> Outcome {
    let mem = driver_mem()?;
    let mut tx = TestDriver::new(&mem, guest::addr(TXQ), QSIZE).map_err(|_| "ring")?;
    bring_up(&[(1, &tx)], Features::empty())?;
    let b = guest::addr(BUFS);
    let w = |i, d| tx.write_desc(&mem, i, d).map_err(|_| "write");
    w(0, Descriptor::new(b, 64, DescFlags::NEXT, 1))?;
    w(1, Descriptor::new(b, 64, DescFlags::NEXT, 0))?;
    tx.push_head(&mem, 0).map_err(|_| "write")?;
    tx.publish(&mem).map_err(|_| "write")?;
    vio::write32(regs::QUEUE_NOTIFY, 1);
    check(
        tx.pop_used(&mem) == Ok(Some((0, 0))),
        "the looping chain's head was not returned with len 0",
    )?;
    check(
        vio::stat(Stat::TxMalformedChains) == 1,
        "malformed chain not counted",
    )?;
    check(!needs_reset(), "a malformed chain broke the device")?;
    tx.next_desc = 2;
    let len = put_frame(&mem, b + 0x100)?;
    let head = tx
        .add_chain(&mem, &[(b + 0x100, len, false)])
        .map_err(|_| "write")?;
    tx.publish(&mem).map_err(|_| "write")?;
    vio::write32(regs::QUEUE_NOTIFY, 1);
    check(
        tx.pop_used(&mem) == Ok(Some((u32::from(head), 0))),
        "good frame's head not returned",
    )?;
    check(
        vio::stat(Stat::TxPackets) == 1,
        "good frame after a loop not sent",
    )
}

/// Bytes outside the guest RAM (the image's own memory), which descriptors
/// point at below: the device must neither read nor write them.
struct Canary(core::cell::UnsafeCell<[u8; 256]>);
// SAFETY: only read, through a raw pointer, by the test below; the device
// is expected never to write it (that is what the test checks).
unsafe impl Sync for Canary {}
static CANARY: Canary = Canary(core::cell::UnsafeCell::new([0xa5; 256]));

fn canary_intact() -> bool {
    // SAFETY: reads the static through its raw pointer; nothing writes it.
    let bytes = unsafe { CANARY.0.get().read_volatile() };
    bytes.iter().all(|&b| b == 0xa5)
}

/// Case: TX and RX buffers pointing outside the guest RAM (at memory that
/// is RAM, but the hypervisor's): refused as malformed chains, head
/// returned with len 0, the bytes there untouched (I-BM-10).
fn hostile_outside(_gic: &Gic) -> Outcome {
    let mem = driver_mem()?;
    let mut rx = TestDriver::new(&mem, guest::addr(RXQ), QSIZE).map_err(|_| "ring")?;
    let mut tx = TestDriver::new(&mem, guest::addr(TXQ), QSIZE).map_err(|_| "ring")?;
    bring_up(&[(0, &rx), (1, &tx)], Features::empty())?;
    let canary = CANARY.0.get().cast::<u8>().expose_provenance();
    check(!guest::contains(canary, 256), "canary inside guest RAM")?;
    let head = tx
        .add_chain(&mem, &[(canary as u64, 128, false)])
        .map_err(|_| "write")?;
    tx.publish(&mem).map_err(|_| "write")?;
    vio::write32(regs::QUEUE_NOTIFY, 1);
    check(
        tx.pop_used(&mem) == Ok(Some((u32::from(head), 0))),
        "TX head not returned with len 0",
    )?;
    check(
        vio::stat(Stat::TxPackets) == 0,
        "a frame was read from outside",
    )?;
    check(
        vio::stat(Stat::TxMalformedChains) == 1,
        "TX refusal not counted",
    )?;
    let head = rx
        .add_chain(&mem, &[(canary as u64, 256, true)])
        .map_err(|_| "write")?;
    rx.publish(&mem).map_err(|_| "write")?;
    vio::write32(regs::QUEUE_NOTIFY, 0);
    check(
        vio::host(op::INJECT, 1) == 0,
        "a frame was delivered outside the guest RAM",
    )?;
    check(
        rx.pop_used(&mem) == Ok(Some((u32::from(head), 0))),
        "RX head not returned with len 0",
    )?;
    check(
        vio::stat(Stat::RxMalformedChains) == 1,
        "RX refusal not counted",
    )?;
    check(canary_intact(), "memory outside the guest RAM was written")?;
    check(!needs_reset(), "refused buffers broke the device")
}

/// Case: a descriptor table outside the guest RAM: QueueReady stays 0, the
/// device asks for a reset and says so with a configuration interrupt
/// (I-BM-10, I-BM-13).
fn hostile_ring_outside(_gic: &Gic) -> Outcome {
    let mem = driver_mem()?;
    let tx = TestDriver::new(&mem, guest::addr(TXQ), QSIZE).map_err(|_| "ring")?;
    check(vio::host(op::CREATE, hyp::CREATE_SINK) == 0, "create")?;
    vio::write32(regs::STATUS, 3);
    vio::write32(regs::DRIVER_FEATURES_SEL, 1);
    vio::write32(
        regs::DRIVER_FEATURES,
        (Features::VERSION_1.bits() >> 32) as u32,
    );
    vio::write32(regs::STATUS, 11);
    let config0 = ISR_CONFIG.load(Ordering::SeqCst);
    let mut bad = tx.clone();
    bad.layout.desc_table = GuestAddress(CANARY.0.get().cast::<u8>().expose_provenance() as u64);
    program_queue(1, &bad);
    check(
        vio::read32(regs::QUEUE_READY) == 0,
        "queue outside RAM accepted",
    )?;
    check(needs_reset(), "DEVICE_NEEDS_RESET not set")?;
    check(
        irq::wait_for(&ISR_CONFIG, config0 + 1, 100),
        "no configuration-change interrupt",
    )?;
    check(canary_intact(), "memory outside the guest RAM was written")
}

/// Case: QueueSel beyond the queues (0xFFFF): per-queue registers read 0,
/// writes are ignored, a notify of it does nothing (I-BM-14).
fn hostile_queue_sel(_gic: &Gic) -> Outcome {
    let mem = driver_mem()?;
    let tx = TestDriver::new(&mem, guest::addr(TXQ), QSIZE).map_err(|_| "ring")?;
    check(vio::host(op::CREATE, hyp::CREATE_SINK) == 0, "create")?;
    vio::write32(regs::STATUS, 3);
    vio::write32(regs::DRIVER_FEATURES_SEL, 1);
    vio::write32(
        regs::DRIVER_FEATURES,
        (Features::VERSION_1.bits() >> 32) as u32,
    );
    vio::write32(regs::STATUS, 11);
    vio::write32(regs::QUEUE_SEL, 0xffff);
    check(
        vio::read32(regs::QUEUE_NUM_MAX) == 0,
        "QueueNumMax of 0xFFFF",
    )?;
    check(vio::read32(regs::QUEUE_READY) == 0, "QueueReady of 0xFFFF")?;
    program_queue(0xffff, &tx);
    check(vio::read32(regs::QUEUE_NUM) == 0, "QueueNum written")?;
    check(
        vio::read32(regs::QUEUE_READY) == 0,
        "queue 0xFFFF made ready",
    )?;
    vio::write32(regs::QUEUE_SEL, 0);
    check(
        vio::read32(regs::QUEUE_NUM_MAX) == 256,
        "queue 0's QueueNumMax",
    )?;
    check(vio::read32(regs::QUEUE_READY) == 0, "queue 0 became ready")?;
    vio::write32(regs::STATUS, 15);
    vio::write32(regs::QUEUE_NOTIFY, 0xffff);
    check(!needs_reset(), "a notify of queue 0xFFFF broke the device")?;
    check(
        vio::read32(regs::MAGIC_VALUE) == virtnet::mmio::MAGIC,
        "magic",
    )
}

/// An access the decoder refuses (a store pair: ISV = 0) is answered with
/// an external abort injected into EL1 at the instruction, never emulated
/// (I-BM-11).
fn el2_refused_injects_abort(_gic: &Gic) -> Outcome {
    check(vio::host(op::CREATE, hyp::CREATE_SINK) == 0, "create")?;
    let refused0 = el2::VIRTIO_REFUSED.load(Ordering::SeqCst);
    let at = hyp::VIRTIO_BASE + regs::STATUS;
    let fault = crate::boot::catch_fault(|| {
        // SAFETY: a store pair to the device's STATUS register; EL2 refuses
        // it and injects an abort, which `catch_fault` records and skips.
        unsafe {
            core::arch::asm!("stp w1, w2, [x0]", in("x0") at, in("w1") 3u32, in("w2") 3u32, options(nostack))
        };
    });
    let Some(f) = fault else {
        return Err("no abort was injected");
    };
    hprintln!(
        "    injected: ESR_EL1={:#x} FAR_EL1={:#x} ELR_EL1={:#x}",
        f.esr,
        f.far,
        f.elr
    );
    check(
        el2::VIRTIO_REFUSED.load(Ordering::SeqCst) == refused0 + 1,
        "EL2 did not refuse exactly once",
    )?;
    check(
        f.esr == (0x25 << 26) | (1 << 25) | (1 << 6) | 0x10,
        "not a same-EL external abort on a write (EC 0x25, IL, WnR, DFSC 0x10)",
    )?;
    check(f.far == at, "FAR is not the refused address")?;
    check(
        vio::read32(regs::STATUS) == 0,
        "the refused store reached the device",
    )?;
    check(vio::host(op::DESTROY, 0) == 0, "destroy")
}

/// The device side never called the allocator (while the driver side did),
/// and the guard does catch an allocation made in device context
/// (I-BM-15).
fn heap_stays_empty(_gic: &Gic) -> Outcome {
    let device_calls = heap::DEVICE_HEAP_CALLS.load(Ordering::SeqCst);
    let entries = heap::DEVICE_ENTRIES.load(Ordering::SeqCst);
    let allocs = heap::DRIVER_ALLOCS.load(Ordering::SeqCst);
    let frees = heap::DRIVER_FREES.load(Ordering::SeqCst);
    hprintln!(
        "    device entries {entries}, allocator calls from the device {device_calls}; driver allocations {allocs}, frees {frees}, {} bytes in use",
        heap::used()
    );
    check(device_calls == 0, "the device side called the allocator")?;
    check(entries >= 2 * FRAMES, "the device side was not entered")?;
    check(allocs >= FRAMES, "the driver side did not allocate")?;
    // Negative control: an allocation in device context is caught.
    let layout = core::alloc::Layout::new::<u64>();
    // SAFETY: a non-zero-size layout; the pointer is freed if non-null.
    let p = heap::device_context(|| unsafe { alloc::alloc::alloc(layout) });
    let caught = heap::DEVICE_HEAP_CALLS.swap(0, Ordering::SeqCst);
    if !p.is_null() {
        // SAFETY: allocated just above with `layout`.
        unsafe { alloc::alloc::dealloc(p, layout) };
    }
    check(
        p.is_null() && caught == 1,
        "an allocation in device context was not caught",
    )
}
