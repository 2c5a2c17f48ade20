//! vhost-user protocol behaviour with real frontends' habits: rings enabled
//! before SET_FEATURES (QEMU's virtio-net), a new memory table while rings
//! run, rings disabled and re-enabled (I-HOST-4, I-HOST-7).
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use common::*;
use vhost::vhost_user::VhostUserFrontend;
use vhost::VhostBackend;
use virtnet::device::NetConfig;
use virtnet::features::Features;
use virtnet::testing::TestDriver;
use vmm_sys_util::eventfd::EventFd;

fn server(tag: &str) -> TestServer {
    TestServer::start(tag, open_loopback(64), NetConfig::default())
}

/// One raw request; returns the reply body if `reply` bytes are expected.
fn raw(s: &mut UnixStream, code: u32, flags: u32, body: &[u8], reply: usize) -> Vec<u8> {
    let mut m = Vec::new();
    m.extend_from_slice(&code.to_le_bytes());
    m.extend_from_slice(&(flags | 1).to_le_bytes());
    m.extend_from_slice(&(body.len() as u32).to_le_bytes());
    m.extend_from_slice(body);
    s.write_all(&m).unwrap();
    let mut r = vec![0u8; 12 + reply];
    if reply > 0 {
        s.read_exact(&mut r).unwrap();
        assert_eq!(u32::from_le_bytes(r[0..4].try_into().unwrap()), code);
        assert_ne!(
            u32::from_le_bytes(r[4..8].try_into().unwrap()) & 0x4,
            0,
            "reply flag"
        );
    }
    r.split_off(12)
}

const NEED_REPLY: u32 = 0x8;

#[test]
fn rings_enabled_before_set_features_are_acked() {
    // QEMU's virtio-net sends SET_VRING_ENABLE on device reset, before
    // SET_FEATURES, with REPLY_ACK: the backend must answer it.
    let s = server("early");
    let mut sock = UnixStream::connect(&s.path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let f = raw(&mut sock, 1, 0, &[], 8); // GET_FEATURES
    assert_ne!(u64::from_le_bytes(f.try_into().unwrap()) & (1 << 30), 0);
    let pf = raw(&mut sock, 15, 0, &[], 8); // GET_PROTOCOL_FEATURES
    let pf = u64::from_le_bytes(pf.try_into().unwrap());
    assert_ne!(pf & 0x8, 0, "REPLY_ACK offered");
    let ack = raw(&mut sock, 16, NEED_REPLY, &0x9u64.to_le_bytes(), 8); // MQ | REPLY_ACK
    assert_eq!(ack, 0u64.to_le_bytes());
    for (q, on) in [(0u32, 1u32), (1, 1), (0, 0), (1, 1)] {
        let mut body = q.to_le_bytes().to_vec();
        body.extend_from_slice(&on.to_le_bytes());
        let ack = raw(&mut sock, 18, NEED_REPLY, &body, 8); // SET_VRING_ENABLE
        assert_eq!(ack, 0u64.to_le_bytes(), "queue {q} enable {on}");
    }
    s.handle.with_state(|st| assert!(!st.queue_running(0)));
    // A bad one is refused with an error ack and a closed connection.
    let mut body = 9u32.to_le_bytes().to_vec();
    body.extend_from_slice(&1u32.to_le_bytes());
    let ack = raw(&mut sock, 18, NEED_REPLY, &body, 8);
    assert_eq!(ack, 1u64.to_le_bytes());
    s.wait_closed(1);
    assert_alive(&s);
}

#[test]
fn new_memory_table_while_rings_run_keeps_the_rings_going() {
    let s = server("remap");
    let mut f = connect(&s.path, 2);
    negotiate(&mut f, Features::VERSION_1);
    let g = Guest::new();
    let mut r = setup_rings(&mut f, &g);
    send_and_expect(&g, &mut r, 0, 100);
    // Same memory again (QEMU resends the table when its RAM layout
    // changes): the rings carry on from where they were.
    f.set_mem_table(&[g.region()]).unwrap();
    send_and_expect(&g, &mut r, 100, 100);
    // Disable TX: kicks move nothing; enable again: it resumes.
    f.set_vring_enable(1, false).unwrap();
    s.handle.with_state(|st| assert!(!st.queue_running(1)));
    f.set_vring_enable(1, true).unwrap();
    send_and_expect(&g, &mut r, 200, 100);
    let st = s.handle.stats();
    assert_eq!(st.tx_packets, 300);
    assert_eq!(st.rx_packets, 300);
    assert_eq!(st.queue_errors, 0);
}

#[test]
fn a_ring_overlapping_the_other_queues_is_refused() {
    // I-HOST-11: queue 0 runs; queue 1 is then given queue 0's ring
    // addresses, and the backend refuses to start it: the request fails
    // (the frontend did not negotiate REPLY_ACK, so the refusal closes the
    // connection, I-HOST-5) and the next frontend is served.
    let s = server("overlap");
    let mut f = connect(&s.path, 2);
    negotiate(&mut f, Features::VERSION_1);
    let g = Guest::new();
    f.set_mem_table(&[g.region()]).unwrap();
    let rx = TestDriver::new(&g.mem, RX_RING, QSIZE).unwrap();
    let flags = libc::EFD_NONBLOCK | libc::EFD_CLOEXEC;
    let kick = [EventFd::new(flags).unwrap(), EventFd::new(flags).unwrap()];
    let call = [EventFd::new(flags).unwrap(), EventFd::new(flags).unwrap()];
    let start = |f: &mut vhost::vhost_user::Frontend, q: usize| {
        f.set_vring_num(q, QSIZE).unwrap();
        f.set_vring_base(q, 0).unwrap();
        f.set_vring_addr(q, &ring_config(&rx)).unwrap();
        f.set_vring_call(q, &call[q]).unwrap();
        f.set_vring_enable(q, true).unwrap();
        f.set_vring_kick(q, &kick[q])
    };
    start(&mut f, 0).unwrap();
    // The messages are handled in order: once GET_QUEUE_NUM is answered,
    // the kick before it was.
    f.get_queue_num().unwrap();
    s.handle.with_state(|st| {
        assert!(st.queue_running(0), "queue 0 runs on its own rings");
        assert!(!st.queue_running(1));
    });
    // The refusal is only seen as a closed connection by the next request.
    let _ = start(&mut f, 1);
    assert!(
        f.get_queue_num().is_err(),
        "the connection survived the refused ring"
    );
    s.wait_closed(1);
    assert_eq!(s.handle.stats().queue_errors, 0);
    drop(f);
    assert_alive(&s);
}

#[test]
fn stopped_rings_restart_from_their_base() {
    // GET_VRING_BASE, then SET_VRING_BASE + kick again (what QEMU does on a
    // guest reset or vhost restart) continues the same rings.
    let s = server("restart");
    let mut f = connect(&s.path, 2);
    negotiate(&mut f, Features::VERSION_1 | Features::RING_EVENT_IDX);
    let g = Guest::new();
    let mut r = setup_rings(&mut f, &g);
    send_and_expect(&g, &mut r, 0, 50);
    let rx_base = f.get_vring_base(0).unwrap();
    let tx_base = f.get_vring_base(1).unwrap();
    assert_eq!((rx_base, tx_base), (50, 50));
    for (q, base) in [(0usize, rx_base), (1, tx_base)] {
        f.set_vring_base(q, base as u16).unwrap();
        f.set_vring_kick(q, &r.kick[q]).unwrap();
    }
    send_and_expect(&g, &mut r, 50, 50);
}
