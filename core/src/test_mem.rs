//! Test-only guest memory: a heap buffer behind the production
//! `RegionMemory`, so unit tests exercise the same unsafe copy and atomic
//! code the shims use (and Miri checks it), at memcpy speed under Miri.
#![allow(unsafe_code)]

use crate::mem::{GuestAddress, GuestMemory, MemError, Region, RegionMemory};
use core::cell::RefCell;
use std::boxed::Box;
use std::collections::BTreeMap;
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
    fn hint_chain(&self, entry: GuestAddress, table: GuestAddress, size: u16, write: bool) {
        self.mem.hint_chain(entry, table, size, write)
    }
}

/// Wraps a memory, counts reads per address, logs writes in order
/// (`(addr, bytes, release store)`: to pin ordering, and silence after
/// reset), and with `flip_on_second_read` returns different bytes for any
/// range read a second time (CVE-2020-14375).
pub(crate) struct CountingMemory<'a, M: GuestMemory> {
    inner: &'a M,
    /// Reads per address.
    pub(crate) reads: RefCell<BTreeMap<u64, usize>>,
    /// Return flipped bytes for a range read again.
    pub(crate) flip_on_second_read: bool,
    /// The writes, in order.
    pub(crate) writes: RefCell<Vec<(u64, Vec<u8>, bool)>>,
}

impl<'a, M: GuestMemory> CountingMemory<'a, M> {
    pub(crate) fn new(inner: &'a M) -> Self {
        CountingMemory {
            inner,
            reads: RefCell::new(BTreeMap::new()),
            flip_on_second_read: false,
            writes: RefCell::new(Vec::new()),
        }
    }
    pub(crate) fn total_reads(&self) -> usize {
        self.reads.borrow().values().sum()
    }
}

impl<M: GuestMemory> GuestMemory for CountingMemory<'_, M> {
    fn read(&self, a: GuestAddress, d: &mut [u8]) -> Result<(), MemError> {
        let n = {
            let mut r = self.reads.borrow_mut();
            let n = r.entry(a.0).or_insert(0);
            *n += 1;
            *n
        };
        self.inner.read(a, d)?;
        if self.flip_on_second_read && n > 1 {
            for b in d.iter_mut() {
                *b ^= 0xff;
            }
        }
        Ok(())
    }
    fn write(&self, a: GuestAddress, s: &[u8]) -> Result<(), MemError> {
        self.writes.borrow_mut().push((a.0, s.to_vec(), false));
        self.inner.write(a, s)
    }
    fn check_range(&self, a: GuestAddress, len: u64) -> Result<(), MemError> {
        self.inner.check_range(a, len)
    }
    fn load_u16_acquire(&self, a: GuestAddress) -> Result<u16, MemError> {
        *self.reads.borrow_mut().entry(a.0).or_insert(0) += 1;
        self.inner.load_u16_acquire(a)
    }
    fn store_u16_release(&self, a: GuestAddress, v: u16) -> Result<(), MemError> {
        self.writes
            .borrow_mut()
            .push((a.0, v.to_le_bytes().to_vec(), true));
        self.inner.store_u16_release(a, v)
    }
}
