//! A tiny vhost-user frontend for tests, built on rust-vmm's `vhost` crate
//! (`Frontend`): it shares a memfd as guest memory, negotiates, sets up the
//! two rings and plays the driver with the core's `TestDriver`.
//!
//! Test code: panics on anything unexpected.
#![allow(
    dead_code,
    missing_docs,
    clippy::unwrap_used,
    clippy::undocumented_unsafe_blocks
)]

use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use vhost::vhost_user::message::{VhostUserHeaderFlag, VhostUserProtocolFeatures};
use vhost::vhost_user::{Frontend, VhostUserFrontend};
use vhost::{VhostBackend, VhostUserMemoryRegionInfo, VringConfigData};
use vmm_sys_util::eventfd::EventFd;

use virtnet::device::NetConfig;
use virtnet::features::Features;
use virtnet::mem::{GuestAddress, GuestMemory};
use virtnet::pool::FramePool;
use virtnet::testing::TestDriver;
use virtnet_hosted::device::PROTOCOL_FEATURES_BIT;
use virtnet_hosted::{bind, AnyBackend, GuestMemoryMap, Server, ServerConfig, TableEntry};

pub use virtnet_hosted::ServerHandle;

/// Slot size used by the tests (the core's default).
pub const SLOT: usize = 1536;
/// Pool slots.
pub const COUNT: usize = 256;

pub type Handle = ServerHandle<'static, AnyBackend, SLOT, COUNT>;

/// A server on its own thread.
pub struct TestServer {
    pub path: PathBuf,
    pub handle: Handle,
    thread: Option<std::thread::JoinHandle<()>>,
}

static N: AtomicUsize = AtomicUsize::new(0);

pub fn socket_path(tag: &str) -> PathBuf {
    let n = N.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!("virtnet-{tag}-{}-{n}.sock", std::process::id()))
}

impl TestServer {
    pub fn start(tag: &str, backend: AnyBackend, net: NetConfig) -> TestServer {
        let _ = env_logger::builder().is_test(true).try_init();
        let path = socket_path(tag);
        let listener = bind(&path).unwrap();
        // Leaked once per server: a test process starts a handful.
        let rx: &'static FramePool<SLOT, COUNT> = Box::leak(Box::default());
        let tx: &'static FramePool<SLOT, COUNT> = Box::leak(Box::default());
        let config = ServerConfig {
            net,
            ..ServerConfig::default()
        };
        let server = Server::new(listener, path.clone(), config, backend, rx, tx).unwrap();
        let handle = server.handle();
        let thread = std::thread::spawn(move || server.run().unwrap());
        TestServer {
            path,
            handle,
            thread: Some(thread),
        }
    }

    /// Wait until `n` connections were closed and cleaned up.
    pub fn wait_closed(&self, n: u64) {
        let t = Instant::now();
        while self.handle.connections_closed() < n {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "server did not finish connection {n}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.handle.shutdown();
        if let Some(t) = self.thread.take() {
            let r = t.join();
            if !std::thread::panicking() {
                r.unwrap();
            }
        }
    }
}

pub fn memfd(len: u64) -> File {
    let fd = unsafe { libc::memfd_create(c"virtnet-guest".as_ptr(), libc::MFD_CLOEXEC) };
    assert!(fd >= 0);
    let f = unsafe { File::from_raw_fd(fd) };
    f.set_len(len).unwrap();
    f
}

pub fn count_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// Connect with a read timeout, so a backend that never answers fails the
/// test instead of hanging it.
pub fn connect(path: &Path, max_queues: u64) -> Frontend {
    let s = UnixStream::connect(path).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let f = Frontend::from_stream(s, max_queues);
    f.set_hdr_flags(VhostUserHeaderFlag::NEED_REPLY);
    f
}

/// Feature negotiation as QEMU does it; returns the offered features.
pub fn negotiate(f: &mut Frontend, want: Features) -> u64 {
    let offered = negotiate_protocol(f);
    assert_eq!(f.get_queue_num().unwrap(), 2);
    f.set_features((want.bits() & offered) | PROTOCOL_FEATURES_BIT)
        .unwrap();
    offered
}

/// Owner, features query and protocol features (REPLY_ACK on): everything
/// but `SET_FEATURES`. Returns the offered features.
pub fn negotiate_protocol(f: &mut Frontend) -> u64 {
    f.set_owner().unwrap();
    let offered = f.get_features().unwrap();
    assert_ne!(offered & PROTOCOL_FEATURES_BIT, 0);
    let pf = f.get_protocol_features().unwrap();
    let want_pf = VhostUserProtocolFeatures::MQ
        | VhostUserProtocolFeatures::REPLY_ACK
        | VhostUserProtocolFeatures::CONFIG;
    assert!(pf.contains(want_pf), "{pf:?}");
    f.set_protocol_features(want_pf).unwrap();
    offered
}

/// Guest-physical base of the test's guest memory.
pub const GPA: u64 = 0x4000_0000;
/// Where the "frontend" claims to have it (never dereferenced by anyone).
pub const USER: u64 = 0x7f12_3400_0000;
/// Guest memory size.
pub const MEM: u64 = 2 << 20;
/// File offset of the region (exercises mmap_offset).
pub const OFFSET: u64 = 0x1000;

pub const RX_RING: u64 = GPA;
pub const TX_RING: u64 = GPA + 0x8000;
pub const TX_BUFS: u64 = GPA + 0x10_0000;
pub const RX_BUFS: u64 = GPA + 0x18_0000;
pub const QSIZE: u16 = 256;

pub fn user(gpa: u64) -> u64 {
    gpa - GPA + USER
}

/// The frontend's guest memory: a memfd, and the test's own view of it.
pub struct Guest {
    pub file: File,
    pub mem: GuestMemoryMap,
}

impl Guest {
    pub fn new() -> Guest {
        let file = memfd(MEM + OFFSET);
        let table = [TableEntry {
            guest_phys_addr: GPA,
            memory_size: MEM,
            user_addr: USER,
            mmap_offset: OFFSET,
        }];
        let mem = GuestMemoryMap::map(&table, &[file.try_clone().unwrap()]).unwrap();
        Guest { file, mem }
    }

    pub fn region(&self) -> VhostUserMemoryRegionInfo {
        VhostUserMemoryRegionInfo {
            guest_phys_addr: GPA,
            memory_size: MEM,
            userspace_addr: USER,
            mmap_offset: OFFSET,
            mmap_handle: self.file.as_raw_fd(),
        }
    }
}

/// The rings of a running device, driven from the test.
pub struct Rings {
    pub rx: TestDriver,
    pub tx: TestDriver,
    pub kick: [EventFd; 2],
    pub call: [EventFd; 2],
}

pub fn ring_config(d: &TestDriver) -> VringConfigData {
    VringConfigData {
        queue_max_size: QSIZE,
        queue_size: d.layout.size,
        flags: 0,
        desc_table_addr: user(d.layout.desc_table.0),
        used_ring_addr: user(d.layout.used_ring.0),
        avail_ring_addr: user(d.layout.avail_ring.0),
        log_addr: None,
    }
}

/// Memory table and both rings, enabled; returns the test's driver state.
pub fn setup_rings(f: &mut Frontend, g: &Guest) -> Rings {
    f.set_mem_table(&[g.region()]).unwrap();
    let rx = TestDriver::new(&g.mem, RX_RING, QSIZE).unwrap();
    let tx = TestDriver::new(&g.mem, TX_RING, QSIZE).unwrap();
    let flags = libc::EFD_NONBLOCK | libc::EFD_CLOEXEC;
    let kick = [EventFd::new(flags).unwrap(), EventFd::new(flags).unwrap()];
    let call = [EventFd::new(flags).unwrap(), EventFd::new(flags).unwrap()];
    for (q, d) in [&rx, &tx].into_iter().enumerate() {
        f.set_vring_num(q, QSIZE).unwrap();
        f.set_vring_base(q, 0).unwrap();
        f.set_vring_addr(q, &ring_config(d)).unwrap();
        f.set_vring_call(q, &call[q]).unwrap();
        f.set_vring_kick(q, &kick[q]).unwrap();
        f.set_vring_enable(q, true).unwrap();
    }
    Rings { rx, tx, kick, call }
}

/// Wait for a call on either queue; returns how many fired.
pub fn wait_call(r: &Rings, timeout: Duration) -> usize {
    let mut fds = [
        libc::pollfd {
            fd: r.call[0].as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: r.call[1].as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, timeout.as_millis() as i32) };
    assert!(n >= 0);
    let mut fired = 0;
    for (i, p) in fds.iter().enumerate() {
        if p.revents != 0 {
            let _ = r.call[i].read();
            fired += 1;
        }
    }
    fired
}

/// An Ethernet frame of `len` bytes numbered `seq`.
pub fn frame(seq: u32, len: usize) -> Vec<u8> {
    let mut f = vec![0u8; len];
    f[..6].copy_from_slice(&[0x52, 0x54, 0, 0x12, 0x34, 0x56]);
    f[6..12].copy_from_slice(&[0x52, 0x54, 0, 0xab, 0xcd, 0xef]);
    f[12..14].copy_from_slice(&0x88b5u16.to_be_bytes());
    f[14..18].copy_from_slice(&seq.to_be_bytes());
    for (i, b) in f.iter_mut().enumerate().skip(18) {
        *b = (seq as usize).wrapping_mul(31).wrapping_add(i) as u8;
    }
    f
}

pub fn read(mem: &GuestMemoryMap, gpa: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    mem.read(GuestAddress(gpa), &mut v).unwrap();
    v
}

pub fn open_loopback(frames: usize) -> AnyBackend {
    AnyBackend::Loopback(virtnet_hosted::backend::LoopbackBackend::new(frames, SLOT))
}

/// A short loopback round trip on an already negotiated frontend: `n`
/// frames out on TX, the same `n` back on RX.
pub fn roundtrip(f: &mut Frontend, n: u32) {
    let g = Guest::new();
    let mut r = setup_rings(f, &g);
    send_and_expect(&g, &mut r, 0, n);
}

/// On running rings: post `n` RX buffers, send frames `first..first + n`,
/// and check they come back in order.
pub fn send_and_expect(g: &Guest, r: &mut Rings, first: u32, n: u32) {
    let mem = &g.mem;
    for _ in 0..n {
        let a = RX_BUFS + u64::from(r.rx.next_desc) * 2048;
        r.rx.add_chain(mem, &[(a, 2048, true)]).unwrap();
    }
    r.rx.publish(mem).unwrap();
    r.kick[0].write(1).unwrap();
    for seq in first..first + n {
        let fr = frame(seq, 60 + seq as usize % 1000);
        let a = TX_BUFS + u64::from(r.tx.next_desc) * 2048;
        mem.write(GuestAddress(a), &[0u8; 12]).unwrap();
        mem.write(GuestAddress(a + 12), &fr).unwrap();
        r.tx.add_chain(mem, &[(a, 12 + fr.len() as u32, false)])
            .unwrap();
    }
    r.tx.publish(mem).unwrap();
    r.kick[1].write(1).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut got = first;
    while got < first + n {
        assert!(
            Instant::now() < deadline,
            "round trip stalled at {got}/{}",
            first + n
        );
        match r.rx.pop_used(mem).unwrap() {
            Some((id, len)) => {
                let data = read(mem, RX_BUFS + u64::from(id) * 2048, len as usize);
                assert_eq!(&data[12..], &frame(got, 60 + got as usize % 1000)[..]);
                got += 1;
            }
            None => {
                wait_call(r, Duration::from_millis(100));
            }
        }
    }
    while r.tx.pop_used(mem).unwrap().is_some() {}
}

/// The backend serves a fresh frontend end to end.
pub fn assert_alive(server: &TestServer) {
    let mut f = connect(&server.path, 2);
    negotiate(&mut f, Features::VERSION_1 | Features::MAC);
    roundtrip(&mut f, 8);
}
