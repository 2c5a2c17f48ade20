//! The driver side's platform glue for virtio-drivers: its `Hal` (DMA pages
//! and buffer sharing over the guest RAM) and, for the direct (EL1) path, a
//! `Transport` that turns each call into register accesses on the device's
//! virtio-mmio block (a port of `tests/interop/tests/virtio_drivers_mmio.rs`).
//! On the trapped path the driver uses virtio-drivers' own
//! `transport::mmio::MmioTransport` instead, whose loads and stores trap.

use core::ptr::NonNull;
use core::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

use virtio_drivers::transport::{DeviceStatus, DeviceType, InterruptStatus, Transport};
use virtio_drivers::{BufferDirection, Hal, PhysAddr, PAGE_SIZE};
use virtnet::mmio::regs;
use zerocopy::{FromBytes, Immutable, IntoBytes};

use crate::{guest, vio};

/// Next free byte of the DMA page area (offset from `guest::DMA`).
static DMA_NEXT: AtomicUsize = AtomicUsize::new(0);
/// Bit n set: bounce chunk n is in use.
static CHUNKS_USED: AtomicU32 = AtomicU32::new(0);
/// Buffers shared in place (they lie in the guest RAM: the heap).
pub static SHARED_DIRECT: AtomicU64 = AtomicU64::new(0);
/// Buffers shared through a bounce chunk (they lie outside the guest RAM:
/// the stack).
pub static SHARED_BOUNCED: AtomicU64 = AtomicU64::new(0);

/// Forgets all DMA pages and bounce chunks: call before creating a driver
/// when no other driver exists.
pub fn reset_dma() {
    DMA_NEXT.store(0, Ordering::SeqCst);
    CHUNKS_USED.store(0, Ordering::SeqCst);
}

/// virtio-drivers' HAL for the image: MMU off, so physical = virtual.
pub struct ImageHal;

// SAFETY: `dma_alloc` returns zeroed, page-aligned pages of the guest RAM,
// each handed out once (bump allocation, reset only between drivers);
// `share` returns the guest-physical address of the buffer itself when it
// lies in the guest RAM (identity map), else of a bounce chunk holding a
// copy, used by one buffer at a time; `unshare` copies a bounce chunk back
// for device-writable buffers and frees it.
unsafe impl Hal for ImageHal {
    fn dma_alloc(pages: usize, _direction: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        let len = pages * PAGE_SIZE;
        let off = DMA_NEXT.fetch_add(len, Ordering::SeqCst);
        if off + len > guest::DMA_LEN {
            // virtio-drivers reports a zero address as DmaError.
            return (0, NonNull::dangling());
        }
        let p = guest::ptr(guest::DMA + off);
        // SAFETY: `[off, off + len)` lies in the DMA area and was just
        // reserved.
        unsafe { p.write_bytes(0, len) };
        (
            guest::addr(guest::DMA + off),
            NonNull::new(p).unwrap_or(NonNull::dangling()),
        )
    }

    unsafe fn dma_dealloc(_paddr: PhysAddr, _vaddr: NonNull<u8>, _pages: usize) -> i32 {
        0
    }

    unsafe fn mmio_phys_to_virt(paddr: PhysAddr, _size: usize) -> NonNull<u8> {
        NonNull::new(core::ptr::with_exposed_provenance_mut(paddr as usize))
            .unwrap_or(NonNull::dangling())
    }

    unsafe fn share(buffer: NonNull<[u8]>, direction: BufferDirection) -> PhysAddr {
        let addr = buffer.cast::<u8>().as_ptr().expose_provenance();
        let len = buffer.len();
        if guest::contains(addr, len) {
            SHARED_DIRECT.fetch_add(1, Ordering::Relaxed);
            return addr as u64;
        }
        SHARED_BOUNCED.fetch_add(1, Ordering::Relaxed);
        let Some(n) = take_chunk() else {
            panic!("bounce chunks exhausted");
        };
        assert!(len <= guest::CHUNK, "buffer larger than a bounce chunk");
        let off = guest::BOUNCE + n * guest::CHUNK;
        let dst = guest::ptr(off);
        // SAFETY: `buffer` is valid for reads of `len` bytes (the caller's
        // contract); the chunk is `CHUNK >= len` bytes of guest RAM reserved
        // for this buffer; they do not overlap (one is outside the guest
        // RAM).
        unsafe {
            if direction == BufferDirection::DeviceToDriver {
                dst.write_bytes(0, len);
            } else {
                core::ptr::copy_nonoverlapping(buffer.cast::<u8>().as_ptr(), dst, len);
            }
        }
        guest::addr(off)
    }

    unsafe fn unshare(paddr: PhysAddr, buffer: NonNull<[u8]>, direction: BufferDirection) {
        let addr = buffer.cast::<u8>().as_ptr().expose_provenance();
        if guest::contains(addr, buffer.len()) {
            return;
        }
        let off = (paddr as usize).wrapping_sub(guest::base());
        let n = (off.wrapping_sub(guest::BOUNCE)) / guest::CHUNK;
        if n >= guest::CHUNKS {
            return;
        }
        if direction != BufferDirection::DriverToDevice {
            // SAFETY: the chunk was handed out by `share` for this buffer,
            // which is valid for writes of its length (the caller's
            // contract).
            unsafe {
                core::ptr::copy_nonoverlapping(
                    guest::ptr(off),
                    buffer.cast::<u8>().as_ptr(),
                    buffer.len(),
                )
            };
        }
        CHUNKS_USED.fetch_and(!(1 << n), Ordering::SeqCst);
    }
}

fn take_chunk() -> Option<usize> {
    loop {
        let used = CHUNKS_USED.load(Ordering::SeqCst);
        let n = (!used).trailing_zeros() as usize;
        if n >= guest::CHUNKS {
            return None;
        }
        if CHUNKS_USED
            .compare_exchange(used, used | (1 << n), Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
        {
            return Some(n);
        }
    }
}

/// virtio-drivers' `Transport` as register accesses on the virtio-mmio
/// block through [`vio::read32`] / [`vio::write32`] (the same sequence its
/// own MmioTransport performs). Used on the direct path.
pub struct RegTransport;

impl Transport for RegTransport {
    fn device_type(&self) -> DeviceType {
        // Not called by the net driver; a broken block is a test failure.
        assert_eq!(vio::read32(regs::MAGIC_VALUE), virtnet::mmio::MAGIC);
        assert_eq!(vio::read32(regs::VERSION), 2);
        DeviceType::try_from(vio::read32(regs::DEVICE_ID)).expect("a known device ID")
    }
    fn read_device_features(&mut self) -> u64 {
        vio::write32(regs::DEVICE_FEATURES_SEL, 0);
        let lo = vio::read32(regs::DEVICE_FEATURES);
        vio::write32(regs::DEVICE_FEATURES_SEL, 1);
        let hi = vio::read32(regs::DEVICE_FEATURES);
        u64::from(lo) | (u64::from(hi) << 32)
    }
    fn write_driver_features(&mut self, f: u64) {
        vio::write32(regs::DRIVER_FEATURES_SEL, 0);
        vio::write32(regs::DRIVER_FEATURES, f as u32);
        vio::write32(regs::DRIVER_FEATURES_SEL, 1);
        vio::write32(regs::DRIVER_FEATURES, (f >> 32) as u32);
    }
    fn max_queue_size(&mut self, queue: u16) -> u32 {
        vio::write32(regs::QUEUE_SEL, queue.into());
        vio::read32(regs::QUEUE_NUM_MAX)
    }
    fn notify(&mut self, queue: u16) {
        vio::write32(regs::QUEUE_NOTIFY, queue.into());
    }
    fn get_status(&self) -> DeviceStatus {
        DeviceStatus::from_bits_truncate(vio::read32(regs::STATUS))
    }
    fn set_status(&mut self, status: DeviceStatus) {
        vio::write32(regs::STATUS, status.bits());
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
        vio::write32(regs::QUEUE_SEL, queue.into());
        vio::write32(regs::QUEUE_NUM, size);
        vio::write32(regs::QUEUE_DESC_LOW, desc as u32);
        vio::write32(regs::QUEUE_DESC_HIGH, (desc >> 32) as u32);
        vio::write32(regs::QUEUE_DRIVER_LOW, driver as u32);
        vio::write32(regs::QUEUE_DRIVER_HIGH, (driver >> 32) as u32);
        vio::write32(regs::QUEUE_DEVICE_LOW, device as u32);
        vio::write32(regs::QUEUE_DEVICE_HIGH, (device >> 32) as u32);
        vio::write32(regs::QUEUE_READY, 1);
    }
    fn queue_unset(&mut self, queue: u16) {
        vio::write32(regs::QUEUE_SEL, queue.into());
        vio::write32(regs::QUEUE_READY, 0);
    }
    fn queue_used(&mut self, queue: u16) -> bool {
        vio::write32(regs::QUEUE_SEL, queue.into());
        vio::read32(regs::QUEUE_READY) != 0
    }
    fn ack_interrupt(&mut self) -> InterruptStatus {
        let s = vio::read32(regs::INTERRUPT_STATUS);
        if s != 0 {
            vio::write32(regs::INTERRUPT_ACK, s);
        }
        InterruptStatus::from_bits_truncate(s)
    }
    fn read_config_generation(&self) -> u32 {
        vio::read32(regs::CONFIG_GENERATION)
    }
    fn read_config_space<T: FromBytes + IntoBytes>(
        &self,
        offset: usize,
    ) -> virtio_drivers::Result<T> {
        let mut v = T::new_zeroed();
        for (i, b) in v.as_mut_bytes().iter_mut().enumerate() {
            *b = vio::read8(regs::CONFIG + (offset + i) as u64);
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
