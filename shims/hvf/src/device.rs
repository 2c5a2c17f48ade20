//! The device as a macOS VMM holds it: the core's virtio-mmio transport at a
//! guest-physical base, served from vCPU exits.

use virtnet::device::Progress;
use virtnet::mem::GuestMemory;
use virtnet::mmio::{InterruptLine, MmioDevice, MmioQueues, MmioTransport};
use virtnet_aarch64::AccessSize;

use crate::exit::{handle_exit, ExitAction, ExitError, MmioBus, MmioWindow, VcpuExit};
use crate::vcpu::Vcpu;

/// The core's [`MmioTransport`] with the guest memory and interrupt line a
/// store may need, as an [`MmioBus`].
pub struct TransportBus<'a, D, M: ?Sized, L: ?Sized> {
    /// The register block.
    pub transport: &'a mut MmioTransport<D>,
    /// Guest memory (queue activation and notifications read it).
    pub mem: &'a M,
    /// The device's interrupt line.
    pub line: &'a mut L,
}

impl<D, M, L> MmioBus for TransportBus<'_, D, M, L>
where
    D: MmioQueues<M>,
    M: GuestMemory + ?Sized,
    L: InterruptLine + ?Sized,
{
    fn read(&mut self, offset: u64, size: AccessSize) -> u64 {
        self.transport.read(offset, usize::from(size.bytes()))
    }

    fn write(&mut self, offset: u64, size: AccessSize, value: u64) -> Progress {
        self.transport.write(
            offset,
            usize::from(size.bytes()),
            value,
            self.mem,
            &mut *self.line,
        )
    }
}

/// One virtio-net device on the virtio-mmio transport at a guest-physical
/// base address.
pub struct HvfNet<D> {
    window: MmioWindow,
    transport: MmioTransport<D>,
}

impl<D: MmioDevice> HvfNet<D> {
    /// The device `transport` with its register window at `base` (which the
    /// embedder leaves unmapped in `hv_vm_map` so that guest accesses trap,
    /// and describes to the guest, e.g. as a `virtio,mmio` device-tree node
    /// with `reg = <base 0x200>` and its SPI). `None` if the window would
    /// wrap the address space.
    pub fn new(base: u64, transport: MmioTransport<D>) -> Option<Self> {
        Some(HvfNet {
            window: MmioWindow::new(base)?,
            transport,
        })
    }

    /// The device's window.
    pub fn window(&self) -> MmioWindow {
        self.window
    }

    /// The register block.
    pub fn transport(&self) -> &MmioTransport<D> {
        &self.transport
    }

    /// The register block, mutably (link changes, stats, `notify_config`).
    pub fn transport_mut(&mut self) -> &mut MmioTransport<D> {
        &mut self.transport
    }

    /// Handles one vCPU exit ([`handle_exit`] against this device's
    /// transport).
    ///
    /// # Errors
    /// [`ExitError`] for an access inside the window that cannot be served.
    pub fn handle_exit<V, M, L>(
        &mut self,
        exit: &VcpuExit,
        vcpu: &mut V,
        mem: &M,
        line: &mut L,
    ) -> Result<ExitAction, ExitError<V::Error>>
    where
        V: Vcpu + ?Sized,
        D: MmioQueues<M>,
        M: GuestMemory + ?Sized,
        L: InterruptLine + ?Sized,
    {
        let mut bus = TransportBus {
            transport: &mut self.transport,
            mem,
            line,
        };
        handle_exit(self.window, exit, vcpu, &mut bus)
    }

    /// Processes both queues without a kick: call it when the backend has
    /// frames for the guest (its socket became readable) or when
    /// [`ExitAction::Handled`] reported `more`.
    pub fn poll<M, L>(&mut self, mem: &M, line: &mut L) -> Progress
    where
        D: MmioQueues<M>,
        M: GuestMemory + ?Sized,
        L: InterruptLine + ?Sized,
    {
        self.transport.poll(mem, line)
    }
}
