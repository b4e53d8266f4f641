//! The reassembly of messages too big for one ring record (see
//! `docs/protocol.md`, "Ring records"; the record tags and the start
//! header are byte formats, so they live in [`crate::wire`]).
//!
//! A message that fits in one record travels inline (`TAG_INLINE`). A larger
//! one streams through the same ring as fragments: a `TAG_FRAG_START`
//! record whose payload begins with the message's total length (u64 LE),
//! then `TAG_FRAG` records, until the total is reached. The receiver copies
//! and releases each fragment as it arrives, so the sender keeps writing
//! while the receiver reads (pipelined), and neither side ever holds more
//! shared memory than the ring. A sender that gives up mid-message (its
//! timeout expired) writes `TAG_FRAG_ABORT` before its next message.
//!
//! No memfd is created or received per message: the peer cannot make us map
//! or allocate memory beyond the ring, and the reassembly buffer grows only
//! as bytes actually arrive, up to our own `max_message`.
//!
//! The sending side is [`LargeSend`], a cursor over the message that the
//! non-blocking core ([`crate::core::send::SendCore::large_step`]) advances
//! record by record, so any waiting policy (the blocking wait loop, an
//! async task) can wait for space between fragments.

use std::ops::Range;

use crate::wire::{FRAG_HEADER, TAG_FRAG, TAG_FRAG_START};

/// Where the sending of one fragmented message stands.
#[derive(Debug, Clone)]
pub(crate) struct LargeSend {
    /// Payload bytes of a full fragment record.
    frag: usize,
    /// Message length.
    len: usize,
    /// Bytes of the message written so far.
    pos: usize,
    /// The first fragment (`TAG_FRAG_START`) was published: cutting the
    /// message short now owes the peer an abort record.
    pub(crate) started: bool,
}

impl LargeSend {
    /// A message of `len` bytes in fragments of `frag` payload bytes (see
    /// [`fragment_len`]).
    pub(crate) fn new(len: usize, frag: usize) -> Self {
        debug_assert!(
            frag > FRAG_HEADER,
            "fragment_len keeps room past the header"
        );
        LargeSend {
            frag,
            len,
            pos: 0,
            started: false,
        }
    }

    /// The bytes and tag of the next record, `None` when all is written.
    /// The first record carries the start header, then as much of the
    /// message as fits beside it; the others carry `frag` bytes each.
    pub(crate) fn next_record(&self) -> Option<(Range<usize>, u16)> {
        if !self.started {
            let first = self.len.min(self.frag - FRAG_HEADER);
            return Some((0..first, TAG_FRAG_START));
        }
        if self.pos >= self.len {
            return None;
        }
        Some((self.pos..self.len.min(self.pos + self.frag), TAG_FRAG))
    }

    /// Notes that the message is written up to `end`.
    pub(crate) fn advance(&mut self, end: usize) {
        self.pos = end;
    }

    /// Whether every byte was written.
    pub(crate) fn is_done(&self) -> bool {
        self.started && self.pos >= self.len
    }
}

/// Payload bytes of one fragment record for a ring of `capacity` bytes.
/// `wanted` 0 picks the default, a quarter of the ring (less the 8-byte
/// record header), so four are in flight and the receiver copies one while
/// the sender fills the next (docs/performance.md, "Bulk payloads": the
/// sweep that chose it). Any other `wanted`
/// ([`crate::Builder::fragment_size`]) is rounded down to a multiple of 8.
/// Never more than the record limit (`max_record`), never less than the
/// start header plus 8 bytes.
pub(crate) fn fragment_len(capacity: u64, max_record: usize, wanted: usize) -> usize {
    let len = if wanted == 0 {
        usize::try_from(capacity / 4)
            .unwrap_or(usize::MAX)
            .saturating_sub(8)
    } else {
        wanted & !7
    };
    len.min(max_record).max(FRAG_HEADER + 8)
}

/// Why a fragment is refused.
pub(crate) type FragError = &'static str;

/// A message being reassembled from fragments.
#[derive(Debug)]
pub(crate) struct Assembly {
    buf: Vec<u8>,
    total: usize,
}

impl Assembly {
    /// Starts a message of `total` bytes whose first fragment carries
    /// `first` bytes, reusing `buf` (cleared; its capacity is kept). The
    /// buffer grows only as bytes arrive: a peer cannot make us allocate
    /// `total` with one 16-byte record.
    pub(crate) fn start(
        total: u64,
        first: usize,
        max_message: u64,
        mut buf: Vec<u8>,
    ) -> Result<Self, FragError> {
        if total > max_message {
            return Err("fragmented message longer than our max_message");
        }
        let total = usize::try_from(total).map_err(|_| "fragmented message length overflows")?;
        if first > total {
            return Err("first fragment longer than its message");
        }
        buf.clear();
        Ok(Assembly { buf, total })
    }

    /// Bytes still missing.
    pub(crate) fn remaining(&self) -> usize {
        self.total - self.buf.len()
    }

    /// Whether every byte has arrived.
    pub(crate) fn is_complete(&self) -> bool {
        self.buf.len() == self.total
    }

    /// Checks that a fragment of `n` bytes fits, and grows the buffer by at
    /// most what has arrived so far (doubling, capped at the total), so its
    /// capacity stays below twice the bytes received.
    pub(crate) fn make_room(&mut self, n: usize) -> Result<&mut Vec<u8>, FragError> {
        if n > self.remaining() {
            return Err("fragment runs past the message's length");
        }
        let free = self.buf.capacity() - self.buf.len();
        if free < n {
            let want = (self.buf.len() + n)
                .max(self.buf.len().saturating_mul(2))
                .min(self.total);
            self.buf.reserve_exact(want - self.buf.len());
        }
        Ok(&mut self.buf)
    }

    /// The buffer: the complete message, or a partial one to reuse.
    pub(crate) fn into_vec(self) -> Vec<u8> {
        self.buf
    }

    /// The announced total and the bytes received so far.
    pub(crate) fn into_parts(self) -> (usize, Vec<u8>) {
        (self.total, self.buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fragment_len_is_a_quarter_ring_within_limits() {
        assert_eq!(fragment_len(1 << 20, (1 << 19) - 8, 0), (1 << 18) - 8);
        assert_eq!(fragment_len(4096, 2040, 0), 1016);
        // Never above the record limit, never below the header + 8.
        assert_eq!(fragment_len(1 << 20, 100, 0), 100);
        assert_eq!(fragment_len(16, 100, 0), FRAG_HEADER + 8);
        // A chosen size, rounded down to 8 bytes, within the same limits.
        assert_eq!(fragment_len(1 << 20, (1 << 19) - 8, 64 << 10), 64 << 10);
        assert_eq!(fragment_len(1 << 20, (1 << 19) - 8, 1001), 1000);
        assert_eq!(
            fragment_len(1 << 20, (1 << 19) - 8, usize::MAX),
            (1 << 19) - 8
        );
        assert_eq!(fragment_len(1 << 20, (1 << 19) - 8, 1), FRAG_HEADER + 8);
    }

    #[test]
    fn large_send_covers_the_message_once() {
        for (len, frag) in [(100, 24), (1000, 1016), (5000, 1016), (1016, 1016)] {
            let mut ls = LargeSend::new(len, frag);
            let mut next = 0;
            let mut tags = Vec::new();
            while let Some((r, tag)) = ls.next_record() {
                assert_eq!(r.start, next);
                assert!(r.len() <= frag);
                next = r.end;
                tags.push(tag);
                ls.started = true;
                ls.advance(r.end);
            }
            assert_eq!(next, len);
            assert!(ls.is_done());
            assert_eq!(tags[0], TAG_FRAG_START);
            assert!(tags[1..].iter().all(|&t| t == TAG_FRAG));
        }
    }

    #[test]
    fn assembly_bounds() {
        assert!(Assembly::start(1001, 10, 1000, Vec::new()).is_err());
        assert!(Assembly::start(10, 11, 1000, Vec::new()).is_err());
        let mut a = Assembly::start(1 << 30, 8, 1 << 30, Vec::new()).unwrap();
        // One small fragment does not allocate the announced total.
        a.make_room(8).unwrap().extend_from_slice(&[1; 8]);
        assert!(a.buf.capacity() < 1 << 20);
        // A reused buffer starts empty and keeps its capacity.
        let mut a = Assembly::start(20, 8, 100, vec![9; 64]).unwrap();
        assert!(a.buf.is_empty() && a.buf.capacity() >= 64);
        a.make_room(8).unwrap().extend_from_slice(&[1; 8]);
        a.make_room(12).unwrap().extend_from_slice(&[2; 12]);
        assert!(a.is_complete());
        assert!(a.make_room(1).is_err());
        assert_eq!(a.into_vec().len(), 20);
    }
}
