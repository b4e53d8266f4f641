//! Access to the ring's data area.
//!
//! In normal builds the data area is raw shared memory: record headers are
//! read and written as `AtomicU64` (the peer may write them concurrently, so
//! a plain load would be a data race), payloads are copied with
//! `copy_nonoverlapping` through raw pointers and never borrowed as Rust
//! references by this crate. Under `--cfg loom` the data area is an array
//! of loom `AtomicU64`s accessed with `Relaxed` ordering, so that loom can
//! show a consumer reading stale payload if a cursor's ordering were too weak.

use crate::sync::{AtomicU64, Ordering};

/// The data area: `cap` bytes, 8-byte aligned.
pub(crate) struct Data {
    #[cfg(not(loom))]
    base: *mut u8,
    /// Shared (not boxed) so that the fan-out ring's readers can see the
    /// writer's area ([`Data::share_loom`]).
    #[cfg(loom)]
    words: std::sync::Arc<[AtomicU64]>,
}

impl Data {
    #[cfg(not(loom))]
    /// # Safety
    /// `base` must be 8-aligned and valid for reads and writes of `cap` bytes
    /// for as long as the returned value is used.
    pub(crate) unsafe fn new(base: *mut u8) -> Self {
        Data { base }
    }

    #[cfg(loom)]
    pub(crate) fn new_loom(cap: usize) -> Self {
        Data {
            words: (0..cap / 8).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Another handle on the same loom data area (what mapping the segment
    /// again is in production).
    #[cfg(loom)]
    pub(crate) fn share_loom(&self) -> Self {
        Data {
            words: self.words.clone(),
        }
    }

    #[cfg(not(loom))]
    fn word(&self, off: usize) -> &AtomicU64 {
        // SAFETY: callers pass `off` 8-aligned with `off + 8 <= cap` (every
        // caller derives it from `pos & mask` with 8-aligned positions); the
        // base is 8-aligned and valid for `cap` bytes, and an atomic may be
        // referenced over memory the peer writes concurrently.
        unsafe { AtomicU64::from_ptr(self.base.add(off).cast::<u64>()) }
    }

    #[cfg(loom)]
    fn word(&self, off: usize) -> &AtomicU64 {
        &self.words[off / 8]
    }

    /// Loads the record header word at `off` (8-aligned, `off + 8 <= cap`).
    /// `Relaxed`: the Acquire load of the producer cursor that made this
    /// record visible already ordered it.
    #[inline]
    pub(crate) fn load_word(&self, off: usize) -> u64 {
        self.word(off).load(Ordering::Relaxed)
    }

    /// Stores a record header word at `off` (8-aligned, `off + 8 <= cap`).
    /// `Relaxed`: the Release store of the producer cursor publishes it.
    #[inline]
    pub(crate) fn store_word(&self, off: usize, word: u64) {
        self.word(off).store(word, Ordering::Relaxed)
    }

    /// Pointer to byte `off` of the data area.
    #[cfg(not(loom))]
    #[inline]
    pub(crate) fn ptr(&self, off: usize) -> *mut u8 {
        self.base.wrapping_add(off)
    }

    /// Asks the CPU to start fetching the cache line holding byte `off`
    /// (`off < cap`). A hint, not an access: it reads nothing the program
    /// sees, cannot fault, and is a no-op where there is no such hint
    /// (and under loom).
    #[inline]
    pub(crate) fn prefetch(&self, off: usize) {
        #[cfg(all(target_arch = "x86_64", not(loom)))]
        // SAFETY: `prefetch` needs SSE, which every x86_64 CPU has; it is a
        // hint that accesses no memory the program sees and never faults,
        // whatever the address (`off < cap` keeps it in the area anyway).
        unsafe {
            core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(
                self.ptr(off).cast_const().cast::<i8>(),
            )
        };
        #[cfg(not(all(target_arch = "x86_64", not(loom))))]
        let _ = off;
    }

    /// Copies `src` to offset `off`.
    ///
    /// # Safety
    /// `off` is 8-aligned, `off + src.len() <= cap`, and the caller (the
    /// producer) owns that range: the consumer has released it.
    #[inline]
    pub(crate) unsafe fn copy_in(&self, off: usize, src: &[u8]) {
        #[cfg(not(loom))]
        // SAFETY: the range is in bounds (caller contract) and `src` is
        // private memory, so the two cannot overlap.
        unsafe {
            self.base
                .add(off)
                .copy_from_nonoverlapping(src.as_ptr(), src.len())
        };
        #[cfg(loom)]
        for (i, chunk) in src.chunks(8).enumerate() {
            let mut w = [0u8; 8];
            w[..chunk.len()].copy_from_slice(chunk);
            self.word(off + i * 8)
                .store(u64::from_ne_bytes(w), Ordering::Relaxed);
        }
    }

    /// Copies `dst.len()` bytes from offset `off` into `dst`.
    ///
    /// # Safety
    /// `off` is 8-aligned and `off + dst.len() <= cap`.
    #[inline]
    pub(crate) unsafe fn copy_out(&self, off: usize, dst: &mut [u8]) {
        #[cfg(not(loom))]
        // SAFETY: the range is in bounds (caller contract) and `dst` is
        // private memory. The peer may scribble on the source meanwhile (a
        // protocol violation): we then copy garbage, never out of bounds, and
        // `dst` holds a stable snapshot afterwards (see docs/design.md).
        unsafe {
            dst.as_mut_ptr()
                .copy_from_nonoverlapping(self.base.add(off), dst.len())
        };
        #[cfg(loom)]
        for (i, chunk) in dst.chunks_mut(8).enumerate() {
            let w = self.word(off + i * 8).load(Ordering::Relaxed).to_ne_bytes();
            let n = chunk.len();
            chunk.copy_from_slice(&w[..n]);
        }
    }
}
