//! Deterministic test frames, generated identically on both sides so that
//! each side compares every byte it receives without the frames being
//! shared: the driver generates TX frame `n` and the device's backend
//! regenerates it to compare; the backend generates RX frame `n` and the
//! driver regenerates it to compare.

/// Shortest frame generated (an Ethernet frame without FCS).
pub const MIN_LEN: usize = 60;
/// Longest frame generated (1500-byte MTU + Ethernet header).
pub const MAX_LEN: usize = 1514;

/// Seed of the driver-to-device (TX) frame sequence.
pub const TX_SEED: u64 = 0x1234_5678_9abc_def1;
/// Seed of the device-to-driver (RX) frame sequence.
pub const RX_SEED: u64 = 0x0fed_cba9_8765_4321;

/// xorshift64: small, fast, and the same on both sides.
#[derive(Clone, Copy, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator; a zero seed is replaced (xorshift would stay at 0).
    pub const fn new(seed: u64) -> Self {
        Self(if seed == 0 {
            0x9e37_79b9_7f4a_7c15
        } else {
            seed
        })
    }

    /// The next 64 random bits.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A value in `lo..=hi`.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next() % (hi - lo + 1) as u64) as usize
    }
}

/// A sequence of frames: lengths in `MIN_LEN..=MAX_LEN`, random bytes, the
/// sequence number in the first 8 bytes (little-endian).
#[derive(Clone, Copy, Debug)]
pub struct FrameGen {
    rng: Rng,
    seq: u64,
}

impl FrameGen {
    /// The sequence for `seed`, at frame 0.
    pub const fn new(seed: u64) -> Self {
        Self {
            rng: Rng::new(seed),
            seq: 0,
        }
    }

    /// Number of frames generated so far.
    pub fn count(&self) -> u64 {
        self.seq
    }

    /// Writes the next frame into `buf` (at least [`MAX_LEN`] bytes) and
    /// returns its length.
    pub fn next_into(&mut self, buf: &mut [u8; MAX_LEN]) -> usize {
        let len = self.rng.range(MIN_LEN, MAX_LEN);
        let (head, body) = buf[..len].split_at_mut(8);
        head.copy_from_slice(&self.seq.to_le_bytes());
        for chunk in body.chunks_mut(8) {
            let r = self.rng.next().to_le_bytes();
            chunk.copy_from_slice(&r[..chunk.len()]);
        }
        self.seq += 1;
        len
    }
}
