//! The handle table: every object handed to C lives here, and C holds only
//! a handle value encoding `(generation << 32) | (slot + 1)`. The value is
//! never dereferenced, so a stale, freed or forged handle is looked up, not
//! followed: it gives `SHMSOCK_BAD_HANDLE`, never undefined behaviour.
//!
//! Each slot has a busy bit taken with one compare-exchange for the length
//! of a call: a second thread calling into the same handle meanwhile gets
//! `SHMSOCK_BUSY` instead of a data race. `_free` bumps the slot's generation, so every
//! copy of the old handle value stops matching. Slots are recycled first in,
//! first out, so a slot is reused only after every other free one; a stale
//! handle could match again only after its slot was reused 2^32 times.
//!
//! Slots live in chunks that are allocated on demand and never freed (their
//! addresses must stay valid for lock-free lookup); their number is bounded
//! by the peak number of live handles.

use std::cell::UnsafeCell;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use crate::status::{shmsock_status, Fail};

const CHUNK: usize = 256;
const MAX_CHUNKS: usize = 4096;
/// Most handles alive at once (1 Mi).
pub(crate) const MAX_HANDLES: usize = CHUNK * MAX_CHUNKS;

#[cfg(not(target_pointer_width = "64"))]
compile_error!("shmsock-ffi encodes handles in 64-bit pointers");

/// What a handle names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Options,
    Listener,
    Conn,
    Sender,
    Receiver,
    Writer,
    Reader,
}

impl Kind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Options => "shmsock_options",
            Kind::Listener => "shmsock_listener",
            Kind::Conn => "shmsock_conn",
            Kind::Sender => "shmsock_sender",
            Kind::Receiver => "shmsock_receiver",
            Kind::Writer => "shmsock_writer",
            Kind::Reader => "shmsock_reader",
        }
    }
}

/// An object owned by the table.
#[derive(Debug)]
pub(crate) enum Obj {
    Options(shmsock_transport::Builder),
    /// Shared: `accept` runs without holding the slot (the listener is
    /// `Sync`), so several threads may accept at once and `_free` never
    /// waits for a blocked accept.
    Listener(std::sync::Arc<shmsock_transport::Listener>),
    Conn(Box<crate::endpoint::Conn>),
    Sender(Box<crate::endpoint::Tx>),
    Receiver(Box<crate::endpoint::Rx>),
    /// A message being written: a ticket for the loan its connection or
    /// sender holds (`stream.rs`).
    Writer(crate::stream::Ticket),
    /// A message being read: a ticket for the loan its connection or
    /// receiver holds (`stream.rs`).
    Reader(crate::stream::Ticket),
}

impl Obj {
    fn kind(&self) -> Kind {
        match self {
            Obj::Options(_) => Kind::Options,
            Obj::Listener(_) => Kind::Listener,
            Obj::Conn(_) => Kind::Conn,
            Obj::Sender(_) => Kind::Sender,
            Obj::Receiver(_) => Kind::Receiver,
            Obj::Writer(_) => Kind::Writer,
            Obj::Reader(_) => Kind::Reader,
        }
    }

    /// The connection's shutdown handle, for objects that have one.
    fn shutdown(&self) -> Option<crate::shutdown::Shared> {
        match self {
            Obj::Conn(c) => Some(c.tx.shutdown()),
            Obj::Sender(t) => Some(t.shutdown()),
            Obj::Receiver(r) => Some(r.shutdown()),
            _ => None,
        }
    }
}

/// One slot: a state word and the object it guards. The word is
/// `generation << 32 | tag << 1 | busy`, where `tag` is 0 for an empty slot
/// and `kind + 1` otherwise. A call owns the object while it holds the busy
/// bit, taken with one compare-exchange from exactly the word its handle
/// names (generation and kind): a stale, mistyped or busy handle fails that
/// one instruction and never touches the object.
#[derive(Debug, Default)]
struct Slot {
    word: AtomicU64,
    obj: UnsafeCell<Option<Obj>>,
}

// SAFETY: `obj` is accessed only by the thread holding the slot's busy bit
// (`Held`), or by `Reserved::fill` while the word names no live handle (so
// no one can take the busy bit) and the slot is out of the free list (so
// no other `Reserved` names it): one thread at a time. `Obj` is `Send`.
unsafe impl Sync for Slot {}

// The claim above that `Obj` is `Send`, checked by the compiler: a
// variant holding a non-`Send` value must not compile.
const _: fn() = || {
    fn assert_send<T: Send>() {}
    assert_send::<Obj>();
};

const BUSY: u64 = 1;

fn word(generation: u32, kind: Option<Kind>) -> u64 {
    (u64::from(generation) << 32) | (kind.map_or(0, |k| k as u64 + 1) << 1)
}

/// The busy bit of one slot, held for a call; `Drop` stores `unlocked`.
struct Held {
    slot: &'static Slot,
    unlocked: u64,
}

impl Held {
    fn obj(&mut self) -> &mut Option<Obj> {
        // SAFETY: we hold the busy bit (see `Slot`): no other thread
        // accesses `obj` until `Drop` releases it, and `&mut self` ties the
        // borrow to this guard.
        unsafe { &mut *self.slot.obj.get() }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        // SYNC POINT `slot-released`: Release publishes our writes to the
        // object; pairs with the Acquire compare-exchange in `lock`.
        self.slot.word.store(self.unlocked, Ordering::Release);
        #[cfg(test)]
        hook::released(self.slot);
    }
}

/// Tests: run code in the window right after a thread releases a slot, so
/// that an interleaving of two threads that is rare on a real machine
/// (another thread taking the slot between two holds of this one) happens
/// every time.
#[cfg(test)]
pub(crate) mod hook {
    use std::cell::RefCell;

    type Hook = (usize, Box<dyn FnOnce()>);

    thread_local! {
        static AFTER_RELEASE: RefCell<Option<Hook>> = const { RefCell::new(None) };
    }

    /// Runs `f` (once) right after this thread next releases the slot of
    /// handle `h`: as if another thread had been waiting for it.
    pub(crate) fn after_release(h: usize, f: impl FnOnce() + 'static) {
        AFTER_RELEASE.with(|a| *a.borrow_mut() = Some((h, Box::new(f))));
    }

    /// Whether a hook is still set on this thread (it did not fire).
    pub(crate) fn pending() -> bool {
        AFTER_RELEASE.with(|a| a.borrow().is_some())
    }

    thread_local! {
        /// Slots this thread may still take (`None`: no limit).
        static SLOTS_LEFT: std::cell::Cell<Option<usize>> = const { std::cell::Cell::new(None) };
    }

    /// Makes the handle table look full to this thread once it has taken
    /// `n` more slots (`None`: lifts the limit). Inserting 1 Mi handles
    /// for real would take seconds and hundreds of MB, and would make the
    /// table full for every test thread at once.
    pub(crate) fn table_room(n: Option<usize>) {
        SLOTS_LEFT.with(|s| s.set(n));
    }

    /// Whether this thread may take one more slot (counts it).
    pub(super) fn take_slot() -> bool {
        SLOTS_LEFT.with(|s| match s.get() {
            None => true,
            Some(0) => false,
            Some(n) => {
                s.set(Some(n - 1));
                true
            }
        })
    }

    pub(super) fn released(slot: &'static super::Slot) {
        let due = AFTER_RELEASE.with(|a| {
            let mut a = a.borrow_mut();
            let fire = a.as_ref().is_some_and(|(h, _)| {
                super::decode(*h)
                    .and_then(|(i, _)| super::slot(i))
                    .is_some_and(|s| std::ptr::eq(s, slot))
            });
            if fire {
                a.take()
            } else {
                None
            }
        });
        if let Some((_, f)) = due {
            f();
        }
    }
}

type Chunk = [Slot; CHUNK];

static CHUNKS: [AtomicPtr<Chunk>; MAX_CHUNKS] =
    [const { AtomicPtr::new(std::ptr::null_mut()) }; MAX_CHUNKS];

struct Alloc {
    /// Free slot indices, oldest first.
    free: VecDeque<u32>,
    /// Slots handed out so far (the next never-used index).
    used: u32,
}

static ALLOC: Mutex<Alloc> = Mutex::new(Alloc {
    free: VecDeque::new(),
    used: 0,
});

fn lock_alloc() -> MutexGuard<'static, Alloc> {
    // The allocator's state is a free list and a counter, consistent after
    // every statement: a panic elsewhere cannot leave it half-updated.
    ALLOC.lock().unwrap_or_else(|e| e.into_inner())
}

fn slot(index: u32) -> Option<&'static Slot> {
    let i = index as usize;
    // SYNC POINT `chunk-published`: Acquire pairs with the Release store in
    // `new_slot`, so the chunk's slots are initialised when seen.
    let chunk = CHUNKS.get(i / CHUNK)?.load(Ordering::Acquire);
    if chunk.is_null() {
        return None;
    }
    // SAFETY: non-null chunk pointers come from `Box::leak` in `new_slot`
    // and are never freed or changed, so the chunk lives for 'static.
    let chunk: &'static Chunk = unsafe { &*chunk };
    Some(&chunk[i % CHUNK])
}

fn table_full() -> Fail {
    Fail::new(
        shmsock_status::SHMSOCK_IO,
        format!("too many live shmsock handles (limit {MAX_HANDLES})"),
    )
}

fn new_slot(a: &mut Alloc) -> Result<u32, Fail> {
    #[cfg(test)]
    if !hook::take_slot() {
        return Err(table_full());
    }
    if let Some(i) = a.free.pop_front() {
        return Ok(i);
    }
    let i = a.used as usize;
    if i >= MAX_HANDLES {
        return Err(table_full());
    }
    if i.is_multiple_of(CHUNK) {
        let chunk: &'static mut Chunk =
            Box::leak(Box::new(std::array::from_fn(|_| Slot::default())));
        // SYNC POINT `chunk-published`: Release makes the initialised slots
        // visible with the pointer; pairs with the Acquire load in `slot`.
        CHUNKS[i / CHUNK].store(chunk, Ordering::Release);
    }
    a.used += 1;
    Ok(i as u32)
}

/// Splits a handle value into (slot index, generation).
fn decode(h: usize) -> Option<(u32, u32)> {
    let low = (h & 0xffff_ffff) as u32;
    let index = low.checked_sub(1)?;
    Some((index, (h >> 32) as u32))
}

/// Stores `obj` and returns its handle value (never 0). On failure (the
/// table is full) `obj` is dropped: a call that would lose something by
/// that (a connection it consumed, a client it accepted, a message it
/// took) takes a [`Reserved`] slot first, before it consumes anything.
pub(crate) fn insert(obj: Obj) -> Result<usize, Fail> {
    Ok(reserve()?.fill(obj))
}

/// An empty slot taken from the allocator and not yet named by any handle:
/// [`Reserved::fill`] cannot fail. Dropped unfilled, it goes back to the
/// free list.
#[derive(Debug)]
pub(crate) struct Reserved {
    index: u32,
    slot: &'static Slot,
}

/// Takes an empty slot, or fails if the table is full (`SHMSOCK_IO`, our
/// own resource exhaustion).
pub(crate) fn reserve() -> Result<Reserved, Fail> {
    let index = new_slot(&mut lock_alloc())?;
    let slot = slot(index);
    let Some(slot) = slot else {
        // Cannot happen: `new_slot` publishes a slot's chunk before
        // handing the slot out. Give the index back rather than leak it.
        lock_alloc().free.push_back(index);
        return Err(Fail::new(shmsock_status::SHMSOCK_PANIC, "slot vanished"));
    };
    Ok(Reserved { index, slot })
}

impl Reserved {
    /// Stores `obj` in the reserved slot and returns its handle value
    /// (never 0).
    pub(crate) fn fill(self, obj: Obj) -> usize {
        let kind = obj.kind();
        let shutdown = obj.shutdown();
        let (index, slot) = (self.index, self.slot);
        // The slot is ours now: `Drop` must not give it back.
        std::mem::forget(self);
        // Relaxed: the slot came from the allocator (its mutex ordered us
        // after the `remove` that freed it); the word is empty, no handle
        // names it.
        let generation = (slot.word.load(Ordering::Relaxed) >> 32) as u32;
        // SAFETY: the word names no live handle (empty tag), so no thread
        // can hold the busy bit or touch `obj` (see `Slot`); we own the
        // slot until the store below publishes it.
        unsafe { *slot.obj.get() = Some(obj) };
        // SYNC POINT `slot-released`: Release publishes the object with the
        // word; pairs with the Acquire compare-exchange in `lock`.
        slot.word
            .store(word(generation, Some(kind)), Ordering::Release);
        let h = ((generation as usize) << 32) | (index as usize + 1);
        if let Some(sd) = shutdown {
            // Before C sees `h`: `shmsock_*_shutdown(h)` finds it at once.
            crate::shutdown::register(h, kind, sd);
        }
        h
    }
}

impl Drop for Reserved {
    fn drop(&mut self) {
        // Never named by a handle (the generation is unchanged): the slot
        // is free again as it was.
        lock_alloc().free.push_back(self.index);
    }
}

fn bad(kind: Kind) -> Fail {
    Fail::new(
        shmsock_status::SHMSOCK_BAD_HANDLE,
        format!(
            "not a live {} handle (freed, or never returned by shmsock)",
            kind.name()
        ),
    )
}

/// Takes the busy bit of the slot of `h` without waiting, if the slot holds
/// a live object of `kind` under `h`'s generation.
fn lock(h: usize, kind: Kind) -> Result<Held, Fail> {
    if h == 0 {
        return Err(Fail::null(kind.name()));
    }
    let (index, generation) = decode(h).ok_or_else(|| bad(kind))?;
    let slot = slot(index).ok_or_else(|| bad(kind))?;
    let want = word(generation, Some(kind));
    // SYNC POINT `slot-released`: Acquire sees the object as the last
    // holder (or `insert`) left it. Relaxed on failure: we touch nothing.
    match slot
        .word
        .compare_exchange(want, want | BUSY, Ordering::Acquire, Ordering::Relaxed)
    {
        Ok(_) => Ok(Held {
            slot,
            unlocked: want,
        }),
        Err(cur) if cur == want | BUSY => Err(Fail::busy(
            "handle in use by another thread (a handle serves one thread at a time)",
        )),
        Err(_) => Err(bad(kind)),
    }
}

/// Runs `f` on the object named by `h` (of `kind`), holding its slot. A
/// panic in `f` releases the slot as it unwinds (`Held::drop`).
pub(crate) fn with<R>(
    h: usize,
    kind: Kind,
    f: impl FnOnce(&mut Obj) -> Result<R, Fail>,
) -> Result<R, Fail> {
    let mut held = lock(h, kind)?;
    let obj = held.obj().as_mut().ok_or_else(|| bad(kind))?;
    f(obj)
}

/// Removes the object named by `h` and retires the handle value. Fails with
/// `SHMSOCK_BUSY` if another thread is inside a call on it.
pub(crate) fn remove(h: usize, kind: Kind) -> Result<Obj, Fail> {
    remove_with(h, kind, |_| Ok(()))
}

/// As [`remove`] if `check` passes on the object, in one hold of its slot:
/// no other thread can change the object between the check and the
/// removal. If `check` fails, its error is returned and the object stays.
///
/// Every removal that depends on the object's state goes through here: a
/// check in one [`with`] and a [`remove`] in another leave a window in
/// which another thread (holding the busy bit between the two) can make
/// the checked condition false (a grant taken out on a connection being
/// split), or make the removal fail after the check's side effects (a
/// writer's loan ended, then `SHMSOCK_BUSY`).
pub(crate) fn remove_with(
    h: usize,
    kind: Kind,
    check: impl FnOnce(&mut Obj) -> Result<(), Fail>,
) -> Result<Obj, Fail> {
    let mut held = lock(h, kind)?;
    check(held.obj().as_mut().ok_or_else(|| bad(kind))?)?;
    retire(held, h, kind)
}

/// As [`remove`], for objects that several threads share (listeners): a
/// thread inside [`with_shared`] holds the busy bit only for a clone, so
/// this waits for it (as `with_shared` does) instead of failing with
/// `SHMSOCK_BUSY`, which the listener's documentation does not allow.
pub(crate) fn remove_shared(h: usize, kind: Kind) -> Result<Obj, Fail> {
    retire(lock_shared(h, kind)?, h, kind)
}

/// Takes the object out of the held slot and retires `h`. Cannot fail for
/// a slot that `lock` gave for `h` and that holds an object (what
/// [`remove_with`] has checked before its `check` ran).
fn retire(mut held: Held, h: usize, kind: Kind) -> Result<Obj, Fail> {
    let (index, generation) = decode(h).ok_or_else(|| bad(kind))?;
    let obj = held.obj().take().ok_or_else(|| bad(kind))?;
    // Every copy of `h` stops matching when the guard stores this.
    held.unlocked = word(generation.wrapping_add(1), None);
    drop(held);
    if obj.shutdown().is_some() {
        crate::shutdown::forget(h);
    }
    lock_alloc().free.push_back(index);
    Ok(obj)
}

/// As [`with`], for objects that several threads share (listeners): the
/// busy bit is held only to clone what `f` returns, so instead of failing
/// at once with `SHMSOCK_BUSY` this retries a while (yielding) when
/// another thread holds it.
pub(crate) fn with_shared<R>(
    h: usize,
    kind: Kind,
    mut f: impl FnMut(&mut Obj) -> Result<R, Fail>,
) -> Result<R, Fail> {
    let mut held = lock_shared(h, kind)?;
    let obj = held.obj().as_mut().ok_or_else(|| bad(kind))?;
    f(obj)
}

/// [`lock`], retrying a while (yielding) while another thread holds the
/// busy bit of a shared object.
fn lock_shared(h: usize, kind: Kind) -> Result<Held, Fail> {
    let mut tries = 0u32;
    loop {
        match lock(h, kind) {
            Ok(held) => return Ok(held),
            // Holders keep the bit for a clone (or a `_free`): nanoseconds
            // unless preempted; 10 000 yields bound the wait anyway.
            Err(e) if e.status == shmsock_status::SHMSOCK_BUSY && tries < 10_000 => {
                tries += 1;
                std::thread::yield_now();
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> Obj {
        Obj::Options(shmsock_transport::Builder::new())
    }

    #[test]
    fn stale_and_forged_handles_are_refused() {
        let h = insert(opts()).unwrap();
        assert_ne!(h, 0);
        assert!(with(h, Kind::Options, |_| Ok(())).is_ok());
        // Wrong kind.
        let e = with(h, Kind::Conn, |_| Ok(())).unwrap_err();
        assert_eq!(e.status, shmsock_status::SHMSOCK_BAD_HANDLE);
        drop(remove(h, Kind::Options).unwrap());
        // Use after free and double free.
        let e = with(h, Kind::Options, |_| Ok(())).unwrap_err();
        assert_eq!(e.status, shmsock_status::SHMSOCK_BAD_HANDLE);
        assert_eq!(
            remove(h, Kind::Options).unwrap_err().status,
            shmsock_status::SHMSOCK_BAD_HANDLE
        );
        // Forged values: a slot never handed out, a huge index, low word 0.
        for forged in [usize::MAX, 0xdead_beef_0000_0000, 0x1_0000_0000, 12345] {
            let e = with(forged, Kind::Options, |_| Ok(())).unwrap_err();
            assert_eq!(e.status, shmsock_status::SHMSOCK_BAD_HANDLE, "{forged:#x}");
        }
        assert_eq!(
            with(0, Kind::Options, |_| Ok(())).unwrap_err().status,
            shmsock_status::SHMSOCK_INVALID_ARGUMENT
        );
    }

    #[test]
    fn a_reused_slot_does_not_revive_an_old_handle() {
        // Drain enough slots that the FIFO free list hands this one back.
        let first = insert(opts()).unwrap();
        drop(remove(first, Kind::Options).unwrap());
        let mut live = Vec::new();
        let reused = loop {
            let h = insert(opts()).unwrap();
            if h & 0xffff_ffff == first & 0xffff_ffff {
                break h;
            }
            live.push(h);
        };
        assert_ne!(reused, first);
        assert!(with(first, Kind::Options, |_| Ok(())).is_err());
        assert!(with(reused, Kind::Options, |_| Ok(())).is_ok());
        for h in live.into_iter().chain([reused]) {
            drop(remove(h, Kind::Options).unwrap());
        }
    }

    #[test]
    fn freeing_a_shared_object_waits_for_a_clone_in_progress() {
        // `shmsock_listener_free` while another thread is inside
        // `with_shared` (accept cloning the listener) returned
        // SHMSOCK_BUSY, which the listener's docs do not allow; the caller
        // then leaked the listening socket.
        let h = insert(opts()).unwrap();
        let (inside, go) = std::sync::mpsc::channel();
        let holder = std::thread::spawn(move || {
            with_shared(h, Kind::Options, |_| {
                inside.send(()).unwrap();
                std::thread::sleep(std::time::Duration::from_millis(1));
                Ok(())
            })
            .unwrap();
        });
        go.recv().unwrap();
        drop(remove_shared(h, Kind::Options).unwrap());
        holder.join().unwrap();
        assert!(with(h, Kind::Options, |_| Ok(())).is_err());
    }

    #[test]
    fn a_handle_in_use_is_busy_for_other_threads() {
        let h = insert(opts()).unwrap();
        with(h, Kind::Options, |_| {
            let other = std::thread::spawn(move || {
                (
                    with(h, Kind::Options, |_| Ok(())).unwrap_err().status,
                    remove(h, Kind::Options).unwrap_err().status,
                )
            })
            .join()
            .unwrap();
            assert_eq!(
                other,
                (shmsock_status::SHMSOCK_BUSY, shmsock_status::SHMSOCK_BUSY)
            );
            Ok(())
        })
        .unwrap();
        drop(remove(h, Kind::Options).unwrap());
    }

    #[test]
    fn a_panic_inside_leaves_the_slot_usable() {
        let h = insert(opts()).unwrap();
        let r = std::panic::catch_unwind(|| {
            with(h, Kind::Options, |_| -> Result<(), Fail> { panic!("x") })
        });
        assert!(r.is_err());
        assert!(with(h, Kind::Options, |_| Ok(())).is_ok());
        drop(remove(h, Kind::Options).unwrap());
    }
}
