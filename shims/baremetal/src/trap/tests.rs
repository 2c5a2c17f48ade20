//! Host tests of [`serve_data_abort`]: syndromes as QEMU reports them for a
//! guest behind stage 2 (EC 0x24, IL, ISV, DFSC = translation fault level 2),
//! served against the core's real register block and device.

use super::*;
use crate::gic::{IrqLine, Spi, SpiController};
use core::cell::Cell;
use std::vec;
use std::vec::Vec;
use virtnet::device::{Backend, BackendError, NetConfig, NetDevice, NoInterceptor, RxFrame};
use virtnet::features::Features;
use virtnet::mem::{GuestAddress, SliceMemory};
use virtnet::mmio::{regs, DeviceStatus, MAGIC};
use virtnet::pool::FramePool;
use virtnet::testing::TestDriver;
use virtnet::wire::NetHdrRepr;

const BASE: u64 = 0x0a00_0000;

/// A Data Abort syndrome from a lower EL with a valid instruction syndrome.
fn esr(sas: u64, srt: u64, write: bool, sse: bool, sf: bool) -> u64 {
    (0x24 << 26)
        | (1 << 25)
        | (1 << 24)
        | (sas << 22)
        | (u64::from(sse) << 21)
        | (srt << 16)
        | (u64::from(sf) << 15)
        | (u64::from(write) << 6)
        | 0x06
}

#[derive(Default)]
struct Sink {
    sent: Vec<Vec<u8>>,
}

impl Backend for Sink {
    fn transmit(&mut self, _hdr: &NetHdrRepr, frame: &[u8]) -> Result<(), BackendError> {
        self.sent.push(frame.to_vec());
        Ok(())
    }
    fn receive(&mut self, _buf: &mut [u8]) -> Result<Option<RxFrame>, BackendError> {
        Ok(None)
    }
}

/// A GIC that only counts set-pending writes.
#[derive(Default)]
struct CountingGic {
    pending: Cell<u32>,
}

impl SpiController for CountingGic {
    fn set_pending(&self, _spi: Spi) {
        self.pending.set(self.pending.get() + 1);
    }
    fn clear_pending(&self, _spi: Spi) {}
    fn is_pending(&self, _spi: Spi) -> bool {
        false
    }
}

type Dev<'p> = NetDevice<'p, Sink, NoInterceptor, 2048, 8>;

fn device(pools: &(FramePool<2048, 8>, FramePool<2048, 8>)) -> MmioTransport<Dev<'_>> {
    let cfg = NetConfig {
        mac: Some([2, 0, 0, 0, 0, 7]),
        ..NetConfig::default()
    };
    MmioTransport::new(NetDevice::new(
        cfg,
        Sink::default(),
        NoInterceptor,
        &pools.0,
        &pools.1,
    ))
}

#[test]
fn loads_are_served_with_the_register_semantics() {
    let pools = (FramePool::new(), FramePool::new());
    let mut t = device(&pools);
    let mut buf = vec![0u8; 4096];
    let mem = SliceMemory::new(0, &mut buf);
    let gic = CountingGic::default();
    let mut line = IrqLine::new(&gic, Spi::new(96).unwrap());
    let mut x = [0u64; 31];
    x[1] = 0xdead_beef_dead_beef;

    // ldr w1, [x0]: MagicValue, upper half of X1 cleared.
    let s = serve_data_abort(BASE, 0x9381_0006, BASE, &mut x, &mut t, &mem, &mut line).unwrap();
    assert_eq!(s.pc_step, 4);
    assert_eq!(x[1], u64::from(MAGIC));
    // ldr w2, [x0, #8]: DeviceID 1 (network).
    serve_data_abort(
        BASE,
        esr(2, 2, false, false, false),
        BASE + 8,
        &mut x,
        &mut t,
        &mem,
        &mut line,
    )
    .unwrap();
    assert_eq!(x[2], 1);
    // ldr x3: 64-bit access to a 32-bit register reads 0 (the transport's rule).
    x[3] = 5;
    serve_data_abort(
        BASE,
        esr(3, 3, false, false, true),
        BASE,
        &mut x,
        &mut t,
        &mem,
        &mut line,
    )
    .unwrap();
    assert_eq!(x[3], 0);
    // ldrb w4, [x0, #0x105]: MAC byte 5 from config space.
    serve_data_abort(
        BASE,
        esr(0, 4, false, false, false),
        BASE + regs::CONFIG + 5,
        &mut x,
        &mut t,
        &mem,
        &mut line,
    )
    .unwrap();
    assert_eq!(x[4], 7);
    // ldr wzr, [x0]: the device is read, the value discarded.
    let before = x;
    serve_data_abort(BASE, 0x939f_0006, BASE, &mut x, &mut t, &mem, &mut line).unwrap();
    assert_eq!(x, before, "a load into WZR changes no register");
    assert_eq!(gic.pending.get(), 0, "no interrupt from loads");
}

#[test]
fn stores_are_masked_to_the_access_size() {
    let pools = (FramePool::new(), FramePool::new());
    let mut t = device(&pools);
    let mut buf = vec![0u8; 4096];
    let mem = SliceMemory::new(0, &mut buf);
    let gic = CountingGic::default();
    let mut line = IrqLine::new(&gic, Spi::new(96).unwrap());
    let mut x = [0u64; 31];
    // str w6, [x0, #0x70] with X6 = 0xffff_ffff_0000_0003: Status = ACK|DRIVER.
    x[6] = 0xffff_ffff_0000_0003;
    let s = serve_data_abort(
        BASE,
        esr(2, 6, true, false, false),
        BASE + regs::STATUS,
        &mut x,
        &mut t,
        &mem,
        &mut line,
    )
    .unwrap();
    assert!(s.access.write);
    assert_eq!(t.status(), DeviceStatus::ACKNOWLEDGE | DeviceStatus::DRIVER);
    // str wzr, [x0, #0x70]: writes 0, a reset.
    serve_data_abort(
        BASE,
        0x939f_0046,
        BASE + regs::STATUS,
        &mut x,
        &mut t,
        &mem,
        &mut line,
    )
    .unwrap();
    assert_eq!(t.status(), DeviceStatus::empty());
}

#[test]
fn refused_accesses_touch_nothing() {
    let pools = (FramePool::new(), FramePool::new());
    let mut t = device(&pools);
    let mut buf = vec![0u8; 4096];
    let mem = SliceMemory::new(0, &mut buf);
    let gic = CountingGic::default();
    let mut line = IrqLine::new(&gic, Spi::new(96).unwrap());
    let mut x = [7u64; 31];
    let store_status = esr(2, 1, true, false, false);
    for (e, ipa, want) in [
        // stp x1, x2, [x0]: ISV = 0.
        (
            0x9200_0046,
            BASE + regs::STATUS,
            TrapError::Abort(AbortError::NoValidSyndrome),
        ),
        // Just past the window.
        (
            store_status,
            BASE + WINDOW_SIZE,
            TrapError::OutsideWindow {
                ipa: BASE + WINDOW_SIZE,
                size: 4,
            },
        ),
        // Straddling its end.
        (
            store_status,
            BASE + WINDOW_SIZE - 2,
            TrapError::OutsideWindow {
                ipa: BASE + WINDOW_SIZE - 2,
                size: 4,
            },
        ),
        // Below it.
        (
            store_status,
            BASE - 4,
            TrapError::OutsideWindow {
                ipa: BASE - 4,
                size: 4,
            },
        ),
        // Not a data abort (an HVC, EC 0x16).
        (
            (0x16 << 26) | (1 << 25),
            BASE,
            TrapError::Abort(AbortError::NotDataAbort(0x16)),
        ),
    ] {
        let r = serve_data_abort(BASE, e, ipa, &mut x, &mut t, &mem, &mut line);
        assert_eq!(r, Err(want), "esr {e:#x} ipa {ipa:#x}");
        assert_eq!(x, [7u64; 31]);
        assert_eq!(t.status(), DeviceStatus::empty());
    }
    assert_eq!(
        window_offset(BASE, BASE + 0x1fc, AccessSize::Word),
        Some(0x1fc)
    );
    assert_eq!(window_offset(BASE, BASE + 0x1fc, AccessSize::Double), None);
    assert_eq!(window_offset(BASE, u64::MAX, AccessSize::Byte), None);
}

/// The whole protocol through trapped stores: bring-up, a TX chain written
/// by a driver, a QueueNotify store that sends it and raises the SPI.
#[test]
fn trapped_queue_notify_sends_a_frame_and_raises_the_spi() {
    let pools = (FramePool::new(), FramePool::new());
    let mut t = device(&pools);
    let mut buf = vec![0u8; 0x10000];
    let mem = SliceMemory::new(0, &mut buf);
    let gic = CountingGic::default();
    let mut line = IrqLine::new(&gic, Spi::new(96).unwrap());
    let mut x = [0u64; 31];
    let mut store = |off: u64, v: u64, x: &mut [u64; 31], t: &mut MmioTransport<Dev<'_>>| {
        x[9] = v;
        serve_data_abort(
            BASE,
            esr(2, 9, true, false, false),
            BASE + off,
            x,
            t,
            &mem,
            &mut line,
        )
        .unwrap()
    };
    let tx = TestDriver::new(&mem, 0x1000, 16).unwrap();
    let v1 = Features::VERSION_1.bits();
    for (off, v) in [
        (regs::STATUS, 3),
        (regs::DRIVER_FEATURES_SEL, 1),
        (regs::DRIVER_FEATURES, v1 >> 32),
        (regs::STATUS, 11),
        (regs::QUEUE_SEL, 1),
        (regs::QUEUE_NUM, 16),
        (regs::QUEUE_DESC_LOW, tx.layout.desc_table.0),
        (regs::QUEUE_DRIVER_LOW, tx.layout.avail_ring.0),
        (regs::QUEUE_DEVICE_LOW, tx.layout.used_ring.0),
        (regs::QUEUE_READY, 1),
        (regs::STATUS, 15),
    ] {
        store(off, v, &mut x, &mut t);
    }
    assert!(t.status().contains(DeviceStatus::DRIVER_OK));
    let mut tx = tx;
    let frame: Vec<u8> = (0..72u8).collect();
    mem.write(GuestAddress(0x8000), &[0u8; 12]).unwrap();
    mem.write(GuestAddress(0x8000 + 12), &frame).unwrap();
    tx.add_chain(&mem, &[(0x8000, 12 + 72, false)]).unwrap();
    tx.publish(&mem).unwrap();
    let s = store(regs::QUEUE_NOTIFY, 1, &mut x, &mut t);
    assert_eq!(s.progress.handled, 1);
    assert_eq!(t.device_mut().backend_mut().sent, vec![frame]);
    assert_eq!(tx.pop_used(&mem).unwrap(), Some((0, 0)));
    assert_eq!(gic.pending.get(), 1, "the used buffer raised the SPI once");
    // ldr w10, [x0, #0x60]: InterruptStatus says "used buffer".
    serve_data_abort(
        BASE,
        esr(2, 10, false, false, false),
        BASE + regs::INTERRUPT_STATUS,
        &mut x,
        &mut t,
        &mem,
        &mut line,
    )
    .unwrap();
    assert_eq!(x[10], 1);
}
