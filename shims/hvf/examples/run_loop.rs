//! A macOS VMM's vCPU run loop with a virtnet device: the example of the
//! README section "macOS (Hypervisor.framework)", verbatim between the
//! `README begin`/`README end` markers, plus the set-up around it.
//!
//! Only meaningful on macOS on Apple silicon. `cargo xtask test hvf` type-
//! and borrow-checks it for `aarch64-apple-darwin` (`cargo check`: linking
//! needs Apple's linker, which this repository's CI does not have) and
//! checks that the README still holds the same code. It has never been run.

#[cfg(target_os = "macos")]
mod vmm {
    // README begin
    use std::sync::Mutex;

    use virtnet::device::{NetDevice, NoInterceptor};
    use virtnet::mem::RegionMemory;
    use virtnet_hvf::ffi::{hv_vcpu_exit_t, hv_vcpu_run, hv_vcpu_t, HvError};
    use virtnet_hvf::unixgram::UnixgramBackend;
    use virtnet_hvf::{ExitAction, GicLine, HvfGic, HvfNet, HvfVcpu, VcpuExit};

    /// The device and its interrupt line, shared by vCPU and I/O threads.
    pub struct Dev {
        pub net: HvfNet<NetDevice<'static, UnixgramBackend, NoInterceptor>>,
        pub line: GicLine<HvfGic>,
    }

    /// Runs vCPU `id` (on the thread that created it) until an exit the
    /// VMM handles itself (PSCI, timers, other devices...).
    pub fn run_vcpu(
        id: hv_vcpu_t,
        exit: *const hv_vcpu_exit_t,
        dev: &Mutex<Dev>,
        mem: &RegionMemory<4>,
    ) -> Result<VcpuExit, Box<dyn std::error::Error>> {
        let mut vcpu = HvfVcpu::new(id);
        loop {
            // SAFETY: `id` was created on this thread.
            HvError::check(unsafe { hv_vcpu_run(id) })?;
            // SAFETY: `exit` is what hv_vcpu_create returned for `id`.
            let exit = VcpuExit::from(unsafe { &*exit });
            let mut guard = dev.lock().map_err(|_| "device lock poisoned")?;
            let Dev { net, line } = &mut *guard;
            match net.handle_exit(&exit, &mut vcpu, mem, line)? {
                ExitAction::Handled { progress, .. } => {
                    if progress.more {
                        net.poll(mem, line);
                    }
                }
                ExitAction::NotMine => return Ok(exit),
            }
        }
    }
    // README end

    use std::path::Path;

    use virtnet::device::NetConfig;
    use virtnet::mmio::MmioTransport;
    use virtnet::pool::FramePool;
    use virtnet_hvf::memory::{guest_memory, Mapping};
    use virtnet_hvf::unixgram::Handshake;

    static RX_POOL: FramePool = FramePool::new();
    static TX_POOL: FramePool = FramePool::new();

    /// Where the device sits in the guest-physical map (also in the device
    /// tree: `virtio,mmio` node, `reg = <BASE 0x200>`, SPI `SPI`
    /// level-high).
    pub const BASE: u64 = 0x0a00_0000;
    /// The device's SPI (INTID).
    pub const SPI: u32 = 48;

    /// Builds the device after `hv_vm_create`, `hv_gic_create` and the
    /// `hv_vm_map` of guest RAM at `ram` (host address, guest address,
    /// length), connecting to gvproxy's `--listen-vfkit` socket.
    ///
    /// # Safety
    /// `ram` stays mapped for the life of the returned memory (see
    /// `virtnet_hvf::memory::guest_memory`).
    pub unsafe fn set_up(
        ram: (*mut u8, u64, usize),
        gvproxy: &Path,
        local: &Path,
    ) -> Result<(Mutex<Dev>, RegionMemory<4>), Box<dyn std::error::Error>> {
        let (host, gpa, len) = ram;
        // SAFETY: forwarded to the caller.
        let mem = unsafe { guest_memory::<4>(&[Mapping { gpa, host, len }]) }
            .map_err(|e| e.to_string())?;
        let backend = UnixgramBackend::connect(local, gvproxy, Handshake::Vfkit)?;
        let config = NetConfig {
            mac: Some([0x5a, 0x94, 0xef, 0xe4, 0x0c, 0xee]),
            ..NetConfig::default()
        };
        let device = NetDevice::new(config, backend, NoInterceptor, &RX_POOL, &TX_POOL);
        let net = HvfNet::new(BASE, MmioTransport::new(device)).ok_or("bad base")?;
        let gic = HvfGic::new().ok_or("hv_gic_set_spi needs macOS 15")?;
        let line = GicLine::new(gic, SPI);
        Ok((Mutex::new(Dev { net, line }), mem))
    }

    /// The I/O thread's step when the backend's socket is readable (wait
    /// for it with kqueue on `net.transport().device().backend().socket()`).
    pub fn on_backend_readable(dev: &Mutex<Dev>, mem: &RegionMemory<4>) {
        if let Ok(mut guard) = dev.lock() {
            let Dev { net, line } = &mut *guard;
            while net.poll(mem, line).more {}
        }
    }
}

fn main() {
    #[cfg(target_os = "macos")]
    {
        let _ = (vmm::run_vcpu, vmm::set_up, vmm::on_backend_readable);
        eprintln!("run_loop: library code for a VMM; see the README");
    }
}
