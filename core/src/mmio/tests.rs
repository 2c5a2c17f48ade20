//! virtio-mmio register-block tests: hostile-guest cases 5-8 and the status
//! and reset MUSTs of §2.1.2 / §2.4.1.

use super::*;
use crate::device::{BackendError, NetConfig, NetDevice, NoInterceptor, RxFrame};
use crate::pool::FramePool;
use crate::test_mem::TestMemory;
use crate::testing::TestDriver;
use crate::wire::NetHdrRepr;

struct Loop(Option<std::vec::Vec<u8>>);

impl Backend for Loop {
    fn transmit(&mut self, _h: &NetHdrRepr, f: &[u8]) -> Result<(), BackendError> {
        self.0 = Some(f.to_vec());
        Ok(())
    }
    fn receive(&mut self, buf: &mut [u8]) -> Result<Option<RxFrame>, BackendError> {
        Ok(self.0.take().map(|f| {
            buf[..f.len()].copy_from_slice(&f);
            RxFrame {
                len: f.len(),
                hdr: NetHdrRepr::default(),
            }
        }))
    }
}

#[derive(Default)]
struct Line {
    raised: u32,
    lowered: u32,
}

impl InterruptLine for Line {
    fn raise(&mut self) {
        self.raised += 1;
    }
    fn lower(&mut self) {
        self.lowered += 1;
    }
}

type Dev<'p> = NetDevice<'p, Loop, NoInterceptor, 2048, 4>;
type Pools = (FramePool<2048, 4>, FramePool<2048, 4>);

fn transport(pools: &Pools) -> MmioTransport<Dev<'_>> {
    let cfg = NetConfig {
        mac: Some([2, 0, 0, 0, 0, 9]),
        ..NetConfig::default()
    };
    MmioTransport::new(NetDevice::new(
        cfg,
        Loop(None),
        NoInterceptor,
        &pools.0,
        &pools.1,
    ))
}

const S_ACK_DRV: u64 = 3;
const S_FEAT_OK: u64 = 11;
const S_DRV_OK: u64 = 15;

fn w(
    t: &mut MmioTransport<Dev<'_>>,
    mem: &TestMemory,
    line: &mut Line,
    off: u64,
    v: u64,
) -> Progress {
    t.write(off, 4, v, mem, line)
}

fn negotiate(t: &mut MmioTransport<Dev<'_>>, mem: &TestMemory, line: &mut Line, features: u64) {
    w(t, mem, line, regs::STATUS, 0);
    w(t, mem, line, regs::STATUS, S_ACK_DRV);
    w(t, mem, line, regs::DRIVER_FEATURES_SEL, 0);
    w(t, mem, line, regs::DRIVER_FEATURES, features & 0xffff_ffff);
    w(t, mem, line, regs::DRIVER_FEATURES_SEL, 1);
    w(t, mem, line, regs::DRIVER_FEATURES, features >> 32);
    w(t, mem, line, regs::STATUS, S_FEAT_OK);
}

fn set_queue(
    t: &mut MmioTransport<Dev<'_>>,
    mem: &TestMemory,
    line: &mut Line,
    q: u32,
    d: &TestDriver,
) {
    w(t, mem, line, regs::QUEUE_SEL, q.into());
    w(t, mem, line, regs::QUEUE_NUM, d.layout.size.into());
    w(t, mem, line, regs::QUEUE_DESC_LOW, d.layout.desc_table.0);
    w(t, mem, line, regs::QUEUE_DESC_HIGH, 0);
    w(t, mem, line, regs::QUEUE_DRIVER_LOW, d.layout.avail_ring.0);
    w(t, mem, line, regs::QUEUE_DRIVER_HIGH, 0);
    w(t, mem, line, regs::QUEUE_DEVICE_LOW, d.layout.used_ring.0);
    w(t, mem, line, regs::QUEUE_DEVICE_HIGH, 0);
    w(t, mem, line, regs::QUEUE_READY, 1);
}

const V1: u64 = 1 << 32;

#[test]
fn identity_registers_and_config_space() {
    let pools: Pools = (FramePool::new(), FramePool::new());
    let t = transport(&pools);
    assert_eq!(t.read(regs::MAGIC_VALUE, 4), 0x7472_6976);
    assert_eq!(t.read(regs::VERSION, 4), 2);
    assert_eq!(t.read(regs::DEVICE_ID, 4), 1);
    assert_eq!(t.read(regs::MAGIC_VALUE, 2), 0, "registers are 32-bit");
    assert_eq!(t.read(regs::CONFIG + 5, 1), 9, "MAC byte 5");
    assert_eq!(t.read(regs::CONFIG, 4), 0x0000_0002, "MAC bytes 0-3");
    assert_eq!(t.read(regs::CONFIG + 6, 2), 1, "LINK_UP");
    assert_eq!(t.read(regs::CONFIG + 0x40, 4), 0, "beyond config space");
    assert_eq!(
        t.read(regs::SHM_LEN_LOW, 4),
        0xffff_ffff,
        "no shared memory"
    );
}

/// Case 8, I-MMIO-1: QueueSel = 0xFFFF, then every per-queue register.
#[test]
fn case08_out_of_range_queue_select_reads_zero_and_ignores_writes() {
    let pools: Pools = (FramePool::new(), FramePool::new());
    let mem = TestMemory::new(0, 0x10000);
    let mut t = transport(&pools);
    let mut line = Line::default();
    negotiate(&mut t, &mem, &mut line, V1);
    for sel in [2u64, 0xFFFF, 0xFFFF_FFFF] {
        w(&mut t, &mem, &mut line, regs::QUEUE_SEL, sel);
        for r in [
            regs::QUEUE_NUM,
            regs::QUEUE_DESC_LOW,
            regs::QUEUE_DRIVER_LOW,
            regs::QUEUE_DEVICE_LOW,
            regs::QUEUE_READY,
        ] {
            w(&mut t, &mem, &mut line, r, 0x40);
        }
        for r in [
            regs::QUEUE_NUM_MAX,
            regs::QUEUE_NUM,
            regs::QUEUE_READY,
            regs::QUEUE_DESC_LOW,
            regs::QUEUE_DESC_HIGH,
            regs::QUEUE_DRIVER_LOW,
            regs::QUEUE_DRIVER_HIGH,
            regs::QUEUE_DEVICE_LOW,
            regs::QUEUE_DEVICE_HIGH,
        ] {
            assert_eq!(t.read(r, 4), 0, "sel {sel:#x} reg {r:#x}");
        }
        w(&mut t, &mem, &mut line, regs::QUEUE_NOTIFY, sel);
    }
    w(&mut t, &mem, &mut line, regs::QUEUE_SEL, 0);
    assert_eq!(t.read(regs::QUEUE_NUM, 4), 0, "queue 0 untouched");
    assert_eq!(t.read(regs::QUEUE_NUM_MAX, 4), 256);
}

/// Case 5, I-MMIO-2: queue registers written before FEATURES_OK, after
/// DRIVER_OK, or while ready are ignored; the queue keeps its snapshot.
#[test]
fn case05_queue_registers_outside_the_setup_window_are_ignored() {
    let pools: Pools = (FramePool::new(), FramePool::new());
    let mem = TestMemory::new(0, 0x10000);
    let mut t = transport(&pools);
    let mut line = Line::default();
    let rx = TestDriver::new(&mem, 0x1000, 16).unwrap();
    // Before FEATURES_OK.
    w(&mut t, &mem, &mut line, regs::STATUS, S_ACK_DRV);
    w(&mut t, &mem, &mut line, regs::QUEUE_SEL, 0);
    w(&mut t, &mem, &mut line, regs::QUEUE_NUM, 16);
    assert_eq!(t.read(regs::QUEUE_NUM, 4), 0);
    negotiate(&mut t, &mem, &mut line, V1);
    set_queue(&mut t, &mem, &mut line, 0, &rx);
    assert_eq!(t.read(regs::QUEUE_READY, 4), 1);
    // While ready.
    w(&mut t, &mem, &mut line, regs::QUEUE_NUM, 4);
    w(&mut t, &mem, &mut line, regs::QUEUE_DESC_LOW, 0x9000);
    assert_eq!(t.read(regs::QUEUE_NUM, 4), 16);
    w(&mut t, &mem, &mut line, regs::STATUS, S_DRV_OK);
    // After DRIVER_OK (CVE-2026-5747): even un-readying does not reopen it.
    w(&mut t, &mem, &mut line, regs::QUEUE_SEL, 1);
    w(&mut t, &mem, &mut line, regs::QUEUE_NUM, 8);
    assert_eq!(t.read(regs::QUEUE_NUM, 4), 0);
    w(&mut t, &mem, &mut line, regs::QUEUE_SEL, 0);
    w(&mut t, &mem, &mut line, regs::QUEUE_NUM, 0);
    assert_eq!(t.read(regs::QUEUE_NUM, 4), 16);
    assert_eq!(
        t.device().queue(0).unwrap().layout(),
        rx.layout,
        "validated snapshot kept"
    );
}

/// Case 6, I-MMIO-3: clearing status bits is refused; DRIVER_OK without
/// FEATURES_OK is refused.
#[test]
fn case06_status_bits_cannot_be_cleared_and_driver_ok_needs_features_ok() {
    let pools: Pools = (FramePool::new(), FramePool::new());
    let mem = TestMemory::new(0, 0x10000);
    let mut t = transport(&pools);
    let mut line = Line::default();
    w(&mut t, &mem, &mut line, regs::STATUS, S_ACK_DRV);
    w(&mut t, &mem, &mut line, regs::STATUS, S_ACK_DRV | 4);
    assert_eq!(
        t.read(regs::STATUS, 4),
        S_ACK_DRV,
        "DRIVER_OK without FEATURES_OK"
    );
    assert!(!t.device().is_active());
    negotiate(&mut t, &mem, &mut line, V1);
    assert_eq!(t.read(regs::STATUS, 4), S_FEAT_OK);
    w(&mut t, &mem, &mut line, regs::STATUS, 1);
    assert_eq!(t.read(regs::STATUS, 4), S_FEAT_OK, "bits cannot be cleared");
}

/// Case 6, §2.1.2, I-MMIO-4: a kick before DRIVER_OK consumes nothing and
/// raises nothing.
#[test]
fn case06_kick_before_driver_ok_consumes_nothing() {
    let pools: Pools = (FramePool::new(), FramePool::new());
    let mem = TestMemory::new(0, 0x10000);
    let mut t = transport(&pools);
    let mut line = Line::default();
    negotiate(&mut t, &mem, &mut line, V1);
    let mut tx = TestDriver::new(&mem, 0x3000, 16).unwrap();
    set_queue(&mut t, &mem, &mut line, 1, &tx);
    tx.add_chain(&mem, &[(0x8000, 80, false)]).unwrap();
    tx.publish(&mem).unwrap();
    assert_eq!(w(&mut t, &mem, &mut line, regs::QUEUE_NOTIFY, 1).handled, 0);
    assert_eq!(tx.used_idx(&mem).unwrap(), 0);
    assert_eq!(line.raised, 0);
    w(&mut t, &mem, &mut line, regs::STATUS, S_DRV_OK);
    assert_eq!(w(&mut t, &mem, &mut line, regs::QUEUE_NOTIFY, 1).handled, 1);
    assert_eq!(tx.used_idx(&mem).unwrap(), 1);
    assert_eq!(line.raised, 1);
    assert_eq!(t.read(regs::INTERRUPT_STATUS, 4), u64::from(INT_VRING));
}

/// Case 6, §2.4.1, I-MMIO-4: after reset nothing is written and nothing raised.
#[test]
fn case06_after_reset_nothing_is_written_or_raised() {
    let pools: Pools = (FramePool::new(), FramePool::new());
    let mem = TestMemory::new(0, 0x10000);
    let mut t = transport(&pools);
    let mut line = Line::default();
    negotiate(&mut t, &mem, &mut line, V1);
    let mut tx = TestDriver::new(&mem, 0x3000, 16).unwrap();
    set_queue(&mut t, &mem, &mut line, 1, &tx);
    w(&mut t, &mem, &mut line, regs::STATUS, S_DRV_OK);
    w(&mut t, &mem, &mut line, regs::STATUS, 0);
    assert_eq!(t.read(regs::STATUS, 4), 0);
    tx.add_chain(&mem, &[(0x8000, 80, false)]).unwrap();
    tx.publish(&mem).unwrap();
    let raised = line.raised;
    w(&mut t, &mem, &mut line, regs::QUEUE_NOTIFY, 1);
    t.poll(&mem, &mut line);
    assert_eq!(tx.used_idx(&mem).unwrap(), 0);
    assert_eq!(line.raised, raised);
    assert!(t.device().queue(1).is_none());
}

/// Case 7, §2.2.2, I-MMIO-3: unoffered features or a broken dependency leave
/// FEATURES_OK clear; a valid subset sets it.
#[test]
fn case07_invalid_feature_sets_leave_features_ok_clear() {
    let pools: Pools = (FramePool::new(), FramePool::new());
    let mem = TestMemory::new(0, 0x10000);
    let mut t = transport(&pools);
    let mut line = Line::default();
    let offered = t.device().offered_features().bits();
    let tso4_no_csum = V1 | (1 << 11);
    for bad in [V1 | (1 << 17), tso4_no_csum, 1 << 5, V1 | (1 << 60)] {
        negotiate(&mut t, &mem, &mut line, bad);
        assert_eq!(
            t.read(regs::STATUS, 4),
            S_ACK_DRV,
            "features {bad:#x} (offered {offered:#x})"
        );
    }
    negotiate(&mut t, &mem, &mut line, V1 | (1 << 5) | (1 << 15));
    assert_eq!(t.read(regs::STATUS, 4), S_FEAT_OK);
    // After FEATURES_OK, DriverFeatures writes are ignored.
    w(&mut t, &mem, &mut line, regs::DRIVER_FEATURES_SEL, 0);
    w(&mut t, &mem, &mut line, regs::DRIVER_FEATURES, 0);
    assert!(t
        .device()
        .negotiated_features()
        .contains(crate::features::Features::MRG_RXBUF));
}

/// I-MMIO-5: a layout refused at QueueReady sets DEVICE_NEEDS_RESET and
/// raises a configuration-change interrupt.
#[test]
fn queue_ready_with_a_bad_layout_needs_reset() {
    let pools: Pools = (FramePool::new(), FramePool::new());
    let mem = TestMemory::new(0, 0x10000);
    let mut t = transport(&pools);
    let mut line = Line::default();
    negotiate(&mut t, &mem, &mut line, V1);
    w(&mut t, &mem, &mut line, regs::QUEUE_SEL, 0);
    w(&mut t, &mem, &mut line, regs::QUEUE_NUM, 3);
    w(&mut t, &mem, &mut line, regs::QUEUE_READY, 1);
    assert_eq!(t.read(regs::QUEUE_READY, 4), 0);
    assert_eq!(t.read(regs::STATUS, 4) & 64, 64, "DEVICE_NEEDS_RESET");
    assert_eq!(t.read(regs::INTERRUPT_STATUS, 4), u64::from(INT_CONFIG));
    assert_eq!(line.raised, 1);
    w(&mut t, &mem, &mut line, regs::STATUS, 0);
    assert_eq!(t.read(regs::STATUS, 4), 0, "reset clears it");
}

/// I-MMIO-6: InterruptACK clears causes and lowers the line at zero.
#[test]
fn interrupt_status_and_ack_drive_the_line() {
    let pools: Pools = (FramePool::new(), FramePool::new());
    let mem = TestMemory::new(0, 0x10000);
    let mut t = transport(&pools);
    let mut line = Line::default();
    negotiate(&mut t, &mem, &mut line, V1 | (1 << 16));
    let rx = TestDriver::new(&mem, 0x1000, 16).unwrap();
    let mut tx = TestDriver::new(&mem, 0x3000, 16).unwrap();
    set_queue(&mut t, &mem, &mut line, 0, &rx);
    set_queue(&mut t, &mem, &mut line, 1, &tx);
    w(&mut t, &mem, &mut line, regs::STATUS, S_DRV_OK);
    tx.add_chain(&mem, &[(0x8000, 80, false)]).unwrap();
    tx.publish(&mem).unwrap();
    w(&mut t, &mem, &mut line, regs::QUEUE_NOTIFY, 1);
    assert_eq!(t.device().stats().tx_packets, 1);
    t.device_mut().set_link_up(false, &mut NullNotifier);
    t.notify_config(&mut line);
    assert_eq!(
        t.read(regs::INTERRUPT_STATUS, 4),
        u64::from(INT_VRING | INT_CONFIG)
    );
    w(
        &mut t,
        &mem,
        &mut line,
        regs::INTERRUPT_ACK,
        u64::from(INT_VRING),
    );
    assert_eq!(line.lowered, 0);
    w(
        &mut t,
        &mem,
        &mut line,
        regs::INTERRUPT_ACK,
        u64::from(INT_CONFIG),
    );
    assert_eq!(t.read(regs::INTERRUPT_STATUS, 4), 0);
    assert_eq!(line.lowered, 1);
    assert_eq!(t.read(regs::CONFIG + 6, 2), 0, "link down");
}

struct NullNotifier;
impl Notifier for NullNotifier {
    fn used_buffer(&mut self, _q: u16) {}
    fn config_changed(&mut self) {}
}
