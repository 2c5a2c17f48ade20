//! Guest memory: the host memory the VMM mapped into the guest with
//! `hv_vm_map(host, ipa, len, flags)`, seen by the device through the core's
//! [`RegionMemory`].

use virtnet::mem::{Region, RegionError, RegionMemory};

/// One `hv_vm_map` mapping: guest-physical `[gpa, gpa + len)` is host
/// memory at `host`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mapping {
    /// Guest-physical (IPA) start, the `ipa` argument of `hv_vm_map`.
    pub gpa: u64,
    /// Host address, the `addr` argument of `hv_vm_map`.
    pub host: *mut u8,
    /// Length in bytes, the `size` argument of `hv_vm_map`.
    pub len: usize,
}

/// Builds the device's view of guest memory from the VMM's mappings, one
/// [`Region`] each (up to `N`).
///
/// Map guest RAM read-write (`HV_MEMORY_READ | HV_MEMORY_WRITE`, plus
/// `HV_MEMORY_EXEC` as the guest needs); leave the device's MMIO window
/// unmapped so guest accesses to it trap.
///
/// # Errors
/// The first [`RegionError`]: a null host pointer, an empty or wrapping
/// range, overlapping mappings, or more than `N` of them.
///
/// # Safety
/// The contract of [`Region::new`] for every mapping, for as long as the
/// returned memory (or a copy) exists: `host .. host + len` stays mapped,
/// readable and writable in this process (do not `munmap` or `hv_vm_unmap`
/// and reuse it while the device may run), and the host never holds a Rust
/// reference into it (the guest writes it concurrently).
pub unsafe fn guest_memory<const N: usize>(
    mappings: &[Mapping],
) -> Result<RegionMemory<N>, RegionError> {
    let mut mem = RegionMemory::new();
    for m in mappings {
        // SAFETY: forwarded to the caller (this function's contract is
        // `Region::new`'s, for each mapping).
        let region = unsafe { Region::new(m.gpa, m.host, m.len)? };
        mem.add(region)?;
    }
    Ok(mem)
}
