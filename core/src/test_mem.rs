//! Test-only guest memory: a heap buffer behind the production
//! `RegionMemory`, so unit tests exercise the same unsafe copy and atomic
//! code the shims use (and Miri checks it), at memcpy speed under Miri.
#![allow(unsafe_code)]

use crate::mem::{GuestAddress, GuestMemory, MemError, Region, RegionMemory};
use std::boxed::Box;
use std::vec;
use std::vec::Vec;

/// `len` zeroed bytes of guest memory at guest address `base`.
pub(crate) struct TestMemory {
    host: *mut [u64],
    mem: RegionMemory<1>,
}

impl TestMemory {
    pub(crate) fn new(base: u64, len: usize) -> TestMemory {
        // u64 elements: the host base is 8-aligned like a real mapping.
        let host = Box::into_raw(vec![0u64; len.div_ceil(8)].into_boxed_slice());
        let mut mem = RegionMemory::new();
        // SAFETY: `host` is a live heap allocation of `len` bytes owned by this
        // TestMemory until `drop`, after `mem` is no longer used; nothing else
        // references it (it is only reached through `mem`).
        let region = unsafe { Region::new(base, host.cast::<u8>(), len) };
        mem.add(region.expect("test region")).expect("one region");
        TestMemory { host, mem }
    }

    /// A copy of `[addr, addr + len)`.
    pub(crate) fn bytes(&self, addr: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        self.mem
            .read(GuestAddress(addr), &mut v)
            .expect("inside test memory");
        v
    }
}

impl Drop for TestMemory {
    fn drop(&mut self) {
        self.mem.clear();
        // SAFETY: `host` came from `Box::into_raw` in `new` and is freed once.
        drop(unsafe { Box::from_raw(self.host) });
    }
}

impl GuestMemory for TestMemory {
    fn read(&self, a: GuestAddress, d: &mut [u8]) -> Result<(), MemError> {
        self.mem.read(a, d)
    }
    fn write(&self, a: GuestAddress, s: &[u8]) -> Result<(), MemError> {
        self.mem.write(a, s)
    }
    fn check_range(&self, a: GuestAddress, len: u64) -> Result<(), MemError> {
        self.mem.check_range(a, len)
    }
    fn load_u16_acquire(&self, a: GuestAddress) -> Result<u16, MemError> {
        self.mem.load_u16_acquire(a)
    }
    fn store_u16_release(&self, a: GuestAddress, v: u16) -> Result<(), MemError> {
        self.mem.store_u16_release(a, v)
    }
    fn prefetch(&self, a: GuestAddress) {
        self.mem.prefetch(a)
    }
    fn prefetch_for_write(&self, a: GuestAddress) {
        self.mem.prefetch_for_write(a)
    }
}
