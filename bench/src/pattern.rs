//! The payload every benchmarked transport carries: each byte is written
//! by the sender and read by the receiver, so that a shared-memory path
//! gets no credit for moving an index instead of data.
//!
//! A message of `len` bytes with sequence number `seq` holds little-endian
//! `u64` words `b, b + 1, b + 2, …` (the last word cut to fit), where `b`
//! mixes `seq` and `len`. The receiver sums every word (wrapping) and
//! compares the sum with its closed form: a stale, truncated, shifted or
//! zeroed message fails. Both loops are plain word loops that the compiler
//! vectorises, so they run at cache bandwidth and cost every transport the
//! same.

use std::fmt;
use std::mem::MaybeUninit;

/// Odd 64-bit constant (2^64 / φ): spreads sequence numbers over the word.
const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// First word of message `seq` of `len` bytes.
fn base(seq: u64, len: usize) -> u64 {
    seq.wrapping_mul(GOLDEN) ^ (len as u64).rotate_left(40)
}

/// Writes message `seq` into all of `buf`.
pub fn fill(buf: &mut [u8], seq: u64) {
    let b = base(seq, buf.len());
    let mut words = buf.chunks_exact_mut(8);
    let mut i = 0u64;
    for w in &mut words {
        w.copy_from_slice(&b.wrapping_add(i).to_le_bytes());
        i += 1;
    }
    let tail = words.into_remainder();
    if !tail.is_empty() {
        let n = tail.len();
        tail.copy_from_slice(&b.wrapping_add(i).to_le_bytes()[..n]);
    }
}

/// Writes bytes `offset..offset + buf.len()` of message `seq` of `len`
/// bytes into `buf`: a message filled piece by piece (in the ring's chunks)
/// equals one filled by [`fill`].
pub fn fill_range(buf: &mut [u8], seq: u64, len: usize, offset: usize) {
    let b = base(seq, len);
    let mut pos = 0;
    // A leading partial word, if `offset` is not word-aligned.
    let skew = offset % 8;
    if skew != 0 {
        let word = b.wrapping_add((offset / 8) as u64).to_le_bytes();
        let n = (8 - skew).min(buf.len());
        buf[..n].copy_from_slice(&word[skew..skew + n]);
        pos = n;
    }
    let first = ((offset + pos) / 8) as u64;
    let mut words = buf[pos..].chunks_exact_mut(8);
    let mut i = first;
    for w in &mut words {
        w.copy_from_slice(&b.wrapping_add(i).to_le_bytes());
        i += 1;
    }
    let tail = words.into_remainder();
    if !tail.is_empty() {
        let n = tail.len();
        tail.copy_from_slice(&b.wrapping_add(i).to_le_bytes()[..n]);
    }
}

/// Writes message `seq` into all of `buf`, which may be uninitialised
/// (a loaned shared-memory sample): the same bytes as [`fill`], so that
/// afterwards every byte of `buf` is initialised.
pub fn fill_uninit(buf: &mut [MaybeUninit<u8>], seq: u64) {
    let b = base(seq, buf.len());
    let mut words = buf.chunks_exact_mut(8);
    let mut i = 0u64;
    for w in &mut words {
        w.copy_from_slice(&b.wrapping_add(i).to_le_bytes().map(MaybeUninit::new));
        i += 1;
    }
    let tail = words.into_remainder();
    if !tail.is_empty() {
        let n = tail.len();
        tail.copy_from_slice(&b.wrapping_add(i).to_le_bytes().map(MaybeUninit::new)[..n]);
    }
}

/// Wrapping sum of the little-endian words of `buf` (a partial last word
/// is zero-extended).
pub fn checksum(buf: &[u8]) -> u64 {
    let mut words = buf.chunks_exact(8);
    let mut sum = 0u64;
    for c in &mut words {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        sum = sum.wrapping_add(u64::from_le_bytes(w));
    }
    let tail = words.remainder();
    if tail.is_empty() {
        return sum;
    }
    let mut w = [0u8; 8];
    w[..tail.len()].copy_from_slice(tail);
    sum.wrapping_add(u64::from_le_bytes(w))
}

/// [`checksum`] of a message that arrives piece by piece: feed the pieces
/// in order with [`Summer::add`]; pieces of any length (a partial word is
/// carried over to the next piece).
#[derive(Debug, Default, Clone)]
pub struct Summer {
    sum: u64,
    /// Bytes of a word cut by a piece boundary.
    carry: [u8; 8],
    carried: usize,
    /// Bytes fed so far.
    len: usize,
}

impl Summer {
    /// Adds the next `piece` of the message.
    pub fn add(&mut self, mut piece: &[u8]) {
        self.len += piece.len();
        if self.carried > 0 {
            let n = (8 - self.carried).min(piece.len());
            self.carry[self.carried..self.carried + n].copy_from_slice(&piece[..n]);
            self.carried += n;
            piece = &piece[n..];
            if self.carried < 8 {
                return;
            }
            self.sum = self.sum.wrapping_add(u64::from_le_bytes(self.carry));
            self.carried = 0;
        }
        let whole = piece.len() & !7;
        self.sum = self.sum.wrapping_add(checksum(&piece[..whole]));
        let rest = &piece[whole..];
        self.carry = [0; 8];
        self.carry[..rest.len()].copy_from_slice(rest);
        self.carried = rest.len();
    }

    /// Checks that the pieces fed were message `seq` of `len` bytes.
    pub fn verify(&self, seq: u64, len: usize) -> Result<(), Corrupt> {
        let mut last = [0u8; 8];
        last[..self.carried].copy_from_slice(&self.carry[..self.carried]);
        let got_sum = self.sum.wrapping_add(u64::from_le_bytes(last));
        let want_sum = expected(seq, len);
        if self.len != len || got_sum != want_sum {
            return Err(Corrupt {
                seq,
                len,
                got_len: self.len,
                got_sum,
                want_sum,
            });
        }
        Ok(())
    }
}

/// The checksum message `seq` of `len` bytes must have.
pub fn expected(seq: u64, len: usize) -> u64 {
    let b = base(seq, len);
    let n = (len / 8) as u64;
    // Σ_{i<n} (b + i) = n·b + n(n−1)/2, all wrapping; halve the even factor.
    let tri = if n.is_multiple_of(2) {
        (n / 2).wrapping_mul(n.wrapping_sub(1))
    } else {
        n.wrapping_mul(n.saturating_sub(1) / 2)
    };
    let full = n.wrapping_mul(b).wrapping_add(tri);
    let rem = len % 8;
    let last = if rem == 0 {
        0
    } else {
        b.wrapping_add(n) & (u64::MAX >> (64 - 8 * rem))
    };
    full.wrapping_add(last)
}

/// A message that did not arrive intact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Corrupt {
    /// Sequence number expected.
    pub seq: u64,
    /// Length expected.
    pub len: usize,
    /// Length received.
    pub got_len: usize,
    /// Checksum received (0 if the length was already wrong).
    pub got_sum: u64,
    /// Checksum expected.
    pub want_sum: u64,
}

impl fmt::Display for Corrupt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.got_len != self.len {
            write!(
                f,
                "data verification failed: message {} is {} bytes, expected {}",
                self.seq, self.got_len, self.len
            )
        } else {
            write!(
                f,
                "data verification failed: message {} ({} bytes) has checksum {:#018x}, expected {:#018x}",
                self.seq, self.len, self.got_sum, self.want_sum
            )
        }
    }
}

impl std::error::Error for Corrupt {}

/// Checks that `buf` is message `seq` of `len` bytes, reading every byte.
pub fn verify(buf: &[u8], seq: u64, len: usize) -> Result<(), Corrupt> {
    let want_sum = expected(seq, len);
    if buf.len() != len {
        return Err(Corrupt {
            seq,
            len,
            got_len: buf.len(),
            got_sum: 0,
            want_sum,
        });
    }
    let got_sum = checksum(buf);
    if got_sum != want_sum {
        return Err(Corrupt {
            seq,
            len,
            got_len: len,
            got_sum,
            want_sum,
        });
    }
    Ok(())
}

// Unit tests run with the harness library's tests (`cargo test -p
// shmsock-bench --lib`).
#[cfg(test)]
mod tests {
    #[test]
    fn fill_range_pieces_equal_fill() {
        use super::{fill, fill_range};
        for len in [0usize, 1, 7, 8, 9, 100, 1013] {
            let mut whole = vec![0u8; len];
            fill(&mut whole, 5);
            for cut in [1usize, 3, 8, 13, 64] {
                let mut pieces = vec![0u8; len];
                let mut off = 0;
                while off < len {
                    let end = (off + cut).min(len);
                    fill_range(&mut pieces[off..end], 5, len, off);
                    off = end;
                }
                assert_eq!(pieces, whole, "len {len} cut {cut}");
            }
        }
    }

    #[test]
    fn roundtrip_every_tail_length() {
        use super::{fill, verify};
        for len in (0..80).chain([1 << 10, (1 << 16) + 3]) {
            let mut v = vec![0u8; len];
            fill(&mut v, 7);
            assert_eq!(verify(&v, 7, len), Ok(()), "len {len}");
            if len >= 8 {
                assert!(verify(&v, 8, len).is_err(), "stale seq, len {len}");
                let mut w = v.clone();
                w[len / 2] ^= 1;
                assert!(verify(&w, 7, len).is_err(), "flipped bit, len {len}");
                assert!(verify(&vec![0u8; len], 7, len).is_err(), "zeroes");
            }
        }
    }

    #[test]
    fn summer_of_pieces_equals_verify() {
        use super::{fill, Summer};
        for len in [0usize, 1, 7, 8, 9, 100, 1013] {
            let mut v = vec![0u8; len];
            fill(&mut v, 3);
            for cut in [1usize, 3, 8, 13, 64] {
                let mut s = Summer::default();
                v.chunks(cut).for_each(|p| s.add(p));
                assert_eq!(s.verify(3, len), Ok(()), "len {len} cut {cut}");
                assert!(s.verify(4, len).is_err() || len < 8, "len {len}");
                assert!(s.verify(3, len + 1).is_err());
            }
        }
    }

    #[test]
    fn fill_uninit_writes_what_fill_writes() {
        use super::{fill, fill_uninit};
        use std::mem::MaybeUninit;
        for len in (0..80).chain([(1 << 16) + 5]) {
            let mut a = vec![0u8; len];
            fill(&mut a, 11);
            let mut b = vec![MaybeUninit::new(0xa5u8); len];
            fill_uninit(&mut b, 11);
            // SAFETY: every element was initialised by `vec!` (and again by
            // `fill_uninit`).
            let b: Vec<u8> = b.iter().map(|v| unsafe { v.assume_init() }).collect();
            assert_eq!(a, b, "len {len}");
        }
    }
}
