//! Target `rx`: the RX path end to end, frames of any size from the
//! backend and the interceptor through `NetDevice::process_rx` into the
//! guest's buffers, with and without MRG_RXBUF.
//!
//! The input gives guest RAM, the slot size (1536 or 65550), backend
//! capabilities, offer and driver features (MRG_RXBUF, GUEST_CSUM, GUEST_TSO
//! ... as they fall), the queue size and placement, then operations:
//! buffers posted (any sizes, optionally with a read-only part first,
//! direct or indirect), backend plans (frames of any size and offload
//! metadata, errors, a backend lying about lengths), injected frames, raw
//! descriptors and heads, avail idx moves, scribbles, kicks with any
//! budget, polling, resets.
//!
//! Oracles (specs/09-fuzzing.md): the [`RecordingMemory`] write checks
//! (writes only into writable buffers of popped chains and the used
//! ring); no chain left in flight after a kick; no slot lost (the RX pool
//! holds at most the one frame waiting for buffers, all slots come back
//! on reset); `handled` ≤ budget; and while the driver plays fair, what
//! the driver reads back is exact: each delivered frame is, in order, a
//! frame the device was handed, with the header §5.1.6.4 asks for
//! (num_buffers = 1, or the number of buffers used with MRG_RXBUF, offloads
//! the driver did not negotiate removed and the checksum completed to the
//! reference value), every merged buffer but the last filled completely,
//! used len within the chain, and `rx_packets` equal to the frames read.
//!
//! [`RecordingMemory`]: crate::recording::RecordingMemory

use arbitrary::Arbitrary;
use virtnet::features::Features;
use virtnet::pool::FramePool;
use virtnet::wire::net_hdr::header_len;
use virtnet::wire::NetHdrRepr;
use zerocopy::IntoBytes;

use crate::driver::Posted;
use crate::encode::{Bytes, Enc};
use crate::net::{self, ref_checksum, Handed, Rig, RxPlan};
use crate::queue::DescSpec;
use crate::ram::{Addr, GuestRam, MemSpec};
use crate::{enc_enum, enc_struct};

/// One operation.
#[derive(Arbitrary, Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Post a chain of writable buffers of these lengths (a read-only
    /// buffer of the given length first, if any), and publish it.
    Post {
        /// Writable buffer lengths.
        bufs: Vec<u16>,
        /// A read-only buffer first (refused by the device).
        readable: Option<u16>,
        /// Through an indirect table.
        indirect: bool,
    },
    /// The backend's next answer.
    Backend(RxPlan),
    /// The interceptor injects a frame of this length.
    Inject(u16),
    /// Raw descriptors into table slots `first..`, then its head pushed.
    Raw(u16, Vec<DescSpec>),
    /// Any head into the avail ring.
    PushHead(u16),
    /// Publish the avail idx.
    Publish,
    /// Any avail idx.
    SetAvailIdx(u16),
    /// Kick (or poll) with a budget.
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
enc_enum!(Op, 13, {
    0 => Op::Post { bufs, readable, indirect } => [bufs, readable, indirect],
    1 => Op::Backend(p) => [p],
    2 => Op::Inject(l) => [l],
    3 => Op::Raw(f, d) => [f, d],
    4 => Op::PushHead(h) => [h],
    5 => Op::Publish => [],
    6 => Op::SetAvailIdx(i) => [i],
    7 => Op::Kick(b) => [b],
    8 => Op::Scribble(a, b) => [a, b],
    9 => Op::UsedEvent(v) => [v],
    10 => Op::AvailFlags(v) => [v],
    11 => Op::Polling(p) => [p],
    12 => Op::Reset => [],
});

/// The `rx` target's input.
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

/// The driver's reading of the used ring, across kicks.
#[derive(Default)]
struct Reader {
    /// Pieces of a merged frame being collected: `(posted, used len)`.
    pieces: Vec<(Posted, u32)>,
    /// Buffers the frame being collected announced.
    want: u16,
    /// Next candidate in the handed log.
    cursor: usize,
    /// Frames read.
    frames: u64,
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
        virtnet::device::RX_QUEUE,
        size,
        ring_at,
        pools,
    ) else {
        return;
    };
    rig.dev.backend_mut().lend = net::lends(input.caps);
    let mut reader = Reader::default();
    let mut packets_base = rig.dev.stats().rx_packets;

    for op in &input.ops {
        match op {
            Op::Post {
                bufs,
                readable,
                indirect,
            } => {
                let mut descs = Vec::new();
                let lens = readable
                    .iter()
                    .map(|&l| (l, false))
                    .chain(bufs.iter().take(40).map(|&l| (l, true)));
                for (l, w) in lens {
                    let Some(at) = rig.bump.alloc(u64::from(l), 2) else {
                        break;
                    };
                    descs.push((at, u32::from(l), w));
                }
                let table = if *indirect {
                    rig.bump.alloc(16 * descs.len() as u64, 16)
                } else {
                    None
                };
                if rig.bump.wrapped {
                    rig.pristine = false;
                }
                if rig.drv.post(ram, &descs, table, 0).is_some() {
                    rig.drv.publish(ram);
                }
            }
            Op::Backend(p) => rig.dev.backend_mut().plans.push_back(*p),
            Op::Inject(l) => rig.dev.interceptor_mut().inject.push_back(*l),
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
                rig.kick(usize::from(*b % 80));
                let used = rig.drv.take_used(ram);
                if rig.pristine {
                    let nf = rig.features();
                    let handed = rig.handed.borrow();
                    for (id, len, posted) in used {
                        let posted =
                            posted.unwrap_or_else(|| panic!("used id {id} was never posted"));
                        read_used(&mut reader, ram, nf, &handed, posted, len);
                    }
                    if reader.pieces.is_empty() {
                        assert_eq!(
                            rig.dev.stats().rx_packets - packets_base,
                            reader.frames,
                            "rx_packets differs from the frames the driver read"
                        );
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
                packets_base = rig.dev.stats().rx_packets;
                let handed = rig.handed.borrow().len();
                reader = Reader {
                    cursor: handed,
                    ..Reader::default()
                };
            }
        }
        rig.mem.assert_clean();
    }
    rig.finish();
}

/// One used element, read as the driver reads it.
fn read_used(
    r: &mut Reader,
    ram: &GuestRam,
    nf: Features,
    handed: &[Handed],
    posted: Posted,
    len: u32,
) {
    let cap = posted.writable_len();
    assert!(
        u64::from(len) <= cap,
        "used len {len} > the chain's {cap} writable bytes"
    );
    let hl = header_len(nf);
    let mrg = nf.contains(Features::MRG_RXBUF);
    if len == 0 {
        assert!(
            r.pieces.is_empty(),
            "an empty used element inside a merged frame"
        );
        return;
    }
    if r.pieces.is_empty() {
        assert!(len as usize >= hl, "a first buffer shorter than the header");
        let h = posted.read_written(ram, hl).expect("buffers in RAM");
        let nb = if hl >= 12 {
            u16::from_le_bytes([h[10], h[11]])
        } else {
            1
        };
        if mrg {
            assert!(nb >= 1, "num_buffers 0");
        } else {
            assert_eq!(nb, 1, "num_buffers must be 1 without MRG_RXBUF");
        }
        r.want = nb;
    }
    r.pieces.push((posted, len));
    if r.pieces.len() < usize::from(r.want) {
        return;
    }
    // A whole frame: all buffers but the last filled completely.
    let pieces = std::mem::take(&mut r.pieces);
    let mut data = Vec::new();
    for (i, (p, l)) in pieces.iter().enumerate() {
        if i + 1 < pieces.len() {
            assert_eq!(
                u64::from(*l),
                p.writable_len(),
                "merged buffer {i} of {} not filled",
                pieces.len()
            );
        }
        data.extend(p.read_written(ram, *l as usize).expect("buffers in RAM"));
    }
    let (hdr, frame) = data.split_at(hl);
    let at = (r.cursor..handed.len())
        .find(|&i| delivered_as(&handed[i], nf, r.want, hl, hdr, frame))
        .unwrap_or_else(|| {
            panic!(
                "the driver read a frame the device was not handed, or altered ({} bytes, header {hdr:02x?})",
                frame.len()
            )
        });
    r.cursor = at + 1;
    r.frames += 1;
    crate::count(|c| c.rx_frames += 1);
    r.want = 0;
}

/// Whether `hdr` + `frame` is how handed frame `h` must reach the driver.
fn delivered_as(h: &Handed, nf: Features, nb: u16, hl: usize, hdr: &[u8], frame: &[u8]) -> bool {
    if frame.len() != h.bytes.len() {
        return false;
    }
    let mut want = h.hdr;
    let mut fixed = None;
    if !nf.contains(h.hdr.rx_requirements()) {
        if want.gso.is_some() {
            return false; // must have been dropped
        }
        if let Some(c) = want.csum.take() {
            let at = usize::from(c.start) + usize::from(c.offset);
            if usize::from(c.start) >= frame.len() || at + 2 > frame.len() {
                return false; // must have been dropped
            }
            fixed = Some((at, ref_checksum(&h.bytes, c)));
        }
        want.data_valid = false;
    }
    let want_hdr = NetHdrRepr::emit_rx(&want, nb);
    if hdr != &want_hdr.as_bytes()[..hl] {
        return false;
    }
    match fixed {
        None => frame == h.bytes.as_slice(),
        Some((at, sum)) => {
            frame[..at] == h.bytes[..at]
                && frame[at + 2..] == h.bytes[at + 2..]
                && frame[at..at + 2] == sum.to_be_bytes()
        }
    }
}
