//! Guest memory from a vhost-user memory table.
//!
//! The frontend sends one file descriptor per region (`SET_MEM_TABLE`). Each
//! is mapped `MAP_SHARED` from file offset 0 for `mmap_offset + memory_size`
//! bytes (as libvhost-user and DPDK do, so an unaligned `mmap_offset` works),
//! and the region's guest-physical range is described to the core as a
//! [`virtnet::mem::Region`] starting `mmap_offset` bytes into the mapping.
//!
//! Before mapping, the file must be a regular file (memfd, shm, hugetlbfs)
//! at least `mmap_offset + memory_size` bytes long: mapping past the end of a
//! file succeeds but the first access would kill the process with `SIGBUS`
//! (I-HOST-2). A frontend that *shrinks* the file after sending it can still
//! do that; the frontend (the VMM) is trusted not to, as by every vhost-user
//! backend (spec 08, "Trust").
//!
//! The table also translates the frontend's ring addresses, which
//! `SET_VRING_ADDR` gives in the frontend's *user* address space, into
//! guest-physical addresses ([`GuestMemoryMap::user_to_gpa`]).

use std::fmt;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::ptr::NonNull;

use virtnet::mem::{GuestAddress, GuestMemory, MemError, Region, RegionError, RegionMemory};

/// Most regions one memory table may hold (the vhost-user message carries
/// at most 32 file descriptors).
pub const MAX_REGIONS: usize = 32;

/// One region of a vhost-user memory table, as the frontend described it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableEntry {
    /// First guest-physical address.
    pub guest_phys_addr: u64,
    /// Length in bytes.
    pub memory_size: u64,
    /// Where the frontend has the region in its own address space.
    pub user_addr: u64,
    /// Offset of the region in the file.
    pub mmap_offset: u64,
}

/// Why a memory table was refused.
#[derive(Debug)]
#[non_exhaustive]
pub enum MemoryError {
    /// Not one file per region, no region, or more than [`MAX_REGIONS`].
    RegionCount,
    /// A region of length 0, or whose addresses wrap.
    BadRegion(usize),
    /// `fstat` on the region's file failed.
    Stat(usize, std::io::Error),
    /// The region's file is not a regular file (memfd, shm, hugetlbfs).
    NotAFile(usize),
    /// The file is shorter than `mmap_offset + memory_size`.
    FileTooSmall {
        /// Region index in the table.
        region: usize,
        /// Bytes the region needs.
        needed: u64,
        /// Bytes the file has.
        size: u64,
    },
    /// `mmap` failed.
    Map(usize, std::io::Error),
    /// The core refused the region (overlap, too large).
    Region(usize, RegionError),
}

impl fmt::Display for MemoryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MemoryError::RegionCount => write!(
                f,
                "memory table needs 1..={MAX_REGIONS} regions, one file each"
            ),
            MemoryError::BadRegion(i) => write!(f, "memory region {i} is empty or wraps"),
            MemoryError::Stat(i, e) => write!(f, "memory region {i}: fstat failed: {e}"),
            MemoryError::NotAFile(i) => {
                write!(f, "memory region {i}: the fd is not a regular file")
            }
            MemoryError::FileTooSmall {
                region,
                needed,
                size,
            } => write!(
                f,
                "memory region {region}: needs {needed} bytes, its file has {size}"
            ),
            MemoryError::Map(i, e) => write!(f, "memory region {i}: mmap failed: {e}"),
            MemoryError::Region(i, e) => write!(f, "memory region {i}: {e}"),
        }
    }
}

impl std::error::Error for MemoryError {}

/// One `mmap` of a region file, unmapped on drop.
struct Mapping {
    base: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain shared memory owned by this value; it is only
// unmapped by `Drop`, which needs `&mut self`, so moving the owner to another
// thread cannot race with an unmap.
unsafe impl Send for Mapping {}
// SAFETY: `&Mapping` gives no access to the bytes (only `GuestMemoryMap`
// does, through copies and atomics).
unsafe impl Sync for Mapping {}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `base`/`len` are exactly what a successful `mmap` returned
        // and nothing else unmaps it; every `Region` describing it lives in
        // the `GuestMemoryMap` that owns this mapping and is dropped first.
        let rc = unsafe { libc::munmap(self.base.as_ptr().cast(), self.len) };
        if rc != 0 {
            log::warn!("munmap failed: {}", std::io::Error::last_os_error());
        }
    }
}

/// Guest memory made of the frontend's mapped regions.
///
/// The core's [`RegionMemory`] inside is private and never handed out (not
/// even by reference: it is `Clone`, and a copy could outlive the
/// mappings). Everything else reaches guest memory through this type's
/// [`GuestMemory`] implementation, which borrows it.
pub struct GuestMemoryMap {
    // Declared before `maps`: dropped (forgotten) before the mappings go.
    mem: RegionMemory<MAX_REGIONS>,
    table: Vec<TableEntry>,
    maps: Vec<Mapping>,
}

impl fmt::Debug for GuestMemoryMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GuestMemoryMap")
            .field("table", &self.table)
            .finish()
    }
}

impl GuestMemoryMap {
    /// Map a memory table: `files[i]` backs `table[i]`. The files may be
    /// closed afterwards (the mappings keep the memory).
    pub fn map(table: &[TableEntry], files: &[File]) -> Result<Self, MemoryError> {
        if table.is_empty() || table.len() > MAX_REGIONS || files.len() != table.len() {
            return Err(MemoryError::RegionCount);
        }
        let mut out = GuestMemoryMap {
            mem: RegionMemory::new(),
            table: Vec::with_capacity(table.len()),
            maps: Vec::with_capacity(table.len()),
        };
        for (i, (e, file)) in table.iter().zip(files).enumerate() {
            let end = e.mmap_offset.checked_add(e.memory_size);
            let ok = e.memory_size != 0
                && e.guest_phys_addr.checked_add(e.memory_size).is_some()
                && e.user_addr.checked_add(e.memory_size).is_some();
            let (true, Some(needed)) = (ok, end) else {
                return Err(MemoryError::BadRegion(i));
            };
            let meta = file.metadata().map_err(|err| MemoryError::Stat(i, err))?;
            if !meta.file_type().is_file() {
                return Err(MemoryError::NotAFile(i));
            }
            if meta.len() < needed {
                return Err(MemoryError::FileTooSmall {
                    region: i,
                    needed,
                    size: meta.len(),
                });
            }
            let len = usize::try_from(needed).map_err(|_| MemoryError::BadRegion(i))?;
            let off = usize::try_from(e.mmap_offset).map_err(|_| MemoryError::BadRegion(i))?;
            let size = usize::try_from(e.memory_size).map_err(|_| MemoryError::BadRegion(i))?;
            // SAFETY: a fresh shared mapping chosen by the kernel (no
            // address hint, so nothing existing is replaced) of a file we
            // checked is at least `len` bytes long.
            let p = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_SHARED,
                    file.as_raw_fd(),
                    0,
                )
            };
            if p == libc::MAP_FAILED {
                return Err(MemoryError::Map(i, std::io::Error::last_os_error()));
            }
            let Some(base) = NonNull::new(p.cast::<u8>()) else {
                return Err(MemoryError::Map(i, std::io::ErrorKind::Other.into()));
            };
            out.maps.push(Mapping { base, len });
            // `off < len` (size > 0), so this stays inside the mapping.
            let host = base.as_ptr().wrapping_add(off);
            // SAFETY: (Region::new contract) `host .. host + size` lies inside
            // the mapping just made (off + size == len), which is readable and
            // writable. The mapping is owned by `out.maps` and unmapped only
            // when `out` is dropped; the `Region` lives only in `out.mem`,
            // which is private, never cloned out, and dropped before
            // `out.maps`. Nothing in this process takes a Rust reference into
            // the mapping: the core only copies and uses atomics, and the
            // server drops a `GuestMemoryMap` only while holding the device
            // lock, after stopping every queue that uses it (I-HOST-1).
            let region = unsafe { Region::new(e.guest_phys_addr, host, size) }
                .map_err(|err| MemoryError::Region(i, err))?;
            out.mem
                .add(region)
                .map_err(|err| MemoryError::Region(i, err))?;
            out.table.push(*e);
        }
        Ok(out)
    }

    /// The table this memory was built from.
    pub fn table(&self) -> &[TableEntry] {
        &self.table
    }

    /// Translate a frontend user address to a guest-physical one through the
    /// region that contains it.
    pub fn user_to_gpa(&self, user: u64) -> Option<GuestAddress> {
        self.table.iter().find_map(|e| {
            let off = user.checked_sub(e.user_addr)?;
            (off < e.memory_size).then(|| GuestAddress(e.guest_phys_addr.wrapping_add(off)))
        })
    }
}

impl GuestMemory for GuestMemoryMap {
    #[inline]
    fn read(&self, addr: GuestAddress, dst: &mut [u8]) -> Result<(), MemError> {
        self.mem.read(addr, dst)
    }
    #[inline]
    fn write(&self, addr: GuestAddress, src: &[u8]) -> Result<(), MemError> {
        self.mem.write(addr, src)
    }
    #[inline]
    fn check_range(&self, addr: GuestAddress, len: u64) -> Result<(), MemError> {
        self.mem.check_range(addr, len)
    }
    #[inline]
    fn load_u16_acquire(&self, addr: GuestAddress) -> Result<u16, MemError> {
        self.mem.load_u16_acquire(addr)
    }
    #[inline]
    fn store_u16_release(&self, addr: GuestAddress, value: u16) -> Result<(), MemError> {
        self.mem.store_u16_release(addr, value)
    }
    #[inline]
    fn prefetch(&self, addr: GuestAddress) {
        self.mem.prefetch(addr)
    }
    #[inline]
    fn prefetch_for_write(&self, addr: GuestAddress) {
        self.mem.prefetch_for_write(addr)
    }
    #[inline]
    fn hint_chain(&self, entry: GuestAddress, desc_table: GuestAddress, size: u16, write: bool) {
        self.mem.hint_chain(entry, desc_table, size, write)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn memfd(len: u64) -> File {
        let name = c"virtnet-test";
        // SAFETY: a valid NUL-terminated name; the returned fd is owned below.
        let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
        assert!(fd >= 0);
        // SAFETY: `fd` is a fresh descriptor nobody else owns.
        let f = unsafe { <File as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        f.set_len(len).unwrap();
        f
    }

    #[test]
    fn maps_with_offset_and_translates() {
        let mut f = memfd(0x3000);
        f.write_all(&[0u8; 0x1000]).unwrap();
        f.write_all(b"hello").unwrap();
        let t = [TableEntry {
            guest_phys_addr: 0x10_0000,
            memory_size: 0x2000,
            user_addr: 0x7f00_0000_0000,
            mmap_offset: 0x1000,
        }];
        let m = GuestMemoryMap::map(&t, &[f]).unwrap();
        let mut b = [0u8; 5];
        m.read(GuestAddress(0x10_0000), &mut b).unwrap();
        assert_eq!(&b, b"hello");
        assert_eq!(
            m.user_to_gpa(0x7f00_0000_0010),
            Some(GuestAddress(0x10_0010))
        );
        assert_eq!(m.user_to_gpa(0x7f00_0000_2000), None);
        assert_eq!(m.user_to_gpa(0x10), None);
        assert!(m.read(GuestAddress(0x10_1fff), &mut b).is_err());
    }

    #[test]
    fn refuses_short_files_and_non_files() {
        let t = [TableEntry {
            guest_phys_addr: 0,
            memory_size: 0x2000,
            user_addr: 0,
            mmap_offset: 0x1000,
        }];
        let e = GuestMemoryMap::map(&t, &[memfd(0x2000)]).unwrap_err();
        assert!(matches!(e, MemoryError::FileTooSmall { .. }), "{e}");
        let dir = File::open("/").unwrap();
        assert!(GuestMemoryMap::map(&t, &[dir]).is_err());
        let null = File::open("/dev/null").unwrap();
        assert!(matches!(
            GuestMemoryMap::map(&t, &[null]),
            Err(MemoryError::NotAFile(0))
        ));
        let wrap = [TableEntry {
            mmap_offset: u64::MAX,
            ..t[0]
        }];
        assert!(matches!(
            GuestMemoryMap::map(&wrap, &[memfd(0x1000)]),
            Err(MemoryError::BadRegion(0))
        ));
    }

    #[test]
    fn refuses_overlapping_regions() {
        let e = TableEntry {
            guest_phys_addr: 0,
            memory_size: 0x1000,
            user_addr: 0,
            mmap_offset: 0,
        };
        let t = [e, e];
        assert!(matches!(
            GuestMemoryMap::map(&t, &[memfd(0x1000), memfd(0x1000)]),
            Err(MemoryError::Region(1, RegionError::Overlap))
        ));
    }
}
