//! The independent `virtio-drivers` crate's network driver drives virtnet
//! through the virtio-mmio register block, exactly as a guest would: every
//! `Transport` call becomes register reads and writes on `MmioTransport`,
//! and the driver's DMA memory (`Hal`) is carved out of the same guest
//! memory the device sees through `RegionMemory`.
//!
//! Pins I-NET-1 (frames cross intact both ways), I-MMIO-1 (the register
//! protocol a real driver uses), I-QUEUE-8 (notifications with and without
//! EVENT_IDX).
#![allow(unsafe_code)]

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::ptr::NonNull;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use virtio_drivers::device::net::VirtIONet;
use virtio_drivers::transport::{DeviceStatus, DeviceType, InterruptStatus, Transport};
use virtio_drivers::{BufferDirection, Hal, PhysAddr, PAGE_SIZE};
use virtnet::device::{Backend, BackendError, NetConfig, NetDevice, NoInterceptor, RxFrame};
use virtnet::features::Features;
use virtnet::mem::{Region, RegionMemory};
use virtnet::mmio::{regs, InterruptLine, MmioTransport};
use virtnet::pool::FramePool;
use virtnet::wire::NetHdrRepr;
use zerocopy::{FromBytes, Immutable, IntoBytes};

// ------------------------------------------------------------ guest memory

const GUEST_BASE: u64 = 0x8000_0000;
const GUEST_SIZE: usize = 16 << 20;
const DMA_AREA: usize = 8 << 20; // first half: dma_alloc pages; second: bounce chunks
const CHUNK: usize = 4096;

struct Guest {
    host: usize,
    alloc: Mutex<Alloc>,
}

struct Alloc {
    next_page: usize,
    free_chunks: Vec<usize>,
}

fn guest() -> &'static Guest {
    static G: OnceLock<Guest> = OnceLock::new();
    G.get_or_init(|| {
        let layout = std::alloc::Layout::from_size_align(GUEST_SIZE, PAGE_SIZE).unwrap();
        // SAFETY: non-zero size; leaked on purpose: guest memory lives for the process.
        let host = unsafe { std::alloc::alloc_zeroed(layout) };
        assert!(!host.is_null());
        Guest {
            host: host as usize,
            alloc: Mutex::new(Alloc {
                next_page: 0,
                free_chunks: (DMA_AREA..GUEST_SIZE).step_by(CHUNK).collect(),
            }),
        }
    })
}

fn guest_memory() -> RegionMemory<1> {
    let g = guest();
    let mut m = RegionMemory::new();
    // SAFETY: the mapping is leaked (lives forever); the driver side touches it
    // only through raw pointers, never references held across device calls.
    unsafe {
        m.add(Region::new(GUEST_BASE, g.host as *mut u8, GUEST_SIZE).unwrap())
            .unwrap()
    };
    m
}

fn reset_allocator() {
    let mut a = guest().alloc.lock().unwrap();
    a.next_page = 0;
    a.free_chunks = (DMA_AREA..GUEST_SIZE).step_by(CHUNK).collect();
}

struct TestHal;

// SAFETY: dma_alloc returns zeroed, page-aligned, unaliased pages of guest memory
// (bump allocation, never handed out twice until reset between tests); share
// returns the guest address of a bounce chunk holding a copy of the buffer,
// and unshare copies it back.
unsafe impl Hal for TestHal {
    fn dma_alloc(pages: usize, _direction: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        let g = guest();
        let mut a = g.alloc.lock().unwrap();
        let off = a.next_page;
        a.next_page += pages * PAGE_SIZE;
        assert!(a.next_page <= DMA_AREA, "guest DMA area exhausted");
        let ptr = (g.host + off) as *mut u8;
        // SAFETY: inside the guest allocation, just reserved.
        unsafe { ptr.write_bytes(0, pages * PAGE_SIZE) };
        (GUEST_BASE + off as u64, NonNull::new(ptr).unwrap())
    }

    unsafe fn dma_dealloc(_paddr: PhysAddr, _vaddr: NonNull<u8>, _pages: usize) -> i32 {
        0
    }

    unsafe fn mmio_phys_to_virt(_paddr: PhysAddr, _size: usize) -> NonNull<u8> {
        unreachable!("the test transport does not map MMIO")
    }

    unsafe fn share(buffer: NonNull<[u8]>, direction: BufferDirection) -> PhysAddr {
        let g = guest();
        let len = buffer.len();
        assert!(len <= CHUNK);
        let off = g
            .alloc
            .lock()
            .unwrap()
            .free_chunks
            .pop()
            .expect("bounce chunks");
        let dst = (g.host + off) as *mut u8;
        // SAFETY: `buffer` is valid for reads (the caller's contract); `dst` is a
        // free chunk inside guest memory; they do not overlap.
        unsafe {
            if direction != BufferDirection::DeviceToDriver {
                std::ptr::copy_nonoverlapping(buffer.as_ptr() as *const u8, dst, len);
            } else {
                dst.write_bytes(0, len);
            }
        }
        GUEST_BASE + off as u64
    }

    unsafe fn unshare(paddr: PhysAddr, buffer: NonNull<[u8]>, direction: BufferDirection) {
        let g = guest();
        let off = (paddr - GUEST_BASE) as usize;
        if direction != BufferDirection::DriverToDevice {
            // SAFETY: the chunk was handed out by `share` for this buffer.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    (g.host + off) as *const u8,
                    buffer.as_ptr() as *mut u8,
                    buffer.len(),
                )
            };
        }
        g.alloc.lock().unwrap().free_chunks.push(off);
    }
}

// ------------------------------------------------------------ backend

#[derive(Default)]
struct QueueBackend {
    sent: VecDeque<Vec<u8>>,
    to_guest: VecDeque<Vec<u8>>,
}

impl Backend for QueueBackend {
    fn transmit(&mut self, hdr: &NetHdrRepr, frame: &[u8]) -> Result<(), BackendError> {
        assert_eq!(*hdr, NetHdrRepr::default(), "no offloads were negotiated");
        self.sent.push_back(frame.to_vec());
        Ok(())
    }
    fn receive(&mut self, buf: &mut [u8]) -> Result<Option<RxFrame>, BackendError> {
        let Some(f) = self.to_guest.pop_front() else {
            return Ok(None);
        };
        buf[..f.len()].copy_from_slice(&f);
        Ok(Some(RxFrame {
            len: f.len(),
            hdr: NetHdrRepr::default(),
        }))
    }
}

// ------------------------------------------------------------ transport

static RX_POOL: FramePool = FramePool::new();
static TX_POOL: FramePool = FramePool::new();

type Dev = NetDevice<'static, QueueBackend, NoInterceptor>;

#[derive(Default)]
struct CountingLine {
    raised: Cell<u64>,
}

impl InterruptLine for &CountingLine {
    fn raise(&mut self) {
        self.raised.set(self.raised.get() + 1);
    }
}

struct Shared {
    mmio: RefCell<MmioTransport<Dev>>,
    mem: RegionMemory<1>,
    line: CountingLine,
    accesses: Cell<u64>,
}

/// virtio-drivers' `Transport`, implemented as register accesses on the
/// virtio-mmio block (the same sequence its own MmioTransport performs).
struct RegTransport<'a>(&'a Shared);

impl RegTransport<'_> {
    fn r(&self, off: u64) -> u32 {
        self.0.accesses.set(self.0.accesses.get() + 1);
        self.0.mmio.borrow().read(off, 4) as u32
    }
    fn w(&self, off: u64, v: u32) {
        self.0.accesses.set(self.0.accesses.get() + 1);
        let mut line = &self.0.line;
        self.0
            .mmio
            .borrow_mut()
            .write(off, 4, u64::from(v), &self.0.mem, &mut line);
    }
}

impl Transport for RegTransport<'_> {
    fn device_type(&self) -> DeviceType {
        assert_eq!(self.r(regs::MAGIC_VALUE), 0x7472_6976);
        assert_eq!(self.r(regs::VERSION), 2);
        DeviceType::try_from(self.r(regs::DEVICE_ID)).unwrap()
    }
    fn read_device_features(&mut self) -> u64 {
        self.w(regs::DEVICE_FEATURES_SEL, 0);
        let lo = self.r(regs::DEVICE_FEATURES);
        self.w(regs::DEVICE_FEATURES_SEL, 1);
        let hi = self.r(regs::DEVICE_FEATURES);
        u64::from(lo) | (u64::from(hi) << 32)
    }
    fn write_driver_features(&mut self, f: u64) {
        self.w(regs::DRIVER_FEATURES_SEL, 0);
        self.w(regs::DRIVER_FEATURES, f as u32);
        self.w(regs::DRIVER_FEATURES_SEL, 1);
        self.w(regs::DRIVER_FEATURES, (f >> 32) as u32);
    }
    fn max_queue_size(&mut self, queue: u16) -> u32 {
        self.w(regs::QUEUE_SEL, queue.into());
        self.r(regs::QUEUE_NUM_MAX)
    }
    fn notify(&mut self, queue: u16) {
        self.w(regs::QUEUE_NOTIFY, queue.into());
    }
    fn get_status(&self) -> DeviceStatus {
        DeviceStatus::from_bits_truncate(self.r(regs::STATUS))
    }
    fn set_status(&mut self, status: DeviceStatus) {
        self.w(regs::STATUS, status.bits());
    }
    fn set_guest_page_size(&mut self, _guest_page_size: u32) {}
    fn requires_legacy_layout(&self) -> bool {
        false
    }
    fn queue_set(
        &mut self,
        queue: u16,
        size: u32,
        desc: PhysAddr,
        driver: PhysAddr,
        device: PhysAddr,
    ) {
        self.w(regs::QUEUE_SEL, queue.into());
        self.w(regs::QUEUE_NUM, size);
        self.w(regs::QUEUE_DESC_LOW, desc as u32);
        self.w(regs::QUEUE_DESC_HIGH, (desc >> 32) as u32);
        self.w(regs::QUEUE_DRIVER_LOW, driver as u32);
        self.w(regs::QUEUE_DRIVER_HIGH, (driver >> 32) as u32);
        self.w(regs::QUEUE_DEVICE_LOW, device as u32);
        self.w(regs::QUEUE_DEVICE_HIGH, (device >> 32) as u32);
        self.w(regs::QUEUE_READY, 1);
        assert_eq!(self.r(regs::QUEUE_READY), 1, "queue {queue} refused");
    }
    fn queue_unset(&mut self, queue: u16) {
        self.w(regs::QUEUE_SEL, queue.into());
        self.w(regs::QUEUE_READY, 0);
        assert_eq!(self.r(regs::QUEUE_READY), 0);
    }
    fn queue_used(&mut self, queue: u16) -> bool {
        self.w(regs::QUEUE_SEL, queue.into());
        self.r(regs::QUEUE_READY) != 0
    }
    fn ack_interrupt(&mut self) -> InterruptStatus {
        let s = self.r(regs::INTERRUPT_STATUS);
        if s != 0 {
            self.w(regs::INTERRUPT_ACK, s);
        }
        InterruptStatus::from_bits_truncate(s)
    }
    fn read_config_generation(&self) -> u32 {
        self.r(regs::CONFIG_GENERATION)
    }
    fn read_config_space<T: FromBytes + IntoBytes>(
        &self,
        offset: usize,
    ) -> virtio_drivers::Result<T> {
        let mut v = T::new_zeroed();
        for (i, b) in v.as_mut_bytes().iter_mut().enumerate() {
            self.0.accesses.set(self.0.accesses.get() + 1);
            *b = self
                .0
                .mmio
                .borrow()
                .read(regs::CONFIG + (offset + i) as u64, 1) as u8;
        }
        Ok(v)
    }
    fn write_config_space<T: IntoBytes + Immutable>(
        &mut self,
        _offset: usize,
        _value: T,
    ) -> virtio_drivers::Result<()> {
        Err(virtio_drivers::Error::Unsupported)
    }
}

// ------------------------------------------------------------ the exchange

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next() as usize) % (hi - lo + 1)
    }
    fn frame(&mut self, seq: u64) -> Vec<u8> {
        let len = self.range(60, 1514);
        let mut f: Vec<u8> = (0..len).map(|_| self.next() as u8).collect();
        f[..8].copy_from_slice(&seq.to_le_bytes());
        f
    }
}

fn lock() -> MutexGuard<'static, ()> {
    static L: Mutex<()> = Mutex::new(());
    L.lock().unwrap_or_else(|e| e.into_inner())
}

const FRAMES: u64 = 10_000;
const QUEUE: usize = 64;

fn exchange(event_idx: bool, seed: u64) {
    let _g = lock();
    reset_allocator();
    // A watchdog: a driver that waits for a used buffer that never comes
    // spins forever; fail instead of hanging CI.
    std::thread::spawn(|| {
        std::thread::sleep(Duration::from_secs(300));
        eprintln!("virtio-drivers exchange hung for 300 s");
        std::process::exit(101);
    });
    let mut offer = NetConfig::default().offer;
    offer.set(Features::RING_EVENT_IDX, event_idx);
    let cfg = NetConfig {
        mac: Some([0x52, 0x54, 0, 0x12, 0x34, 0x56]),
        offer,
        ..NetConfig::default()
    };
    let dev: Dev = NetDevice::new(
        cfg,
        QueueBackend::default(),
        NoInterceptor,
        &RX_POOL,
        &TX_POOL,
    );
    let shared = Shared {
        mmio: RefCell::new(MmioTransport::new(dev)),
        mem: guest_memory(),
        line: CountingLine::default(),
        accesses: Cell::new(0),
    };
    let mut net =
        VirtIONet::<TestHal, _, QUEUE>::new(RegTransport(&shared), 2048).expect("driver init");
    assert_eq!(net.mac_address(), [0x52, 0x54, 0, 0x12, 0x34, 0x56]);
    let negotiated = shared.mmio.borrow().device().negotiated_features();
    assert_eq!(negotiated.contains(Features::RING_EVENT_IDX), event_idx);
    assert!(negotiated.contains(Features::RING_INDIRECT_DESC | Features::VERSION_1));

    let mut rng = Rng(seed);
    let started = Instant::now();
    let (mut tx_bytes, mut rx_bytes) = (0usize, 0usize);
    let mut seq = 0u64;
    let mut rx_seq = 0u64;
    while seq < FRAMES {
        // Guest -> host: a burst of sends.
        let burst = rng.range(1, 8) as u64;
        for _ in 0..burst.min(FRAMES - seq) {
            let f = rng.frame(seq);
            let mut buf = net.new_tx_buffer(f.len());
            buf.packet_mut().copy_from_slice(&f);
            net.send(buf).expect("send");
            let got = shared
                .mmio
                .borrow_mut()
                .device_mut()
                .backend_mut()
                .sent
                .pop_front();
            assert_eq!(
                got.as_deref(),
                Some(&f[..]),
                "TX frame {seq} corrupted or lost"
            );
            tx_bytes += f.len();
            seq += 1;
        }
        // Host -> guest: a burst the device delivers on poll.
        let burst = rng.range(1, 8) as u64;
        let mut expect = VecDeque::new();
        for _ in 0..burst.min(FRAMES - rx_seq) {
            let f = rng.frame(rx_seq + (1 << 32));
            shared
                .mmio
                .borrow_mut()
                .device_mut()
                .backend_mut()
                .to_guest
                .push_back(f.clone());
            expect.push_back(f);
            rx_seq += 1;
        }
        {
            let mut line = &shared.line;
            shared.mmio.borrow_mut().poll(&shared.mem, &mut line);
        }
        net.ack_interrupt();
        while let Some(want) = expect.pop_front() {
            let rx = net.receive().expect("a delivered frame");
            assert_eq!(rx.packet(), &want[..], "RX frame corrupted");
            rx_bytes += want.len();
            net.recycle_rx_buffer(rx).expect("recycle");
        }
        assert!(net.receive().is_err(), "no extra frames");
    }
    while rx_seq < FRAMES {
        let f = rng.frame(rx_seq + (1 << 32));
        shared
            .mmio
            .borrow_mut()
            .device_mut()
            .backend_mut()
            .to_guest
            .push_back(f.clone());
        rx_seq += 1;
        let mut line = &shared.line;
        shared.mmio.borrow_mut().poll(&shared.mem, &mut line);
        let rx = net.receive().expect("a delivered frame");
        assert_eq!(rx.packet(), &f[..]);
        rx_bytes += f.len();
        net.recycle_rx_buffer(rx).expect("recycle");
    }
    let stats = *shared.mmio.borrow().device().stats();
    eprintln!(
        "virtio-drivers, event_idx={event_idx}: {FRAMES} frames each way ({tx_bytes} B tx, {rx_bytes} B rx) in {:?}; \
         {} interrupts, {} register accesses; {stats}",
        started.elapsed(),
        shared.line.raised.get(),
        shared.accesses.get()
    );
    assert_eq!(stats.tx_packets, FRAMES);
    assert_eq!(stats.rx_packets, FRAMES);
    assert_eq!(stats.tx_dropped() + stats.rx_dropped(), 0);
    assert_eq!(stats.queue_errors, 0);
    assert!(
        shared.line.raised.get() > 0,
        "the device raised its interrupt"
    );
    drop(net); // the driver unsets its queues
    {
        let mut t = RegTransport(&shared);
        assert!(!t.queue_used(0) && !t.queue_used(1), "queues unset");
        t.set_status(DeviceStatus::empty()); // reset
        assert_eq!(t.get_status(), DeviceStatus::empty());
    }
    assert!(shared.mmio.borrow().device().queue(0).is_none());
    assert_eq!(RX_POOL.available(), RX_POOL.capacity(), "no RX slot leaked");
    assert_eq!(TX_POOL.available(), TX_POOL.capacity(), "no TX slot leaked");
}

#[test]
fn virtio_drivers_exchanges_10k_frames_each_way_with_event_idx() {
    exchange(true, 0x1234_5678_9abc_def1);
}

#[test]
fn virtio_drivers_exchanges_10k_frames_each_way_without_event_idx() {
    exchange(false, 0x0fed_cba9_8765_4321);
}
