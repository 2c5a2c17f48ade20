//! The seed corpus, as structures: a few baseline inputs per target and
//! one reproducer for each advisory of shared/research/hostile-guest.md
//! §(a) that applies to a device-side virtio-net with no control queue
//! (files named after the advisory). `tests/seeds.rs` encodes them into
//! `corpus/<target>/`, checks that each decodes back to itself, and that
//! each reaches the oracle it was written for.
//!
//! Not applicable, so no reproducer: CVE-2014-0150 (control-queue MAC
//! table) and CVE-2024-6505 (RSS): virtnet has no control queue and no RSS.

use virtnet::features::Features as F;

use crate::net::{RxHdr, RxPlan};
use crate::queue::{BufSpec, DescSpec, Op as Q, Rings, Size};
use crate::ram::{Addr, Hole, MemSpec};
use crate::tx::Hdr;
use crate::{mmio, net_hdr, queue, rx, tx};

/// What a seed must exercise.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reaches {
    /// Nothing beyond running clean.
    Runs,
    /// Accepted chains compared with the reference walk.
    Chains,
    /// TX frames matched.
    TxFrames,
    /// RX frames read back.
    RxFrames,
    /// The register block moved frames.
    MmioMoves,
}

/// One seed input.
#[derive(Clone, Debug)]
pub enum Seed {
    /// For `queue`.
    Queue(queue::Input),
    /// For `tx`.
    Tx(tx::Input),
    /// For `rx`.
    Rx(rx::Input),
    /// For `mmio`.
    Mmio(mmio::Input),
    /// For `net_hdr`.
    NetHdr(net_hdr::Input),
}

impl Seed {
    /// The target's name.
    pub fn target(&self) -> &'static str {
        match self {
            Seed::Queue(_) => "queue",
            Seed::Tx(_) => "tx",
            Seed::Rx(_) => "rx",
            Seed::Mmio(_) => "mmio",
            Seed::NetHdr(_) => "net_hdr",
        }
    }

    /// The corpus bytes.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Seed::Queue(i) => i.encode(),
            Seed::Tx(i) => i.encode(),
            Seed::Rx(i) => i.encode(),
            Seed::Mmio(i) => i.encode(),
            Seed::NetHdr(i) => i.encode(),
        }
    }

    /// Whether `bytes` decode back to this very input.
    pub fn round_trips(&self, bytes: &[u8]) -> bool {
        fn dec<'a, T: arbitrary::Arbitrary<'a>>(b: &'a [u8]) -> Option<T> {
            T::arbitrary_take_rest(arbitrary::Unstructured::new(b)).ok()
        }
        match self {
            Seed::Queue(i) => dec::<queue::Input>(bytes).as_ref() == Some(i),
            Seed::Tx(i) => dec::<tx::Input>(bytes).as_ref() == Some(i),
            Seed::Rx(i) => dec::<rx::Input>(bytes).as_ref() == Some(i),
            Seed::Mmio(i) => dec::<mmio::Input>(bytes).as_ref() == Some(i),
            Seed::NetHdr(i) => dec::<net_hdr::Input>(bytes).as_ref() == Some(i),
        }
    }
}

const RING: u32 = 0x1000;
const BUF: u32 = 0x8000;

fn off(o: u32) -> Addr {
    Addr::Off(o)
}

fn buf(at: u32, len: u16, writable: bool) -> BufSpec {
    BufSpec {
        at: off(at),
        len,
        writable,
    }
}

fn desc(addr: Addr, len: u32, flags: u16, next: u16) -> DescSpec {
    DescSpec {
        addr,
        len,
        flags,
        next,
    }
}

fn q(size_log2: u8, indirect: bool, event_idx: bool, ops: Vec<Q>) -> queue::Input {
    queue::Input {
        mem: MemSpec::low(16),
        size: Size::Log2(size_log2),
        max_log2: None,
        rings: Rings::Packed(off(RING)),
        event_idx,
        indirect,
        ops,
    }
}

fn queue_seeds() -> Vec<(&'static str, Reaches, Seed)> {
    const NEXT: u16 = 1;
    const WRITE: u16 = 2;
    const INDIRECT: u16 = 4;
    let basic = q(
        3,
        true,
        false,
        vec![
            Q::Chain {
                bufs: vec![buf(BUF, 64, false), buf(BUF + 0x100, 128, true)],
                indirect: None,
            },
            Q::Chain {
                bufs: vec![buf(BUF + 0x400, 12, false), buf(BUF + 0x500, 1500, true)],
                indirect: Some(off(BUF + 0x1000)),
            },
            Q::PublishAvail,
            Q::Pop { small: false },
            Q::Pop { small: false },
            Q::Write {
                pick: 0,
                offset: 0,
                len: 200,
            },
            Q::Read {
                pick: 0,
                offset: 10,
                len: 100,
            },
            Q::AddUsed { pick: 0, len: 128 },
            Q::AddUsed { pick: 0, len: 1500 },
            Q::Publish,
            Q::NeedsNotification,
            Q::Enable,
            Q::Disable,
            Q::Pop { small: false },
        ],
    );
    let mut event = basic.clone();
    event.event_idx = true;
    event.ops.insert(0, Q::UsedEvent(1));
    let mut seeds = vec![
        ("seed-basic", Reaches::Chains, Seed::Queue(basic)),
        ("seed-event-idx", Reaches::Chains, Seed::Queue(event)),
    ];
    // I-FUZZ-7: the prefetch hint two chains ahead (before the second pop,
    // the first having read avail idx) meets a head equal to the queue
    // size (the pop that reaches it breaks the queue). The hint
    // must decide "nothing"; the descriptor one past the table's end (in
    // zeroed RAM, so naming buffer 0) must not be hinted.
    let mut hint = q(
        3,
        false,
        false,
        vec![
            Q::Chain {
                bufs: vec![buf(BUF, 64, false)],
                indirect: None,
            },
            Q::Chain {
                bufs: vec![buf(BUF + 0x100, 64, false)],
                indirect: None,
            },
            Q::Chain {
                bufs: vec![buf(BUF + 0x200, 64, false)],
                indirect: None,
            },
            Q::PushHead(8),
            Q::PublishAvail,
            Q::Pop { small: false },
            Q::Pop { small: true },
            Q::Pop { small: false },
            Q::Pop { small: false },
        ],
    );
    hint.rings = Rings::Raw(off(RING), off(RING + 0x400), off(RING + 0x800));
    seeds.push((
        "seed-hint-head-equals-size",
        Reaches::Chains,
        Seed::Queue(hint),
    ));
    // CVE-2016-6490: zero-length descriptors (QEMU looped forever); here a
    // chain of them and a zero-length self-loop.
    seeds.push((
        "cve-2016-6490-zero-len-desc",
        Reaches::Chains,
        Seed::Queue(q(
            3,
            false,
            false,
            vec![
                Q::Chain {
                    bufs: vec![buf(BUF, 0, false), buf(BUF, 0, true), buf(BUF, 16, true)],
                    indirect: None,
                },
                Q::Desc(5, desc(off(BUF), 0, NEXT, 5)),
                Q::PushHead(5),
                Q::PublishAvail,
                Q::Pop { small: false },
                Q::Pop { small: false },
                Q::AddUsed { pick: 0, len: 0 },
                Q::AddUsed { pick: 0, len: 0 },
                Q::Publish,
            ],
        )),
    ));
    // CVE-2016-7422: a huge descriptor length (QEMU mapped NULL).
    seeds.push((
        "cve-2016-7422-huge-len",
        Reaches::Runs,
        Seed::Queue(q(
            3,
            false,
            false,
            vec![
                Q::Desc(0, desc(off(BUF), u32::MAX, WRITE, 0)),
                Q::PushHead(0),
                Q::Desc(1, desc(Addr::Raw(u64::MAX - 8), 64, 0, 0)),
                Q::PushHead(1),
                Q::Desc(2, desc(off(BUF), 0x8000_0000, NEXT, 3)),
                Q::Desc(3, desc(off(BUF), 0x8000_0000, 0, 0)),
                Q::PushHead(2),
                Q::PublishAvail,
                Q::Pop { small: false },
                Q::Pop { small: false },
                Q::Pop { small: false },
                Q::AddUsed { pick: 0, len: 0 },
                Q::AddUsed { pick: 0, len: 0 },
                Q::AddUsed { pick: 0, len: 0 },
                Q::Publish,
            ],
        )),
    ));
    // CVE-2016-5403: the driver never waits for completions.
    let mut ops = vec![];
    for _ in 0..4 {
        ops.push(Q::Chain {
            bufs: vec![buf(BUF, 64, true)],
            indirect: None,
        });
    }
    ops.push(Q::PublishAvail);
    ops.extend((0..4).map(|_| Q::Pop { small: false }));
    ops.extend([
        Q::SetAvailIdx(8),
        Q::Pop { small: false },
        Q::Pop { small: false },
    ]);
    seeds.push((
        "cve-2016-5403-inflight-overrun",
        Reaches::Chains,
        Seed::Queue(q(2, false, false, ops)),
    ));
    // CVE-2019-18960: a buffer ending past RAM, and one across a hole.
    let mut past = q(
        3,
        false,
        false,
        vec![
            Q::Desc(0, desc(Addr::FromEnd(16), 17, WRITE, 0)),
            Q::PushHead(0),
            Q::Desc(1, desc(Addr::FromEnd(16), 16, WRITE, 0)),
            Q::PushHead(1),
            Q::Desc(2, desc(off(0x2ff0), 0x20, WRITE, 0)),
            Q::PushHead(2),
            Q::PublishAvail,
            Q::Pop { small: false },
            Q::Pop { small: false },
            Q::Write {
                pick: 1,
                offset: 0,
                len: 32,
            },
            Q::Pop { small: false },
            Q::AddUsed { pick: 0, len: 0 },
            Q::AddUsed { pick: 0, len: 16 },
            Q::AddUsed { pick: 0, len: 0 },
            Q::Publish,
        ],
    );
    past.mem.hole = Some(Hole {
        at_page: 2,
        gap_pages: 1,
    });
    seeds.push((
        "cve-2019-18960-desc-past-ram",
        Reaches::Chains,
        Seed::Queue(past),
    ));
    // vm-virtio #196 / Firecracker #3149: avail idx more than size ahead.
    seeds.push((
        "vm-virtio-196-avail-idx-ahead",
        Reaches::Runs,
        Seed::Queue(q(
            3,
            false,
            false,
            vec![
                Q::SetAvailIdx(9),
                Q::Pop { small: false },
                Q::Pop { small: false },
                Q::Publish,
                Q::Enable,
            ],
        )),
    ));
    // Cloud Hypervisor #7605: a bad next_avail from the embedder.
    seeds.push((
        "ch-7605-bad-next-avail",
        Reaches::Runs,
        Seed::Queue(q(
            3,
            false,
            false,
            vec![
                Q::Chain {
                    bufs: vec![buf(BUF, 64, true)],
                    indirect: None,
                },
                Q::PublishAvail,
                Q::SetIndices(0x1234, 0x4321),
                Q::Pop { small: false },
                Q::NeedsNotification,
            ],
        )),
    ));
    // CVE-2020-10723: u16 index truncation: head and next at 0xffff.
    seeds.push((
        "cve-2020-10723-index-truncation",
        Reaches::Runs,
        Seed::Queue(q(
            3,
            true,
            false,
            vec![
                Q::Desc(0, desc(off(BUF), 16, NEXT, 0xffff)),
                Q::PushHead(0),
                Q::PushHead(0xffff),
                Q::PublishAvail,
                Q::Pop { small: false },
                Q::Pop { small: false },
            ],
        )),
    ));
    // CVE-2020-10725: an unvalidated (indirect table) address.
    seeds.push((
        "cve-2020-10725-indirect-table-outside",
        Reaches::Runs,
        Seed::Queue(q(
            3,
            true,
            false,
            vec![
                Q::Desc(0, desc(Addr::Raw(u64::MAX - 0x10), 0x20, INDIRECT, 0)),
                Q::PushHead(0),
                Q::Desc(1, desc(off(BUF), 0x10_0000, INDIRECT, 0)),
                Q::PushHead(1),
                Q::Desc(2, desc(Addr::FromEnd(16), 0x20, INDIRECT, 0)),
                Q::PushHead(2),
                Q::Table(off(BUF), vec![desc(off(BUF), 16, INDIRECT, 0)]),
                Q::Desc(3, desc(off(BUF), 16, INDIRECT, 0)),
                Q::PushHead(3),
                Q::PublishAvail,
                Q::Pop { small: false },
                Q::Pop { small: false },
                Q::Pop { small: false },
                Q::Pop { small: false },
            ],
        )),
    ));
    // CVE-2020-14375: descriptors rewritten after they were checked: the
    // device keeps writing where the checked chain said.
    seeds.push((
        "cve-2020-14375-desc-rewrite",
        Reaches::Chains,
        Seed::Queue(q(
            3,
            false,
            false,
            vec![
                Q::Chain {
                    bufs: vec![buf(BUF, 256, true)],
                    indirect: None,
                },
                Q::PublishAvail,
                Q::Pop { small: false },
                Q::Desc(0, desc(off(RING), 0x1000, WRITE, 0)),
                Q::Write {
                    pick: 0,
                    offset: 0,
                    len: 256,
                },
                Q::AddUsed { pick: 0, len: 256 },
                Q::Publish,
            ],
        )),
    ));
    // CVE-2019-14835: zero-length descriptors around a migration
    // (set_indices) and the index wrap.
    seeds.push((
        "cve-2019-14835-zero-len-migration",
        Reaches::Chains,
        Seed::Queue(q(
            2,
            false,
            false,
            vec![
                Q::SetIndices(0xfffe, 0xfffe),
                Q::PushHead(0),
                Q::PushHead(0),
                Q::PushHead(0),
                Q::PushHead(0),
                Q::Desc(0, desc(off(BUF), 0, WRITE | NEXT, 1)),
                Q::Desc(1, desc(off(BUF), 8, WRITE, 0)),
                Q::SetAvailIdx(2),
                Q::Pop { small: false },
                Q::AddUsed { pick: 0, len: 8 },
                Q::Pop { small: false },
                Q::AddUsed { pick: 0, len: 8 },
                Q::Pop { small: false },
                Q::AddUsed { pick: 0, len: 8 },
                Q::Publish,
                Q::NeedsNotification,
            ],
        )),
    ));
    seeds
}

fn hdr0() -> Hdr {
    Hdr::default()
}

fn csum_hdr(start: u16, offset: u16) -> Hdr {
    Hdr {
        flags: 1,
        csum_start: start,
        csum_offset: offset,
        ..Hdr::default()
    }
}

const ALL_CAPS: u16 = 0x3ff;
const FEATURES_ALL: u64 = F::VERSION_1
    .union(F::CSUM)
    .union(F::GUEST_CSUM)
    .union(F::HOST_TSO4)
    .union(F::HOST_TSO6)
    .union(F::HOST_ECN)
    .union(F::HOST_UFO)
    .union(F::GUEST_TSO4)
    .union(F::GUEST_TSO6)
    .union(F::GUEST_ECN)
    .union(F::GUEST_UFO)
    .union(F::MRG_RXBUF)
    .union(F::RING_EVENT_IDX)
    .union(F::RING_INDIRECT_DESC)
    .union(F::MAC)
    .union(F::MTU)
    .union(F::STATUS)
    .bits();

fn send(hdr: Hdr, len: u32, pieces: Vec<u16>) -> tx::Op {
    tx::Op::Send {
        hdr,
        len,
        pieces,
        indirect: false,
    }
}

fn t(big: bool, caps: u16, wish: u64, size_log2: u8, ops: Vec<tx::Op>) -> tx::Input {
    tx::Input {
        mem: MemSpec::low(64),
        big,
        caps,
        offer: FEATURES_ALL,
        wish,
        size_log2,
        ring_at: None,
        fail_tx: 0,
        claim: None,
        ops,
    }
}

fn tx_seeds() -> Vec<(&'static str, Reaches, Seed)> {
    use tx::Op as T;
    let mut seeds = Vec::new();
    seeds.push((
        "seed-basic",
        Reaches::TxFrames,
        Seed::Tx(t(
            false,
            0,
            FEATURES_ALL,
            4,
            vec![
                send(hdr0(), 60, vec![]),
                send(csum_hdr(14, 16), 100, vec![12]),
                T::Send {
                    hdr: hdr0(),
                    len: 1514,
                    pieces: vec![12, 500],
                    indirect: true,
                },
                T::Publish,
                T::Kick(64),
            ],
        )),
    ));
    seeds.push((
        "seed-offloads-big",
        Reaches::TxFrames,
        Seed::Tx(t(
            true,
            ALL_CAPS,
            FEATURES_ALL,
            4,
            vec![
                send(
                    Hdr {
                        flags: 1,
                        gso_type: 1,
                        hdr_len: 54,
                        gso_size: 1448,
                        csum_start: 34,
                        csum_offset: 16,
                        num_buffers: 0,
                    },
                    20000,
                    vec![12, 54],
                ),
                send(csum_hdr(34, 6), 300, vec![]),
                T::Publish,
                T::Kick(8),
                T::Polling(true),
                send(hdr0(), 64, vec![]),
                T::Publish,
                T::Kick(8),
                T::Reset,
                send(hdr0(), 64, vec![]),
                T::Publish,
                T::Kick(8),
            ],
        )),
    ));
    // Firecracker v0.22 b7bd9bf88: a TX chain shorter than the header.
    seeds.push((
        "fc-b7bd9bf88-tx-shorter-than-hdr",
        Reaches::Runs,
        Seed::Tx(t(
            false,
            0,
            FEATURES_ALL,
            4,
            vec![
                T::Raw(0, vec![desc(off(0x4000), 5, 0, 0)]),
                T::Raw(1, vec![desc(off(0x4000), 11, 0, 0)]),
                T::Publish,
                T::Kick(8),
            ],
        )),
    ));
    let short = t(
        false,
        0,
        FEATURES_ALL,
        4,
        vec![
            send(hdr0(), 0, vec![]),
            send(hdr0(), 13, vec![]),
            send(hdr0(), 14, vec![]),
            T::Publish,
            T::Kick(8),
        ],
    );
    // Cloud Hypervisor #8401: a head-only chain must still be returned.
    seeds.push((
        "ch-8401-head-only-chain",
        Reaches::TxFrames,
        Seed::Tx(short),
    ));
    // CVE-2022-2132: the header split over many descriptors.
    seeds.push((
        "cve-2022-2132-hdr-split",
        Reaches::TxFrames,
        Seed::Tx(t(
            false,
            ALL_CAPS,
            FEATURES_ALL,
            5,
            vec![
                send(csum_hdr(14, 16), 100, vec![1; 12]),
                send(hdr0(), 100, vec![3, 0, 3, 0, 3, 3]),
                T::Publish,
                T::Kick(8),
            ],
        )),
    ));
    // CVE-2023-6693: HASH_REPORT + MRG_RXBUF asked for (not offered: the
    // header stays 12 bytes).
    let hash = F::HASH_REPORT.bits() | F::MRG_RXBUF.bits() | F::VERSION_1.bits();
    seeds.push((
        "cve-2023-6693-hash-report-hdr",
        Reaches::TxFrames,
        Seed::Tx(t(
            false,
            0,
            hash,
            4,
            vec![send(hdr0(), 100, vec![20]), T::Publish, T::Kick(8)],
        )),
    ));
    // Firecracker #4526 family: descriptors far larger than any frame.
    seeds.push((
        "fc-4526-huge-descriptors",
        Reaches::Runs,
        Seed::Tx(t(
            false,
            0,
            FEATURES_ALL,
            4,
            vec![
                send(hdr0(), 65000, vec![]),
                T::Raw(4, vec![desc(off(0x4000), 0xffff_fff0, 0, 0)]),
                T::Publish,
                T::Kick(8),
            ],
        )),
    ));
    // CVE-2015-7504's lesson (a fixed buffer overrun at its edge): frames
    // of exactly the slot size and one byte more.
    seeds.push((
        "cve-2015-7504-frame-at-slot-size",
        Reaches::TxFrames,
        Seed::Tx(t(
            false,
            0,
            FEATURES_ALL,
            4,
            vec![
                send(hdr0(), 1536, vec![]),
                send(hdr0(), 1537, vec![]),
                T::Publish,
                T::Kick(8),
            ],
        )),
    ));
    // CVE-2019-3900: a driver that sends faster than the device drains:
    // the budget hands control back.
    let mut ops = Vec::new();
    for i in 0..40 {
        ops.push(send(hdr0(), 60 + i, vec![]));
    }
    ops.push(T::Publish);
    for _ in 0..8 {
        ops.push(T::Kick(3));
    }
    ops.push(T::Kick(79));
    seeds.push((
        "cve-2019-3900-tx-budget",
        Reaches::TxFrames,
        Seed::Tx(t(false, 0, FEATURES_ALL, 6, ops)),
    ));
    seeds
}

fn r(big: bool, wish: u64, size_log2: u8, ops: Vec<rx::Op>) -> rx::Input {
    rx::Input {
        mem: MemSpec::low(64),
        big,
        caps: ALL_CAPS,
        offer: FEATURES_ALL,
        wish,
        size_log2,
        ring_at: None,
        ops,
    }
}

fn frame(len: u32) -> rx::Op {
    rx::Op::Backend(RxPlan::Frame(
        len,
        RxHdr {
            csum: None,
            data_valid: false,
            gso: None,
        },
    ))
}

fn post(bufs: Vec<u16>) -> rx::Op {
    rx::Op::Post {
        bufs,
        readable: None,
        indirect: false,
    }
}

fn rx_seeds() -> Vec<(&'static str, Reaches, Seed)> {
    use rx::Op as R;
    let no_mrg = FEATURES_ALL & !F::MRG_RXBUF.bits();
    let no_offload = F::VERSION_1.bits() | F::MRG_RXBUF.bits();
    let mut seeds = Vec::new();
    seeds.push((
        "seed-basic",
        Reaches::RxFrames,
        Seed::Rx(r(
            false,
            no_mrg,
            4,
            vec![
                post(vec![1526]),
                post(vec![12, 100]),
                post(vec![64]),
                frame(60),
                frame(80),
                frame(1514),
                R::Inject(42),
                R::Kick(8),
                post(vec![2000]),
                R::Kick(8),
            ],
        )),
    ));
    seeds.push((
        "seed-mrg-csum",
        Reaches::RxFrames,
        Seed::Rx(r(
            false,
            no_offload,
            4,
            vec![
                post(vec![512]),
                post(vec![512]),
                post(vec![256, 256]),
                post(vec![512]),
                R::Backend(RxPlan::Frame(
                    1500,
                    RxHdr {
                        csum: Some((34, 16)),
                        data_valid: true,
                        gso: None,
                    },
                )),
                R::Backend(RxPlan::Frame(
                    300,
                    RxHdr {
                        csum: None,
                        data_valid: false,
                        gso: Some((0, (false, (1448, 54)))),
                    },
                )),
                frame(100),
                R::Kick(8),
            ],
        )),
    ));
    // CVE-2021-3748: merged RX, num_buffers written before the used
    // elements are: a 64 KiB frame over 32 buffers of 2 KiB.
    let mut ops: Vec<R> = (0..33).map(|_| post(vec![2048])).collect();
    ops.push(R::Backend(RxPlan::Frame(
        65536,
        RxHdr {
            csum: None,
            data_valid: false,
            gso: Some((0, (false, (1448, 54)))),
        },
    )));
    ops.push(frame(65000));
    ops.push(R::Kick(8));
    seeds.push((
        "cve-2021-3748-mrg-num-buffers",
        Reaches::RxFrames,
        Seed::Rx(r(true, FEATURES_ALL, 6, ops)),
    ));
    // CVE-2018-16880: a merged frame needing more heads than there can be.
    let mut ops: Vec<R> = (0..255).map(|_| post(vec![16])).collect();
    ops.push(frame(65550));
    ops.push(R::Kick(4));
    ops.push(post(vec![8000, 8000]));
    ops.push(R::Kick(4));
    seeds.push((
        "cve-2018-16880-mrg-too-many-heads",
        Reaches::Runs,
        Seed::Rx(r(true, FEATURES_ALL, 8, ops)),
    ));
    // CVE-2020-16843: frames with a full (empty) RX ring, then a refill:
    // delivery must resume.
    seeds.push((
        "cve-2020-16843-rx-refill",
        Reaches::RxFrames,
        Seed::Rx(r(
            false,
            no_mrg,
            4,
            vec![
                frame(60),
                frame(61),
                frame(62),
                R::Kick(8),
                R::Kick(8),
                post(vec![1526]),
                R::Kick(8),
                post(vec![1526]),
                post(vec![1526]),
                R::Kick(8),
            ],
        )),
    ));
    // Hostile-guest case 44 / 47: a buffer too small for the frame, and a
    // first merged buffer smaller than the header.
    seeds.push((
        "seed-small-buffers",
        Reaches::RxFrames,
        Seed::Rx(r(
            false,
            no_offload,
            4,
            vec![
                post(vec![8]),
                R::Post {
                    bufs: vec![100],
                    readable: Some(20),
                    indirect: false,
                },
                post(vec![100]),
                frame(60),
                R::Kick(8),
            ],
        )),
    ));
    seeds
}

fn m(ops: Vec<mmio::Op>) -> mmio::Input {
    mmio::Input {
        mem: MemSpec::low(64),
        big: false,
        caps: 0,
        offer: FEATURES_ALL,
        qmax_log2: 8,
        link_up: true,
        budget: 63,
        ops,
    }
}

fn bring_up(features: u64) -> Vec<mmio::Op> {
    use mmio::Op as M;
    vec![
        M::Init(features),
        M::Queue(0, 4, off(0x1000)),
        M::Queue(1, 4, off(0x3000)),
        M::DriverOk,
    ]
}

fn mmio_seeds() -> Vec<(&'static str, Reaches, Seed)> {
    use mmio::Op as M;
    use virtnet::mmio::regs;
    let f = F::VERSION_1.bits() | F::RING_EVENT_IDX.bits() | F::MRG_RXBUF.bits();
    let mut seeds = Vec::new();
    let mut ops = bring_up(f);
    ops.extend([
        M::Rx(vec![1600]),
        M::Rx(vec![1600]),
        M::Backend(RxPlan::Frame(
            100,
            RxHdr {
                csum: None,
                data_valid: false,
                gso: None,
            },
        )),
        M::Tx(100, hdr0()),
        M::Kick(1),
        M::Poll,
        M::Read(regs::INTERRUPT_STATUS as u16, 2),
        M::Ack(3),
        M::Link(false),
        M::Read(regs::CONFIG as u16 + 6, 1),
        M::Reset,
    ]);
    ops.extend(bring_up(f));
    ops.extend([M::Tx(60, hdr0()), M::Kick(1)]);
    seeds.push(("seed-bringup", Reaches::MmioMoves, Seed::Mmio(m(ops))));
    // CVE-2026-5747: queue size rewritten after DRIVER_OK.
    let mut ops = bring_up(f);
    ops.extend([
        M::Write(regs::QUEUE_SEL as u16, 2, 1),
        M::Write(regs::QUEUE_NUM as u16, 2, 0),
        M::Write(regs::QUEUE_NUM as u16, 2, 3),
        M::Write(regs::QUEUE_DESC_LOW as u16, 2, 0xdead_0000),
        M::Write(regs::QUEUE_READY as u16, 2, 1),
        M::Tx(60, hdr0()),
        M::Kick(1),
    ]);
    seeds.push((
        "cve-2026-5747-queue-num-after-driver-ok",
        Reaches::MmioMoves,
        Seed::Mmio(m(ops)),
    ));
    // Cloud Hypervisor #7917: QueueSel = 0xffff, then every queue register.
    let mut ops = vec![M::Init(f), M::Write(regs::QUEUE_SEL as u16, 2, 0xffff)];
    for reg in [
        regs::QUEUE_NUM_MAX,
        regs::QUEUE_NUM,
        regs::QUEUE_READY,
        regs::QUEUE_DESC_LOW,
        regs::QUEUE_DESC_HIGH,
        regs::QUEUE_DRIVER_LOW,
        regs::QUEUE_DEVICE_HIGH,
    ] {
        ops.push(M::Write(reg as u16, 2, 0x10));
        ops.push(M::Read(reg as u16, 2));
    }
    ops.push(M::Write(regs::QUEUE_READY as u16, 2, 1));
    ops.push(M::Write(regs::QUEUE_READY as u16, 2, 0));
    seeds.push(("ch-7917-queue-sel-ffff", Reaches::Runs, Seed::Mmio(m(ops))));
    // CVE-2023-6693 through the register block: HASH_REPORT asked for.
    let hash = f | F::HASH_REPORT.bits();
    let mut ops = bring_up(hash);
    ops.extend([
        M::Read(regs::STATUS as u16, 2),
        M::Tx(60, hdr0()),
        M::Kick(1),
    ]);
    ops.extend(bring_up(f));
    seeds.push((
        "cve-2023-6693-hash-report-mmio",
        Reaches::Runs,
        Seed::Mmio(m(ops)),
    ));
    seeds
}

fn net_hdr_seeds() -> Vec<(&'static str, Reaches, Seed)> {
    let frame: Vec<u8> = crate::net::frame_bytes(7, 200);
    let h = |flags: u8, gso: u8, hdr_len: u16, gso_size: u16, cs: u16, co: u16| {
        let mut b = [0u8; 12];
        b[0] = flags;
        b[1] = gso;
        b[2..4].copy_from_slice(&hdr_len.to_le_bytes());
        b[4..6].copy_from_slice(&gso_size.to_le_bytes());
        b[6..8].copy_from_slice(&cs.to_le_bytes());
        b[8..10].copy_from_slice(&co.to_le_bytes());
        b
    };
    let input = |hdr: [u8; 12]| net_hdr::Input {
        hdr,
        features: FEATURES_ALL,
        num_buffers: 1,
        rx: RxHdr {
            csum: Some((34, 16)),
            data_valid: true,
            gso: Some((0, (true, (1448, 54)))),
        },
        frame: crate::encode::Bytes(frame.clone()),
    };
    vec![
        (
            "seed-csum",
            Reaches::Runs,
            Seed::NetHdr(input(h(1, 0, 0, 0, 34, 16))),
        ),
        (
            "seed-gso-tcpv4-ecn",
            Reaches::Runs,
            Seed::NetHdr(input(h(1, 0x81, 54, 1448, 34, 16))),
        ),
        // The 2024 Linux virtio_net_hdr_to_skb fix: GSO with a checksum
        // field just past the frame, and csum_offset 0xffff.
        (
            "linux-2024-gso-csum-bounds",
            Reaches::Runs,
            Seed::NetHdr(input(h(1, 1, 54, 1448, 190, 9))),
        ),
        (
            "linux-2024-gso-csum-offset-ffff",
            Reaches::Runs,
            Seed::NetHdr(input(h(1, 4, 0xffff, 0, 34, 0xffff))),
        ),
    ]
}

/// Every seed: `(file name, what it must reach, input)`.
pub fn all() -> Vec<(&'static str, Reaches, Seed)> {
    let mut v = queue_seeds();
    v.extend(tx_seeds());
    v.extend(rx_seeds());
    v.extend(mmio_seeds());
    v.extend(net_hdr_seeds());
    v
}
