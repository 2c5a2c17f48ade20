//! Test doubles of the framework (a vCPU register file, a GIC) and a guest
//! that drives the device through vCPU exits, shared by the test files.
#![allow(dead_code)]

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

use virtnet::device::{Backend, BackendError, NetConfig, NetDevice, NoInterceptor, RxFrame};
use virtnet::features::Features;
use virtnet::mem::{GuestMemory, RegionMemory};
use virtnet::mmio::{regs, DeviceStatus, InterruptLine, MmioTransport};
use virtnet::pool::FramePool;
use virtnet::testing::TestDriver;
use virtnet::wire::NetHdrRepr;
use virtnet_hvf::abort::AccessSize;
use virtnet_hvf::memory::{guest_memory, Mapping};
use virtnet_hvf::{ExitAction, ExitError, Gic, HvfNet, Vcpu, VcpuExit};

/// Guest-physical base of the device's MMIO window in the tests.
pub const BASE: u64 = 0x0a00_0000;
/// Guest RAM in the tests.
pub const RAM_BASE: u64 = 0x4000_0000;
/// Size of the test guest RAM.
pub const RAM_SIZE: usize = 1 << 20;
/// A PC inside guest RAM.
pub const PC: u64 = 0x4000_1000;

// ------------------------------------------------------------ syndromes

/// ESR_EL2 of a data abort from EL1 (EC 0x24), IL = 1, ISV = 1, DFSC =
/// translation fault level 2, as the Arm ARM lays the fields out.
pub fn esr(size: AccessSize, write: bool, srt: u8, sse: bool, sf: bool) -> u64 {
    (0x24u64 << 26)
        | (1 << 25)
        | (1 << 24)
        | (u64::from(size.sas()) << 22)
        | (u64::from(sse) << 21)
        | (u64::from(srt) << 16)
        | (u64::from(sf) << 15)
        | (u64::from(write) << 6)
        | 0b00_0110
}

/// `ldr{b,h,} w<srt>` / `ldr x<srt>`: a zero-extending load (SF = 1 only for
/// the 8-byte load).
pub fn load(size: AccessSize, srt: u8) -> u64 {
    esr(size, false, srt, false, size == AccessSize::Double)
}

/// `str{b,h,} w<srt>` / `str x<srt>`.
pub fn store(size: AccessSize, srt: u8) -> u64 {
    esr(size, true, srt, false, size == AccessSize::Double)
}

/// An exception exit (the physical address also as the virtual one).
pub fn exit_at(syndrome: u64, ipa: u64) -> VcpuExit {
    VcpuExit::exception(syndrome, 0xffff_0000_0000_0000 | ipa, ipa)
}

// ------------------------------------------------------------ vCPU double

/// The registers of a vCPU, with injectable failures.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FakeVcpu {
    /// X0..X30.
    pub x: [u64; 31],
    /// PC.
    pub pc: u64,
    /// Reads of this X register fail.
    pub fail_read_x: Option<u8>,
    /// Writes of any X register fail.
    pub fail_write_x: bool,
    /// Writes of the PC fail.
    pub fail_write_pc: bool,
}

impl FakeVcpu {
    /// Registers filled with a recognisable pattern, PC at [`PC`].
    pub fn new() -> Self {
        let mut x = [0u64; 31];
        for (i, r) in x.iter_mut().enumerate() {
            *r = 0xdead_0000_0000_0000 | i as u64;
        }
        FakeVcpu {
            x,
            pc: PC,
            fail_read_x: None,
            fail_write_x: false,
            fail_write_pc: false,
        }
    }
}

impl Vcpu for FakeVcpu {
    type Error = &'static str;
    fn x(&self, n: u8) -> Result<u64, Self::Error> {
        if self.fail_read_x == Some(n) {
            return Err("read failed");
        }
        self.x
            .get(usize::from(n))
            .copied()
            .ok_or("no such register")
    }
    fn set_x(&mut self, n: u8, value: u64) -> Result<(), Self::Error> {
        if self.fail_write_x {
            return Err("write failed");
        }
        *self.x.get_mut(usize::from(n)).ok_or("no such register")? = value;
        Ok(())
    }
    fn pc(&self) -> Result<u64, Self::Error> {
        Ok(self.pc)
    }
    fn set_pc(&mut self, value: u64) -> Result<(), Self::Error> {
        if self.fail_write_pc {
            return Err("pc write failed");
        }
        self.pc = value;
        Ok(())
    }
}

// ------------------------------------------------------------ GIC double

/// A GIC that records every `set_spi` call; the calls list is shared so a
/// test can watch it while the line is lent to the device.
#[derive(Clone, Debug, Default)]
pub struct FakeGic {
    /// `(intid, level)` per call, in order.
    pub calls: Rc<RefCell<Vec<(u32, bool)>>>,
    /// The next this-many calls fail.
    pub fail_next: usize,
}

impl Gic for FakeGic {
    type Error = u32;
    fn set_spi(&mut self, intid: u32, level: bool) -> Result<(), u32> {
        self.calls.borrow_mut().push((intid, level));
        if self.fail_next > 0 {
            self.fail_next -= 1;
            return Err(0xfae9_4001);
        }
        Ok(())
    }
}

// ------------------------------------------------------------ backend double

/// A backend that keeps what the device sent and hands out queued frames.
#[derive(Clone, Debug, Default)]
pub struct QueueBackend {
    /// Frames the guest sent.
    pub sent: Rc<RefCell<Vec<Vec<u8>>>>,
    /// Frames for the guest.
    pub to_guest: Rc<RefCell<VecDeque<Vec<u8>>>>,
}

impl Backend for QueueBackend {
    fn transmit(&mut self, _hdr: &NetHdrRepr, frame: &[u8]) -> Result<(), BackendError> {
        self.sent.borrow_mut().push(frame.to_vec());
        Ok(())
    }
    fn receive(&mut self, buf: &mut [u8]) -> Result<Option<RxFrame>, BackendError> {
        let Some(f) = self.to_guest.borrow_mut().pop_front() else {
            return Ok(None);
        };
        buf[..f.len()].copy_from_slice(&f);
        Ok(Some(RxFrame {
            len: f.len(),
            hdr: NetHdrRepr::default(),
        }))
    }
}

// ------------------------------------------------------------ the guest

/// The device under test.
pub type Dev<B> = NetDevice<'static, B, NoInterceptor>;

/// The MAC address the test device offers: bytes 3..6 have the top bit set
/// so sign extension shows.
pub const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0xab, 0xcd, 0xef];

/// A device with `backend`, the MMIO window at [`BASE`], MAC [`MAC`].
pub fn device<B: Backend>(backend: B) -> HvfNet<Dev<B>> {
    let rx: &'static FramePool = Box::leak(Box::new(FramePool::new()));
    let tx: &'static FramePool = Box::leak(Box::new(FramePool::new()));
    let config = NetConfig {
        mac: Some(MAC),
        ..NetConfig::default()
    };
    let dev = NetDevice::new(config, backend, NoInterceptor, rx, tx);
    HvfNet::new(BASE, MmioTransport::new(dev)).expect("window fits")
}

/// Guest RAM built the way the shim builds it on macOS: from a
/// `(gpa, host, len)` mapping (here of leaked heap memory).
pub fn ram() -> RegionMemory<2> {
    let host: &'static mut [u8] = Box::leak(vec![0u8; RAM_SIZE].into_boxed_slice());
    // SAFETY: the buffer is leaked (mapped for the rest of the process) and
    // only ever reached through the returned memory afterwards.
    unsafe {
        guest_memory(&[Mapping {
            gpa: RAM_BASE,
            host: host.as_mut_ptr(),
            len: RAM_SIZE,
        }])
    }
    .expect("one valid mapping")
}

/// A guest that reaches the device only through trapped loads and stores,
/// each one a vCPU exit handed to the shim.
pub struct Guest<'a, B: Backend, L: InterruptLine> {
    pub net: &'a mut HvfNet<Dev<B>>,
    pub vcpu: FakeVcpu,
    pub mem: &'a RegionMemory<2>,
    pub line: &'a mut L,
}

impl<B: Backend, L: InterruptLine> Guest<'_, B, L> {
    /// One exit through the shim.
    pub fn exit(&mut self, exit: &VcpuExit) -> Result<ExitAction, ExitError<&'static str>> {
        self.net
            .handle_exit(exit, &mut self.vcpu, self.mem, self.line)
    }

    /// `str w3, [window + off]` with X3 = `value`; checks it was handled
    /// and the PC advanced by 4.
    pub fn write32(&mut self, off: u64, value: u32) -> virtnet::device::Progress {
        self.vcpu.x[3] = 0xffff_ffff_0000_0000 | u64::from(value);
        let pc = self.vcpu.pc;
        let action = self
            .exit(&exit_at(store(AccessSize::Word, 3), BASE + off))
            .expect("served");
        assert_eq!(self.vcpu.pc, pc + 4);
        match action {
            ExitAction::Handled { progress, .. } => progress,
            ExitAction::NotMine => panic!("write at {off:#x} not handled"),
        }
    }

    /// `ldr w4, [window + off]`; checks it was handled and the PC advanced.
    pub fn read32(&mut self, off: u64) -> u32 {
        let pc = self.vcpu.pc;
        let action = self
            .exit(&exit_at(load(AccessSize::Word, 4), BASE + off))
            .expect("served");
        assert!(matches!(action, ExitAction::Handled { .. }));
        assert_eq!(self.vcpu.pc, pc + 4);
        assert_eq!(self.vcpu.x[4] >> 32, 0, "a W load clears the upper half");
        self.vcpu.x[4] as u32
    }

    /// Negotiates `features`, sets up queues 0 (RX) and 1 (TX) with `size`
    /// entries each at the given RAM addresses and sets DRIVER_OK, all
    /// through exits, as a virtio-mmio driver does (VIRTIO 1.2 §3.1.1,
    /// §4.2.3.2).
    pub fn bring_up(&mut self, features: Features, size: u16, rings: [u64; 2]) -> [TestDriver; 2] {
        assert_eq!(self.read32(regs::MAGIC_VALUE), virtnet::mmio::MAGIC);
        self.write32(regs::STATUS, 0);
        self.write32(regs::STATUS, DeviceStatus::ACKNOWLEDGE.bits().into());
        self.write32(
            regs::STATUS,
            (DeviceStatus::ACKNOWLEDGE | DeviceStatus::DRIVER)
                .bits()
                .into(),
        );
        let mut offered = 0u64;
        for sel in 0..2u32 {
            self.write32(regs::DEVICE_FEATURES_SEL, sel);
            offered |= u64::from(self.read32(regs::DEVICE_FEATURES)) << (32 * sel);
        }
        assert!(Features::from_bits_retain(offered).contains(features));
        for sel in 0..2u32 {
            self.write32(regs::DRIVER_FEATURES_SEL, sel);
            self.write32(
                regs::DRIVER_FEATURES,
                (features.bits() >> (32 * sel)) as u32,
            );
        }
        let s = DeviceStatus::ACKNOWLEDGE | DeviceStatus::DRIVER | DeviceStatus::FEATURES_OK;
        self.write32(regs::STATUS, s.bits().into());
        assert_eq!(
            self.read32(regs::STATUS),
            u32::from(s.bits()),
            "FEATURES_OK kept"
        );
        let mut drivers = Vec::new();
        for (q, &at) in rings.iter().enumerate() {
            let d = TestDriver::new(self.mem, at, size).expect("rings in RAM");
            self.write32(regs::QUEUE_SEL, q as u32);
            assert!(self.read32(regs::QUEUE_NUM_MAX) >= u32::from(size));
            self.write32(regs::QUEUE_NUM, size.into());
            let l = d.layout;
            for (lo, addr) in [
                (regs::QUEUE_DESC_LOW, l.desc_table.0),
                (regs::QUEUE_DRIVER_LOW, l.avail_ring.0),
                (regs::QUEUE_DEVICE_LOW, l.used_ring.0),
            ] {
                self.write32(lo, addr as u32);
                self.write32(lo + 4, (addr >> 32) as u32);
            }
            self.write32(regs::QUEUE_READY, 1);
            assert_eq!(self.read32(regs::QUEUE_READY), 1, "queue {q} accepted");
            drivers.push(d);
        }
        let s = s | DeviceStatus::DRIVER_OK;
        self.write32(regs::STATUS, s.bits().into());
        assert_eq!(self.read32(regs::STATUS), u32::from(s.bits()));
        [drivers.remove(0), drivers.remove(0)]
    }
}

/// Reads `len` bytes of guest memory.
pub fn read_mem<M: GuestMemory + ?Sized>(mem: &M, addr: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    mem.read(virtnet::mem::GuestAddress(addr), &mut v)
        .expect("in RAM");
    v
}
