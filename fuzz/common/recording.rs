//! A recording guest-memory wrapper: the write oracle of the fuzz targets
//! (specs/09-fuzzing.md, I-FUZZ-2, I-FUZZ-3), shared with the core's unit
//! tests.
//!
//! [`RecordingMemory`] wraps the guest memory the *device* is given (the
//! driver side of a harness writes the inner memory directly) and checks,
//! on every device write:
//! - the bytes lie in the used ring of a watched queue (flags, elements,
//!   avail_event), or inside a device-writable buffer of a chain that was
//!   popped and not yet completed, as an independent reference walk of that
//!   chain ([`ref_walk`]) describes it: a pop is seen as the device's
//!   [`GuestMemory::note_pop`], whose head must be what the device read
//!   from that available-ring slot (each read is used up by one pop, and
//!   chains in flight are kept per avail position), a completion as its
//!   write of a used element, 8 bytes, or a run of them in one copy (whose
//!   ids must belong to popped chains);
//! - the used idx is only stored with release ordering, and only moves
//!   forward, by at most the used elements written since the last store.
//!
//! Anything else is a violation, kept as text ([`RecordingMemory::violations`]).
//! With no queue watched (before activation, after a reset), every write is
//! one.
//!
//! Prefetch hints ([`GuestMemory::hint_chain`]) go to the inner memory's
//! own path, unrecorded (a hint's reads are not pops). With a
//! [`HintProbe`] (the fuzz targets give `RegionMemory::chain_hint`), each
//! hint's one-region decision is first compared with what plain reads of
//! the avail entry and the head descriptor give (I-MEM-6); a mismatch is a
//! violation.
//!
//! The file is `#[path]`-included: by `fuzz/src/lib.rs` and by the core's
//! `src/regressions.rs`. The including module must have `ChainHint`,
//! `GuestAddress`, `GuestMemory`, `MemError` and `QueueLayout` (from
//! `virtnet::mem` and `virtnet::queue`) in scope. It only uses `core` and
//! `std::{vec, string}`.

// `% n != 0`, not `is_multiple_of`: the core's MSRV (1.85) predates it.
#![allow(clippy::manual_is_multiple_of)]

use super::{ChainHint, GuestAddress, GuestMemory, MemError, QueueLayout};
use core::cell::RefCell;
use std::string::String;
use std::vec::Vec;

const F_NEXT: u16 = 1;
const F_WRITE: u16 = 2;
const F_INDIRECT: u16 = 4;

/// The reference walk of one chain: what the guest described, by a walker
/// written from the spec independently of `virtnet::queue`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefChain {
    /// Non-empty buffers in chain order: `(addr, len, device-writable)`.
    pub segs: Vec<(u64, u32, bool)>,
    /// `Err(reason)` when the chain breaks a rule of VIRTIO 1.2 §2.7.5 as
    /// virtnet applies them (its segment limit included).
    pub strict: Result<(), &'static str>,
    /// Descriptors read, the indirect-table descriptor included.
    pub walked: u32,
    /// Entries of the indirect table the chain points at (0 if none).
    pub indirect_entries: u32,
}

fn read_desc<M: GuestMemory + ?Sized>(mem: &M, at: u64) -> Option<(u64, u32, u16, u16)> {
    let mut b = [0u8; 16];
    mem.read(GuestAddress(at), &mut b).ok()?;
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[0..8]);
    let addr = u64::from_le_bytes(a);
    let len = u32::from_le_bytes([b[8], b[9], b[10], b[11]]);
    let flags = u16::from_le_bytes([b[12], b[13]]);
    let next = u16::from_le_bytes([b[14], b[15]]);
    Some((addr, len, flags, next))
}

/// Walk the chain at `head` of a queue laid out as `layout`, the way the
/// spec describes it: descriptors from the table (at most `size` of them),
/// then at most one indirect table (at most its entry count), zero-length
/// buffers skipped, no readable descriptor after a non-empty writable one, flags limited to
/// NEXT/WRITE/INDIRECT, the total at most `u32::MAX`, every buffer inside
/// `mem`, at most `max_segments` non-empty buffers.
pub fn ref_walk<M: GuestMemory + ?Sized>(
    mem: &M,
    layout: &QueueLayout,
    indirect_ok: bool,
    head: u16,
    max_segments: usize,
) -> RefChain {
    let mut out = RefChain {
        segs: Vec::new(),
        strict: Ok(()),
        walked: 0,
        indirect_entries: 0,
    };
    let r = ref_walk_inner(mem, layout, indirect_ok, head, max_segments, &mut out);
    out.strict = r;
    out
}

fn ref_walk_inner<M: GuestMemory + ?Sized>(
    mem: &M,
    layout: &QueueLayout,
    indirect_ok: bool,
    head: u16,
    max_segments: usize,
    out: &mut RefChain,
) -> Result<(), &'static str> {
    let mut total: u64 = 0;
    let mut seen_writable = false;
    // (table address, table entries, in an indirect table)
    let mut table = layout.desc_table.0;
    let mut entries = u32::from(layout.size);
    let mut indirect = false;
    let mut idx = u32::from(head);
    let mut steps = 0u32;
    if idx >= entries {
        return Err("head out of range");
    }
    loop {
        if steps == entries {
            return Err("loop");
        }
        steps += 1;
        let at = table
            .checked_add(u64::from(idx) * 16)
            .ok_or("table address wraps")?;
        let (addr, len, flags, next) = read_desc(mem, at).ok_or("descriptor unreadable")?;
        out.walked += 1;
        if flags & !(F_NEXT | F_WRITE | F_INDIRECT) != 0 {
            return Err("unknown flags");
        }
        if flags & F_INDIRECT != 0 {
            if indirect {
                return Err("nested indirect");
            }
            if !indirect_ok {
                return Err("indirect not negotiated");
            }
            if flags & F_NEXT != 0 {
                return Err("indirect with next");
            }
            if len == 0 || len % 16 != 0 || len / 16 > 65535 {
                return Err("bad indirect table length");
            }
            if addr.checked_add(u64::from(len)).is_none() {
                return Err("indirect table wraps");
            }
            if mem.check_range(GuestAddress(addr), u64::from(len)).is_err() {
                return Err("indirect table outside memory");
            }
            out.indirect_entries = len / 16;
            table = addr;
            entries = len / 16;
            indirect = true;
            idx = 0;
            steps = 0;
            continue;
        }
        let writable = flags & F_WRITE != 0;
        total += u64::from(len);
        if total > u64::from(u32::MAX) {
            return Err("total length above u32::MAX");
        }
        // A readable descriptor, even an empty one, after a non-empty
        // writable one breaks §2.7.4.2's order (virtnet's policy).
        if !writable && seen_writable {
            return Err("readable after writable");
        }
        if len != 0 {
            if addr.checked_add(u64::from(len)).is_none() {
                return Err("buffer wraps");
            }
            if mem.check_range(GuestAddress(addr), u64::from(len)).is_err() {
                return Err("buffer outside memory");
            }
            if out.segs.len() == max_segments {
                return Err("too many segments");
            }
            out.segs.push((addr, len, writable));
            seen_writable |= writable;
        }
        if flags & F_NEXT == 0 {
            return Ok(());
        }
        idx = u32::from(next);
        if idx >= entries {
            return Err("next out of range");
        }
    }
}

/// One chain the device popped and has not completed.
#[derive(Clone, Debug)]
struct InFlight {
    /// Avail position (free-running) it was taken at.
    pos: u16,
    head: u16,
    /// `[start, end)` ranges the device may write (empty for a chain the
    /// reference walk finds malformed: nothing may be written into it).
    writable: Vec<(u64, u64)>,
}

#[derive(Clone, Debug)]
struct Watch {
    layout: QueueLayout,
    indirect: bool,
    in_flight: Vec<InFlight>,
    /// Per avail slot, the head the device last read there and has not
    /// popped.
    seen: Vec<Option<u16>>,
    last_published: u16,
    elems_unpublished: u32,
    pops: u64,
    completions: u64,
}

impl Watch {
    fn used_range(&self) -> (u64, u64) {
        let s = u64::from(self.layout.size);
        let a = self.layout.used_ring.0;
        (a, a.saturating_add(6 + 8 * s))
    }

    /// The first avail-ring slot of `[addr, addr + len)` when that range is
    /// whole entries of this queue's avail ring.
    fn avail_slot(&self, addr: u64, len: u64) -> Option<usize> {
        let base = self.layout.avail_ring.0.saturating_add(4);
        let end = base.saturating_add(2 * u64::from(self.layout.size));
        let inside = len > 0 && len % 2 == 0 && addr >= base && addr.checked_add(len)? <= end;
        (inside && (addr - base) % 2 == 0).then(|| ((addr - base) / 2) as usize)
    }
}

#[derive(Debug, Default)]
struct State {
    queues: Vec<Option<Watch>>,
    violations: Vec<String>,
    writes: u64,
    bytes_written: u64,
}

/// A memory's own decision for one chain hint (`entry`, `desc_table`,
/// `size`, as [`GuestMemory::hint_chain`] takes them), for
/// [`RecordingMemory::with_hint_probe`].
pub type HintProbe<M> = fn(&M, GuestAddress, GuestAddress, u16) -> ChainHint;

/// Guest memory that checks every device write (see the module docs).
#[derive(Debug)]
pub struct RecordingMemory<M> {
    inner: M,
    max_segments: usize,
    hint_probe: Option<HintProbe<M>>,
    state: RefCell<State>,
}

impl<M: GuestMemory> RecordingMemory<M> {
    /// Wrap `inner`; no queue is watched yet. `max_segments` is the segment
    /// limit of the device's chains (`DEFAULT_MAX_SEGMENTS` = 64).
    pub fn new(inner: M, max_segments: usize) -> Self {
        RecordingMemory {
            inner,
            max_segments,
            hint_probe: None,
            state: RefCell::new(State::default()),
        }
    }

    /// Compare every chain hint's decision, as `probe` reports it, with
    /// plain reads (see the module docs).
    pub fn with_hint_probe(mut self, probe: HintProbe<M>) -> Self {
        self.hint_probe = Some(probe);
        self
    }

    /// The buffer a chain hint should find, by plain reads: the head in the
    /// avail entry at `entry`, if below `size`, then the address field of
    /// that descriptor (VIRTIO 1.2 §2.7.5, §2.7.6), if readable.
    fn hinted_by_reads(&self, entry: GuestAddress, table: GuestAddress, size: u16) -> Option<u64> {
        let mut h = [0u8; 2];
        self.inner.read(entry, &mut h).ok()?;
        let h = u16::from_le_bytes(h);
        if h >= size {
            return None;
        }
        let at = table.0.wrapping_add(u64::from(h) * 16);
        let mut a = [0u8; 8];
        self.inner.read(GuestAddress(at), &mut a).ok()?;
        Some(u64::from_le_bytes(a))
    }

    /// Check one hint's decision against [`Self::hinted_by_reads`]: a
    /// buffer must be the one the reads give, inside memory; "nothing" only
    /// when the reads give none. "Elsewhere" hands the hint to the default
    /// path, which is the reads themselves.
    fn check_hint(&self, entry: GuestAddress, table: GuestAddress, size: u16) {
        let Some(probe) = self.hint_probe else {
            return;
        };
        let decided = probe(&self.inner, entry, table, size);
        let reads = self.hinted_by_reads(entry, table, size);
        let ok = match decided {
            ChainHint::Buffer(a) => reads == Some(a.0) && self.inner.check_range(a, 1).is_ok(),
            ChainHint::Nothing => reads.is_none(),
            ChainHint::Elsewhere => true,
        };
        if !ok {
            let mut st = self.state.borrow_mut();
            Self::violation(
                &mut st,
                std::format!(
                    "chain hint at entry {:#x} (table {:#x}, size {size}) decided {decided:?}; plain reads give {reads:x?}",
                    entry.0, table.0
                ),
            );
        }
    }

    /// The wrapped memory (for the driver side of a harness).
    pub fn inner(&self) -> &M {
        &self.inner
    }

    /// Start watching queue `q` (activated with `layout`; `indirect` as
    /// negotiated; `used_idx` is the device's next-used index now).
    pub fn watch(&self, q: usize, layout: QueueLayout, indirect: bool, used_idx: u16) {
        let mut st = self.state.borrow_mut();
        if st.queues.len() <= q {
            st.queues.resize(q + 1, None);
        }
        st.queues[q] = Some(Watch {
            layout,
            indirect,
            in_flight: Vec::new(),
            seen: std::vec![None; usize::from(layout.size)],
            last_published: used_idx,
            elems_unpublished: 0,
            pops: 0,
            completions: 0,
        });
    }

    /// Stop watching queue `q` (deactivated or reset).
    pub fn unwatch(&self, q: usize) {
        if let Some(w) = self.state.borrow_mut().queues.get_mut(q) {
            *w = None;
        }
    }

    /// Stop watching every queue (device reset): every later write is a
    /// violation.
    pub fn unwatch_all(&self) {
        self.state.borrow_mut().queues.clear();
    }

    /// The layout watched for queue `q`.
    pub fn watched(&self, q: usize) -> Option<QueueLayout> {
        self.state
            .borrow()
            .queues
            .get(q)
            .and_then(|w| w.as_ref().map(|w| w.layout))
    }

    /// Take `used_idx` as the published index of queue `q` and, if
    /// `forget`, drop its in-flight chains (the embedder called
    /// `set_indices`, or `sync_used_from_ring`).
    pub fn rebase(&self, q: usize, used_idx: u16, forget: bool) {
        if let Some(Some(w)) = self.state.borrow_mut().queues.get_mut(q) {
            if forget {
                w.in_flight.clear();
                w.seen.fill(None);
            }
            w.last_published = used_idx;
            w.elems_unpublished = 0;
        }
    }

    /// Chains popped and not completed on queue `q`, as seen here.
    pub fn in_flight(&self, q: usize) -> usize {
        self.state
            .borrow()
            .queues
            .get(q)
            .and_then(|w| w.as_ref().map(|w| w.in_flight.len()))
            .unwrap_or(0)
    }

    /// `(pops, completions)` seen on queue `q`.
    pub fn counts(&self, q: usize) -> (u64, u64) {
        self.state
            .borrow()
            .queues
            .get(q)
            .and_then(|w| w.as_ref().map(|w| (w.pops, w.completions)))
            .unwrap_or((0, 0))
    }

    /// Writes and bytes written by the device so far.
    pub fn write_counts(&self) -> (u64, u64) {
        let st = self.state.borrow();
        (st.writes, st.bytes_written)
    }

    /// The violations recorded so far.
    pub fn violations(&self) -> Vec<String> {
        self.state.borrow().violations.clone()
    }

    /// Panic with every violation, if there is any.
    pub fn assert_clean(&self) {
        let st = self.state.borrow();
        if !st.violations.is_empty() {
            panic!(
                "{} guest-memory violation(s):\n{}",
                st.violations.len(),
                st.violations.join("\n")
            );
        }
    }

    fn violation(st: &mut State, what: String) {
        if st.violations.len() < 32 {
            st.violations.push(what);
        }
    }

    /// A read of available-ring entries (one, or several in one copy): the
    /// heads the device saw, kept per slot. Not a pop: the device says
    /// which it takes, and at which position ([`GuestMemory::note_pop`]).
    fn saw_read(&self, addr: u64, data: &[u8]) {
        let mut st = self.state.borrow_mut();
        for w in st.queues.iter_mut().flatten() {
            let Some(first) = w.avail_slot(addr, data.len() as u64) else {
                continue;
            };
            for (seen, e) in w.seen.iter_mut().skip(first).zip(data.chunks_exact(2)) {
                *seen = Some(u16::from_le_bytes([e[0], e[1]]));
            }
        }
    }

    /// The device took the chain at `head` at avail position `pos`, from
    /// the avail entry at `entry`: a pop. The head must be what the device
    /// read from that slot (the read is then used up: a pop after
    /// `undo_pop` reads the slot again).
    fn saw_pop(&self, entry: u64, pos: u16, head: u16) {
        let mut st = self.state.borrow_mut();
        let mut problems: Vec<String> = Vec::new();
        for (qi, w) in st.queues.iter_mut().enumerate() {
            let Some(w) = w.as_mut() else { continue };
            let Some(slot) = w.avail_slot(entry, 2) else {
                continue;
            };
            let read = w.seen.get_mut(slot).and_then(Option::take);
            if read != Some(head) {
                problems.push(std::format!(
                    "queue {qi}: popped head {head} from avail slot {slot}, which the device read as {read:?}"
                ));
            }
            let chain = ref_walk(&self.inner, &w.layout, w.indirect, head, self.max_segments);
            let writable = if chain.strict.is_ok() {
                chain
                    .segs
                    .iter()
                    .filter(|s| s.2)
                    .map(|s| (s.0, s.0 + u64::from(s.1)))
                    .collect()
            } else {
                Vec::new()
            };
            // Popping a position again (after an undo) replaces its record;
            // a driver that re-posts a head it never reclaimed (at another
            // position, maybe the same slot) has it in flight twice.
            w.in_flight.retain(|f| f.pos != pos);
            w.in_flight.push(InFlight {
                pos,
                head,
                writable,
            });
            w.pops += 1;
        }
        for p in problems {
            Self::violation(&mut st, p);
        }
    }

    fn granted(st: &State, addr: u64, end: u64) -> bool {
        let inside = |b: u64, e: u64| {
            st.queues.iter().flatten().any(|w| {
                w.in_flight
                    .iter()
                    .any(|f| f.writable.iter().any(|&(s, fe)| b >= s && e <= fe))
            })
        };
        // One buffer, or (rarely) adjacent buffers byte by byte.
        inside(addr, end) || (addr < end && (addr..end).all(|b| inside(b, b + 1)))
    }

    fn check_write(&self, addr: u64, data: &[u8], release: bool) {
        let mut st = self.state.borrow_mut();
        st.writes += 1;
        st.bytes_written += data.len() as u64;
        let len = data.len() as u64;
        let Some(end) = addr.checked_add(len) else {
            Self::violation(&mut st, std::format!("write at {addr:#x}+{len} wraps"));
            return;
        };
        let granted = Self::granted(&st, addr, end);
        let mut problems: Vec<String> = Vec::new();
        // Where-problems: void if another queue's rule allows the write.
        let mut misplaced: Vec<String> = Vec::new();
        let mut allowed = false;
        for (qi, w) in st.queues.iter_mut().enumerate() {
            let Some(w) = w.as_mut() else { continue };
            let (us, ue) = w.used_range();
            let idx_at = us + 2;
            let elems = us + 4;
            let elems_end = elems + 8 * u64::from(w.layout.size);
            if release && addr == idx_at && len == 2 {
                // The used idx: forward, by at most the elements written.
                let new = u16::from_le_bytes([data[0], data[1]]);
                let delta = new.wrapping_sub(w.last_published);
                if u32::from(delta) > w.elems_unpublished {
                    problems.push(std::format!(
                        "queue {qi}: used idx {} -> {new}: moved by {delta} with {} element(s) written since",
                        w.last_published, w.elems_unpublished
                    ));
                }
                w.elems_unpublished = w.elems_unpublished.saturating_sub(u32::from(delta));
                w.last_published = new;
                allowed = true;
            } else if len >= 8
                && len % 8 == 0
                && addr >= elems
                && end <= elems_end
                && (addr - elems) % 8 == 0
            {
                // Used elements (one, or a batch in one copy): each
                // completes a chain in flight.
                let mut ok = true;
                for e in data.chunks_exact(8) {
                    let id = u32::from_le_bytes([e[0], e[1], e[2], e[3]]);
                    match w.in_flight.iter().position(|f| u32::from(f.head) == id) {
                        Some(i) => {
                            w.in_flight.remove(i);
                            w.elems_unpublished += 1;
                            w.completions += 1;
                        }
                        // Frame bytes the guest asked for over its own used
                        // ring.
                        None => {
                            ok = false;
                            misplaced.push(std::format!(
                                "queue {qi}: used element for head {id}, which is not in flight"
                            ));
                        }
                    }
                }
                allowed = ok;
            } else if !granted && addr >= us && end <= ue {
                if addr < idx_at + 2 && idx_at < end {
                    misplaced.push(std::format!(
                        "queue {qi}: used idx overwritten by a {len}-byte plain write at {addr:#x}"
                    ));
                } else if addr >= elems && end <= elems_end {
                    misplaced.push(std::format!(
                        "queue {qi}: {len}-byte write at {addr:#x} inside the used elements"
                    ));
                } else if addr < elems_end && end > elems {
                    misplaced.push(std::format!(
                        "queue {qi}: {len}-byte write at {addr:#x} across the used elements"
                    ));
                } else {
                    // Used flags or avail_event.
                    allowed = true;
                }
            }
        }
        if !allowed && !granted {
            if misplaced.is_empty() {
                misplaced.push(std::format!(
                    "write of {len} byte(s) at {addr:#x} outside the used rings and the writable buffers in flight"
                ));
            }
            problems.append(&mut misplaced);
        }
        for p in problems {
            Self::violation(&mut st, p);
        }
    }
}

impl<M: GuestMemory> GuestMemory for RecordingMemory<M> {
    fn read(&self, addr: GuestAddress, dst: &mut [u8]) -> Result<(), MemError> {
        self.inner.read(addr, dst)?;
        self.saw_read(addr.0, dst);
        Ok(())
    }

    fn write(&self, addr: GuestAddress, src: &[u8]) -> Result<(), MemError> {
        self.check_write(addr.0, src, false);
        self.inner.write(addr, src)
    }

    fn check_range(&self, addr: GuestAddress, len: u64) -> Result<(), MemError> {
        self.inner.check_range(addr, len)
    }

    /// A prefetch hint's read is not recorded: the device may not take a
    /// head it only hinted.
    fn read_hint(&self, addr: GuestAddress, dst: &mut [u8]) -> Result<(), MemError> {
        self.inner.read(addr, dst)
    }

    fn note_pop(&self, entry: GuestAddress, pos: u16, head: u16) {
        self.saw_pop(entry.0, pos, head);
    }

    /// The inner memory's own hint (unrecorded, as `read_hint`), after the
    /// probe's decision is checked.
    fn hint_chain(&self, entry: GuestAddress, desc_table: GuestAddress, size: u16, write: bool) {
        self.check_hint(entry, desc_table, size);
        self.inner.hint_chain(entry, desc_table, size, write);
    }

    fn load_u16_acquire(&self, addr: GuestAddress) -> Result<u16, MemError> {
        self.inner.load_u16_acquire(addr)
    }

    fn store_u16_release(&self, addr: GuestAddress, value: u16) -> Result<(), MemError> {
        self.check_write(addr.0, &value.to_le_bytes(), true);
        self.inner.store_u16_release(addr, value)
    }
}
