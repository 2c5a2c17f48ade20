//! Device-level hostile-guest tests (shared/research/hostile-guest.md §(e)
//! cases 15, 32, 35-50) and the device MUSTs of §(d) for the network header
//! and reset. Each test names the case and the invariant it pins.

use super::*;
use crate::mem::GuestAddress;
use crate::test_mem::{CountingMemory, TestMemory};
use crate::testing::TestDriver;
use crate::wire::net_hdr::ones_complement_sum;
use crate::wire::{NetHdrFlags, VirtioNetHdr};
use std::collections::VecDeque;
use std::vec;
use std::vec::Vec;
use zerocopy::byteorder::little_endian::U16;
use zerocopy::IntoBytes;

const MEM: usize = 0x40000;
const RXQ: u64 = 0x1000;
const TXQ: u64 = 0x3000;
const BUF: u64 = 0x10000;

#[derive(Default)]
struct Rec {
    sent: Vec<(NetHdrRepr, Vec<u8>)>,
    to_guest: VecDeque<(Vec<u8>, NetHdrRepr)>,
    caps: BackendCaps,
    /// Lend storage (zero-copy): TX buffers of this many bytes (0: "full",
    /// none lent), and RX frames in place.
    lend: Option<usize>,
    txbuf: Vec<u8>,
    /// Frames taken through `tx_commit` and through `transmit`.
    committed: usize,
    transmitted: usize,
    /// Frames lent and consumed; frames taken through `receive`.
    consumed: usize,
    received: usize,
}

impl Backend for Rec {
    fn caps(&self) -> BackendCaps {
        self.caps
    }
    fn transmit(&mut self, hdr: &NetHdrRepr, frame: &[u8]) -> Result<(), BackendError> {
        self.sent.push((*hdr, frame.to_vec()));
        self.transmitted += 1;
        Ok(())
    }
    fn tx_buffer(&mut self, _len: usize) -> Option<&mut [u8]> {
        let n = self.lend.filter(|&n| n > 0)?;
        self.txbuf.resize(n, 0xee);
        Some(&mut self.txbuf)
    }
    fn tx_commit(&mut self, hdr: &NetHdrRepr, len: usize) -> Result<(), BackendError> {
        self.sent.push((*hdr, self.txbuf[..len].to_vec()));
        self.committed += 1;
        Ok(())
    }
    fn rx_peek(&mut self) -> Option<(&[u8], NetHdrRepr)> {
        self.lend?;
        self.to_guest.front().map(|(f, h)| (&f[..], *h))
    }
    fn rx_consume(&mut self) {
        assert!(self.to_guest.pop_front().is_some(), "consumed nothing lent");
        self.consumed += 1;
    }
    fn receive(&mut self, buf: &mut [u8]) -> Result<Option<RxFrame>, BackendError> {
        let Some((f, hdr)) = self.to_guest.pop_front() else {
            return Ok(None);
        };
        self.received += 1;
        match buf.get_mut(..f.len()) {
            Some(dst) => {
                dst.copy_from_slice(&f);
                Ok(Some(RxFrame { len: f.len(), hdr }))
            }
            None => Err(BackendError::Refused),
        }
    }
}

#[derive(Default)]
struct Notes {
    used: Vec<u16>,
    config: u32,
}

impl Notifier for Notes {
    fn used_buffer(&mut self, q: u16) {
        self.used.push(q);
    }
    fn config_changed(&mut self) {
        self.config += 1;
    }
}

type Dev<'p, const S: usize, const C: usize> = NetDevice<'p, Rec, NoInterceptor, S, C>;

fn base_features() -> Features {
    Features::VERSION_1 | Features::MAC | Features::STATUS | Features::CSUM | Features::GUEST_CSUM
}

fn started<'p, const S: usize, const C: usize>(
    mem: &TestMemory,
    pools: &'p (FramePool<S, C>, FramePool<S, C>),
    features: Features,
    caps: BackendCaps,
) -> (Dev<'p, S, C>, TestDriver, TestDriver) {
    started_lending(mem, pools, features, caps, None)
}

/// As [`started`], with a backend that lends its storage when `lend`.
fn started_lending<'p, const S: usize, const C: usize>(
    mem: &TestMemory,
    pools: &'p (FramePool<S, C>, FramePool<S, C>),
    features: Features,
    caps: BackendCaps,
    lend: Option<usize>,
) -> (Dev<'p, S, C>, TestDriver, TestDriver) {
    let cfg = NetConfig {
        mac: Some([2, 0, 0, 0, 0, 1]),
        mtu: Some(1500),
        ..NetConfig::default()
    };
    let backend = Rec {
        caps,
        lend,
        ..Rec::default()
    };
    let mut dev = NetDevice::new(cfg, backend, NoInterceptor, &pools.0, &pools.1);
    dev.set_features(features).unwrap();
    let rx = TestDriver::new(mem, RXQ, 64).unwrap();
    let tx = TestDriver::new(mem, TXQ, 64).unwrap();
    dev.activate_queue(RX_QUEUE, rx.layout, mem).unwrap();
    dev.activate_queue(TX_QUEUE, tx.layout, mem).unwrap();
    dev.set_active(true);
    (dev, rx, tx)
}

fn hdr_bytes(flags: u8, gso: u8, hdr_len: u16, gso_size: u16, cs: u16, co: u16) -> [u8; 12] {
    let h = VirtioNetHdr {
        flags,
        gso_type: gso,
        hdr_len: U16::new(hdr_len),
        gso_size: U16::new(gso_size),
        csum_start: U16::new(cs),
        csum_offset: U16::new(co),
        num_buffers: U16::new(0),
    };
    let mut out = [0u8; 12];
    out.copy_from_slice(h.as_bytes());
    out
}

fn frame(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// Put `hdr ++ payload` at `at` and queue a one-descriptor TX chain.
fn send(mem: &TestMemory, tx: &mut TestDriver, at: u64, hdr: &[u8], payload: &[u8]) -> u16 {
    mem.write(GuestAddress(at), hdr).unwrap();
    mem.write(GuestAddress(at + hdr.len() as u64), payload)
        .unwrap();
    let h = tx
        .add_chain(mem, &[(at, (hdr.len() + payload.len()) as u32, false)])
        .unwrap();
    tx.publish(mem).unwrap();
    h
}

// ---------------------------------------------------------------- TX

/// Cases 35 and 37, I-NET-4: TX chains of 0, 5, 11 bytes, and a header with
/// no payload: dropped, returned with len 0, counted.
#[test]
fn case35_37_short_tx_chains_are_dropped_and_returned_with_len_zero() {
    let mem = TestMemory::new(0, MEM);
    let pools: (FramePool<2048, 4>, FramePool<2048, 4>) = (FramePool::new(), FramePool::new());
    let (mut dev, _rx, mut tx) = started(&mem, &pools, base_features(), BackendCaps::default());
    let mut n = Notes::default();
    for len in [0u32, 5, 11, 12] {
        let h = tx.add_chain(&mem, &[(BUF, len, false)]).unwrap();
        tx.publish(&mem).unwrap();
        dev.process_tx(&mem, &mut n, 16);
        assert_eq!(tx.pop_used(&mem).unwrap(), Some((h as u32, 0)), "len {len}");
    }
    assert!(dev.backend().sent.is_empty());
    assert_eq!(dev.stats().tx_malformed_frames, 4);
    assert_eq!(dev.stats().tx_packets, 0);
}

/// Case 36 (CVE-2022-2132), I-NET-2: a TX header split across 3
/// descriptors, then the frame in two more.
#[test]
fn case36_tx_header_split_across_three_descriptors_is_parsed() {
    let mem = TestMemory::new(0, MEM);
    let pools: (FramePool<2048, 4>, FramePool<2048, 4>) = (FramePool::new(), FramePool::new());
    let caps = BackendCaps {
        tx_csum: true,
        ..BackendCaps::default()
    };
    let (mut dev, _rx, mut tx) = started(&mem, &pools, base_features(), caps);
    let h = hdr_bytes(1, 0, 0, 0, 34, 6);
    let f = frame(100, 7);
    let mut all = h.to_vec();
    all.extend_from_slice(&f);
    mem.write(GuestAddress(BUF), &all).unwrap();
    let parts = [(0u64, 3u32), (3, 5), (8, 4), (12, 50), (62, 50)];
    let bufs: Vec<_> = parts.iter().map(|&(o, l)| (BUF + o, l, false)).collect();
    tx.add_chain(&mem, &bufs).unwrap();
    tx.publish(&mem).unwrap();
    dev.process_tx(&mem, &mut Notes::default(), 16);
    let (repr, got) = &dev.backend().sent[0];
    assert_eq!(got, &f);
    assert_eq!(
        repr.csum,
        Some(crate::wire::net_hdr::PartialCsum {
            start: 34,
            offset: 6
        })
    );
}

/// Case 38, I-NET-5: a TX frame larger than 65550 bytes (plus header) is
/// dropped without buffering sized by the guest.
#[test]
fn case38_oversized_tx_frame_is_dropped() {
    let mem = TestMemory::new(0, MEM);
    let pools: (FramePool<MAX_GSO_FRAME, 1>, FramePool<MAX_GSO_FRAME, 1>) =
        (FramePool::new(), FramePool::new());
    let (mut dev, _rx, mut tx) = started(&mem, &pools, base_features(), BackendCaps::default());
    let h = tx
        .add_chain(&mem, &[(BUF, 12 + MAX_GSO_FRAME as u32 + 1, false)])
        .unwrap();
    tx.publish(&mem).unwrap();
    dev.process_tx(&mem, &mut Notes::default(), 16);
    assert_eq!(tx.pop_used(&mem).unwrap(), Some((h as u32, 0)));
    assert_eq!(dev.stats().tx_too_big, 1);
    assert!(dev.backend().sent.is_empty());
}

/// Case 40, §5.1.6.2.2: num_buffers, DATA_VALID and unknown flags are
/// ignored on TX; NEEDS_CSUM without CSUM negotiated is dropped.
#[test]
fn case40_tx_ignores_rx_only_fields_and_drops_unnegotiated_csum() {
    let mem = TestMemory::new(0, MEM);
    let pools: (FramePool<2048, 4>, FramePool<2048, 4>) = (FramePool::new(), FramePool::new());
    let f = Features::VERSION_1 | Features::MAC;
    let (mut dev, _rx, mut tx) = started(&mem, &pools, f, BackendCaps::default());
    let mut h = hdr_bytes(0xF2, 0, 0, 0, 0, 0);
    h[10] = 9; // num_buffers
    send(&mem, &mut tx, BUF, &h, &frame(60, 1));
    send(
        &mem,
        &mut tx,
        BUF + 0x1000,
        &hdr_bytes(1, 0, 0, 0, 14, 6),
        &frame(60, 2),
    );
    dev.process_tx(&mem, &mut Notes::default(), 16);
    assert_eq!(dev.backend().sent.len(), 1);
    assert_eq!(dev.backend().sent[0].0, NetHdrRepr::default());
    assert_eq!(dev.stats().tx_bad_header, 1);
}

/// Cases 41 and 42: bad csum or GSO fields drop the frame at the device.
#[test]
fn case41_42_bad_csum_and_gso_fields_drop_the_frame() {
    let mem = TestMemory::new(0, MEM);
    let pools: (FramePool<2048, 8>, FramePool<2048, 8>) = (FramePool::new(), FramePool::new());
    let (mut dev, _rx, mut tx) = started(&mem, &pools, base_features(), BackendCaps::default());
    let bad = [
        hdr_bytes(1, 0, 0, 0, 60, 0),      // csum_start == len
        hdr_bytes(1, 0, 0, 0, 50, 9),      // field past the end
        hdr_bytes(1, 0, 0, 0, 0, 0xFFFF),  // offset 0xFFFF
        hdr_bytes(1, 1, 54, 1448, 34, 16), // TSO4 not negotiated
        hdr_bytes(1, 9, 54, 1448, 34, 16), // unknown GSO type
    ];
    for (i, h) in bad.iter().enumerate() {
        send(
            &mem,
            &mut tx,
            BUF + 0x200 * i as u64,
            h,
            &frame(60, i as u8),
        );
    }
    dev.process_tx(&mem, &mut Notes::default(), 16);
    assert!(dev.backend().sent.is_empty());
    assert_eq!(dev.stats().tx_bad_header, bad.len() as u64);
    for _ in 0..bad.len() {
        assert_eq!(tx.pop_used(&mem).unwrap().map(|u| u.1), Some(0));
    }
}

/// §5.1.6.2 / I-NET-7: a partial checksum the backend cannot take is
/// completed in software at csum_start/csum_offset.
#[test]
fn tx_checksum_is_completed_in_software_when_the_backend_cannot() {
    for lend in [None, Some(2048)] {
        tx_checksum_completed(lend);
    }
}

/// In a pool slot, or (`lend`) in the buffer the backend lent.
fn tx_checksum_completed(lend: Option<usize>) {
    let mem = TestMemory::new(0, MEM);
    let pools: (FramePool<2048, 4>, FramePool<2048, 4>) = (FramePool::new(), FramePool::new());
    let (mut dev, _rx, mut tx) =
        started_lending(&mem, &pools, base_features(), BackendCaps::default(), lend);
    // Ethernet(14) + IPv4(20) + UDP(8) + 30 bytes; checksum field at 34+6,
    // seeded with an arbitrary pseudo-header sum as Linux leaves it.
    let mut f = frame(72, 3);
    f[40] = 0x12;
    f[41] = 0x34;
    send(&mem, &mut tx, BUF, &hdr_bytes(1, 0, 0, 0, 34, 6), &f);
    dev.process_tx(&mem, &mut Notes::default(), 16);
    let (repr, got) = &dev.backend().sent[0];
    assert_eq!(repr.csum, None, "completed, nothing left for the backend");
    assert_eq!(&got[..34], &f[..34]);
    // The stored checksum plus the pseudo-header sum the driver seeded
    // verifies: the L4 bytes with the seed appended sum to 0xffff.
    let mut check = got[34..].to_vec();
    check.extend_from_slice(&[0x12, 0x34]);
    assert_eq!(ones_complement_sum(&check), 0xffff);
    assert_ne!(&got[40..42], &[0x12, 0x34]);
    assert_eq!(dev.stats().tx_sw_checksums, 1);
    assert_eq!(dev.stats().tx_packets, 1);
    let b = dev.backend();
    if lend.is_some() {
        assert_eq!((b.committed, b.transmitted), (1, 0), "zero-copy path");
        assert_eq!(dev.pool_slots_held(), (0, 0), "no TX slot taken");
    } else {
        assert_eq!((b.committed, b.transmitted), (0, 1), "slot path");
        assert_eq!(dev.pool_slots_held(), (0, 1));
    }
}

/// Zero-copy TX (I-NET-12): a backend with no room (lends nothing) gets
/// the frame through a pool slot and `transmit`; one that lends less than
/// the frame gets nothing (counted, the chain returned with len 0), and
/// the next frame still goes through.
#[test]
fn lent_tx_buffers_fall_back_or_are_refused_when_too_small() {
    let mem = TestMemory::new(0, MEM);
    let pools: (FramePool<2048, 4>, FramePool<2048, 4>) = (FramePool::new(), FramePool::new());
    let (mut dev, _rx, mut tx) = started_lending(
        &mem,
        &pools,
        base_features(),
        BackendCaps::default(),
        Some(0),
    );
    let f = frame(100, 7);
    send(&mem, &mut tx, BUF, &[0u8; 12], &f);
    dev.process_tx(&mem, &mut Notes::default(), 16);
    assert_eq!(dev.backend().transmitted, 1, "no room: through a slot");
    assert_eq!(dev.backend().sent[0].1, f);
    dev.backend_mut().lend = Some(99);
    send(&mem, &mut tx, BUF + 0x1000, &[0u8; 12], &f);
    dev.process_tx(&mem, &mut Notes::default(), 16);
    assert_eq!(dev.stats().tx_backend_errors, 1, "lent 99 bytes for 100");
    assert_eq!(dev.backend().sent.len(), 1);
    assert_eq!(dev.backend().committed, 0);
    dev.backend_mut().lend = Some(100);
    send(&mem, &mut tx, BUF + 0x2000, &[0u8; 12], &f);
    dev.process_tx(&mem, &mut Notes::default(), 16);
    assert_eq!(dev.backend().committed, 1);
    assert_eq!(dev.backend().sent[1].1, f);
    let used: Vec<_> = (0..3)
        .map(|_| tx.pop_used(&mem).unwrap().unwrap().1)
        .collect();
    assert_eq!(used, [0, 0, 0], "TX chains are returned with len 0");
    assert_eq!(dev.stats().tx_packets, 2);
}

/// Case 15 (device part), I-NET-3: an always-full TX ring is processed in
/// budget-sized slices; control returns to the caller.
#[test]
fn case15_tx_processing_respects_the_budget() {
    let mem = TestMemory::new(0, MEM);
    let pools: (FramePool<2048, 4>, FramePool<2048, 4>) = (FramePool::new(), FramePool::new());
    let (mut dev, _rx, mut tx) = started(&mem, &pools, base_features(), BackendCaps::default());
    mem.write(GuestAddress(BUF), &hdr_bytes(0, 0, 0, 0, 0, 0))
        .unwrap();
    for _ in 0..64 {
        tx.add_chain(&mem, &[(BUF, 12 + 60, false)]).unwrap();
    }
    tx.publish(&mem).unwrap();
    let p = dev.process_tx(&mem, &mut Notes::default(), 8);
    assert_eq!(
        p,
        Progress {
            handled: 8,
            more: true
        }
    );
    assert_eq!(dev.stats().tx_packets, 8);
}

// ---------------------------------------------------------------- RX

fn rx_chain(mem: &TestMemory, rx: &mut TestDriver, at: u64, len: u32) -> u16 {
    let h = rx.add_chain(mem, &[(at, len, true)]).unwrap();
    rx.publish(mem).unwrap();
    h
}

/// Case 32, §5.1.6.3.2, I-NET-1: a 60-byte frame arrives as 72 used bytes
/// with num_buffers = 1 (no MRG_RXBUF); TX completions have len 0.
#[test]
fn case32_rx_of_60_bytes_is_used_len_72_with_num_buffers_one() {
    let mem = TestMemory::new(0, MEM);
    let pools: (FramePool<2048, 4>, FramePool<2048, 4>) = (FramePool::new(), FramePool::new());
    let (mut dev, mut rx, mut tx) = started(&mem, &pools, base_features(), BackendCaps::default());
    let h = rx_chain(&mem, &mut rx, BUF, 1526);
    let f = frame(60, 9);
    dev.backend_mut()
        .to_guest
        .push_back((f.clone(), NetHdrRepr::default()));
    let mut n = Notes::default();
    dev.process_rx(&mem, &mut n, 16);
    assert_eq!(rx.pop_used(&mem).unwrap(), Some((h as u32, 72)));
    let mut got = [0u8; 72];
    mem.read(GuestAddress(BUF), &mut got).unwrap();
    assert_eq!(u16::from_le_bytes([got[10], got[11]]), 1, "num_buffers");
    assert_eq!(&got[12..], &f[..]);
    assert_eq!(n.used, vec![RX_QUEUE]);
    let t = send(
        &mem,
        &mut tx,
        BUF + 0x1000,
        &hdr_bytes(0, 0, 0, 0, 0, 0),
        &f,
    );
    dev.process_tx(&mem, &mut n, 16);
    assert_eq!(tx.pop_used(&mem).unwrap(), Some((t as u32, 0)));
}

/// Case 43, I-QUEUE-7: an RX chain with a device-readable descriptor is
/// refused and nothing is written into it.
#[test]
fn case43_rx_chain_with_a_readable_descriptor_is_refused_untouched() {
    let mem = TestMemory::new(0, MEM);
    let pools: (FramePool<2048, 4>, FramePool<2048, 4>) = (FramePool::new(), FramePool::new());
    let (mut dev, mut rx, _tx) = started(&mem, &pools, base_features(), BackendCaps::default());
    mem.write(GuestAddress(BUF), &[0x5A; 64]).unwrap();
    let bad = rx
        .add_chain(&mem, &[(BUF, 64, false), (BUF + 64, 2000, true)])
        .unwrap();
    let good = rx_chain(&mem, &mut rx, BUF + 0x1000, 2000);
    dev.backend_mut()
        .to_guest
        .push_back((frame(100, 1), NetHdrRepr::default()));
    dev.process_rx(&mem, &mut Notes::default(), 16);
    assert_eq!(rx.pop_used(&mem).unwrap(), Some((bad as u32, 0)));
    assert_eq!(rx.pop_used(&mem).unwrap(), Some((good as u32, 112)));
    let mut ro = [0u8; 64];
    mem.read(GuestAddress(BUF), &mut ro).unwrap();
    assert_eq!(ro, [0x5A; 64]);
    assert_eq!(dev.stats().rx_malformed_chains, 1);
}

/// Case 44: without MRG_RXBUF a frame larger than the buffer is dropped;
/// the buffer stays for the next frame; used.len never exceeds capacity.
#[test]
fn case44_rx_frame_larger_than_the_buffer_is_dropped_buffer_kept() {
    let mem = TestMemory::new(0, MEM);
    let pools: (FramePool<2048, 4>, FramePool<2048, 4>) = (FramePool::new(), FramePool::new());
    let (mut dev, mut rx, _tx) = started(&mem, &pools, base_features(), BackendCaps::default());
    let h = rx_chain(&mem, &mut rx, BUF, 100);
    dev.backend_mut()
        .to_guest
        .push_back((frame(1514, 1), NetHdrRepr::default()));
    dev.backend_mut()
        .to_guest
        .push_back((frame(80, 2), NetHdrRepr::default()));
    dev.process_rx(&mem, &mut Notes::default(), 16);
    assert_eq!(dev.stats().rx_too_big, 1);
    assert_eq!(rx.pop_used(&mem).unwrap(), Some((h as u32, 92)));
    assert_eq!(rx.pop_used(&mem).unwrap(), None);
}

fn mrg() -> Features {
    base_features() | Features::MRG_RXBUF
}

/// Case 45 (CVE-2021-3748, CVE-2018-16880), §5.1.6.4, I-NET-6: a 64 KiB
/// frame over 32 × 2 KiB buffers: num_buffers = 32, every buffer but the
/// last full, one used-idx update, one notification.
#[test]
fn case45_merged_rx_spreads_64k_over_32_buffers_with_one_publish() {
    let mem = TestMemory::new(0, MEM);
    let pools: (FramePool<MAX_GSO_FRAME, 1>, FramePool<MAX_GSO_FRAME, 1>) =
        (FramePool::new(), FramePool::new());
    let (mut dev, mut rx, _tx) = started(&mem, &pools, mrg(), BackendCaps::default());
    for i in 0..32u64 {
        rx.add_chain(&mem, &[(BUF + i * 2048, 2048, true)]).unwrap();
    }
    rx.publish(&mem).unwrap();
    let f = frame(32 * 2048 - 12 - 100, 5);
    dev.backend_mut()
        .to_guest
        .push_back((f.clone(), NetHdrRepr::default()));
    let mut n = Notes::default();
    dev.process_rx(&mem, &mut n, 16);
    assert_eq!(rx.used_idx(&mem).unwrap(), 32);
    assert_eq!(n.used.len(), 1);
    let mut lens = Vec::new();
    while let Some((_, l)) = rx.pop_used(&mem).unwrap() {
        lens.push(l);
    }
    assert!(lens[..31].iter().all(|&l| l == 2048));
    assert_eq!(lens[31], 2048 - 100);
    let mut all = vec![0u8; 32 * 2048];
    mem.read(GuestAddress(BUF), &mut all).unwrap();
    assert_eq!(u16::from_le_bytes([all[10], all[11]]), 32, "num_buffers");
    assert_eq!(&all[12..12 + f.len()], &f[..]);
}

/// §5.1.6.4, I-NET-6: the merged one-chain path ends exactly where the
/// first chain is full. A frame that fills it to the last byte takes one
/// buffer (num_buffers 1, used len header + frame); one byte more spills
/// that byte into the next buffer (num_buffers 2, the first full).
#[test]
fn merged_rx_one_chain_path_ends_where_the_first_chain_is_full() {
    for (extra, want) in [(0usize, vec![256u32]), (1, vec![256, 1])] {
        let mem = TestMemory::new(0, MEM);
        let pools: (FramePool<4096, 4>, FramePool<4096, 4>) = (FramePool::new(), FramePool::new());
        let (mut dev, mut rx, _tx) = started(&mem, &pools, mrg(), BackendCaps::default());
        rx.add_chain(&mem, &[(BUF, 256, true)]).unwrap();
        rx.add_chain(&mem, &[(BUF + 4096, 256, true)]).unwrap();
        rx.publish(&mem).unwrap();
        let f = frame(256 - 12 + extra, 6);
        dev.backend_mut()
            .to_guest
            .push_back((f.clone(), NetHdrRepr::default()));
        dev.process_rx(&mem, &mut Notes::default(), 16);
        let mut lens = Vec::new();
        while let Some((_, l)) = rx.pop_used(&mem).unwrap() {
            lens.push(l);
        }
        assert_eq!(lens, want, "frame of {} bytes", f.len());
        let mut first = vec![0u8; 256];
        mem.read(GuestAddress(BUF), &mut first).unwrap();
        let count = u16::from_le_bytes([first[10], first[11]]);
        assert_eq!(usize::from(count), want.len(), "num_buffers");
        assert_eq!(&first[12..], &f[..256 - 12]);
        if extra > 0 {
            let mut rest = [0u8; 1];
            mem.read(GuestAddress(BUF + 4096), &mut rest).unwrap();
            assert_eq!(rest[0], f[256 - 12]);
        }
        assert_eq!(dev.stats().rx_packets, 1);
    }
}

/// Cases 46 and 49 (CVE-2020-16843), I-NET-6: with too few buffers nothing
/// is published and the frame waits in its pool slot; when buffers arrive it
/// is delivered, and delivery goes on.
#[test]
fn case46_49_rx_waits_for_buffers_then_resumes_without_loss() {
    for lend in [None, Some(0)] {
        rx_waits_for_buffers(lend);
    }
}

/// With a frame in a pool slot, or (`lend`, I-NET-12) lent by the backend,
/// which keeps it until it is delivered.
fn rx_waits_for_buffers(lend: Option<usize>) {
    let mem = TestMemory::new(0, MEM);
    let pools: (FramePool<4096, 4>, FramePool<4096, 4>) = (FramePool::new(), FramePool::new());
    let (mut dev, mut rx, _tx) = started_lending(&mem, &pools, mrg(), BackendCaps::default(), lend);
    rx.add_chain(&mem, &[(BUF, 1024, true)]).unwrap();
    rx.publish(&mem).unwrap();
    let f = frame(3000, 4);
    dev.backend_mut()
        .to_guest
        .push_back((f.clone(), NetHdrRepr::default()));
    dev.backend_mut()
        .to_guest
        .push_back((frame(200, 5), NetHdrRepr::default()));
    let mut n = Notes::default();
    dev.process_rx(&mem, &mut n, 16);
    assert_eq!(rx.used_idx(&mem).unwrap(), 0, "nothing published");
    assert!(dev.rx_pending());
    assert!(n.used.is_empty());
    if lend.is_some() {
        assert_eq!(dev.backend().to_guest.len(), 2, "the frame waits, lent");
        assert_eq!(dev.backend().consumed, 0);
        assert_eq!(dev.pool_slots_held(), (1, 0), "the idle slot only");
        // Another call without buffers lends it again, delivers nothing.
        dev.process_rx(&mem, &mut n, 16);
        assert_eq!(dev.backend().to_guest.len(), 2);
        assert!(dev.rx_pending());
    }
    assert_eq!(pools.0.available(), 3, "the frame waits in its slot");
    // The ring empties entirely, then is refilled.
    for i in 1..4u64 {
        rx.add_chain(&mem, &[(BUF + i * 1024, 1024, true)]).unwrap();
    }
    rx.publish(&mem).unwrap();
    dev.process_rx(&mem, &mut n, 16);
    assert!(!dev.rx_pending());
    let mut got = vec![0u8; 4096];
    mem.read(GuestAddress(BUF), &mut got).unwrap();
    assert_eq!(u16::from_le_bytes([got[10], got[11]]), 3);
    assert_eq!(&got[12..12 + 3000], &f[..]);
    assert_eq!(
        dev.stats().rx_packets,
        2,
        "the second frame took the fourth buffer"
    );
    // Empty again: a third frame waits, then a refill delivers it.
    dev.backend_mut()
        .to_guest
        .push_back((frame(300, 6), NetHdrRepr::default()));
    dev.process_rx(&mem, &mut n, 16);
    assert!(dev.rx_pending());
    rx.add_chain(&mem, &[(BUF + 0x8000, 1024, true)]).unwrap();
    rx.publish(&mem).unwrap();
    dev.process_rx(&mem, &mut n, 16);
    assert_eq!(dev.stats().rx_packets, 3);
    assert!(!dev.rx_pending());
    let b = dev.backend();
    if lend.is_some() {
        assert_eq!((b.consumed, b.received), (3, 0), "all three lent");
    } else {
        assert_eq!((b.consumed, b.received), (0, 3));
    }
    // I-POOL-5: one idle RX slot is kept for the next frame, and counted.
    assert_eq!(dev.pool_slots_held(), (1, 0));
    assert_eq!(pools.0.available(), 3);
    dev.release_slots();
    assert_eq!(dev.pool_slots_held(), (0, 0));
    assert_eq!(pools.0.available(), 4);
}

/// Case 47: with MRG_RXBUF, a first buffer smaller than the header is refused.
#[test]
fn case47_merged_rx_first_buffer_smaller_than_header_is_refused() {
    let mem = TestMemory::new(0, MEM);
    let pools: (FramePool<2048, 4>, FramePool<2048, 4>) = (FramePool::new(), FramePool::new());
    let (mut dev, mut rx, _tx) = started(&mem, &pools, mrg(), BackendCaps::default());
    let small = rx_chain(&mem, &mut rx, BUF, 8);
    let ok = rx_chain(&mem, &mut rx, BUF + 0x1000, 2048);
    dev.backend_mut()
        .to_guest
        .push_back((frame(100, 1), NetHdrRepr::default()));
    dev.process_rx(&mem, &mut Notes::default(), 16);
    assert_eq!(rx.pop_used(&mem).unwrap(), Some((small as u32, 0)));
    assert_eq!(rx.pop_used(&mem).unwrap(), Some((ok as u32, 112)));
    assert_eq!(dev.stats().rx_malformed_chains, 1);
}

/// Case 48: no control queue is offered or exists; a third queue cannot be
/// activated and kicks on it do nothing.
#[test]
fn case48_there_is_no_control_queue_to_attack() {
    let mem = TestMemory::new(0, MEM);
    let pools: (FramePool<2048, 4>, FramePool<2048, 4>) = (FramePool::new(), FramePool::new());
    let (mut dev, _rx, _tx) = started(&mem, &pools, base_features(), BackendCaps::default());
    assert!(!dev.offered_features().contains(Features::CTRL_VQ));
    let l = TestDriver::new(&mem, 0x6000, 16).unwrap().layout;
    assert_eq!(
        dev.activate_queue(2, l, &mem).err(),
        Some(ActivateError::NoSuchQueue(2))
    );
    assert_eq!(
        dev.process_queue(2, &mem, &mut Notes::default(), 16),
        Progress::default()
    );
}

/// RX offloads the driver did not negotiate: a partial checksum is
/// completed in software; a GSO frame is dropped (I-NET-7).
#[test]
fn rx_offloads_not_negotiated_are_fixed_up_or_dropped() {
    for lend in [None, Some(0)] {
        rx_offloads_fixed_up(lend);
    }
}

/// A lending backend's frames (`lend`) that need fixing up are taken into
/// a pool slot with `receive` first (I-NET-12).
fn rx_offloads_fixed_up(lend: Option<usize>) {
    use crate::wire::net_hdr::{Gso, GsoKind, PartialCsum};
    let mem = TestMemory::new(0, MEM);
    let pools: (FramePool<4096, 4>, FramePool<4096, 4>) = (FramePool::new(), FramePool::new());
    let (mut dev, mut rx, _tx) = started_lending(
        &mem,
        &pools,
        Features::VERSION_1,
        BackendCaps::default(),
        lend,
    );
    rx_chain(&mem, &mut rx, BUF, 2048);
    rx_chain(&mem, &mut rx, BUF + 0x1000, 2048);
    let csum = NetHdrRepr {
        csum: Some(PartialCsum {
            start: 34,
            offset: 6,
        }),
        ..NetHdrRepr::default()
    };
    let gso = NetHdrRepr {
        csum: Some(PartialCsum {
            start: 34,
            offset: 16,
        }),
        gso: Some(Gso {
            kind: GsoKind::TcpV4,
            ecn: false,
            size: 1448,
            hdr_len: 54,
        }),
        data_valid: false,
    };
    dev.backend_mut().to_guest.push_back((frame(3000, 1), gso));
    dev.backend_mut().to_guest.push_back((frame(100, 2), csum));
    dev.process_rx(&mem, &mut Notes::default(), 16);
    assert_eq!(dev.stats().rx_offload_dropped, 1);
    assert_eq!(dev.stats().rx_packets, 1);
    let mut got = vec![0u8; 112];
    mem.read(GuestAddress(BUF), &mut got).unwrap();
    assert_eq!(
        NetHdrFlags::from_bits_truncate(got[0]),
        NetHdrFlags::empty()
    );
    // The backend's frame had no seed in its checksum field (f[40..42]).
    let mut check = got[12 + 34..].to_vec();
    let seed = frame(100, 2);
    check.extend_from_slice(&seed[40..42]);
    assert_eq!(ones_complement_sum(&check), 0xffff);
    let b = dev.backend();
    assert_eq!((b.consumed, b.received), (0, 2), "both through a slot");
}

/// Case 50 with a lending backend (I-NET-8, I-NET-12): a lent frame that
/// waits for buffers at reset is consumed (dropped, as one waiting in a
/// slot would be) and never reaches the re-initialised guest; the next
/// frame does. Found by the `rx` fuzz target
/// (`regress-lent-frame-waiting-across-reset`).
#[test]
fn case50_reset_drops_a_lent_frame_waiting_for_buffers() {
    let mem = TestMemory::new(0, MEM);
    let pools: (FramePool<2048, 4>, FramePool<2048, 4>) = (FramePool::new(), FramePool::new());
    let (mut dev, _rx, _tx) = started_lending(&mem, &pools, mrg(), BackendCaps::default(), Some(0));
    let old = frame(60, 1);
    let new = frame(62, 2);
    dev.backend_mut()
        .to_guest
        .push_back((old, NetHdrRepr::default()));
    dev.backend_mut()
        .to_guest
        .push_back((new.clone(), NetHdrRepr::default()));
    dev.process_rx(&mem, &mut Notes::default(), 16);
    assert!(dev.rx_pending(), "no buffers: the first frame waits, lent");
    dev.reset();
    assert!(!dev.rx_pending());
    assert_eq!(dev.backend().consumed, 1, "the waiting frame was dropped");
    // Re-initialise and give one buffer: the second frame arrives.
    dev.set_features(mrg()).unwrap();
    let mut rx = TestDriver::new(&mem, RXQ, 64).unwrap();
    dev.activate_queue(RX_QUEUE, rx.layout, &mem).unwrap();
    dev.set_active(true);
    rx_chain(&mem, &mut rx, BUF, 1024);
    dev.process_rx(&mem, &mut Notes::default(), 16);
    assert_eq!(rx.pop_used(&mem).unwrap(), Some((0, 12 + 62)));
    let mut got = vec![0u8; 62];
    mem.read(GuestAddress(BUF + 12), &mut got).unwrap();
    assert_eq!(got, new);
}

/// Case 50, §2.4.1, I-NET-8: reset with a frame in hand: nothing is written
/// afterwards, no notification, and 10^4 reset/re-init cycles leak nothing.
#[test]
fn case50_reset_stops_all_writes_and_cycles_leak_nothing() {
    let mem = TestMemory::new(0, MEM);
    let pools: (FramePool<2048, 4>, FramePool<2048, 4>) = (FramePool::new(), FramePool::new());
    let (mut dev, mut rx, mut tx) = started(&mem, &pools, mrg(), BackendCaps::default());
    let cycles = if cfg!(miri) { 20 } else { 10_000 };
    for i in 0..cycles {
        // A frame in hand (no buffers), then reset.
        dev.backend_mut()
            .to_guest
            .push_back((frame(100, i as u8), NetHdrRepr::default()));
        let mut n = Notes::default();
        dev.process_rx(&mem, &mut n, 4);
        assert!(dev.rx_pending());
        dev.reset();
        assert_eq!(pools.0.available(), 4, "cycle {i}: slot returned on reset");
        let counting = CountingMemory::new(&mem);
        rx_chain(&mem, &mut rx, BUF, 2048);
        send(
            &mem,
            &mut tx,
            BUF + 0x1000,
            &hdr_bytes(0, 0, 0, 0, 0, 0),
            &frame(60, 1),
        );
        dev.process_rx(&counting, &mut n, 4);
        dev.process_tx(&counting, &mut n, 4);
        assert_eq!(counting.writes.borrow().len(), 0, "no writes after reset");
        assert!(
            n.used.is_empty() && n.config == 0,
            "no notifications after reset"
        );
        // Re-initialise.
        dev.backend_mut().to_guest.clear();
        dev.set_features(mrg()).unwrap();
        rx = TestDriver::new(&mem, RXQ, 64).unwrap();
        tx = TestDriver::new(&mem, TXQ, 64).unwrap();
        dev.activate_queue(RX_QUEUE, rx.layout, &mem).unwrap();
        dev.activate_queue(TX_QUEUE, tx.layout, &mem).unwrap();
        dev.set_active(true);
    }
}

/// §2.1.2, I-QUEUE-3: a broken ring sets DEVICE_NEEDS_RESET, sends one
/// configuration-change notification, and stops the device.
#[test]
fn broken_ring_sets_needs_reset_and_notifies_config_change_once() {
    let mem = TestMemory::new(0, MEM);
    let pools: (FramePool<2048, 4>, FramePool<2048, 4>) = (FramePool::new(), FramePool::new());
    let (mut dev, _rx, tx) = started(&mem, &pools, base_features(), BackendCaps::default());
    tx.set_avail_idx(&mem, 1000).unwrap();
    let mut n = Notes::default();
    for _ in 0..10 {
        dev.process_tx(&mem, &mut n, 16);
    }
    assert!(dev.needs_reset());
    assert_eq!(n.config, 1);
    assert_eq!(dev.stats().queue_errors, 1);
}

/// §5.1.4 / I-NET-9: link changes update config space and the generation
/// and raise a configuration-change notification.
#[test]
fn link_change_updates_status_generation_and_notifies() {
    let mem = TestMemory::new(0, MEM);
    let pools: (FramePool<2048, 4>, FramePool<2048, 4>) = (FramePool::new(), FramePool::new());
    let (mut dev, _rx, _tx) = started(&mem, &pools, base_features(), BackendCaps::default());
    let mut cfg = [0u8; 12];
    dev.read_config(0, &mut cfg);
    assert_eq!(&cfg[..6], &[2, 0, 0, 0, 0, 1]);
    assert_eq!(u16::from_le_bytes([cfg[6], cfg[7]]), VIRTIO_NET_S_LINK_UP);
    assert_eq!(u16::from_le_bytes([cfg[8], cfg[9]]), 1);
    assert_eq!(u16::from_le_bytes([cfg[10], cfg[11]]), 1500);
    let mut n = Notes::default();
    let g = dev.config_generation();
    dev.set_link_up(false, &mut n);
    dev.set_link_up(false, &mut n);
    dev.read_config(6, &mut cfg[..2]);
    assert_eq!(u16::from_le_bytes([cfg[0], cfg[1]]), 0);
    assert_eq!(n.config, 1);
    assert_ne!(dev.config_generation(), g);
}

/// §2.2.2, §5.1.3.1, case 7: unoffered bits and missing dependencies are
/// refused; a valid subset is accepted; offloads need 64 KiB slots.
#[test]
fn feature_validation_follows_the_offer_and_dependencies() {
    let caps = BackendCaps {
        tx_csum: true,
        tx_tso4: true,
        tx_tso6: true,
        tx_ecn: true,
        ..BackendCaps::default()
    };
    let small = offerable(&NetConfig::default(), 1536, caps);
    assert!(
        !small.contains(Features::HOST_TSO4),
        "no TSO with MTU-sized slots"
    );
    let big = offerable(&NetConfig::default(), MAX_GSO_FRAME, caps);
    assert!(big.contains(Features::HOST_TSO4 | Features::HOST_ECN | Features::CSUM));
    assert!(
        !big.contains(Features::GUEST_TSO4),
        "backend cannot give TSO"
    );
    let v1 = Features::VERSION_1;
    assert_eq!(validate(v1, big), Ok(v1));
    assert!(matches!(
        validate(v1 | Features::HOST_TSO4, big),
        Err(FeatureError::MissingDependency { .. })
    ));
    assert!(matches!(
        validate(v1 | Features::GUEST_TSO4, big),
        Err(FeatureError::NotOffered(_))
    ));
    assert_eq!(validate(Features::CSUM, big), Err(FeatureError::NoVersion1));
    assert!(matches!(
        validate(v1 | Features::CSUM | Features::HOST_ECN, big),
        Err(FeatureError::MissingDependency { .. })
    ));
    assert!(validate(
        v1 | Features::CSUM | Features::HOST_TSO4 | Features::HOST_ECN,
        big
    )
    .is_ok());
}

/// Case 7 (cont.): device behaviour follows the negotiated set, not the
/// offered one: EVENT_IDX offered but not negotiated means the queue uses
/// the NO_INTERRUPT flag.
#[test]
fn behaviour_follows_negotiated_not_offered_features() {
    let mem = TestMemory::new(0, MEM);
    let pools: (FramePool<2048, 4>, FramePool<2048, 4>) = (FramePool::new(), FramePool::new());
    let (dev, _rx, _tx) = started(&mem, &pools, base_features(), BackendCaps::default());
    assert!(dev.offered_features().contains(Features::RING_EVENT_IDX));
    assert!(!dev.queue(TX_QUEUE).unwrap().features().event_idx);
    assert!(!dev.queue(TX_QUEUE).unwrap().features().indirect);
}

/// Regression (found while writing case 46): with MRG_RXBUF and too few
/// buffers the device gave the heads back and then saw "buffers available"
/// forever. Now it returns, and with EVENT_IDX it asks to be kicked at the
/// next index beyond the buffers it already saw.
#[test]
fn merged_rx_waiting_for_buffers_returns_and_asks_for_the_right_kick() {
    let mem = TestMemory::new(0, MEM);
    let pools: (FramePool<4096, 4>, FramePool<4096, 4>) = (FramePool::new(), FramePool::new());
    let f = mrg() | Features::RING_EVENT_IDX;
    let (mut dev, mut rx, _tx) = started(&mem, &pools, f, BackendCaps::default());
    rx.add_chain(&mem, &[(BUF, 1024, true)]).unwrap();
    rx.add_chain(&mem, &[(BUF + 1024, 1024, true)]).unwrap();
    rx.publish(&mem).unwrap();
    dev.backend_mut()
        .to_guest
        .push_back((frame(3000, 4), NetHdrRepr::default()));
    let p = dev.process_rx(&mem, &mut Notes::default(), 64);
    assert_eq!(
        p,
        Progress {
            handled: 0,
            more: false
        }
    );
    assert!(dev.rx_pending());
    assert_eq!(
        rx.avail_event(&mem).unwrap(),
        2,
        "kick me when avail idx passes 2"
    );
    assert_eq!(rx.used_idx(&mem).unwrap(), 0);
}

/// Through virtio-mmio, a queue whose rings overlap another active queue's is refused (a fuzzer
/// found two queues sharing one used ring, each overwriting the other's idx).
#[test]
fn queues_sharing_ring_memory_are_refused() {
    let mem = TestMemory::new(0, MEM);
    let pools: (FramePool<2048, 4>, FramePool<2048, 4>) = (FramePool::new(), FramePool::new());
    let (mut dev, rx, _tx) = started(&mem, &pools, base_features(), BackendCaps::default());
    dev.deactivate_queue(TX_QUEUE);
    let shared = QueueLayout {
        size: 16,
        desc_table: GuestAddress(0x8000),
        avail_ring: GuestAddress(0x8200),
        used_ring: rx.layout.used_ring,
    };
    assert_eq!(dev.overlapping_queue(TX_QUEUE, &shared), Some(RX_QUEUE));
    assert_eq!(
        crate::mmio::MmioQueues::activate_queue(&mut dev, TX_QUEUE, shared, &mem).err(),
        Some(ActivateError::OverlapsQueue(RX_QUEUE))
    );
    let apart = QueueLayout {
        used_ring: GuestAddress(0x8400),
        ..shared
    };
    assert!(crate::mmio::MmioQueues::activate_queue(&mut dev, TX_QUEUE, apart, &mem).is_ok());
}
