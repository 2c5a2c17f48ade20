//! The interrupt lines over test doubles of the GIC and of a VMM callback,
//! and guest memory built from `hv_vm_map`-style mappings. Pins I-HVF-6 and
//! I-HVF-7 (specs/11-hvf.md).

mod common;

use std::cell::RefCell;

use common::FakeGic;
use virtnet::mem::{GuestAddress, GuestMemory, MemError, RegionError};
use virtnet::mmio::InterruptLine;
use virtnet_hvf::memory::{guest_memory, Mapping};
use virtnet_hvf::{CallbackLine, GicLine};

#[test]
fn gic_line_sets_levels_and_skips_redundant_calls() {
    let gic = FakeGic::default();
    let calls = gic.calls.clone();
    let mut line = GicLine::new(gic, 40);
    assert_eq!(line.level(), None);
    line.raise();
    line.raise();
    line.raise();
    assert_eq!(*calls.borrow(), vec![(40, true)]);
    assert_eq!(line.level(), Some(true));
    line.lower();
    line.lower();
    assert_eq!(*calls.borrow(), vec![(40, true), (40, false)]);
    line.raise();
    assert_eq!(*calls.borrow(), vec![(40, true), (40, false), (40, true)]);
    assert_eq!(line.failures(), 0);
    assert_eq!(line.intid(), 40);
}

#[test]
fn gic_line_failures_are_recorded_and_retried() {
    let gic = FakeGic {
        fail_next: 1,
        ..FakeGic::default()
    };
    let calls = gic.calls.clone();
    let mut line = GicLine::new(gic, 33);
    line.raise(); // fails
    assert_eq!(line.failures(), 1);
    assert_eq!(line.level(), None);
    assert_eq!(line.last_error(), Some(&0xfae9_4001));
    line.raise(); // level unknown: sent again, succeeds
    assert_eq!(line.level(), Some(true));
    assert_eq!(*calls.borrow(), vec![(33, true), (33, true)]);
    assert_eq!(line.take_last_error(), Some(0xfae9_4001));
    assert_eq!(line.take_last_error(), None);
}

#[test]
fn callback_line_forwards_every_level() {
    let seen = RefCell::new(Vec::new());
    {
        let mut line = CallbackLine::new(|level| seen.borrow_mut().push(level));
        line.raise();
        line.raise();
        line.lower();
    }
    assert_eq!(seen.into_inner(), vec![true, true, false]);
}

#[test]
fn guest_memory_from_mappings() {
    let mut a = vec![0u8; 0x1000];
    let mut b = vec![0u8; 0x2000];
    let maps = [
        Mapping {
            gpa: 0x8000_0000,
            host: a.as_mut_ptr(),
            len: a.len(),
        },
        Mapping {
            gpa: 0x4000_0000,
            host: b.as_mut_ptr(),
            len: b.len(),
        },
    ];
    // SAFETY: `a` and `b` outlive `mem` and are not referenced while it is
    // used (read back only after it is dropped).
    let mem = unsafe { guest_memory::<2>(&maps) }.unwrap();
    mem.write(GuestAddress(0x8000_0ffc), &[1, 2, 3, 4]).unwrap();
    mem.write(GuestAddress(0x4000_0000), &[9; 8]).unwrap();
    mem.write(GuestAddress(0x4000_1ff8), &[7; 8]).unwrap();
    // Outside every mapping, and across a mapping's end.
    assert_eq!(
        mem.write(GuestAddress(0x8000_1000), &[0]),
        Err(MemError::OutOfRange {
            addr: 0x8000_1000,
            len: 1
        })
    );
    assert!(mem.write(GuestAddress(0x8000_0ffe), &[0; 4]).is_err());
    assert!(mem.read(GuestAddress(0x4000_2000), &mut [0; 1]).is_err());
    drop(mem);
    assert_eq!(a[0xffc..], [1, 2, 3, 4]);
    assert_eq!(b[..8], [9; 8]);
    assert_eq!(b[0x1ff8..], [7; 8]);

    // Refused sets: overlap, too many, null, empty.
    let overlap = [
        maps[0],
        Mapping {
            gpa: 0x8000_0800,
            ..maps[1]
        },
    ];
    // SAFETY: as above; these are refused before any access.
    unsafe {
        assert_eq!(
            guest_memory::<2>(&overlap).unwrap_err(),
            RegionError::Overlap
        );
        assert_eq!(guest_memory::<1>(&maps).unwrap_err(), RegionError::Full);
        let null = Mapping {
            host: std::ptr::null_mut(),
            ..maps[0]
        };
        assert_eq!(
            guest_memory::<1>(&[null]).unwrap_err(),
            RegionError::NullHost
        );
        let empty = Mapping { len: 0, ..maps[0] };
        assert_eq!(guest_memory::<1>(&[empty]).unwrap_err(), RegionError::Empty);
    }
}
