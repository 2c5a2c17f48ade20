//! Per-packet cost of virtnet's data path, in process, beside the same loop
//! written with rust-vmm's `virtio-queue` + `vm-memory` and a bare memcpy of
//! the same bytes (specs/10-performance.md; `cargo xtask bench core` runs it
//! and prints one table).
//!
//! Every round follows the spec's order (VIRTIO 1.2 §2.7.13): the driver
//! writes descriptors and avail-ring entries and publishes avail idx (release);
//! the device processes the queue; the driver reaps the used ring and re-arms
//! `used_event` (EVENT_IDX, like Linux's `virtqueue_enable_cb`). Only the
//! device's part is timed. The driver checks every used entry and the backend
//! counts every frame, so a broken path fails the bench instead of timing
//! drops.
//!
//! Lines starting with `VNBENCH` carry what criterion does not measure
//! (notifications per packet, the device footprint) to `cargo xtask bench`.
#![allow(unsafe_code)]

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use criterion::Criterion;
use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress as VmAddr, GuestMemoryBackend as _, GuestMemoryMmap};

use virtnet::device::{
    Backend, BackendError, NetConfig, NetDevice, NoInterceptor, Notifier, RxFrame, RX_QUEUE,
    TX_QUEUE,
};
use virtnet::features::Features;
use virtnet::mem::{GuestAddress, GuestMemory, Region, RegionMemory};
use virtnet::pool::FramePool;
use virtnet::testing::{Buf, TestDriver};
use virtnet::wire::NetHdrRepr;

/// Guest-physical base of the one memory region.
const BASE: u64 = 0x4000_0000;
/// Size of the region (page-aligned anonymous mapping).
const MEM_SIZE: usize = 4 << 20;
/// Queue size of every case.
const QSIZE: u16 = 256;
/// virtio-net header length (VERSION_1).
const HDR: usize = 12;
/// Rings, at the start of the region.
const RING_OFF: u64 = 0;
/// Separate 12-byte header buffers (2-descriptor and indirect chains), 64 B apart.
const HDR_OFF: u64 = 0x1_0000;
/// Indirect tables, 64 B apart.
const IND_OFF: u64 = 0x2_0000;
/// Frame buffers, 2 KiB apart.
const BUF_OFF: u64 = 0x4_0000;
/// Bytes per frame buffer.
const BUF_STRIDE: u64 = 2048;
/// Length of an RX buffer the driver posts (what a buffer of a Linux
/// mergeable-RX ring of 1500-MTU frames holds, roughly).
const RX_BUF_LEN: u32 = 2048;

static RX_POOL: FramePool = FramePool::new();
static TX_POOL: FramePool = FramePool::new();

// ------------------------------------------------------------------ cases

/// Direction.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Dir {
    Tx,
    Rx,
}

/// How the driver lays out one packet.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// Header and frame in one buffer.
    One,
    /// Header buffer, then frame buffer.
    Two,
    /// One descriptor pointing at an indirect table of two (header, frame).
    Indirect,
}

impl Shape {
    fn name(self) -> &'static str {
        match self {
            Shape::One => "1desc",
            Shape::Two => "2desc",
            Shape::Indirect => "indirect",
        }
    }
}

#[derive(Clone, Copy)]
struct Case {
    dir: Dir,
    size: usize,
    batch: u16,
    shape: Shape,
    /// MRG_RXBUF negotiated (RX only; what Linux and DPDK negotiate).
    mrg: bool,
}

impl Case {
    fn name(&self) -> String {
        let dir = match (self.dir, self.mrg) {
            (Dir::Tx, _) => "tx",
            (Dir::Rx, true) => "rx",
            (Dir::Rx, false) => "rx-nomrg",
        };
        format!("{dir}-{}-b{}-{}", self.size, self.batch, self.shape.name())
    }

    /// The memcpy case with the same bytes.
    fn memcpy_name(&self) -> String {
        let dir = match self.dir {
            Dir::Tx => "tx",
            Dir::Rx => "rx",
        };
        format!("{dir}-{}-b{}", self.size, self.batch)
    }

    fn features(&self) -> Features {
        let mut f = Features::VERSION_1 | Features::RING_EVENT_IDX | Features::RING_INDIRECT_DESC;
        if self.mrg {
            f |= Features::MRG_RXBUF;
        }
        f
    }
}

fn cases() -> Vec<Case> {
    let mut v = Vec::new();
    for dir in [Dir::Tx, Dir::Rx] {
        for size in [64usize, 1514] {
            for batch in [1u16, 32, 256] {
                for shape in [Shape::One, Shape::Two, Shape::Indirect] {
                    // 256 two-descriptor chains need 512 descriptors: they
                    // do not fit a queue of 256.
                    if shape == Shape::Two && batch == QSIZE {
                        continue;
                    }
                    v.push(Case {
                        dir,
                        size,
                        batch,
                        shape,
                        mrg: dir == Dir::Rx,
                    });
                }
            }
        }
    }
    for size in [64usize, 1514] {
        v.push(Case {
            dir: Dir::Rx,
            size,
            batch: 32,
            shape: Shape::One,
            mrg: false,
        });
    }
    v
}

// ------------------------------------------------------------ guest memory

/// The guest's memory: one anonymous mapping made by vm-memory, seen by
/// virtnet (and by the emulated driver) as a `RegionMemory` over the same
/// host pages.
struct Guest {
    vm: GuestMemoryMmap,
    region: RegionMemory<1>,
    host: *mut u8,
}

impl Guest {
    fn new() -> Guest {
        let vm = GuestMemoryMmap::from_ranges(&[(VmAddr(BASE), MEM_SIZE)])
            .expect("anonymous guest mapping");
        let host = vm.get_host_address(VmAddr(BASE)).expect("host address");
        assert_eq!(host as usize % 4096, 0, "page-aligned");
        let mut region = RegionMemory::new();
        // SAFETY: the mapping lives as long as `vm`, which lives as long as
        // `region` (both in this struct, never moved out); nothing holds a
        // reference into it: vm-memory and virtnet copy bytes in and out, and
        // the memcpy baseline uses raw pointers.
        unsafe {
            region
                .add(Region::new(BASE, host, MEM_SIZE).expect("region"))
                .expect("add region");
        }
        Guest { vm, region, host }
    }

    /// Host pointer of guest address `gpa` (inside the region).
    fn ptr(&self, gpa: u64) -> *mut u8 {
        let off = usize::try_from(gpa - BASE).expect("offset");
        assert!(off < MEM_SIZE);
        self.host.wrapping_add(off)
    }
}

fn hdr_addr(i: u16) -> u64 {
    BASE + HDR_OFF + 64 * u64::from(i)
}
fn ind_addr(i: u16) -> u64 {
    BASE + IND_OFF + 64 * u64::from(i)
}
fn buf_addr(i: u16) -> u64 {
    BASE + BUF_OFF + BUF_SHIFT.load(Relaxed) + BUF_STRIDE * u64::from(i)
}

/// Where the frame buffers start past `BUF_OFF` (0, or the layout sweep's
/// choice, below `BUF_STRIDE`): read only when a driver or the memcpy
/// baseline is set up, never in a timed section.
static BUF_SHIFT: AtomicU64 = AtomicU64::new(0);

/// A test frame: broadcast destination, some source, IPv4 ethertype, a
/// pattern.
fn frame(size: usize) -> Vec<u8> {
    let mut f: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
    f[..6].copy_from_slice(&[0xff; 6]);
    f[6..12].copy_from_slice(&[0x52, 0x54, 0, 0x12, 0x34, 0x56]);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    f
}

// ------------------------------------------------------------------ driver

/// The driver side: posts one batch, reaps it.
struct Driver {
    drv: TestDriver,
    case: Case,
}

impl Driver {
    fn new(g: &Guest, case: Case) -> Driver {
        let mem = &g.region;
        let drv = TestDriver::new(mem, BASE + RING_OFF, QSIZE).expect("rings");
        // Interrupt at the first used entry.
        drv.set_used_event(mem, 0).expect("used_event");
        if case.dir == Dir::Tx {
            // TX buffers hold a zero header (no offload) and the frame, at the
            // same place for every shape: header at the start of the buffer
            // (one descriptor) or in its own buffer (two, indirect).
            let f = frame(case.size);
            for i in 0..case.batch {
                mem.write(GuestAddress(buf_addr(i)), &[0u8; HDR])
                    .expect("hdr");
                mem.write(GuestAddress(hdr_addr(i)), &[0u8; HDR])
                    .expect("hdr");
                mem.write(GuestAddress(buf_addr(i) + HDR as u64), &f)
                    .expect("frame");
            }
        }
        Driver { drv, case }
    }

    /// Write the batch's descriptors and avail entries, then publish avail idx.
    fn post(&mut self, mem: &RegionMemory<1>) {
        let c = self.case;
        let w = c.dir == Dir::Rx;
        for i in 0..c.batch {
            let (hdr_len, data_len) = if w {
                (HDR as u32, RX_BUF_LEN - HDR as u32)
            } else {
                (HDR as u32, c.size as u32)
            };
            match c.shape {
                Shape::One => {
                    let len = if w { RX_BUF_LEN } else { (HDR + c.size) as u32 };
                    let bufs: [Buf; 1] = [(buf_addr(i), len, w)];
                    self.drv.add_chain(mem, &bufs).expect("chain");
                }
                Shape::Two => {
                    let bufs: [Buf; 2] = [
                        (hdr_addr(i), hdr_len, w),
                        (buf_addr(i) + HDR as u64, data_len, w),
                    ];
                    self.drv.add_chain(mem, &bufs).expect("chain");
                }
                Shape::Indirect => {
                    let bufs: [Buf; 2] = [
                        (hdr_addr(i), hdr_len, w),
                        (buf_addr(i) + HDR as u64, data_len, w),
                    ];
                    self.drv
                        .add_indirect(mem, ind_addr(i), &bufs)
                        .expect("indirect chain");
                }
            }
        }
        self.drv.publish(mem).expect("publish");
    }

    /// Reap the batch, checking every used entry, and re-arm used_event.
    fn reap(&mut self, mem: &RegionMemory<1>) {
        let want = match self.case.dir {
            Dir::Tx => 0,
            Dir::Rx => (HDR + self.case.size) as u32,
        };
        for _ in 0..self.case.batch {
            let (_, len) = self
                .drv
                .pop_used(mem)
                .expect("used ring")
                .expect("the device returned fewer chains than posted");
            assert_eq!(len, want, "used length");
        }
        assert_eq!(self.drv.pop_used(mem).expect("used ring"), None);
        self.drv
            .set_used_event(mem, self.drv.last_used)
            .expect("used_event");
    }
}

// ------------------------------------------------------------------ virtnet

/// A host buffer that can be moved to a chosen offset in its page, keeping
/// its bytes (the layout sweep places every implementation's host buffers
/// alike: 4K aliasing between a copy's loads and earlier stores depends on
/// where they land). Until placed it is a plain vector of `len` bytes.
struct Placed {
    mem: Vec<u8>,
    /// `len` bytes inside `mem`, where the buffer is now: a vector's
    /// pointer and length, so the per-frame paths cost what they cost on a
    /// plain vector.
    ptr: *mut u8,
    len: usize,
}

impl Placed {
    fn new(mut bytes: Vec<u8>) -> Placed {
        let len = bytes.len();
        let ptr = bytes.as_mut_ptr();
        Placed {
            mem: bytes,
            ptr,
            len,
        }
    }

    /// Move the buffer so that it starts `page_off` bytes into a page.
    fn place(&mut self, page_off: usize) {
        let old = self.get().to_vec();
        if self.mem.len() < self.len + 4096 {
            self.mem = vec![0u8; self.len + 4096];
        }
        let base = self.mem.as_ptr() as usize % 4096;
        let at = (page_off % 4096 + 4096 - base) % 4096;
        let buf = &mut self.mem[at..at + self.len];
        buf.copy_from_slice(&old);
        self.ptr = buf.as_mut_ptr();
    }

    #[inline(always)]
    fn get(&self) -> &[u8] {
        // SAFETY: `ptr` points at `len` initialised bytes inside `mem`
        // (set by `new` and `place`; `mem` is not resized in between), and
        // the returned borrow of `self` keeps them from being changed.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }

    #[inline(always)]
    fn get_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `get`; the exclusive borrow of `self` makes the
        // slice the only access to those bytes.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

/// Offset in its page of a host address.
fn page_off(addr: usize) -> usize {
    addr % 4096
}

/// Page offset of a buffer that holds the header ahead of a frame staged
/// `staging` bytes into a page.
fn header_ahead(staging: usize) -> usize {
    (staging + 4096 - HDR) % 4096
}

/// A backend that copies frames out (TX) and in (RX) of host memory.
struct CopyBackend {
    sink: Placed,
    source: Placed,
    rx_left: usize,
    packets: u64,
    /// Host address of the last frame handed over (TX) or received into
    /// (RX): where the implementation stages frames.
    staged: usize,
}

impl CopyBackend {
    fn new(size: usize) -> CopyBackend {
        CopyBackend {
            sink: Placed::new(vec![0; 2048]),
            source: Placed::new(frame(size)),
            rx_left: 0,
            packets: 0,
            staged: 0,
        }
    }

    /// Place the sink and the source `page_off` bytes into a page.
    fn place(&mut self, page_off: usize) {
        self.sink.place(page_off);
        self.source.place(page_off);
    }
}

// Inlined, as the plain-vector backend before the layout sweep was: the
// figures stay comparable across commits.
impl Backend for CopyBackend {
    #[inline(always)]
    fn transmit(&mut self, _hdr: &NetHdrRepr, frame: &[u8]) -> Result<(), BackendError> {
        self.staged = frame.as_ptr() as usize;
        let dst = self
            .sink
            .get_mut()
            .get_mut(..frame.len())
            .ok_or(BackendError::Refused)?;
        dst.copy_from_slice(frame);
        black_box(&self.sink);
        self.packets += 1;
        Ok(())
    }

    #[inline(always)]
    fn receive(&mut self, buf: &mut [u8]) -> Result<Option<RxFrame>, BackendError> {
        if self.rx_left == 0 {
            return Ok(None);
        }
        self.rx_left -= 1;
        self.staged = buf.as_ptr() as usize;
        let source = self.source.get();
        let n = source.len();
        buf.get_mut(..n)
            .ok_or(BackendError::Refused)?
            .copy_from_slice(source);
        self.packets += 1;
        Ok(Some(RxFrame {
            len: n,
            hdr: NetHdrRepr::default(),
        }))
    }
}

/// Counts used-buffer notifications.
#[derive(Default)]
struct Count {
    used: u64,
}

impl Notifier for Count {
    fn used_buffer(&mut self, _queue: u16) {
        self.used += 1;
    }
    fn config_changed(&mut self) {
        panic!("config change (queue broken?) during a benchmark");
    }
}

/// One round's device work, timed; the driver's work around it is not.
trait Device {
    /// Process the posted batch.
    fn process(&mut self, g: &Guest);
    /// Frames the backend moved so far.
    fn packets(&self) -> u64;
    /// Used-buffer notifications so far.
    fn notifications(&self) -> u64;
    /// Prepare a round (untimed): the backend's RX frames.
    fn prepare(&mut self, _batch: u16) {}
    /// Host address where the last frame was staged (see [`CopyBackend`]).
    fn staged(&self) -> usize;
    /// Place the host buffers (layout sweep): the backend's sink and source
    /// at `io` bytes into a page, and the implementation's own staging
    /// buffer, where it has one to place, so that frames are staged at
    /// `staging` bytes into a page.
    fn place(&mut self, staging: usize, io: usize);
}

struct Virtnet {
    dev: NetDevice<'static, CopyBackend>,
    notes: Count,
    dir: Dir,
}

impl Virtnet {
    fn new(g: &Guest, case: Case, layout: virtnet::queue::QueueLayout) -> Virtnet {
        let mut dev = NetDevice::new(
            NetConfig::default(),
            CopyBackend::new(case.size),
            NoInterceptor,
            &RX_POOL,
            &TX_POOL,
        );
        dev.set_features(case.features()).expect("features");
        let q = match case.dir {
            Dir::Tx => TX_QUEUE,
            Dir::Rx => RX_QUEUE,
        };
        dev.activate_queue(q, layout, &g.region).expect("activate");
        dev.set_active(true);
        Virtnet {
            dev,
            notes: Count::default(),
            dir: case.dir,
        }
    }
}

impl Device for Virtnet {
    fn process(&mut self, g: &Guest) {
        let p = match self.dir {
            Dir::Tx => self.dev.process_tx(&g.region, &mut self.notes, 1024),
            Dir::Rx => self.dev.process_rx(&g.region, &mut self.notes, 1024),
        };
        black_box(p);
    }
    fn packets(&self) -> u64 {
        self.dev.backend().packets
    }
    fn notifications(&self) -> u64 {
        self.notes.used
    }
    fn prepare(&mut self, batch: u16) {
        self.dev.backend_mut().rx_left = usize::from(batch);
    }
    fn staged(&self) -> usize {
        self.dev.backend().staged
    }
    /// The staging buffer is a pool slot, in a `static`: not moved.
    fn place(&mut self, _staging: usize, io: usize) {
        self.dev.backend_mut().place(io);
    }
}

// ----------------------------------------------------------------- rust-vmm

/// The same device loop over rust-vmm's `virtio-queue` and `vm-memory`:
/// walk each chain's descriptors with `read_slice`/`write_slice` (the
/// cheapest way vm-memory offers), parse the header's flags and GSO type,
/// hand the frame to the same copying backend.
struct RustVmm {
    q: Queue,
    backend: CopyBackend,
    /// Header + frame, as read from (TX) or to be written to (RX) the chain.
    buf: Placed,
    notes: u64,
    dir: Dir,
    dropped: u64,
}

impl RustVmm {
    fn new(g: &Guest, case: Case, layout: virtnet::queue::QueueLayout) -> RustVmm {
        let mut q = Queue::new(QSIZE).expect("queue");
        let split = |a: GuestAddress| (Some(a.0 as u32), Some((a.0 >> 32) as u32));
        let (lo, hi) = split(layout.desc_table);
        q.set_desc_table_address(lo, hi);
        let (lo, hi) = split(layout.avail_ring);
        q.set_avail_ring_address(lo, hi);
        let (lo, hi) = split(layout.used_ring);
        q.set_used_ring_address(lo, hi);
        q.set_size(QSIZE);
        q.set_event_idx(true);
        q.set_ready(true);
        assert!(q.is_valid(&g.vm), "rust-vmm queue layout");
        RustVmm {
            q,
            backend: CopyBackend::new(case.size),
            buf: Placed::new(vec![0; 4096]),
            notes: 0,
            dir: case.dir,
            dropped: 0,
        }
    }

    fn tx(&mut self, mem: &GuestMemoryMmap) {
        loop {
            while let Some(chain) = self.q.pop_descriptor_chain(mem) {
                let head = chain.head_index();
                let mut off = 0usize;
                let mut ok = true;
                for d in chain {
                    let len = d.len() as usize;
                    let end = off + len;
                    match self.buf.get_mut().get_mut(off..end) {
                        Some(dst) if !d.is_write_only() => {
                            if mem.read_slice(dst, d.addr()).is_err() {
                                ok = false;
                                break;
                            }
                        }
                        _ => {
                            ok = false;
                            break;
                        }
                    }
                    off = end;
                }
                // The header: no offload flags, no GSO (what virtnet checks
                // when nothing was negotiated).
                let buf = self.buf.get();
                let (flags, gso_type) = (buf[0], buf[1]);
                if ok && off >= HDR + 14 && flags == 0 && gso_type == 0 {
                    let _ = self
                        .backend
                        .transmit(&NetHdrRepr::default(), &buf[HDR..off]);
                } else {
                    self.dropped += 1;
                }
                self.q.add_used(mem, head, 0).expect("add_used");
            }
            if !self
                .q
                .enable_notification(mem)
                .expect("enable_notification")
            {
                break;
            }
        }
    }

    fn rx(&mut self, mem: &GuestMemoryMmap) {
        while self.backend.rx_left > 0 {
            let Some(chain) = self.q.pop_descriptor_chain(mem) else {
                break;
            };
            let head = chain.head_index();
            let buf = self.buf.get_mut();
            let got = self.backend.receive(&mut buf[HDR..]).expect("receive");
            let Some(f) = got else { break };
            // virtio_net_hdr_v1 with num_buffers = 1, nothing else set.
            buf[..HDR].fill(0);
            buf[10] = 1;
            let total = HDR + f.len;
            let mut off = 0usize;
            for d in chain {
                if off == total || !d.is_write_only() {
                    break;
                }
                let n = (d.len() as usize).min(total - off);
                if mem.write_slice(&buf[off..off + n], d.addr()).is_err() {
                    break;
                }
                off += n;
            }
            let used = if off == total { total as u32 } else { 0 };
            self.q.add_used(mem, head, used).expect("add_used");
        }
    }
}

impl Device for RustVmm {
    fn process(&mut self, g: &Guest) {
        match self.dir {
            Dir::Tx => self.tx(&g.vm),
            Dir::Rx => self.rx(&g.vm),
        }
        if self
            .q
            .needs_notification(&g.vm)
            .expect("needs_notification")
        {
            self.notes += 1;
        }
    }
    fn packets(&self) -> u64 {
        assert_eq!(self.dropped, 0, "rust-vmm loop dropped frames");
        self.backend.packets
    }
    fn notifications(&self) -> u64 {
        self.notes
    }
    fn prepare(&mut self, batch: u16) {
        self.backend.rx_left = usize::from(batch);
    }
    fn staged(&self) -> usize {
        self.backend.staged
    }
    /// Frames are staged after the header in `buf`.
    fn place(&mut self, staging: usize, io: usize) {
        self.buf.place(header_ahead(staging));
        self.backend.place(io);
    }
}

// ------------------------------------------------------------------ rounds

/// A case's device with its driver and memory.
struct Bench<'g, D: Device> {
    g: &'g Guest,
    drv: Driver,
    dev: D,
    batch: u16,
    /// Per-round times of the current sample.
    times: Vec<Duration>,
}

/// What criterion gets for a sample of `rounds` rounds: `rounds` times the
/// median round. The machine is shared (other processes, a hypervisor):
/// a round preempted in its middle would add milliseconds to a sample of
/// microsecond rounds; the median round of the sample is what the code
/// costs when it runs.
fn typical(times: &mut [Duration], rounds: u64) -> Duration {
    if times.is_empty() {
        return Duration::ZERO;
    }
    let mid = times.len() / 2;
    let (_, m, _) = times.select_nth_unstable(mid);
    *m * u32::try_from(rounds).unwrap_or(u32::MAX)
}

impl<'g, D: Device> Bench<'g, D> {
    fn new(g: &'g Guest, drv: Driver, dev: D, batch: u16) -> Self {
        Bench {
            g,
            drv,
            dev,
            batch,
            times: Vec::new(),
        }
    }

    /// One round: post (untimed), process (timed), reap (untimed).
    fn round(&mut self) -> Duration {
        self.drv.post(&self.g.region);
        self.dev.prepare(self.batch);
        let t = Instant::now();
        self.dev.process(self.g);
        let d = t.elapsed();
        self.drv.reap(&self.g.region);
        d
    }

    fn run(&mut self, rounds: u64) -> Duration {
        let mut times = std::mem::take(&mut self.times);
        times.clear();
        times.extend((0..rounds).map(|_| self.round()));
        let d = typical(&mut times, rounds);
        self.times = times;
        d
    }

    /// Untimed check run: every frame crossed; notifications per packet.
    fn check(&mut self, rounds: u64) -> f64 {
        let (p0, n0) = (self.dev.packets(), self.dev.notifications());
        self.run(rounds);
        let packets = self.dev.packets() - p0;
        assert_eq!(packets, rounds * u64::from(self.batch), "frames lost");
        (self.dev.notifications() - n0) as f64 / packets as f64
    }
}

fn bench_device<D: Device>(
    c: &mut Criterion,
    group: &str,
    case: &Case,
    g: &Guest,
    make: impl FnOnce(&Guest, Case, virtnet::queue::QueueLayout) -> D,
) {
    let drv = Driver::new(g, *case);
    let dev = make(g, *case, drv.drv.layout);
    let mut b = Bench::new(g, drv, dev, case.batch);
    let notif = b.check(64);
    println!("VNBENCH notif {group} {} {notif:.4}", case.name());
    let mut grp = c.benchmark_group(group);
    grp.bench_function(case.name(), |bn| bn.iter_custom(|iters| b.run(iters)));
    grp.finish();
}

// ------------------------------------------------------------------ memcpy

/// The same bytes moved with `copy_nonoverlapping` and nothing else. TX:
/// header + frame from the guest buffer into a slot, then the frame from the
/// slot to the backend's sink. RX: the frame from the backend's source into
/// a slot, then header + frame into the guest buffer.
struct Memcpy {
    slot: Placed,
    sink: Placed,
    source: Placed,
    hdr: [u8; HDR],
    size: usize,
    bufs: Vec<*mut u8>,
    dir: Dir,
}

impl Memcpy {
    fn new(case: &Case, g: &Guest) -> Memcpy {
        Memcpy {
            slot: Placed::new(vec![0u8; 2048]),
            sink: Placed::new(vec![0u8; 2048]),
            source: Placed::new(frame(case.size)),
            hdr: [0u8; HDR],
            size: case.size,
            bufs: (0..case.batch).map(|i| g.ptr(buf_addr(i))).collect(),
            dir: case.dir,
        }
    }

    /// Place the buffers as [`Device::place`] does: the frame in the slot
    /// at `staging` bytes into a page (TX copies the header in ahead of
    /// it), the sink and the source at `io`.
    fn place(&mut self, staging: usize, io: usize) {
        let slot = match self.dir {
            Dir::Tx => header_ahead(staging),
            Dir::Rx => staging,
        };
        self.slot.place(slot);
        self.sink.place(io);
        self.source.place(io);
    }

    /// One timed round: the batch's copies.
    fn round(&mut self) -> Duration {
        let size = self.size;
        let slot = self.slot.get_mut().as_mut_ptr();
        let sink = self.sink.get_mut().as_mut_ptr();
        let source = self.source.get().as_ptr();
        let t = Instant::now();
        for &b in &self.bufs {
            // SAFETY: `b` points at a 2 KiB frame buffer inside the guest
            // mapping (`Guest::ptr` checked it); `slot` and `sink` point at
            // 2 KiB host buffers and `source` at `size` bytes, with
            // `HDR + size <= 2048`; nothing else accesses these bytes during
            // the copies.
            unsafe {
                match self.dir {
                    Dir::Tx => {
                        std::ptr::copy_nonoverlapping(b, slot, HDR + size);
                        std::ptr::copy_nonoverlapping(slot.add(HDR), sink, size);
                    }
                    Dir::Rx => {
                        std::ptr::copy_nonoverlapping(source, slot, size);
                        std::ptr::copy_nonoverlapping(self.hdr.as_ptr(), b, HDR);
                        std::ptr::copy_nonoverlapping(slot, b.add(HDR), size);
                    }
                }
            }
            black_box(slot);
            black_box(sink);
        }
        t.elapsed()
    }
}

fn bench_memcpy(c: &mut Criterion, case: &Case, g: &Guest) {
    let mut m = Memcpy::new(case, g);
    let mut times = Vec::new();
    let mut grp = c.benchmark_group("memcpy");
    grp.bench_function(case.memcpy_name(), |bn| {
        bn.iter_custom(|iters| {
            times.clear();
            times.extend((0..iters).map(|_| m.round()));
            typical(&mut times, iters)
        })
    });
    grp.finish();
}

/// What an empty timed section costs (two `Instant` reads), per round.
fn bench_timer(c: &mut Criterion) {
    let mut grp = c.benchmark_group("timer");
    grp.bench_function("empty", |bn| {
        let mut times = Vec::new();
        bn.iter_custom(|iters| {
            times.clear();
            times.extend((0..iters).map(|_| {
                let t = Instant::now();
                black_box(());
                t.elapsed()
            }));
            typical(&mut times, iters)
        })
    });
    grp.finish();
}

// -------------------------------------------------------------- footprint

fn footprint() {
    type Dev = NetDevice<'static, CopyBackend>;
    type BigDev = NetDevice<'static, CopyBackend, NoInterceptor, 65550, 256>;
    let dev = std::mem::size_of::<Dev>();
    let pool = std::mem::size_of::<FramePool>();
    let big_dev = std::mem::size_of::<BigDev>();
    let big_pool = std::mem::size_of::<FramePool<65550, 256>>();
    let backend = std::mem::size_of::<CopyBackend>();
    println!(
        "VNBENCH footprint default slot=1536 count=256 device={dev} pool={pool} total={} backend_in_device={backend}",
        dev + 2 * pool
    );
    println!(
        "VNBENCH footprint 64k slot=65550 count=256 device={big_dev} pool={big_pool} total={} backend_in_device={backend}",
        big_dev + 2 * big_pool
    );
}

// ------------------------------------------------------------ layout sweep

/// A numeric `VNBENCH_*` setting from the environment.
fn env_u64(key: &str) -> Option<u64> {
    std::env::var(key).ok().and_then(|v| v.parse().ok())
}

/// Layouts in the sweep (drawn at random, fixed seed).
const SWEEP_LAYOUTS: usize = 96;
/// Passes over every case and layout when `VNBENCH_PASSES` is not set;
/// each figure is the lowest of the passes. A pass takes seconds, so the
/// passes spread each layout's measurements over the stretches (seconds
/// long on this project's VM) in which a CPU runs up to 1.8x slower.
const SWEEP_PASSES: usize = 6;

/// A layout of the sweep: the guest's frame buffers shifted by `shift`
/// bytes (below their 2 KiB stride), and the backend's sink and source
/// `dist` bytes above the staging page offset, modulo 4 KiB; both
/// multiples of 16 (what an allocator aligns to).
#[derive(Clone, Copy)]
struct Layout {
    shift: u64,
    dist: usize,
}

/// [`SWEEP_LAYOUTS`] layouts from a fixed-seed xorshift.
fn sweep_layouts() -> Vec<Layout> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    (0..SWEEP_LAYOUTS)
        .map(|_| Layout {
            shift: next() % (BUF_STRIDE / 16) * 16,
            dist: (next() % 256 * 16) as usize,
        })
        .collect()
}

/// The cases of issue 8's targets: 64 B and 1514 B, batch 32, TX and RX
/// (MRG_RXBUF), each chain shape (one descriptor, two, indirect): 12.
fn sweep_cases() -> Vec<Case> {
    cases()
        .into_iter()
        .filter(|c| c.batch == 32 && c.mrg == (c.dir == Dir::Rx))
        .collect()
}

/// One measurement of a device in the sweep: ns per packet (median round
/// of `rounds`, after a quarter as many untimed), with its host buffers
/// placed for `staging` (learnt from the device when `None`) and `io_dist`,
/// and where it staged frames (page offset) while timed.
fn sweep_device<D: Device>(
    g: &Guest,
    case: Case,
    make: impl FnOnce(&Guest, Case, virtnet::queue::QueueLayout) -> D,
    staging: Option<usize>,
    io_dist: usize,
    rounds: u64,
) -> (f64, usize) {
    let drv = Driver::new(g, case);
    let dev = make(g, case, drv.drv.layout);
    let mut b = Bench::new(g, drv, dev, case.batch);
    b.check(4);
    let staging = staging.unwrap_or_else(|| page_off(b.dev.staged()));
    b.dev.place(staging, (staging + io_dist) % 4096);
    b.check(rounds / 4);
    let per_round = b.run(rounds).as_secs_f64() * 1e9 / rounds as f64;
    (per_round / f64::from(case.batch), page_off(b.dev.staged()))
}

/// The memcpy baseline, placed like the devices.
fn sweep_memcpy(g: &Guest, case: Case, staging: usize, io_dist: usize, rounds: u64) -> f64 {
    let mut m = Memcpy::new(&case, g);
    m.place(staging, (staging + io_dist) % 4096);
    for _ in 0..rounds / 4 {
        m.round();
    }
    let mut times: Vec<Duration> = (0..rounds).map(|_| m.round()).collect();
    let per_round = typical(&mut times, 1).as_secs_f64() * 1e9;
    per_round / f64::from(case.batch)
}

/// `VNBENCH_LAYOUTS=1 [VNBENCH_ROUNDS=n] [VNBENCH_PASSES=n]`: the layout
/// sweep. Where buffers land decides whether a copy's loads alias earlier
/// stores 4 KiB apart, which moves a figure by up to 10 ns at 1514 B;
/// criterion's figures come from whatever layout the build and the
/// allocator gave (virtnet's pool slot is a `static`, so every build moves
/// it). Here every implementation stages frames at the same page offset
/// (virtnet's pool slot; rust-vmm's buffer and memcpy's slot are moved
/// there), and each of [`SWEEP_LAYOUTS`] random layouts shifts the guest's
/// frame buffers and places the backend's sink and source relative to that
/// page offset: together they cover the offsets between the three buffers
/// each frame is copied through. Prints one line per layout,
/// `VNBENCH layout <case> <shift>:<distance> <virtnet> <rust-vmm>
/// <memcpy>` (ns per packet, the lowest of `VNBENCH_PASSES` passes, default
/// [`SWEEP_PASSES`]), and one per case, `VNBENCH staging <case> <page
/// offset> <moved>` (`moved`: how many virtnet measurements staged frames
/// elsewhere, which should be 0).
fn layouts(g: &Guest) {
    let rounds = env_u64("VNBENCH_ROUNDS").unwrap_or(1000).max(1);
    let passes = env_u64("VNBENCH_PASSES").map_or(SWEEP_PASSES, |p| p.max(1) as usize);
    let cases = sweep_cases();
    let layouts = sweep_layouts();
    let staging: Vec<usize> = cases
        .iter()
        .map(|&c| sweep_device(g, c, Virtnet::new, None, 0, rounds / 4).1)
        .collect();
    let mut moved = vec![0u32; cases.len()];
    let mut best = vec![vec![[f64::MAX; 3]; layouts.len()]; cases.len()];
    for _ in 0..passes {
        for (ci, &case) in cases.iter().enumerate() {
            let at = staging[ci];
            for (li, l) in layouts.iter().enumerate() {
                BUF_SHIFT.store(l.shift, Relaxed);
                let (v, seen) = sweep_device(g, case, Virtnet::new, Some(at), l.dist, rounds);
                if seen != at {
                    moved[ci] += 1;
                }
                let (r, _) = sweep_device(g, case, RustVmm::new, Some(at), l.dist, rounds);
                let m = sweep_memcpy(g, case, at, l.dist, rounds);
                let b = &mut best[ci][li];
                for (old, new) in b.iter_mut().zip([v, r, m]) {
                    *old = old.min(new);
                }
            }
        }
    }
    BUF_SHIFT.store(0, Relaxed);
    println!("VNBENCH sweep layouts={SWEEP_LAYOUTS} passes={passes} rounds={rounds}");
    for (ci, case) in cases.iter().enumerate() {
        let name = case.name();
        for (li, l) in layouts.iter().enumerate() {
            let [v, r, m] = best[ci][li];
            println!(
                "VNBENCH layout {name} {}:{} {v:.2} {r:.2} {m:.2}",
                l.shift, l.dist
            );
        }
        println!("VNBENCH staging {name} {} {}", staging[ci], moved[ci]);
    }
}

/// `VNBENCH_PROFILE=<impl>/<case> [VNBENCH_ROUNDS=n]`: run one case's rounds
/// without criterion (for `perf record` / `perf stat`) and print the median
/// round.
fn profile(which: &str, g: &Guest) {
    let rounds = env_u64("VNBENCH_ROUNDS").unwrap_or(200_000);
    let (imp, name) = which
        .split_once('/')
        .expect("VNBENCH_PROFILE=<impl>/<case>");
    let case = cases()
        .into_iter()
        .find(|c| c.name() == name)
        .expect("no such case");
    let drv = Driver::new(g, case);
    let layout = drv.drv.layout;
    let median = |times: &mut Vec<Duration>| {
        times.sort();
        times[times.len() / 2].as_secs_f64() * 1e9 / f64::from(case.batch)
    };
    let mut times = match imp {
        "virtnet" => profile_rounds(g, drv, Virtnet::new(g, case, layout), case, rounds),
        "rust-vmm" => profile_rounds(g, drv, RustVmm::new(g, case, layout), case, rounds),
        _ => panic!("impl is virtnet or rust-vmm"),
    };
    println!(
        "{which}: {:.1} ns/pkt (median of {rounds} rounds)",
        median(&mut times)
    );
}

/// `rounds` timed rounds of one device, for [`profile`].
fn profile_rounds<D: Device>(
    g: &Guest,
    drv: Driver,
    dev: D,
    case: Case,
    rounds: u64,
) -> Vec<Duration> {
    let mut b = Bench::new(g, drv, dev, case.batch);
    (0..rounds).map(|_| b.round()).collect()
}

fn main() {
    footprint();
    let g = Guest::new();
    if let Ok(which) = std::env::var("VNBENCH_PROFILE") {
        profile(&which, &g);
        return;
    }
    if std::env::var_os("VNBENCH_LAYOUTS").is_some() {
        layouts(&g);
        return;
    }
    let mut c = Criterion::default().configure_from_args();
    bench_timer(&mut c);
    let mut memcpy_done = std::collections::HashSet::new();
    for case in cases() {
        if memcpy_done.insert(case.memcpy_name()) {
            bench_memcpy(&mut c, &case, &g);
        }
        bench_device(&mut c, "virtnet", &case, &g, Virtnet::new);
        bench_device(&mut c, "rust-vmm", &case, &g, RustVmm::new);
    }
    c.final_summary();
}
