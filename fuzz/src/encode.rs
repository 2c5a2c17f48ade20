//! The inverse of `arbitrary`'s decoding, for the types of the fuzz inputs:
//! the seed corpus is written as structures, then encoded into the bytes
//! that `Arbitrary::arbitrary_take_rest` decodes back into the same
//! structure (the seed test checks that round trip for every seed, so a
//! change in `arbitrary`'s format fails loudly instead of producing a
//! corpus of noise).
//!
//! Format of arbitrary 1.x: integers little-endian in their width, `bool`
//! one byte (`& 1`), `Option` a bool then the value, `Vec` a `true` byte
//! before each element and a `false` byte after the last, an enum a `u32`
//! whose variant is `(v * count) >> 32`, struct fields in order.

/// Bytes being written.
#[derive(Debug, Default)]
pub struct Enc(pub Vec<u8>);

/// A value that can be encoded as `arbitrary` would decode it.
pub trait Encode {
    /// Append the encoding of `self`.
    fn enc(&self, e: &mut Enc);
}

impl Enc {
    /// The encoding of `v`.
    pub fn of<T: Encode>(v: &T) -> Vec<u8> {
        let mut e = Enc::default();
        v.enc(&mut e);
        e.0
    }

    /// Select variant `index` of an enum with `count` variants.
    pub fn variant(&mut self, index: u32, count: u32) {
        let v = ((u64::from(index) << 32).div_ceil(u64::from(count))) as u32;
        debug_assert_eq!((u64::from(v) * u64::from(count)) >> 32, u64::from(index));
        v.enc(self);
    }
}

macro_rules! enc_int {
    ($($t:ty),*) => {$(
        impl Encode for $t {
            fn enc(&self, e: &mut Enc) {
                e.0.extend_from_slice(&self.to_le_bytes());
            }
        }
    )*};
}
enc_int!(u8, u16, u32, u64);

impl Encode for bool {
    fn enc(&self, e: &mut Enc) {
        e.0.push(u8::from(*self));
    }
}

impl<T: Encode> Encode for Option<T> {
    fn enc(&self, e: &mut Enc) {
        match self {
            None => false.enc(e),
            Some(v) => {
                true.enc(e);
                v.enc(e);
            }
        }
    }
}

impl<T: Encode> Encode for Vec<T> {
    fn enc(&self, e: &mut Enc) {
        for v in self {
            true.enc(e);
            v.enc(e);
        }
        false.enc(e);
    }
}

impl<const N: usize> Encode for [u8; N] {
    fn enc(&self, e: &mut Enc) {
        e.0.extend_from_slice(self);
    }
}

impl<A: Encode, B: Encode> Encode for (A, B) {
    fn enc(&self, e: &mut Enc) {
        self.0.enc(e);
        self.1.enc(e);
    }
}

/// Implement [`Encode`] for a struct: its fields in declaration order.
#[macro_export]
macro_rules! enc_struct {
    ($t:ty { $($f:ident),* $(,)? }) => {
        impl $crate::encode::Encode for $t {
            fn enc(&self, e: &mut $crate::encode::Enc) {
                $( $crate::encode::Encode::enc(&self.$f, e); )*
            }
        }
    };
}

/// Implement [`Encode`] for an enum: `Variant(a, b)` / `Variant { a, b }` /
/// `Variant`, listed in declaration order.
#[macro_export]
macro_rules! enc_enum {
    ($t:ident, $count:expr, { $($idx:expr => $pat:pat => [$($f:expr),*]),* $(,)? }) => {
        impl $crate::encode::Encode for $t {
            #[allow(unused_variables)]
            fn enc(&self, e: &mut $crate::encode::Enc) {
                match self {
                    $( $pat => {
                        e.variant($idx, $count);
                        $( $crate::encode::Encode::enc($f, e); )*
                    } )*
                }
            }
        }
    };
}

/// A byte string for fuzz inputs: a `u16` length, then that many raw bytes
/// (fewer if the input ends). Cheaper for the fuzzer than `Vec<u8>`, which
/// spends a continuation byte per element.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Bytes(pub Vec<u8>);

impl Bytes {
    /// Longest byte string decoded.
    pub const MAX: usize = 4096;
}

impl<'a> arbitrary::Arbitrary<'a> for Bytes {
    fn arbitrary(u: &mut arbitrary::Unstructured<'a>) -> arbitrary::Result<Self> {
        let len = usize::from(<u16 as arbitrary::Arbitrary>::arbitrary(u)?)
            .min(Self::MAX)
            .min(u.len());
        Ok(Bytes(u.bytes(len)?.to_vec()))
    }
}

impl Encode for Bytes {
    fn enc(&self, e: &mut Enc) {
        assert!(self.0.len() <= Self::MAX);
        (self.0.len() as u16).enc(e);
        e.0.extend_from_slice(&self.0);
    }
}
