//! Target `tx`: the TX path end to end, `NetDevice::process_tx` from the
//! guest's TX queue into a recording backend.
//!
//! The input gives guest RAM, the pool slot size (1536 or 65550 bytes, the
//! latter enabling the segmentation offloads), backend capabilities, the
//! embedder's offer and the driver's features, the queue size and
//! placement, then operations: frames sent with any header, split into any
//! number of pieces (direct or indirect), raw descriptors and heads, avail
//! idx moves, scribbles, kicks with any budget, polling mode, resets.
//!
//! Oracles (specs/09-fuzzing.md): the [`RecordingMemory`] write checks
//! (TX writes nothing but the used ring); every used element has len 0 and
//! a posted head; no chain stays in flight and no slot stays taken after a
//! kick; `handled` ≤ budget and every handled chain is counted exactly once
//! (sent, claimed or dropped by reason); what reaches the backend is ≥ 14
//! bytes, fits the slot, only carries offloads the backend can take, and
//! (while the driver played fair) is byte for byte a frame the driver
//! sent, in order, with a software checksum equal to the reference one.
//!
//! [`RecordingMemory`]: crate::recording::RecordingMemory

use arbitrary::Arbitrary;
use virtnet::features::Features;
use virtnet::pool::FramePool;
use virtnet::wire::net_hdr::header_len;
use virtnet::wire::{NetHdrRepr, VirtioNetHdr};
use zerocopy::IntoBytes;

use crate::encode::{Bytes, Enc};
use crate::net::{self, frame_bytes, ref_checksum, Rig};
use crate::queue::DescSpec;
use crate::ram::{Addr, GuestRam, MemSpec};
use crate::{enc_enum, enc_struct};

/// A virtio-net header as the driver writes it (any values).
#[derive(Arbitrary, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Hdr {
    /// flags.
    pub flags: u8,
    /// gso_type.
    pub gso_type: u8,
    /// hdr_len.
    pub hdr_len: u16,
    /// gso_size.
    pub gso_size: u16,
    /// csum_start.
    pub csum_start: u16,
    /// csum_offset.
    pub csum_offset: u16,
    /// num_buffers.
    pub num_buffers: u16,
}
enc_struct!(Hdr {
    flags,
    gso_type,
    hdr_len,
    gso_size,
    csum_start,
    csum_offset,
    num_buffers
});

impl Hdr {
    /// The wire header.
    pub fn wire(&self) -> VirtioNetHdr {
        VirtioNetHdr {
            flags: self.flags,
            gso_type: self.gso_type,
            hdr_len: self.hdr_len.into(),
            gso_size: self.gso_size.into(),
            csum_start: self.csum_start.into(),
            csum_offset: self.csum_offset.into(),
            num_buffers: self.num_buffers.into(),
        }
    }
}

/// One operation.
#[derive(Arbitrary, Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Send a frame of `len % 65600` bytes after the header, cut into
    /// pieces of the given lengths (the rest in a last piece).
    Send {
        /// The header.
        hdr: Hdr,
        /// Frame length.
        len: u32,
        /// Lengths of the first pieces.
        pieces: Vec<u16>,
        /// Through an indirect table.
        indirect: bool,
    },
    /// Raw descriptors into table slots `first..`, then its head pushed.
    Raw(u16, Vec<DescSpec>),
    /// Any head into the avail ring.
    PushHead(u16),
    /// Publish the avail idx.
    Publish,
    /// Any avail idx.
    SetAvailIdx(u16),
    /// Kick with a budget.
    Kick(u8),
    /// Bytes anywhere.
    Scribble(Addr, Bytes),
    /// used_event.
    UsedEvent(u16),
    /// avail flags.
    AvailFlags(u16),
    /// Busy-poll mode on/off.
    Polling(bool),
    /// Device reset, then the driver starts over.
    Reset,
}
enc_enum!(Op, 11, {
    0 => Op::Send { hdr, len, pieces, indirect } => [hdr, len, pieces, indirect],
    1 => Op::Raw(f, d) => [f, d],
    2 => Op::PushHead(h) => [h],
    3 => Op::Publish => [],
    4 => Op::SetAvailIdx(i) => [i],
    5 => Op::Kick(b) => [b],
    6 => Op::Scribble(a, b) => [a, b],
    7 => Op::UsedEvent(v) => [v],
    8 => Op::AvailFlags(v) => [v],
    9 => Op::Polling(p) => [p],
    10 => Op::Reset => [],
});

/// The `tx` target's input.
#[derive(Arbitrary, Clone, Debug, PartialEq, Eq)]
pub struct Input {
    /// Guest RAM.
    pub mem: MemSpec,
    /// 65550-byte slots (offloads possible) instead of 1536.
    pub big: bool,
    /// Backend capability bits (see [`net::caps`]; bit 10: the backend
    /// lends its storage, [`net::lends`]).
    pub caps: u16,
    /// The embedder's offer.
    pub offer: u64,
    /// The driver's wish.
    pub wish: u64,
    /// Queue size `1 << (v % 9)`.
    pub size_log2: u8,
    /// Rings somewhere else than the start of RAM.
    pub ring_at: Option<Addr>,
    /// TX failures of the backend (`n % 8 < fail`).
    pub fail_tx: u8,
    /// The interceptor claims frames starting with this byte.
    pub claim: Option<u8>,
    /// The operations.
    pub ops: Vec<Op>,
}
enc_struct!(Input {
    mem,
    big,
    caps,
    offer,
    wish,
    size_log2,
    ring_at,
    fail_tx,
    claim,
    ops
});

impl Input {
    /// The encoded input (a corpus file).
    pub fn encode(&self) -> Vec<u8> {
        Enc::of(self)
    }
}

/// Run one input; panics on an oracle failure.
pub fn run(input: &Input) {
    let ram = GuestRam::new(&input.mem);
    if input.big {
        run_with(input, &ram, (&net::RX_BIG, &net::TX_BIG));
    } else {
        run_with(input, &ram, (&net::RX_SMALL, &net::TX_SMALL));
    }
}

/// A frame the driver sent: header, payload.
struct Sent {
    hdr: VirtioNetHdr,
    payload: Vec<u8>,
}

fn run_with<const S: usize, const C: usize>(
    input: &Input,
    ram: &GuestRam,
    pools: (&'static FramePool<S, C>, &'static FramePool<S, C>),
) {
    let caps = net::caps(input.caps);
    let cfg = net::config(input.offer, 8, true);
    let size = 1u16 << (input.size_log2 % 9);
    let ring_at = input.ring_at.map(|a| ram.addr(a));
    let Some(mut rig) = Rig::new(
        ram,
        cfg,
        caps,
        input.wish,
        virtnet::device::TX_QUEUE,
        size,
        ring_at,
        pools,
    ) else {
        return;
    };
    rig.dev.backend_mut().fail_tx = input.fail_tx;
    rig.dev.backend_mut().lend = net::lends(input.caps);
    rig.dev.interceptor_mut().claim = input.claim;
    let mut seq: u32 = 0;
    let mut sent: Vec<Sent> = Vec::new();
    let mut checked = 0usize; // backend frames already matched
    let mut cursor = 0usize; // next candidate in `sent`
    let mut handled_total: u64 = 0;
    let mut counted_base = tx_counted(rig.dev.stats());
    let mut accounting = true;

    for op in &input.ops {
        match op {
            Op::Send {
                hdr,
                len,
                pieces,
                indirect,
            } => {
                rig.drv.take_used(ram);
                let hl = header_len(rig.features());
                let payload = frame_bytes(seq, *len as usize % 65600);
                seq = seq.wrapping_add(1);
                let mut bytes = hdr.wire().as_bytes()[..hl.min(12)].to_vec();
                bytes.extend_from_slice(&payload);
                let mut bufs = Vec::new();
                let mut off = 0usize;
                for &p in pieces.iter().take(24) {
                    let n = usize::from(p).min(bytes.len() - off);
                    bufs.push((off, n));
                    off += n;
                }
                bufs.push((off, bytes.len() - off));
                let mut descs = Vec::new();
                for &(o, n) in &bufs {
                    let Some(at) = rig.bump.alloc(n as u64, 1) else {
                        break;
                    };
                    ram.poke(at, &bytes[o..o + n]);
                    descs.push((at, n as u32, false));
                }
                if descs.len() < bufs.len() {
                    // Out of driver memory: the frame is not sent.
                    continue;
                }
                let table = if *indirect {
                    rig.bump.alloc(16 * descs.len() as u64, 16)
                } else {
                    None
                };
                if rig.bump.wrapped {
                    rig.pristine = false;
                }
                if rig.drv.post(ram, &descs, table, u64::from(seq)).is_some() {
                    sent.push(Sent {
                        hdr: hdr.wire(),
                        payload,
                    });
                }
            }
            Op::Raw(first, descs) => rig.raw_chain(*first, descs),
            Op::PushHead(h) => {
                rig.pristine = false;
                rig.drv.push_head(ram, *h);
            }
            Op::Publish => rig.drv.publish(ram),
            Op::SetAvailIdx(i) => {
                rig.pristine = false;
                rig.drv.set_avail_idx(ram, *i);
            }
            Op::Kick(b) => {
                match rig.kick(usize::from(*b % 80)) {
                    Some(p) => handled_total += p.handled as u64,
                    None => accounting = false,
                }
                // The used ring as the driver reads it (meaningless once
                // the driver scribbled over it).
                for (id, len, posted) in rig.drv.take_used(ram) {
                    if rig.pristine {
                        assert_eq!(len, 0, "TX used len must be 0 (head {id})");
                        assert!(posted.is_some(), "used id {id} was never posted");
                    }
                }
            }
            Op::Scribble(a, b) => {
                rig.pristine = false;
                ram.poke(ram.addr(*a), &b.0);
            }
            Op::UsedEvent(v) => rig.drv.set_used_event(ram, *v),
            Op::AvailFlags(v) => rig.drv.set_avail_flags(ram, *v),
            Op::Polling(on) => rig.dev.set_polling(*on, &rig.mem),
            Op::Reset => {
                rig.reset();
                accounting = true;
                handled_total = 0;
                counted_base = tx_counted(rig.dev.stats());
                sent.clear();
                cursor = 0;
                checked = rig.dev.backend().sent.len();
            }
        }
        rig.mem.assert_clean();
        if accounting {
            assert_eq!(
                tx_counted(rig.dev.stats()) - counted_base,
                handled_total,
                "handled chains and counters differ: {}",
                rig.dev.stats()
            );
        }
        // What reached the backend.
        let nf = rig.features();
        let backend = rig.dev.backend();
        for (hdr, frame) in &backend.sent[checked..] {
            check_sent(hdr, frame, S, nf, &backend.caps);
            if rig.pristine {
                let at = (cursor..sent.len())
                    .find(|&i| matches_sent(&sent[i], hdr, frame, nf))
                    .unwrap_or_else(|| {
                        panic!(
                            "the backend got a frame the driver did not send ({} bytes)",
                            frame.len()
                        )
                    });
                cursor = at + 1;
                crate::count(|c| c.tx_frames += 1);
            }
        }
        checked = backend.sent.len();
    }
    rig.finish();
}

/// Chains the counters account for.
fn tx_counted(st: &virtnet::device::NetStats) -> u64 {
    st.tx_packets
        + st.tx_malformed_chains
        + st.tx_malformed_frames
        + st.tx_bad_header
        + st.tx_too_big
        + st.tx_backend_errors
        + st.tx_intercepted
}

fn check_sent(
    hdr: &NetHdrRepr,
    frame: &[u8],
    slot: usize,
    nf: Features,
    caps: &virtnet::device::BackendCaps,
) {
    assert!(
        frame.len() >= 14,
        "a {}-byte frame reached the backend",
        frame.len()
    );
    assert!(frame.len() <= slot, "a frame larger than the slot");
    assert!(!hdr.data_valid, "DATA_VALID on TX");
    if let Some(g) = hdr.gso {
        assert!(
            nf.contains(g.kind.host_feature()),
            "GSO {g:?} not negotiated"
        );
        assert!(hdr.csum.is_some(), "GSO without a checksum request");
        assert!(g.size > 0 && g.hdr_len > 0 && usize::from(g.hdr_len) <= frame.len());
    } else if hdr.csum.is_some() {
        assert!(
            caps.tx_csum,
            "a partial checksum reached a backend that cannot take it"
        );
    }
    if let Some(c) = hdr.csum {
        assert!(usize::from(c.start) + usize::from(c.offset) + 2 <= frame.len());
    }
}

fn matches_sent(s: &Sent, hdr: &NetHdrRepr, frame: &[u8], nf: Features) -> bool {
    if frame.len() != s.payload.len() {
        return false;
    }
    let Ok(parsed) = NetHdrRepr::parse_tx(&s.hdr, s.payload.len(), nf) else {
        return false;
    };
    match (parsed.csum, hdr.csum) {
        // Completed in software: all bytes but the field, and the field
        // holds the reference checksum.
        (Some(c), None) => {
            let at = usize::from(c.start) + usize::from(c.offset);
            let want = ref_checksum(&s.payload, c).to_be_bytes();
            frame[..at] == s.payload[..at]
                && frame[at + 2..] == s.payload[at + 2..]
                && frame[at..at + 2] == want
                && parsed.gso.is_none()
        }
        _ => frame == s.payload.as_slice() && parsed == *hdr,
    }
}
