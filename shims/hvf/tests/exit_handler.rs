//! The exit handler against the core's real virtio-mmio transport and
//! net device, with the framework replaced by test doubles (a register file
//! for the vCPU, a recorder for the GIC). Pins I-HVF-1 to I-HVF-6 and
//! I-HVF-10 (specs/11-hvf.md).

mod common;

use common::*;
use virtnet::device::Progress;
use virtnet::features::Features;
use virtnet::mmio::{regs, DeviceStatus, MAGIC, VENDOR_ID, WINDOW_SIZE};
use virtnet_hvf::abort::{AbortError, AccessSize};
use virtnet_hvf::ffi::{self, hv_vcpu_exit_exception_t, hv_vcpu_exit_t};
use virtnet_hvf::{
    handle_exit, ExitAction, ExitError, ExitReason, GicLine, MmioBus, MmioWindow, VcpuExit,
};

const SPI: u32 = 48;

/// A bus that records every access and answers loads with a fixed pattern.
#[derive(Default)]
struct RecordingBus {
    reads: Vec<(u64, AccessSize)>,
    writes: Vec<(u64, AccessSize, u64)>,
}

impl MmioBus for RecordingBus {
    fn read(&mut self, offset: u64, size: AccessSize) -> u64 {
        self.reads.push((offset, size));
        0x8877_6655_4433_2211
    }
    fn write(&mut self, offset: u64, size: AccessSize, value: u64) -> Progress {
        self.writes.push((offset, size, value));
        Progress::default()
    }
}

fn window() -> MmioWindow {
    MmioWindow::new(BASE).unwrap()
}

const SIZES: [AccessSize; 4] = [
    AccessSize::Byte,
    AccessSize::Half,
    AccessSize::Word,
    AccessSize::Double,
];

// ------------------------------------------------------------ I-HVF-1

#[test]
fn magic_value_read_with_a_4_byte_load_into_x5() {
    let mut net = device(QueueBackend::default());
    let mem = ram();
    let mut line = GicLine::new(FakeGic::default(), SPI);
    let mut vcpu = FakeVcpu::new();
    let before = vcpu.clone();
    // ldr w5, [x0] at the window base: the literal syndrome 0x93850006.
    assert_eq!(load(AccessSize::Word, 5), 0x9385_0006);
    let action = net
        .handle_exit(&exit_at(0x9385_0006, BASE), &mut vcpu, &mem, &mut line)
        .unwrap();
    let ExitAction::Handled { access, progress } = action else {
        panic!("not handled: {action:?}")
    };
    assert_eq!(access.ipa, BASE);
    assert_eq!(access.size, AccessSize::Word);
    assert!(!access.write);
    assert_eq!(progress, Progress::default());
    assert_eq!(vcpu.x[5], u64::from(MAGIC), "X5 = \"virt\"");
    assert_eq!(vcpu.pc, PC + 4);
    // Nothing else changed.
    let mut expect = before;
    expect.x[5] = u64::from(MAGIC);
    expect.pc = PC + 4;
    assert_eq!(vcpu, expect);
    // More identification registers, each into a different register.
    for (off, reg, want) in [
        (regs::VERSION, 9u8, 2u64),
        (regs::DEVICE_ID, 10, 1),
        (regs::VENDOR_ID, 30, u64::from(VENDOR_ID)),
    ] {
        net.handle_exit(
            &exit_at(load(AccessSize::Word, reg), BASE + off),
            &mut vcpu,
            &mem,
            &mut line,
        )
        .unwrap();
        assert_eq!(vcpu.x[usize::from(reg)], want, "offset {off:#x}");
    }
    assert_eq!(vcpu.pc, PC + 16);
}

#[test]
fn config_space_loads_of_every_size_with_sign_extension() {
    let mut net = device(QueueBackend::default());
    let mem = ram();
    let mut line = GicLine::new(FakeGic::default(), SPI);
    let mut vcpu = FakeVcpu::new();
    let cfg = BASE + regs::CONFIG;
    // (syndrome, offset in config, register, expected register value)
    let cases: [(u64, u64, u8, u64); 10] = [
        // ldrb w1, MAC[0] = 0x52
        (load(AccessSize::Byte, 1), 0, 1, 0x52),
        // ldrb w1, MAC[3] = 0xab: zero-extended
        (load(AccessSize::Byte, 1), 3, 1, 0xab),
        // ldrsb x2, MAC[3]: sign-extended to 64 bits
        (
            esr(AccessSize::Byte, false, 2, true, true),
            3,
            2,
            0xffff_ffff_ffff_ffab,
        ),
        // ldrsb w2, MAC[3]: sign-extended to 32 bits, upper half cleared
        (
            esr(AccessSize::Byte, false, 2, true, false),
            3,
            2,
            0xffff_ffab,
        ),
        // ldrsb x2, MAC[1] = 0x54: positive stays positive
        (esr(AccessSize::Byte, false, 2, true, true), 1, 2, 0x54),
        // ldrh w3, MAC[4..6] = cd ef (little-endian 0xefcd)
        (load(AccessSize::Half, 3), 4, 3, 0xefcd),
        // ldrsh x3, MAC[4..6]
        (
            esr(AccessSize::Half, false, 3, true, true),
            4,
            3,
            0xffff_ffff_ffff_efcd,
        ),
        // ldrsh w3
        (
            esr(AccessSize::Half, false, 3, true, false),
            4,
            3,
            0xffff_efcd,
        ),
        // ldr w6, MAC[0..4]
        (load(AccessSize::Word, 6), 0, 6, 0xab00_5452),
        // ldr x7, MAC[0..6] + status (link up = 1, little-endian u16)
        (load(AccessSize::Double, 7), 0, 7, 0x0001_efcd_ab00_5452),
    ];
    for (i, &(syndrome, off, reg, want)) in cases.iter().enumerate() {
        vcpu.x[usize::from(reg)] = 0x5a5a_5a5a_5a5a_5a5a;
        let pc = vcpu.pc;
        let action = net
            .handle_exit(&exit_at(syndrome, cfg + off), &mut vcpu, &mem, &mut line)
            .unwrap();
        assert!(matches!(action, ExitAction::Handled { .. }), "case {i}");
        assert_eq!(vcpu.x[usize::from(reg)], want, "case {i}: {syndrome:#x}");
        assert_eq!(vcpu.pc, pc + 4, "case {i}");
    }
    // ldrsw x8 (SAS = word, SSE, SF) of MAC[2..6] = 00 ab cd ef: negative.
    net.handle_exit(
        &exit_at(esr(AccessSize::Word, false, 8, true, true), cfg + 2),
        &mut vcpu,
        &mem,
        &mut line,
    )
    .unwrap();
    assert_eq!(vcpu.x[8], 0xffff_ffff_efcd_ab00);
}

#[test]
fn register_loads_of_other_sizes_read_zero_from_the_transport() {
    // The transport's registers are 32-bit: a 1, 2 or 8-byte load of one
    // reads 0 (core/src/mmio.rs). The handler still writes that 0 to the
    // destination register, overwriting what was there.
    let mut net = device(QueueBackend::default());
    let mem = ram();
    let mut line = GicLine::new(FakeGic::default(), SPI);
    let mut vcpu = FakeVcpu::new();
    for size in [AccessSize::Byte, AccessSize::Half, AccessSize::Double] {
        vcpu.x[11] = u64::MAX;
        net.handle_exit(
            &exit_at(load(size, 11), BASE + regs::MAGIC_VALUE),
            &mut vcpu,
            &mem,
            &mut line,
        )
        .unwrap();
        assert_eq!(vcpu.x[11], 0, "{size:?}");
    }
    assert_eq!(vcpu.pc, PC + 12);
}

#[test]
fn stores_of_every_size_reach_the_bus_masked() {
    let mut vcpu = FakeVcpu::new();
    vcpu.x[7] = 0x1122_3344_5566_7788;
    let mut bus = RecordingBus::default();
    for (i, size) in SIZES.into_iter().enumerate() {
        let off = 0x10 * i as u64;
        let action = handle_exit(
            window(),
            &exit_at(store(size, 7), BASE + off),
            &mut vcpu,
            &mut bus,
        )
        .unwrap();
        assert!(matches!(action, ExitAction::Handled { access, .. } if access.write));
    }
    assert_eq!(
        bus.writes,
        vec![
            (0x00, AccessSize::Byte, 0x88),
            (0x10, AccessSize::Half, 0x7788),
            (0x20, AccessSize::Word, 0x5566_7788),
            (0x30, AccessSize::Double, 0x1122_3344_5566_7788),
        ]
    );
    assert!(bus.reads.is_empty());
    assert_eq!(vcpu.pc, PC + 16);
    assert_eq!(
        vcpu.x[7], 0x1122_3344_5566_7788,
        "a store leaves its register"
    );
    // str xzr / strb wzr store 0, whatever X31 might mean elsewhere.
    handle_exit(
        window(),
        &exit_at(store(AccessSize::Double, 31), BASE + 0x40),
        &mut vcpu,
        &mut bus,
    )
    .unwrap();
    handle_exit(
        window(),
        &exit_at(0x931f_0046, BASE + 0x48), // strb wzr (golden)
        &mut vcpu,
        &mut bus,
    )
    .unwrap();
    assert_eq!(bus.writes[4], (0x40, AccessSize::Double, 0));
    assert_eq!(bus.writes[5], (0x48, AccessSize::Byte, 0));
}

#[test]
fn loads_of_every_size_reach_the_bus_and_are_masked() {
    let mut vcpu = FakeVcpu::new();
    let mut bus = RecordingBus::default();
    let want = [0x11u64, 0x2211, 0x4433_2211, 0x8877_6655_4433_2211];
    for (i, size) in SIZES.into_iter().enumerate() {
        let off = 0x100 + 8 * i as u64;
        handle_exit(
            window(),
            &exit_at(load(size, 12), BASE + off),
            &mut vcpu,
            &mut bus,
        )
        .unwrap();
        assert_eq!(bus.reads[i], (off, size));
        assert_eq!(vcpu.x[12], want[i], "{size:?}");
    }
    // A load into XZR is performed (it may have side effects) and discarded.
    let before = vcpu.x;
    handle_exit(
        window(),
        &exit_at(load(AccessSize::Word, 31), BASE),
        &mut vcpu,
        &mut bus,
    )
    .unwrap();
    assert_eq!(bus.reads.len(), 5);
    assert_eq!(vcpu.x, before);
    assert_eq!(vcpu.pc, PC + 20);
}

#[test]
fn status_write_reaches_the_device() {
    let mut net = device(QueueBackend::default());
    let mem = ram();
    let mut line = GicLine::new(FakeGic::default(), SPI);
    let mut g = Guest {
        net: &mut net,
        vcpu: FakeVcpu::new(),
        mem: &mem,
        line: &mut line,
    };
    g.write32(regs::STATUS, DeviceStatus::ACKNOWLEDGE.bits().into());
    let ack_driver = DeviceStatus::ACKNOWLEDGE | DeviceStatus::DRIVER;
    g.write32(regs::STATUS, ack_driver.bits().into());
    assert_eq!(g.net.transport().status(), ack_driver);
    assert_eq!(g.read32(regs::STATUS), u32::from(ack_driver.bits()));
    // A store of 0 resets the device.
    g.write32(regs::STATUS, 0);
    assert_eq!(g.net.transport().status(), DeviceStatus::empty());
    // 1-byte and 2-byte stores to a 32-bit register are ignored by the
    // transport (served, PC advanced, no effect).
    g.vcpu.x[3] = 1;
    let pc = g.vcpu.pc;
    for size in [AccessSize::Byte, AccessSize::Half] {
        g.exit(&exit_at(store(size, 3), BASE + regs::STATUS))
            .unwrap();
    }
    assert_eq!(g.vcpu.pc, pc + 8);
    assert_eq!(g.net.transport().status(), DeviceStatus::empty());
}

// ------------------------------------------------------------ I-HVF-6, I-HVF-10

#[test]
fn queue_notify_moves_a_frame_and_the_gic_line_follows_interrupt_status() {
    let backend = QueueBackend::default();
    let sent = backend.sent.clone();
    let to_guest = backend.to_guest.clone();
    let mut net = device(backend);
    let mem = ram();
    let gic = FakeGic::default();
    let calls = gic.calls.clone();
    let mut line = GicLine::new(gic, SPI);
    let mut g = Guest {
        net: &mut net,
        vcpu: FakeVcpu::new(),
        mem: &mem,
        line: &mut line,
    };
    let features = Features::VERSION_1 | Features::MAC | Features::STATUS;
    let [mut rxq, mut txq] = g.bring_up(features, 16, [RAM_BASE, RAM_BASE + 0x1_0000]);
    assert!(calls.borrow().is_empty(), "no interrupt during set-up");

    // TX: header (12 bytes, VERSION_1) + a 60-byte frame in one buffer.
    let frame: Vec<u8> = (0..60u8).collect();
    let buf = RAM_BASE + 0x2_0000;
    let mut bytes = vec![0u8; 12];
    bytes.extend_from_slice(&frame);
    virtnet::mem::GuestMemory::write(&mem, virtnet::mem::GuestAddress(buf), &bytes).unwrap();
    let head = txq
        .add_chain(&mem, &[(buf, bytes.len() as u32, false)])
        .unwrap();
    txq.publish(&mem).unwrap();
    let progress = g.write32(regs::QUEUE_NOTIFY, 1);
    assert_eq!(progress.handled, 1);
    assert_eq!(*sent.borrow(), vec![frame.clone()]);
    assert_eq!(txq.pop_used(&mem).unwrap(), Some((u32::from(head), 0)));
    assert_eq!(*calls.borrow(), vec![(SPI, true)], "line raised");
    assert_eq!(g.read32(regs::INTERRUPT_STATUS), 1);

    // The guest acknowledges: the line goes low.
    g.write32(regs::INTERRUPT_ACK, 1);
    assert_eq!(*calls.borrow(), vec![(SPI, true), (SPI, false)]);
    assert_eq!(g.read32(regs::INTERRUPT_STATUS), 0);

    // RX: the guest posts a buffer (nothing to receive yet); a frame the
    // backend gets later lands in it on poll (the VMM's "socket readable").
    let rx_buf = RAM_BASE + 0x3_0000;
    let head = rxq.add_chain(&mem, &[(rx_buf, 1526, true)]).unwrap();
    rxq.publish(&mem).unwrap();
    assert_eq!(g.write32(regs::QUEUE_NOTIFY, 0).handled, 0);
    assert_eq!(calls.borrow().len(), 2);
    let rx_frame: Vec<u8> = (0..64u8).map(|b| b ^ 0xa5).collect();
    to_guest.borrow_mut().push_back(rx_frame.clone());
    let p = g.net.poll(&mem, g.line);
    assert_eq!(p.handled, 1);
    let used = rxq.pop_used(&mem).unwrap();
    assert_eq!(used, Some((u32::from(head), 12 + 64)));
    assert_eq!(read_mem(&mem, rx_buf + 12, 64), rx_frame);
    assert_eq!(
        *calls.borrow(),
        vec![(SPI, true), (SPI, false), (SPI, true)],
        "raised again for RX"
    );
    // A second used buffer while the line is high: no redundant GIC call.
    let frame2 = vec![0x11u8; 60];
    let mut bytes = vec![0u8; 12];
    bytes.extend_from_slice(&frame2);
    virtnet::mem::GuestMemory::write(&mem, virtnet::mem::GuestAddress(buf), &bytes).unwrap();
    txq.add_chain(&mem, &[(buf, bytes.len() as u32, false)])
        .unwrap();
    txq.publish(&mem).unwrap();
    g.write32(regs::QUEUE_NOTIFY, 1);
    assert_eq!(sent.borrow().len(), 2);
    assert_eq!(calls.borrow().len(), 3);
    // Reset lowers the line.
    g.write32(regs::STATUS, 0);
    assert_eq!(calls.borrow().last(), Some(&(SPI, false)));
}

// ------------------------------------------------------------ I-HVF-2

#[test]
fn other_exits_and_addresses_are_passed_through_untouched() {
    let mut bus = RecordingBus::default();
    let mut vcpu = FakeVcpu::new();
    let before = vcpu.clone();
    let ldr = load(AccessSize::Word, 1);
    let mut cases = vec![
        // Not an exception exit (the syndrome is then meaningless).
        VcpuExit {
            reason: ExitReason::Canceled,
            ..exit_at(ldr, BASE)
        },
        VcpuExit {
            reason: ExitReason::VtimerActivated,
            ..exit_at(ldr, BASE)
        },
        VcpuExit {
            reason: ExitReason::Other(3),
            ..exit_at(ldr, BASE)
        },
    ];
    // Other exception classes, even with the fault address in the window:
    // WFI/WFE (0x01), HVC (0x16), SMC (0x17), MSR/MRS trap (0x18),
    // instruction abort (0x20), BRK (0x3c).
    for ec in [0x01u64, 0x16, 0x17, 0x18, 0x20, 0x3c] {
        cases.push(exit_at((ec << 26) | (1 << 25) | 0x1234, BASE + 4));
    }
    // Data aborts outside [BASE, BASE + WINDOW_SIZE), including ISV = 0 ones
    // (another device's business).
    for ipa in [
        0,
        BASE - 1,
        BASE - 4,
        BASE + WINDOW_SIZE,
        BASE + WINDOW_SIZE + 0x100,
        RAM_BASE,
        u64::MAX,
    ] {
        cases.push(exit_at(ldr, ipa));
        cases.push(exit_at(store(AccessSize::Double, 2), ipa));
        cases.push(exit_at(0x9200_0046, ipa)); // stp: ISV = 0
    }
    for exit in &cases {
        let r = handle_exit(window(), exit, &mut vcpu, &mut bus);
        assert_eq!(r, Ok(ExitAction::NotMine), "{exit:?}");
    }
    assert_eq!(vcpu, before, "no register, no PC change");
    assert!(
        bus.reads.is_empty() && bus.writes.is_empty(),
        "bus untouched"
    );
}

#[test]
fn window_edges() {
    let mut bus = RecordingBus::default();
    let mut vcpu = FakeVcpu::new();
    // First and last words of the window are ours.
    for off in [0, WINDOW_SIZE - 4] {
        let r = handle_exit(
            window(),
            &exit_at(load(AccessSize::Word, 1), BASE + off),
            &mut vcpu,
            &mut bus,
        );
        assert!(matches!(r, Ok(ExitAction::Handled { .. })), "{off:#x}");
    }
    assert_eq!(
        bus.reads,
        vec![(0, AccessSize::Word), (WINDOW_SIZE - 4, AccessSize::Word)]
    );
    // A window at the very top of the address space does not exist.
    assert_eq!(MmioWindow::new(u64::MAX - 0x100), None);
    assert!(MmioWindow::new(u64::MAX - WINDOW_SIZE).is_some());
}

// ------------------------------------------------------------ I-HVF-3

#[test]
fn isv0_and_other_refused_syndromes_in_the_window_are_errors() {
    let mut bus = RecordingBus::default();
    let mut vcpu = FakeVcpu::new();
    let before = vcpu.clone();
    let ipa = BASE + regs::STATUS;
    let ldr = load(AccessSize::Word, 1);
    let cases = [
        // stp w6, w0, [x0]: a real ISV = 0 syndrome.
        (0x9200_0046, AbortError::NoValidSyndrome),
        // The same load with ISV cleared.
        (ldr & !(1 << 24), AbortError::NoValidSyndrome),
        // CM = 1 (dc civac on the window).
        (ldr | (1 << 8), AbortError::CacheMaintenance),
        // S1PTW = 1.
        (ldr | (1 << 7), AbortError::StageOneWalk),
        // IL = 0.
        (ldr & !(1 << 25), AbortError::ShortInstruction),
    ];
    for (syndrome, error) in cases {
        let r = handle_exit(window(), &exit_at(syndrome, ipa), &mut vcpu, &mut bus);
        assert_eq!(r, Err(ExitError::Abort { ipa, error }), "{syndrome:#x}");
    }
    // 8 bytes at the last word: starts inside, ends outside.
    let ipa = BASE + WINDOW_SIZE - 4;
    let r = handle_exit(
        window(),
        &exit_at(load(AccessSize::Double, 1), ipa),
        &mut vcpu,
        &mut bus,
    );
    assert_eq!(r, Err(ExitError::CrossesWindow { ipa, size: 8 }));
    assert_eq!(vcpu, before);
    assert!(bus.reads.is_empty() && bus.writes.is_empty());
    let e: ExitError<&str> = ExitError::Abort {
        ipa: 0x1000,
        error: AbortError::NoValidSyndrome,
    };
    assert!(e.to_string().contains("ISV=0"), "{e}");
}

// ------------------------------------------------------------ I-HVF-4

#[test]
fn vcpu_errors_are_reported_not_guessed() {
    let mut bus = RecordingBus::default();
    // The source register of a store cannot be read: the bus is untouched.
    let mut vcpu = FakeVcpu::new();
    vcpu.fail_read_x = Some(7);
    let r = handle_exit(
        window(),
        &exit_at(store(AccessSize::Word, 7), BASE),
        &mut vcpu,
        &mut bus,
    );
    assert_eq!(r, Err(ExitError::Vcpu("read failed")));
    assert!(bus.writes.is_empty());
    assert_eq!(vcpu.pc, PC);
    // The destination register cannot be written: reported, PC unchanged.
    let mut vcpu = FakeVcpu::new();
    vcpu.fail_write_x = true;
    let r = handle_exit(
        window(),
        &exit_at(load(AccessSize::Word, 1), BASE),
        &mut vcpu,
        &mut bus,
    );
    assert_eq!(r, Err(ExitError::Vcpu("write failed")));
    assert_eq!(vcpu.pc, PC);
    // The PC cannot be advanced: reported.
    let mut vcpu = FakeVcpu::new();
    vcpu.fail_write_pc = true;
    let r = handle_exit(
        window(),
        &exit_at(load(AccessSize::Word, 1), BASE),
        &mut vcpu,
        &mut bus,
    );
    assert_eq!(r, Err(ExitError::Vcpu("pc write failed")));
}

// ------------------------------------------------------------ I-HVF-1

#[test]
fn same_el_data_abort_class_is_served_too() {
    // EC 0x25 (data abort without a change in EL) is a data abort the
    // decoder accepts; the shim serves it like 0x24.
    let mut bus = RecordingBus::default();
    let mut vcpu = FakeVcpu::new();
    let syndrome = (load(AccessSize::Word, 1) & !(0x3f << 26)) | (0x25 << 26);
    let r = handle_exit(window(), &exit_at(syndrome, BASE), &mut vcpu, &mut bus);
    assert!(matches!(r, Ok(ExitAction::Handled { .. })));
    assert_eq!(vcpu.pc, PC + 4);
}

// ------------------------------------------------------------ I-HVF-5

#[test]
fn framework_exit_struct_layout_and_conversion() {
    assert_eq!(core::mem::size_of::<hv_vcpu_exit_exception_t>(), 24);
    assert_eq!(core::mem::size_of::<hv_vcpu_exit_t>(), 32);
    assert_eq!(core::mem::align_of::<hv_vcpu_exit_t>(), 8);
    assert_eq!(core::mem::offset_of!(hv_vcpu_exit_t, reason), 0);
    assert_eq!(core::mem::offset_of!(hv_vcpu_exit_t, exception), 8);
    assert_eq!(core::mem::offset_of!(hv_vcpu_exit_exception_t, syndrome), 0);
    assert_eq!(
        core::mem::offset_of!(hv_vcpu_exit_exception_t, virtual_address),
        8
    );
    assert_eq!(
        core::mem::offset_of!(hv_vcpu_exit_exception_t, physical_address),
        16
    );

    let raw = hv_vcpu_exit_t {
        reason: ffi::HV_EXIT_REASON_EXCEPTION,
        exception: hv_vcpu_exit_exception_t {
            syndrome: 0x9385_0006,
            virtual_address: 0xffff_8000_0a00_0000,
            physical_address: BASE,
        },
    };
    let exit = VcpuExit::from(&raw);
    assert_eq!(
        exit,
        VcpuExit::exception(0x9385_0006, 0xffff_8000_0a00_0000, BASE)
    );
    for (reason, want) in [
        (ffi::HV_EXIT_REASON_CANCELED, ExitReason::Canceled),
        (ffi::HV_EXIT_REASON_EXCEPTION, ExitReason::Exception),
        (
            ffi::HV_EXIT_REASON_VTIMER_ACTIVATED,
            ExitReason::VtimerActivated,
        ),
        (ffi::HV_EXIT_REASON_UNKNOWN, ExitReason::Other(3)),
        (77, ExitReason::Other(77)),
    ] {
        assert_eq!(ExitReason::from(reason), want);
    }
    // The converted exit drives the handler: the MMIO address is the IPA,
    // not the virtual address.
    let mut bus = RecordingBus::default();
    let mut vcpu = FakeVcpu::new();
    handle_exit(window(), &exit, &mut vcpu, &mut bus).unwrap();
    assert_eq!(vcpu.x[5], 0x4433_2211);
    assert_eq!(bus.reads, vec![(0, AccessSize::Word)]);
}

#[test]
fn register_selectors_and_return_codes() {
    use virtnet_hvf::ffi::HvError;
    use virtnet_hvf::vcpu::x_reg;
    assert_eq!(x_reg(0), Ok(ffi::HV_REG_X0));
    assert_eq!(x_reg(30), Ok(30));
    assert_eq!(ffi::HV_REG_PC, 31);
    assert_eq!(x_reg(31), Err(HvError(ffi::HV_BAD_ARGUMENT)));
    assert_eq!(HvError::check(0), Ok(()));
    assert_eq!(HvError::check(ffi::HV_BUSY), Err(HvError(ffi::HV_BUSY)));
    assert_eq!(
        HvError(ffi::HV_DENIED).to_string(),
        "HV_DENIED (0xfae94007)"
    );
    assert_eq!(HvError(ffi::HV_UNSUPPORTED).0 as u32, 0xfae9_400f);
    assert_eq!(HvError(5).to_string(), "hv_return_t 0x00000005");
}
