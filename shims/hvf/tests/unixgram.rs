//! The unixgram (vfkit/gvproxy) backend against real kernel sockets:
//! `socketpair(AF_UNIX, SOCK_DGRAM)` (`UnixDatagram::pair`) and a peer bound
//! to a path the way gvproxy listens. Pins I-HVF-8, I-HVF-9 and
//! I-HVF-10 (specs/11-hvf.md).

mod common;

use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use common::*;
use virtnet::device::{Backend, BackendError};
use virtnet::features::Features;
use virtnet::mem::{GuestAddress, GuestMemory};
use virtnet::mmio::regs;
use virtnet::wire::net_hdr::PartialCsum;
use virtnet::wire::NetHdrRepr;
use virtnet_hvf::unixgram::{Handshake, UnixgramBackend, UnixgramStats, VFKIT_MAGIC};
use virtnet_hvf::GicLine;

/// A frame of `len` bytes whose content depends on `seed`.
fn frame(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed)
        .collect()
}

/// A fresh directory for socket files.
fn scratch_dir() -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "virtnet-hvf-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn socketpair_frames_both_ways_through_the_backend_trait() {
    let (ours, peer) = UnixDatagram::pair().unwrap();
    let mut be = UnixgramBackend::new(ours).unwrap();
    let mut buf = vec![0u8; 1514];

    // Empty: a non-blocking receive says so.
    assert_eq!(be.receive(&mut buf), Ok(None));

    // Guest → peer: one datagram per frame, bytes exactly the frame.
    let sizes = [14usize, 60, 64, 1514, 9000];
    for (i, &len) in sizes.iter().enumerate() {
        let f = frame(len, i as u8);
        be.transmit(&NetHdrRepr::default(), &f).unwrap();
        let mut got = vec![0u8; 65536];
        let n = peer.recv(&mut got).unwrap();
        assert_eq!(&got[..n], &f[..], "frame {i} ({len} bytes)");
    }

    // Peer → guest: several queued datagrams come out one per receive, in
    // order, each with its own length and no header.
    let incoming: Vec<Vec<u8>> = [60usize, 1514, 14, 342]
        .iter()
        .enumerate()
        .map(|(i, &len)| frame(len, 0x80 | i as u8))
        .collect();
    for f in &incoming {
        assert_eq!(peer.send(f).unwrap(), f.len());
    }
    for f in &incoming {
        let rx = be.receive(&mut buf).unwrap().expect("a frame is waiting");
        assert_eq!(rx.len, f.len());
        assert_eq!(rx.hdr, NetHdrRepr::default());
        assert_eq!(&buf[..rx.len], &f[..]);
    }
    assert_eq!(be.receive(&mut buf), Ok(None));
    assert_eq!(
        *be.stats(),
        UnixgramStats {
            tx_frames: sizes.len() as u64,
            rx_frames: incoming.len() as u64,
            ..UnixgramStats::default()
        }
    );
}

#[test]
fn oversize_and_runt_datagrams_are_dropped_whole() {
    let (ours, peer) = UnixDatagram::pair().unwrap();
    let mut be = UnixgramBackend::new(ours).unwrap();
    let mut buf = vec![0u8; 1514];
    let big = frame(1515, 1);
    let runt = frame(13, 2);
    let good = frame(1514, 3);
    peer.send(&big).unwrap();
    peer.send(&runt).unwrap();
    peer.send(&good).unwrap();
    // The oversize one is detected (MSG_TRUNC) and skipped, not delivered
    // cut short; the runt is skipped; the next good one comes out intact.
    let rx = be.receive(&mut buf).unwrap().unwrap();
    assert_eq!(rx.len, 1514);
    assert_eq!(buf, good);
    assert_eq!(be.receive(&mut buf), Ok(None));
    assert_eq!(be.stats().rx_oversize, 1);
    assert_eq!(be.stats().rx_runt, 1);
    assert_eq!(be.stats().rx_frames, 1);
}

#[test]
fn full_socket_is_busy_and_offloads_are_refused() {
    let (ours, peer) = UnixDatagram::pair().unwrap();
    let mut be = UnixgramBackend::new(ours).unwrap();
    let f = frame(1514, 9);
    // Nobody reads `peer`: the kernel queue fills and transmit reports Busy
    // instead of blocking.
    let mut sent = 0u64;
    let busy = loop {
        match be.transmit(&NetHdrRepr::default(), &f) {
            Ok(()) => sent += 1,
            Err(e) => break e,
        }
        assert!(sent < 1_000_000, "the socket never filled");
    };
    assert_eq!(busy, BackendError::Busy);
    assert_eq!(be.stats().tx_frames, sent);
    assert_eq!(be.stats().tx_busy, 1);
    // Draining one datagram makes room again.
    let mut got = vec![0u8; 2048];
    assert_eq!(peer.recv(&mut got).unwrap(), 1514);
    be.transmit(&NetHdrRepr::default(), &f).unwrap();
    // A frame that still needs a checksum is never sent half-done.
    let hdr = NetHdrRepr {
        csum: Some(PartialCsum {
            start: 34,
            offset: 16,
        }),
        ..NetHdrRepr::default()
    };
    assert_eq!(be.transmit(&hdr, &f), Err(BackendError::Refused));
}

#[test]
fn peer_gone_is_an_io_error() {
    let (ours, peer) = UnixDatagram::pair().unwrap();
    let mut be = UnixgramBackend::new(ours).unwrap();
    drop(peer);
    assert_eq!(
        be.transmit(&NetHdrRepr::default(), &frame(60, 0)),
        Err(BackendError::Io)
    );
}

#[test]
fn vfkit_handshake_then_frames_with_a_gvproxy_style_peer() {
    let dir = scratch_dir();
    let proxy_path = dir.join("gvproxy.sock");
    let vm_path = dir.join("vm.sock");
    // gvproxy listens on a bound unixgram socket and learns the VM's
    // address from the first datagram's source.
    let proxy = UnixDatagram::bind(&proxy_path).unwrap();
    // A stale socket file at the VM's path is replaced.
    drop(UnixDatagram::bind(&vm_path).unwrap());
    let mut be = UnixgramBackend::connect(&vm_path, &proxy_path, Handshake::Vfkit).unwrap();

    let mut got = vec![0u8; 65536];
    let (n, from) = proxy.recv_from(&mut got).unwrap();
    assert_eq!(&got[..n], &VFKIT_MAGIC, "first datagram is the magic");
    assert_eq!(from.as_pathname(), Some(vm_path.as_path()), "VM is bound");

    // Frames both ways.
    let out = frame(98, 0x42);
    be.transmit(&NetHdrRepr::default(), &out).unwrap();
    let (n, _) = proxy.recv_from(&mut got).unwrap();
    assert_eq!(&got[..n], &out[..]);
    let inbound = frame(1514, 0x24);
    proxy.send_to(&inbound, &vm_path).unwrap();
    let mut buf = vec![0u8; 1514];
    let rx = be.receive(&mut buf).unwrap().unwrap();
    assert_eq!(&buf[..rx.len], &inbound[..]);
    // Datagrams from anyone else are not delivered (the socket is
    // connected to the proxy).
    let stranger = UnixDatagram::unbound().unwrap();
    let _ = stranger.send_to(&frame(60, 1), &vm_path);
    assert_eq!(be.receive(&mut buf), Ok(None));
    drop(be);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn no_handshake_sends_the_frame_first() {
    let dir = scratch_dir();
    let proxy_path = dir.join("helper.sock");
    let vm_path = dir.join("vm.sock");
    let proxy = UnixDatagram::bind(&proxy_path).unwrap();
    let mut be = UnixgramBackend::connect(&vm_path, &proxy_path, Handshake::None).unwrap();
    let out = frame(60, 7);
    be.transmit(&NetHdrRepr::default(), &out).unwrap();
    let mut got = vec![0u8; 2048];
    let n = proxy.recv(&mut got).unwrap();
    assert_eq!(&got[..n], &out[..]);
    // A regular file at the local path is not deleted.
    let file = dir.join("not-a-socket");
    std::fs::write(&file, b"keep").unwrap();
    let err = UnixgramBackend::connect(&file, &proxy_path, Handshake::None).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::AlreadyExists);
    assert_eq!(std::fs::read(&file).unwrap(), b"keep");
    drop(be);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn guest_frames_cross_the_device_and_a_socketpair_via_mmio_exits() {
    let (ours, peer) = UnixDatagram::pair().unwrap();
    let mut net = device(UnixgramBackend::new(ours).unwrap());
    let mem = ram();
    let gic = FakeGic::default();
    let calls = gic.calls.clone();
    let mut line = GicLine::new(gic, 50);
    let mut g = Guest {
        net: &mut net,
        vcpu: FakeVcpu::new(),
        mem: &mem,
        line: &mut line,
    };
    let [mut rxq, mut txq] = g.bring_up(
        Features::VERSION_1 | Features::MAC,
        64, // 20 two-descriptor chains fit without reusing descriptors
        [RAM_BASE, RAM_BASE + 0x1_0000],
    );
    // TX: 20 frames of different sizes, header and frame in separate
    // descriptors, kicked by a trapped `str w3` to QueueNotify.
    let mut expect = Vec::new();
    for i in 0..20u64 {
        let f = frame(60 + 73 * i as usize, i as u8);
        let hdr_at = RAM_BASE + 0x2_0000 + i * 0x1000;
        mem.write(GuestAddress(hdr_at), &[0u8; 12]).unwrap();
        mem.write(GuestAddress(hdr_at + 0x100), &f).unwrap();
        txq.add_chain(
            &mem,
            &[(hdr_at, 12, false), (hdr_at + 0x100, f.len() as u32, false)],
        )
        .unwrap();
        expect.push(f);
    }
    txq.publish(&mem).unwrap();
    assert_eq!(g.write32(regs::QUEUE_NOTIFY, 1).handled, 20);
    let mut got = vec![0u8; 4096];
    for f in &expect {
        let n = peer.recv(&mut got).unwrap();
        assert_eq!(&got[..n], &f[..]);
    }
    assert_eq!(g.net.transport().device().stats().tx_packets, 20);

    // RX: the peer sends; the VMM polls; the guest finds the frames.
    let bufs: Vec<u64> = (0..8).map(|i| RAM_BASE + 0x8_0000 + i * 0x1000).collect();
    for &b in &bufs {
        rxq.add_chain(&mem, &[(b, 1526, true)]).unwrap();
    }
    rxq.publish(&mem).unwrap();
    g.write32(regs::QUEUE_NOTIFY, 0);
    let incoming: Vec<Vec<u8>> = (0..5)
        .map(|i| frame(64 + 300 * i, 0xc0 | i as u8))
        .collect();
    for f in &incoming {
        peer.send(f).unwrap();
    }
    assert_eq!(g.net.poll(&mem, g.line).handled, 5);
    for (f, &b) in incoming.iter().zip(&bufs) {
        let (_, len) = rxq.pop_used(&mem).unwrap().expect("used");
        assert_eq!(len as usize, 12 + f.len());
        assert_eq!(read_mem(&mem, b + 12, f.len()), *f);
    }
    assert_eq!(rxq.pop_used(&mem).unwrap(), None);
    assert!(calls.borrow().contains(&(50, true)));
}
