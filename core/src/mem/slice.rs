//! A safe, slice-backed guest memory for tests and examples.

use super::{range_end, GuestAddress, GuestMemory, MemError};
use core::cell::Cell;

/// Guest memory backed by a host byte slice, starting at guest address
/// `base`. Single-threaded; no `unsafe` (bytes are `Cell<u8>`).
#[derive(Debug)]
pub struct SliceMemory<'a> {
    base: u64,
    bytes: &'a [Cell<u8>],
}

impl<'a> SliceMemory<'a> {
    /// Guest memory `[base, base + buf.len())` over `buf`.
    pub fn new(base: u64, buf: &'a mut [u8]) -> Self {
        SliceMemory {
            base,
            bytes: Cell::from_mut(buf).as_slice_of_cells(),
        }
    }

    /// The cells of `[addr, addr+len)`, if inside.
    fn cells(&self, addr: GuestAddress, len: usize) -> Result<&'a [Cell<u8>], MemError> {
        let len64 = len as u64;
        range_end(addr.0, len64)?;
        let err = MemError::OutOfRange {
            addr: addr.0,
            len: len64,
        };
        let start = addr.0.checked_sub(self.base).ok_or(err)?;
        let start = usize::try_from(start).map_err(|_| err)?;
        let end = start.checked_add(len).ok_or(err)?;
        self.bytes.get(start..end).ok_or(err)
    }
}

impl GuestMemory for SliceMemory<'_> {
    fn read(&self, addr: GuestAddress, dst: &mut [u8]) -> Result<(), MemError> {
        let cells = self.cells(addr, dst.len())?;
        for (d, c) in dst.iter_mut().zip(cells) {
            *d = c.get();
        }
        Ok(())
    }

    fn write(&self, addr: GuestAddress, src: &[u8]) -> Result<(), MemError> {
        let cells = self.cells(addr, src.len())?;
        for (s, c) in src.iter().zip(cells) {
            c.set(*s);
        }
        Ok(())
    }

    fn check_range(&self, addr: GuestAddress, len: u64) -> Result<(), MemError> {
        let len = usize::try_from(len).map_err(|_| MemError::Overflow)?;
        self.cells(addr, len).map(|_| ())
    }

    fn load_u16_acquire(&self, addr: GuestAddress) -> Result<u16, MemError> {
        if addr.0 % 2 != 0 {
            return Err(MemError::Misaligned(addr.0));
        }
        self.read_u16(addr)
    }

    fn store_u16_release(&self, addr: GuestAddress, value: u16) -> Result<(), MemError> {
        if addr.0 % 2 != 0 {
            return Err(MemError::Misaligned(addr.0));
        }
        self.write_u16(addr, value)
    }
}
