//! Owed wake-ups and the futex words they travel on.
//!
//! A half that publishes (or releases) and finds the peer parked owes it one
//! wake-up for that park episode (`docs/design.md`, "No lost wake-up"). The
//! ring hands that debt out as a [`Wake`], a `#[must_use]` token: the caller
//! redeems it (a `FUTEX_WAKE` the token does itself, or a socket datagram the
//! caller sends), or hands it back. A token dropped unredeemed is never
//! lost: a futex wake-up is done by `Drop`, a socket wake-up is handed back
//! to the half, whose next publish or release (or [`Producer::owed_wake`],
//! [`Consumer::owed_wake`]) owes it again.
//!
//! The futex word: a parker cannot sleep on its own park word (only it
//! writes that word, so a `FUTEX_WAKE` that comes between its re-check and
//! its `FUTEX_WAIT` would be lost). It sleeps on the *waker's* wake word
//! (`data_wake` in the producer's header for a parked reader, `space_wake`
//! in the consumer's header for a parked writer), which it maps read-only:
//! it snapshots the word just before it parks (`Consumer::park` and
//! `Producer::park` return the snapshot), then re-checks the ring; the
//! waker adds one to the word before `FUTEX_WAKE`; the kernel's value check
//! in `FUTEX_WAIT` then catches a wake-up that came early. The snapshot
//! must precede the park: a wake-up owed to the episode can be paid the
//! moment the episode is visible, and a snapshot that already holds it
//! would sleep through it (`docs/design.md`, "Futex wake-ups"). Shared futexes are
//! keyed by the page, not the mapping, so the sleeper's read-only mapping
//! and the waker's writable one meet (test `futex_across_read_only_mapping`).
//!
//! [`Producer::owed_wake`]: super::Producer::owed_wake
//! [`Consumer::owed_wake`]: super::Consumer::owed_wake

use std::sync::atomic::AtomicU64 as PrivateU64;
use std::sync::Arc;

use super::RingShared;
use crate::sync::Ordering;

/// Which kind of wake-up a parked peer asked for (bit 63 of its park word,
/// [`PARK_FUTEX`](super::layout::PARK_FUTEX)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WakeKind {
    /// A wake-up datagram on the socket: the peer sleeps in `poll`, or an
    /// event loop polls its fd.
    Socket,
    /// A `FUTEX_WAKE` on our wake word, which the peer sleeps on.
    Futex,
}

/// Which wake word of the ring a wake-up bumps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WordSel {
    /// `data_wake` in the producer's header: wakes a parked reader.
    Data,
    /// `space_wake` in the consumer's header: wakes a parked writer.
    Space,
}

impl WordSel {
    fn word(self, ring: &RingShared) -> &crate::sync::AtomicU32 {
        match self {
            WordSel::Data => &ring.prod().data_wake,
            WordSel::Space => &ring.cons().space_wake,
        }
    }
}

/// A half's record of the last park episode it owed a wake-up for, in
/// private memory, shared with the tokens it handed out so that a token
/// handed back can undo its entry.
#[derive(Debug, Default)]
pub(crate) struct Woken(PrivateU64);

impl Woken {
    #[inline]
    pub(crate) fn get(&self) -> u64 {
        // Relaxed: private memory; the half and its tokens only need the
        // value itself (a token on another thread racing a publish at worst
        // makes one wake-up spurious or re-owed).
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
    #[inline]
    pub(crate) fn set(&self, v: u64) {
        // Relaxed: as in `get`.
        self.0.store(v, std::sync::atomic::Ordering::Relaxed);
    }
    /// Undoes `set(seq)` if nothing newer was recorded since.
    fn undo(&self, seq: u64, prev: u64) {
        // Relaxed: as in `get`.
        let _ = self.0.compare_exchange(
            seq,
            prev,
            std::sync::atomic::Ordering::Relaxed,
            std::sync::atomic::Ordering::Relaxed,
        );
    }
}

struct Owed {
    kind: WakeKind,
    /// The park value recorded as woken, and the one recorded before it.
    seq: u64,
    prev: u64,
    woken: Arc<Woken>,
    ring: Arc<RingShared>,
    word: WordSel,
}

/// A wake-up owed to a parked peer, or nothing ([`Wake::is_owed`]).
///
/// Redeem it with [`Wake::redeem`] (which does a futex wake-up itself and
/// asks the caller to send a socket one), or give it back with
/// [`Wake::hand_back`]. Dropping it redeems a futex wake-up and hands a
/// socket one back, so no path loses one.
#[must_use = "a parked peer waits for this wake-up: redeem it or hand it back"]
pub struct Wake {
    owed: Option<Owed>,
}

impl std::fmt::Debug for Wake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wake").field("kind", &self.kind()).finish()
    }
}

impl Wake {
    /// Nothing owed.
    pub const NONE: Wake = Wake { owed: None };

    pub(crate) fn owed(
        kind: WakeKind,
        seq: u64,
        prev: u64,
        woken: &Arc<Woken>,
        ring: &Arc<RingShared>,
        word: WordSel,
    ) -> Wake {
        // SYNC POINT `wake-word`: the caller loaded the parker's park word
        // (`seq`) just before; this Acquire fence pairs with the parker's
        // Release store of it, so the parker's snapshot of our wake word,
        // taken before that store, happens before the bump that pays this
        // token: it cannot contain it.
        crate::sync::fence(Ordering::Acquire);
        Wake {
            owed: Some(Owed {
                kind,
                seq,
                prev,
                woken: woken.clone(),
                ring: ring.clone(),
                word,
            }),
        }
    }

    /// Whether a wake-up is owed.
    #[inline]
    pub fn is_owed(&self) -> bool {
        self.owed.is_some()
    }

    /// The kind of wake-up owed, if any.
    pub fn kind(&self) -> Option<WakeKind> {
        self.owed.as_ref().map(|o| o.kind)
    }

    /// This token, or `other` if this one owes nothing. If both are owed,
    /// `other` is handed back (pass the newer check's token as `self`: its
    /// episode supersedes the older one's).
    pub fn or(self, other: Wake) -> Wake {
        if self.is_owed() {
            other.hand_back();
            self
        } else {
            other
        }
    }

    /// Pays the wake-up: a futex wake-up is done here; for a socket one
    /// `socket` is called to send the datagram, and its error returned.
    /// Nothing owed: nothing is done.
    ///
    /// # Errors
    /// What `socket` returns.
    pub fn redeem<E>(mut self, socket: impl FnOnce() -> Result<(), E>) -> Result<(), E> {
        match self.owed.take() {
            None => Ok(()),
            Some(o) if o.kind == WakeKind::Futex => {
                futex_wake(&o.ring, o.word);
                Ok(())
            }
            Some(_) => socket(),
        }
    }

    /// Gives the wake-up back unpaid: the half that owed it owes it again
    /// at its next publish or release (or `owed_wake`). A futex wake-up
    /// cannot be handed back (it is paid here instead): it costs a syscall
    /// and no socket.
    pub fn hand_back(mut self) {
        if let Some(o) = self.owed.take() {
            Self::settle(o);
        }
    }

    fn settle(o: Owed) {
        match o.kind {
            WakeKind::Futex => futex_wake(&o.ring, o.word),
            WakeKind::Socket => o.woken.undo(o.seq, o.prev),
        }
    }
}

impl Drop for Wake {
    // Inline: nothing is owed on a busy stream's every publish and release,
    // and this check is all a drop then does.
    #[inline]
    fn drop(&mut self) {
        if let Some(o) = self.owed.take() {
            Self::settle(o);
        }
    }
}

/// Bumps our wake word and wakes whoever sleeps on it.
fn futex_wake(ring: &RingShared, sel: WordSel) {
    let word = sel.word(ring);
    // SYNC POINT `wake-word`: Release orders the cursor store that made the
    // wake-up owed before the bump; pairs with the sleeper's load + Acquire
    // fence after the sleeper's snapshot (`ParkSeq::park_after_snapshot`,
    // `WakeWord::current`), taken before its re-check of the ring.
    // An RMW, not a load and a store: tokens are `Send`, so two bumps of
    // this word (an older episode's token dropped on another thread, and
    // the current one) may race, and each must change the word, or the
    // later one could write the value the sleeper already saw (loom model
    // `concurrent_futex_bumps_never_strand_a_sleeper`).
    word.fetch_add(1, Ordering::Release);
    #[cfg(not(loom))]
    {
        // Errors: FUTEX_WAKE fails only on a bad address (EFAULT) or bad
        // flags, neither possible for a word of a live mapping; a sleeper
        // that is not woken still wakes at its slice's end.
        let _ = rustix::thread::futex::wake(
            word,
            rustix::thread::futex::Flags::empty(),
            i32::MAX as u32,
        );
    }
}

/// The peer's wake word that a parked half of ours sleeps on (in the peer's
/// segment, mapped read-only). Not under loom.
#[cfg(not(loom))]
pub struct WakeWord {
    ring: Arc<RingShared>,
    word: WordSel,
}

#[cfg(not(loom))]
impl std::fmt::Debug for WakeWord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WakeWord")
            .field("word", &self.word)
            .finish()
    }
}

/// How a futex sleep ended.
#[cfg(not(loom))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slept {
    /// Woken, or the word had changed already (re-check the ring).
    Woken,
    /// The timeout passed.
    TimedOut,
}

#[cfg(not(loom))]
impl WakeWord {
    pub(crate) fn new(ring: Arc<RingShared>, word: WordSel) -> Self {
        WakeWord { ring, word }
    }

    /// Loads the word's current value (to tell whether it changed since
    /// a snapshot). The value to sleep on is the one `park` returns, taken
    /// before the park episode began, never one loaded after it.
    pub fn current(&self) -> u32 {
        // SYNC POINT `wake-word`: Relaxed load (the word is in the peer's
        // read-only mapping) + Acquire fence, pairing with the Release bump
        // in the waker's `futex_wake`: if we see a bump, what we check after
        // sees the cursor store before it.
        let v = self.word.word(&self.ring).load(Ordering::Relaxed);
        crate::sync::fence(Ordering::Acquire);
        v
    }

    /// Sleeps until the word differs from `expected` (the snapshot that
    /// `park` returned), a wake-up arrives on it, or `timeout` passes. Spurious returns are possible; EINTR
    /// returns [`Slept::Woken`]. The peer can make this return early (by
    /// waking the word), never late.
    ///
    /// One `FUTEX_WAIT` with a relative timeout. (`futex_waitv` on this word
    /// and a private shutdown word would make a shutdown race-free, but
    /// measured ~7 µs more per sleep here than `FUTEX_WAIT`:
    /// `docs/performance.md`.)
    ///
    /// # Errors
    /// Only an unexpected errno from the kernel.
    pub fn sleep(&self, expected: u32, timeout: std::time::Duration) -> std::io::Result<Slept> {
        use rustix::io::Errno;
        use rustix::thread::futex;
        let ts = futex::Timespec {
            tv_sec: i64::try_from(timeout.as_secs()).unwrap_or(i64::MAX),
            tv_nsec: i64::from(timeout.subsec_nanos()),
        };
        let word = self.word.word(&self.ring);
        match futex::wait(word, futex::Flags::empty(), expected, Some(&ts)) {
            Ok(()) | Err(Errno::AGAIN) | Err(Errno::INTR) => Ok(Slept::Woken),
            Err(Errno::TIMEDOUT) => Ok(Slept::TimedOut),
            Err(e) => Err(e.into()),
        }
    }

    /// Wakes whoever sleeps on the word, without changing it (this side
    /// may only map it read-only): a sleeper returns, re-checks and finds
    /// why (a [`ShutdownHandle`] uses it). A wake-up that comes before the
    /// sleeper reaches `FUTEX_WAIT` is not seen until its slice ends.
    ///
    /// [`ShutdownHandle`]: https://docs.rs/shmsock-transport
    pub fn wake_sleepers(&self) {
        // FUTEX_WAKE cannot fail on a word of a live mapping.
        let _ = rustix::thread::futex::wake(
            self.word.word(&self.ring),
            rustix::thread::futex::Flags::empty(),
            i32::MAX as u32,
        );
    }
}
