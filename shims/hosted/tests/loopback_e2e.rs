//! End to end over a real vhost-user socket: a test frontend (rust-vmm's
//! `vhost` crate, frontend side) shares memfd guest memory with the backend
//! and plays the driver with the core's `TestDriver`; the loopback backend
//! sends every TX frame back on RX. Two connections in a row, with different
//! features; the second must find a clean backend, and nothing (fds,
//! mappings) may leak across them (I-HOST-3, I-HOST-4).
//!
//! One test function on purpose: it counts the process's open fds.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use vhost::vhost_user::message::VhostUserConfigFlags;
use vhost::vhost_user::VhostUserFrontend;
use vhost::VhostBackend;
use virtnet::device::NetConfig;
use virtnet::features::Features;
use virtnet::mem::{GuestAddress, GuestMemory};

const FRAMES: u32 = 3000;
const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];

fn frame_len(seq: u32) -> usize {
    60 + (seq as usize * 37) % (1514 - 60 + 1)
}

/// Send FRAMES frames and check each comes back intact and in order.
fn exchange(g: &Guest, r: &mut Rings, mrg: bool, event_idx: bool) -> usize {
    let mem = &g.mem;
    let rx_buf: u64 = if mrg { 1024 } else { 2048 };
    // Fill the RX ring: buffer address follows the descriptor slot.
    for _ in 0..QSIZE {
        let a = RX_BUFS + u64::from(r.rx.next_desc) * rx_buf;
        r.rx.add_chain(mem, &[(a, rx_buf as u32, true)]).unwrap();
    }
    r.rx.publish(mem).unwrap();
    r.kick[0].write(1).unwrap();

    let (mut sent, mut received, mut tx_out) = (0u32, 0u32, 0u32);
    let mut calls = 0usize;
    let deadline = Instant::now() + Duration::from_secs(60);
    // A merged frame being reassembled: (bytes, buffers still expected).
    let mut partial: Option<(Vec<u8>, u16)> = None;
    while received < FRAMES {
        assert!(Instant::now() < deadline, "stalled at {received}/{FRAMES}");
        let mut queued = false;
        while sent < FRAMES && tx_out < u32::from(QSIZE) / 2 {
            let f = frame(sent, frame_len(sent));
            let a = TX_BUFS + u64::from(r.tx.next_desc) * 2048;
            mem.write(GuestAddress(a), &[0u8; 12]).unwrap();
            mem.write(GuestAddress(a + 12), &f).unwrap();
            r.tx.add_chain(mem, &[(a, 12 + f.len() as u32, false)])
                .unwrap();
            sent += 1;
            tx_out += 1;
            queued = true;
        }
        if queued {
            r.tx.publish(mem).unwrap();
            r.kick[1].write(1).unwrap();
        }
        if event_idx {
            r.tx.set_used_event(mem, r.tx.last_used).unwrap();
            r.rx.set_used_event(mem, r.rx.last_used).unwrap();
        }
        let mut progress = false;
        while let Some((_, len)) = r.tx.pop_used(mem).unwrap() {
            assert_eq!(len, 0, "TX used length");
            tx_out -= 1;
            progress = true;
        }
        let mut reposted = false;
        while let Some((id, len)) = r.rx.pop_used(mem).unwrap() {
            progress = true;
            let data = read(mem, RX_BUFS + u64::from(id) * rx_buf, len as usize);
            let (mut bytes, left) = match partial.take() {
                None => {
                    assert!(len >= 12, "RX used length {len}");
                    assert_eq!(data[0], 0, "RX header flags");
                    assert_eq!(data[1], 0, "RX gso_type");
                    let nb = u16::from_le_bytes([data[10], data[11]]);
                    if !mrg {
                        assert_eq!(nb, 1, "num_buffers without MRG_RXBUF");
                    }
                    assert!(nb >= 1);
                    (data[12..].to_vec(), nb - 1)
                }
                Some((mut b, left)) => {
                    b.extend_from_slice(&data);
                    (b, left - 1)
                }
            };
            if left > 0 {
                partial = Some((std::mem::take(&mut bytes), left));
            } else {
                assert_eq!(
                    bytes,
                    frame(received, frame_len(received)),
                    "frame {received}"
                );
                received += 1;
            }
            // Give the buffer back.
            let a = RX_BUFS + u64::from(r.rx.next_desc) * rx_buf;
            r.rx.add_chain(mem, &[(a, rx_buf as u32, true)]).unwrap();
            reposted = true;
        }
        if reposted {
            r.rx.publish(mem).unwrap();
            r.kick[0].write(1).unwrap();
        }
        if !progress && !queued {
            let n = wait_call(r, Duration::from_secs(5));
            assert!(
                n > 0,
                "no used-buffer notification in 5 s ({received}/{FRAMES})"
            );
            calls += n;
        }
    }
    assert!(partial.is_none());
    // Notifications the loop did not have to wait for are still counted in
    // the eventfds.
    for c in &r.call {
        calls += c.read().unwrap_or(0) as usize;
    }
    calls
}

fn connection(server: &TestServer, features: Features, mrg: bool, event_idx: bool) {
    let mut f = connect(&server.path, 2);
    let offered = negotiate(&mut f, features);
    let offered = Features::from_bits_truncate(offered);
    assert!(offered.contains(Features::VERSION_1 | Features::MAC | Features::MRG_RXBUF));
    // 1536-byte pool slots: no segmentation offload may be offered.
    assert!(!offered.intersects(Features::HOST_TSO4 | Features::GUEST_TSO4));
    let (_, cfg) = f
        .get_config(0, 12, VhostUserConfigFlags::empty(), &[0u8; 12])
        .unwrap();
    assert_eq!(&cfg[..6], &MAC, "config space MAC");
    assert_eq!(u16::from_le_bytes([cfg[6], cfg[7]]), 1, "link up");

    let g = Guest::new();
    let mut rings = setup_rings(&mut f, &g);
    let t = Instant::now();
    let calls = exchange(&g, &mut rings, mrg, event_idx);
    let secs = t.elapsed().as_secs_f64();
    println!(
        "mrg_rxbuf={mrg} event_idx={event_idx}: {FRAMES} frames each way in {secs:.2} s \
         ({:.0} frames/s), {calls} call notifications",
        f64::from(FRAMES) / secs
    );
    assert!(calls > 0);
    // GET_VRING_BASE stops each ring and reports where it stopped: every
    // chain it took was completed, and TX took everything made available.
    assert_eq!(f.get_vring_base(0).unwrap(), u32::from(rings.rx.last_used));
    assert_eq!(f.get_vring_base(1).unwrap(), u32::from(rings.tx.avail_idx));
    // The exchange stops once every frame came back on RX; the TX used
    // entries of the last batch may be published after that. The ring is
    // stopped now, so all of them are in the used ring.
    while let Some((_, len)) = rings.tx.pop_used(&g.mem).unwrap() {
        assert_eq!(len, 0, "TX used length");
    }
    assert_eq!(rings.tx.avail_idx, rings.tx.last_used);
    server.handle.with_state(|s| {
        assert!(!s.queue_running(0) && !s.queue_running(1));
    });
    // A kick after the stop moves nothing.
    let before = server.handle.stats();
    rings.tx.add_chain(&g.mem, &[(TX_BUFS, 72, false)]).unwrap();
    rings.tx.publish(&g.mem).unwrap();
    rings.kick[1].write(1).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(server.handle.stats().tx_packets, before.tx_packets);
    drop(f);
}

#[test]
fn loopback_frames_come_back_intact_across_two_connections_without_leaks() {
    let net = NetConfig {
        mac: Some(MAC),
        queue_size_max: 1024,
        ..NetConfig::default()
    };
    let server = TestServer::start("e2e", open_loopback(1024), net);
    let fds_before = count_fds();

    connection(
        &server,
        Features::VERSION_1 | Features::MAC | Features::STATUS | Features::RING_INDIRECT_DESC,
        false,
        false,
    );
    server.wait_closed(1);
    server.handle.with_state(|s| {
        assert!(!s.has_memory(), "memory unmapped after disconnect");
        assert_eq!(s.device().negotiated_features(), Features::empty());
    });
    assert_eq!(count_fds(), fds_before, "fds leaked by connection 1");

    connection(
        &server,
        Features::VERSION_1
            | Features::MAC
            | Features::STATUS
            | Features::MRG_RXBUF
            | Features::RING_EVENT_IDX
            | Features::CSUM
            | Features::GUEST_CSUM,
        true,
        true,
    );
    server.wait_closed(2);
    assert_eq!(count_fds(), fds_before, "fds leaked by connection 2");
    let s = server.handle.stats();
    println!("{s}");
    assert_eq!(s.tx_packets, 2 * u64::from(FRAMES));
    assert_eq!(s.rx_packets, 2 * u64::from(FRAMES));
    assert_eq!(s.tx_dropped(), 0);
    assert_eq!(s.rx_dropped(), 0);
    assert_eq!(s.queue_errors, 0);
    assert_eq!(server.handle.connections_accepted(), 2);
}
