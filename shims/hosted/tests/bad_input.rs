//! A hostile or broken frontend gets an error reply (REPLY_ACK) or a closed
//! connection, never a crash, and the backend serves the next frontend
//! (I-HOST-2, I-HOST-5).
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use common::*;
use vhost::vhost_user::{Frontend, VhostUserFrontend};
use vhost::{VhostBackend, VhostUserMemoryRegionInfo};
use virtnet::device::NetConfig;
use virtnet::features::Features;
use vmm_sys_util::eventfd::EventFd;

fn server(tag: &str) -> TestServer {
    TestServer::start(tag, open_loopback(16), NetConfig::default())
}

/// Negotiated, without GET_QUEUE_NUM (the frontend then lets any queue
/// index through to the backend).
fn ready_any_index(server: &TestServer) -> Frontend {
    let mut f = connect(&server.path, 8);
    let offered = negotiate_protocol(&mut f);
    f.set_features(offered).unwrap();
    f
}

fn ready(server: &TestServer) -> Frontend {
    let mut f = connect(&server.path, 8);
    negotiate(&mut f, Features::VERSION_1);
    f
}

/// The request failed, the connection is closed, and the backend serves
/// the next frontend.
fn after_refusal(server: &TestServer, f: Frontend, closed_before: u64) {
    server.wait_closed(closed_before + 1);
    assert!(
        f.get_features().is_err(),
        "the connection should be closed after a refused request"
    );
    assert_alive(server);
}

fn region(fd: i32, size: u64, offset: u64) -> VhostUserMemoryRegionInfo {
    VhostUserMemoryRegionInfo {
        guest_phys_addr: GPA,
        memory_size: size,
        userspace_addr: USER,
        mmap_offset: offset,
        mmap_handle: fd,
    }
}

#[test]
fn memory_table_with_an_unmappable_fd() {
    let s = server("badfd");
    // An eventfd and a pipe cannot back guest memory.
    let efd = EventFd::new(0).unwrap();
    let f = ready(&s);
    assert!(f.set_mem_table(&[region(efd.as_raw_fd(), MEM, 0)]).is_err());
    after_refusal(&s, f, 0);

    let (a, _b) = UnixStream::pair().unwrap();
    let f = ready(&s);
    assert!(f.set_mem_table(&[region(a.as_raw_fd(), MEM, 0)]).is_err());
    after_refusal(&s, f, 2);
}

#[test]
fn memory_table_larger_than_its_file() {
    // Mapping past the end of a memfd would succeed and SIGBUS on access.
    let s = server("short");
    let file = memfd(0x10000);
    let f = ready(&s);
    assert!(f
        .set_mem_table(&[region(file.as_raw_fd(), MEM, 0)])
        .is_err());
    after_refusal(&s, f, 0);
    // The offset counts too.
    let file = memfd(MEM);
    let f = ready(&s);
    assert!(f
        .set_mem_table(&[region(file.as_raw_fd(), MEM, 0x1000)])
        .is_err());
    after_refusal(&s, f, 2);
}

#[test]
fn memory_table_with_overlapping_or_wrapping_regions() {
    let s = server("overlap");
    let a = memfd(MEM);
    let b = memfd(MEM);
    let f = ready(&s);
    let r1 = region(a.as_raw_fd(), MEM, 0);
    let mut r2 = region(b.as_raw_fd(), MEM, 0);
    r2.guest_phys_addr = GPA + MEM / 2;
    r2.userspace_addr = USER + 0x1000_0000;
    assert!(f.set_mem_table(&[r1, r2]).is_err());
    after_refusal(&s, f, 0);

    let f = ready(&s);
    let mut r = region(a.as_raw_fd(), MEM, 0);
    r.guest_phys_addr = u64::MAX - 0x1000;
    assert!(f.set_mem_table(&[r]).is_err());
    after_refusal(&s, f, 2);
}

fn with_memory(s: &TestServer) -> (Frontend, Guest) {
    let f = ready(s);
    let g = Guest::new();
    f.set_mem_table(&[g.region()]).unwrap();
    (f, g)
}

#[test]
fn vring_addresses_outside_the_table() {
    let s = server("addr");
    let (f, g) = with_memory(&s);
    let d = virtnet::testing::TestDriver::new(&g.mem, RX_RING, QSIZE).unwrap();
    f.set_vring_num(0, QSIZE).unwrap();
    let mut c = ring_config(&d);
    c.desc_table_addr = USER + MEM + 0x1000;
    assert!(f.set_vring_addr(0, &c).is_err());
    after_refusal(&s, f, 0);

    // Starts inside, ends outside: refused when the ring starts.
    let (mut f, g) = with_memory(&s);
    let d = virtnet::testing::TestDriver::new(&g.mem, RX_RING, QSIZE).unwrap();
    f.set_vring_num(0, QSIZE).unwrap();
    let mut c = ring_config(&d);
    c.used_ring_addr = USER + MEM - 64;
    f.set_vring_addr(0, &c).unwrap();
    let kick = EventFd::new(0).unwrap();
    f.set_vring_kick(0, &kick).unwrap();
    // Rings start disabled with protocol features: enabling starts it.
    assert!(f.set_vring_enable(0, true).is_err());
    after_refusal(&s, f, 2);

    // Misaligned descriptor table (§2.7: 16-byte alignment): refused by
    // the message check or when the ring starts.
    let (mut f, g) = with_memory(&s);
    let d = virtnet::testing::TestDriver::new(&g.mem, RX_RING, QSIZE).unwrap();
    f.set_vring_num(0, QSIZE).unwrap();
    let mut c = ring_config(&d);
    c.desc_table_addr += 8;
    let r = f
        .set_vring_addr(0, &c)
        .and_then(|()| f.set_vring_kick(0, &kick))
        .and_then(|()| f.set_vring_enable(0, true));
    assert!(r.is_err());
    after_refusal(&s, f, 4);
}

#[test]
fn queue_size_not_a_power_of_two() {
    let s = server("qsize");
    for (i, n) in [100u16, 0, 3].into_iter().enumerate() {
        let f = ready(&s);
        assert!(f.set_vring_num(0, n).is_err(), "size {n}");
        after_refusal(&s, f, 2 * i as u64);
    }
}

#[test]
fn queue_index_out_of_range() {
    let s = server("qidx");
    let f = ready_any_index(&s);
    // GET_VRING_BASE expects a reply: the backend closes instead.
    assert!(f.get_vring_base(5).is_err());
    after_refusal(&s, f, 0);
    let f = ready_any_index(&s);
    assert!(f.set_vring_num(7, 256).is_err());
    after_refusal(&s, f, 2);
}

#[test]
fn features_that_were_not_offered() {
    let s = server("feat");
    let mut f = connect(&s.path, 2);
    let offered = negotiate_protocol(&mut f);
    // Packed rings are not offered; neither is a feature set without VERSION_1.
    assert!(f
        .set_features(offered | Features::RING_PACKED.bits())
        .is_err());
    after_refusal(&s, f, 0);
    let mut f = connect(&s.path, 2);
    negotiate_protocol(&mut f);
    assert!(f.set_features(Features::MAC.bits()).is_err());
    after_refusal(&s, f, 2);
}

#[test]
fn garbage_on_the_socket() {
    let s = server("garbage");
    let mut sock = UnixStream::connect(&s.path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    // A header claiming request 0xdead with a 4000-byte body, then noise.
    let mut msg = vec![0xad, 0xde, 0, 0, 1, 0, 0, 0, 0xa0, 0x0f, 0, 0];
    msg.extend((0..4000u32).map(|i| (i * 7) as u8));
    let _ = sock.write_all(&msg);
    let mut buf = [0u8; 16];
    assert_eq!(sock.read(&mut buf).unwrap_or(0), 0, "expected EOF");
    s.wait_closed(1);
    assert_alive(&s);
}

#[test]
fn frontend_vanishing_mid_setup() {
    let s = server("vanish");
    {
        let mut f = ready(&s);
        let g = Guest::new();
        let _rings = setup_rings(&mut f, &g);
        // Dropped with rings running and memory mapped.
    }
    s.wait_closed(1);
    s.handle.with_state(|st| {
        assert!(!st.has_memory());
        assert!(!st.queue_running(0) && !st.queue_running(1));
    });
    assert_alive(&s);
}
