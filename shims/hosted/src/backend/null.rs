//! The `null` backend: discards what the guest sends, never receives.

use super::HostBackend;
use virtnet::device::{Backend, BackendCaps, BackendError, RxFrame};
use virtnet::wire::NetHdrRepr;

/// Discards every frame (a sink for benchmarks and txonly tests).
#[derive(Debug, Default)]
pub struct NullBackend {
    _private: (),
}

impl NullBackend {
    /// A new sink.
    pub fn new() -> Self {
        NullBackend::default()
    }
}

impl Backend for NullBackend {
    /// Takes everything: a frame with a partial checksum or a segmentation
    /// request is discarded as cheaply as any other.
    fn caps(&self) -> BackendCaps {
        BackendCaps {
            tx_csum: true,
            tx_tso4: true,
            tx_tso6: true,
            tx_ufo: true,
            tx_ecn: true,
            ..BackendCaps::default()
        }
    }

    fn transmit(&mut self, _hdr: &NetHdrRepr, _frame: &[u8]) -> Result<(), BackendError> {
        Ok(())
    }

    fn receive(&mut self, _buf: &mut [u8]) -> Result<Option<RxFrame>, BackendError> {
        Ok(None)
    }
}

impl HostBackend for NullBackend {
    fn describe(&self) -> String {
        "null".into()
    }
}
