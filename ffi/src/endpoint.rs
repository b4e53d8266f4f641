//! The objects behind `shmsock_conn`, `shmsock_sender` and
//! `shmsock_receiver`: a transport [`Sender`]/[`Receiver`] on the heap plus
//! the one loan it may have out to C: a write grant or a message being
//! written (a [`MessageWriter`] and its current [`Chunk`]) for a sender; a
//! received message or a message being read (a [`MessageReader`]) for a
//! receiver.
//!
//! Invariant kept by this module (the reason for its `unsafe`): a loan
//! borrows the `Sender` (`Receiver`) that its [`Tx`] ([`Rx`]) owns through
//! a raw pointer from `Box::leak`. While the loan is out, no other
//! reference to that half is made (every accessor checks for an
//! outstanding loan first and fails with `SHMSOCK_BUSY`), and `Drop` ends
//! the loan before it frees the half. The half never moves: it stays in
//! its box until `Drop`. A writer's current chunk borrows the writer in
//! turn: the writer lives in its own box ([`Stream`]), is touched only
//! while no chunk is out, and is freed after the chunk.

use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::ptr::NonNull;
use std::time::Duration;

use shmsock_transport::{
    Chunk, Connection, Credentials, Message, MessageReader, MessageWriter, Receiver, Sender,
    WriteGrant,
};

use crate::shutdown::Shared;
use crate::status::{shmsock_status, Fail};

/// Peer credentials, from `SO_PEERCRED` at connect time (the same fields as
/// `struct ucred`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[allow(non_camel_case_types)] // C naming
pub struct shmsock_credentials {
    /// Process id of the peer, as seen from our PID namespace; 0 if the peer
    /// lives in a namespace we cannot see.
    pub pid: i32,
    /// User id of the peer.
    pub uid: u32,
    /// Group id of the peer.
    pub gid: u32,
}

impl From<Credentials> for shmsock_credentials {
    fn from(c: Credentials) -> Self {
        shmsock_credentials {
            pid: c.pid.unwrap_or(0),
            uid: c.uid,
            gid: c.gid,
        }
    }
}

/// Ring space lent by `shmsock_reserve`: write up to `len` bytes at `data`,
/// then `shmsock_commit` (send) or `shmsock_abort` (send nothing). The
/// space belongs to the sender that lent it; while it is out, that sender
/// refuses other sends with `SHMSOCK_BUSY`. Commit and abort zero the
/// struct.
#[repr(C)]
#[derive(Debug)]
#[allow(non_camel_case_types)] // C naming
pub struct shmsock_grant {
    /// Start of the writable space (our own ring: the peer cannot write it).
    pub data: *mut u8,
    /// Bytes reserved.
    pub len: usize,
    /// Identifies the loan; shmsock checks it on commit and abort, so a
    /// stale or copied grant is refused with `SHMSOCK_INVALID_ARGUMENT`.
    pub id: u64,
}

/// A received message lent by `shmsock_recv`: `len` bytes at `data`, valid
/// until `shmsock_release` (or the receiver's `_free`). It borrows its
/// receiver: while it is out, that receiver refuses other receives with
/// `SHMSOCK_BUSY`. Release zeroes the struct.
///
/// A message that fits one ring record is read in place from the peer's
/// shared ring: a peer that breaks the protocol could change those bytes
/// while you read them, so copy what you validate before you trust it (a
/// well-behaved peer never writes a published record). Larger messages were
/// reassembled into this process's memory.
#[repr(C)]
#[derive(Debug)]
#[allow(non_camel_case_types)] // C naming
pub struct shmsock_message {
    /// First byte of the payload (not NULL, even for an empty message).
    pub data: *const u8,
    /// Payload length.
    pub len: usize,
    /// Identifies the loan; checked by `shmsock_release`.
    pub id: u64,
}

/// One chunk of a message streamed with a `shmsock_writer` or a
/// `shmsock_reader`.
///
/// From `shmsock_writer_next_chunk`: ring space to fill with the message's
/// bytes `[offset, offset + len)`, then `shmsock_writer_commit`. `data` is
/// valid until that commit, the next `shmsock_writer_next_chunk` or
/// `shmsock_writer_free`.
///
/// From `shmsock_reader_next_chunk`: the message's bytes `[offset, offset +
/// len)`, already copied into this process's memory (the peer cannot change
/// them; you may modify them). `data` is valid until the next call on the
/// reader or `shmsock_reader_free`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
#[allow(non_camel_case_types)] // C naming
pub struct shmsock_chunk {
    /// First byte of the chunk (not NULL, even for an empty chunk).
    pub data: *mut u8,
    /// Bytes in the chunk.
    pub len: usize,
    /// Where the chunk starts in the message.
    pub offset: usize,
}

impl shmsock_chunk {
    fn of(data: &mut [u8], offset: usize) -> Self {
        shmsock_chunk {
            data: data.as_mut_ptr(),
            len: data.len(),
            offset,
        }
    }
}

/// A call's timeout: the handle's default (set with
/// `shmsock_options_set_timeout`), none (`try_`), or explicit.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Wait {
    Default,
    Now,
    For(Duration),
}

impl Wait {
    /// From a C timeout in nanoseconds; `SHMSOCK_FOREVER` waits forever.
    pub(crate) fn ns(ns: u64) -> Wait {
        if ns == crate::SHMSOCK_FOREVER {
            Wait::For(Duration::MAX)
        } else {
            Wait::For(Duration::from_nanos(ns))
        }
    }
}

/// A message being written in place: the writer (borrowing the [`Tx`]'s
/// sender) and the chunk it lent (borrowing the writer).
pub(crate) struct Stream {
    /// Borrows `*writer`; ended before it in `Drop`.
    chunk: Option<(Chunk<'static>, shmsock_chunk)>,
    /// From `Box::leak`; freed in `Drop`. Touched only while `chunk` is
    /// `None` (the chunk's borrow is then over).
    writer: NonNull<MessageWriter<'static>>,
    id: u64,
    /// The message's length.
    len: usize,
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stream")
            .field("id", &self.id)
            .field("chunk_out", &self.chunk.is_some())
            .finish()
    }
}

impl Stream {
    /// The writer, once the chunk (if any) is given up.
    fn writer(&mut self) -> &mut MessageWriter<'static> {
        self.chunk = None;
        // SAFETY: `writer` came from `Box::leak` and is freed only in
        // `Drop`; the chunk that borrowed it was just dropped, so this
        // `&mut` is the only reference, and it lives no longer than `&mut
        // self`.
        unsafe { self.writer.as_mut() }
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        // End the chunk's borrow before freeing the writer. Dropping the
        // writer unfinished abandons the message.
        self.chunk = None;
        // SAFETY: `writer` came from `Box::leak` in `Tx::write_message`, is
        // freed only here, and no chunk borrows it any more.
        drop(unsafe { Box::from_raw(self.writer.as_ptr()) });
    }
}

/// The sending half and its outstanding loan.
#[derive(Debug)]
pub(crate) struct Tx {
    /// Borrows `*sender` (see the module docs); ended before it in `Drop`.
    grant: Option<WriteGrant<'static>>,
    /// Borrows `*sender`, as `grant` (at most one of them is out).
    stream: Option<Stream>,
    /// Id of the last grant or writer lent (0: none yet).
    grant_id: u64,
    sender: NonNull<Sender>,
    fd: RawFd,
    peer: Credentials,
    max_inline: usize,
    shutdown: Shared,
}

// SAFETY: `Sender` is `Send`; the grant, writer and chunk borrow only this
// `Tx`'s own sender (on the heap, not moved) and the writer's own box, so
// moving the `Tx` to another thread moves the borrows together with what
// they borrow, as moving a `Sender` and a grant of it together would.
unsafe impl Send for Tx {}

impl Tx {
    pub(crate) fn new(s: Sender, shutdown: Shared) -> Tx {
        let fd = s.as_fd().as_raw_fd();
        let peer = s.peer_credentials();
        let max_inline = s.max_inline();
        Tx {
            grant: None,
            stream: None,
            grant_id: 0,
            sender: NonNull::from(Box::leak(Box::new(s))),
            fd,
            peer,
            max_inline,
            shutdown,
        }
    }

    pub(crate) fn shutdown(&self) -> Shared {
        self.shutdown.clone()
    }

    /// The sender, if no loan is out.
    fn sender(&mut self) -> Result<&mut Sender, Fail> {
        if self.grant.is_some() {
            return Err(Fail::busy(
                "a write grant is outstanding: commit or abort it first",
            ));
        }
        if self.stream.is_some() {
            return Err(Fail::busy(
                "a shmsock_writer is outstanding: finish or free it first",
            ));
        }
        // SAFETY: `sender` came from `Box::leak` and is freed only in
        // `Drop`; no grant is out (checked above), so this `&mut` is the only
        // reference, and it lives no longer than `&mut self`.
        Ok(unsafe { self.sender.as_mut() })
    }

    pub(crate) fn fd(&self) -> RawFd {
        self.fd
    }

    pub(crate) fn has_loan(&self) -> bool {
        self.grant.is_some() || self.stream.is_some()
    }

    pub(crate) fn peer(&self) -> shmsock_credentials {
        self.peer.into()
    }

    pub(crate) fn max_inline(&self) -> usize {
        self.max_inline
    }

    pub(crate) fn send(&mut self, data: &[u8], wait: Wait) -> Result<(), Fail> {
        let s = self.sender()?;
        match wait {
            Wait::Default => s.send(data)?,
            Wait::For(t) => s.send_timeout(data, t)?,
            Wait::Now => {
                if !s.try_send(data)? {
                    return Err(Fail::would_block());
                }
            }
        }
        Ok(())
    }

    /// Sends `msgs` with one publication; returns how many were sent.
    pub(crate) fn send_batch(&mut self, msgs: &[&[u8]], wait: Wait) -> Result<usize, Fail> {
        let s = self.sender()?;
        Ok(match wait {
            Wait::Default => s.send_batch(msgs)?,
            Wait::For(t) => s.send_batch_timeout(msgs, t)?,
            Wait::Now => s.send_batch_timeout(msgs, Duration::ZERO)?,
        })
    }

    pub(crate) fn reserve(&mut self, len: usize, wait: Wait) -> Result<shmsock_grant, Fail> {
        self.sender()?;
        // SAFETY: as in `sender` (no grant is out, checked just above); the
        // unbounded lifetime is sound because the grant made from it is
        // stored in `self.grant`, which `Drop` ends before freeing the
        // sender, and while it is stored no other reference is made.
        let s: &'static mut Sender = unsafe { self.sender.as_mut() };
        let mut g = match wait {
            Wait::Default => s.reserve(len)?,
            Wait::For(t) => s.reserve_timeout(len, t)?,
            Wait::Now => {
                return Err(Fail::invalid("reserve has no non-blocking form"));
            }
        };
        let data = g.as_mut_ptr();
        let len = g.len();
        self.grant_id += 1;
        self.grant = Some(g);
        Ok(shmsock_grant {
            data,
            len,
            id: self.grant_id,
        })
    }

    fn take_grant(&mut self, id: u64) -> Result<WriteGrant<'static>, Fail> {
        match &self.grant {
            Some(_) if id == self.grant_id => self
                .grant
                .take()
                .ok_or_else(|| Fail::invalid("no grant is outstanding")),
            Some(_) => Err(Fail::invalid("not the outstanding grant of this sender")),
            None => Err(Fail::invalid("no grant is outstanding on this sender")),
        }
    }

    pub(crate) fn commit(&mut self, id: u64, len: usize) -> Result<(), Fail> {
        match &self.grant {
            Some(g) if id == self.grant_id && len > g.len() => {
                return Err(Fail::invalid(format!(
                    "commit of {len} bytes exceeds the {} reserved",
                    g.len()
                )))
            }
            _ => {}
        }
        let mut g = self.take_grant(id)?;
        g.truncate(len);
        g.commit()?;
        Ok(())
    }

    pub(crate) fn abort(&mut self, id: u64) -> Result<(), Fail> {
        // Dropping the grant abandons it: nothing is published.
        self.take_grant(id).map(|_abandoned| ())
    }

    /// Starts a message of `len` bytes written chunk by chunk; returns the
    /// loan's id.
    pub(crate) fn write_message(&mut self, len: usize) -> Result<u64, Fail> {
        self.sender()?;
        // SAFETY: as in `sender` (no loan is out, checked just above); the
        // unbounded lifetime is sound because the writer made from it is
        // stored in `self.stream`, which `Drop` ends before freeing the
        // sender, and while it is stored no other reference is made.
        let s: &'static mut Sender = unsafe { self.sender.as_mut() };
        let w = s.write_message(len)?;
        self.grant_id += 1;
        self.stream = Some(Stream {
            chunk: None,
            writer: NonNull::from(Box::leak(Box::new(w))),
            id: self.grant_id,
            len,
        });
        Ok(self.grant_id)
    }

    /// The outstanding writer `id`.
    fn stream(&mut self, id: u64) -> Result<&mut Stream, Fail> {
        match &mut self.stream {
            Some(st) if st.id == id => Ok(st),
            _ => Err(Fail::new(
                shmsock_status::SHMSOCK_BAD_HANDLE,
                "this shmsock_writer is no longer outstanding on its sender",
            )),
        }
    }

    /// The next chunk of writer `id` to fill (the outstanding one again if
    /// it was not committed); `SHMSOCK_END` once all is committed.
    pub(crate) fn writer_next(&mut self, id: u64, wait: Wait) -> Result<shmsock_chunk, Fail> {
        let st = self.stream(id)?;
        if let Some((_, out)) = &st.chunk {
            return Ok(*out);
        }
        // SAFETY: `writer` came from `Box::leak` and is freed only when the
        // `Stream` drops, after the chunk stored with it below (no chunk is
        // out now, checked above): the chunk's borrow never outlives it, and
        // while the chunk is stored the writer is not touched (`writer()`
        // drops the chunk first).
        let w: &'static mut MessageWriter<'static> = unsafe { st.writer.as_mut() };
        let chunk = match wait {
            Wait::Default => w.next_chunk()?,
            Wait::For(t) => w.next_chunk_timeout(t)?,
            Wait::Now => w.next_chunk_timeout(Duration::ZERO)?,
        };
        let Some(mut chunk) = chunk else {
            return Err(Fail::end());
        };
        let offset = chunk.range().start;
        let out = shmsock_chunk::of(&mut chunk, offset);
        st.chunk = Some((chunk, out));
        Ok(out)
    }

    /// Publishes the outstanding chunk of writer `id`.
    pub(crate) fn writer_commit(&mut self, id: u64) -> Result<(), Fail> {
        let st = self.stream(id)?;
        let Some((chunk, _)) = st.chunk.take() else {
            return Err(Fail::invalid(
                "no chunk is outstanding: call shmsock_writer_next_chunk first",
            ));
        };
        chunk.commit()?;
        Ok(())
    }

    /// Copies `data` (the whole message) into writer `id`'s chunks.
    pub(crate) fn writer_write_all(&mut self, id: u64, data: &[u8]) -> Result<(), Fail> {
        let w = self.stream(id)?.writer();
        if data.len() != w.len() {
            return Err(Fail::invalid(format!(
                "write_all of {} bytes into a message of {}",
                data.len(),
                w.len()
            )));
        }
        if w.is_done() {
            return Err(Fail::invalid("the message is already complete"));
        }
        w.write_all(data)?;
        Ok(())
    }

    /// Writer `id`'s (message length, whether it is complete).
    pub(crate) fn writer_state(&mut self, id: u64) -> Result<(usize, bool), Fail> {
        let st = self.stream(id)?;
        if st.chunk.is_some() {
            // Not done while a chunk waits for its commit.
            return Ok((st.len, false));
        }
        let w = st.writer();
        Ok((w.len(), w.is_done()))
    }

    /// Ends writer `id` (abandoning its message if unfinished). A writer
    /// that is not outstanding (already ended) is fine.
    pub(crate) fn writer_end(&mut self, id: u64) {
        if self.stream.as_ref().is_some_and(|st| st.id == id) {
            self.stream = None;
        }
    }
}

impl Drop for Tx {
    fn drop(&mut self) {
        // End the loan before freeing what it borrows.
        self.grant = None;
        self.stream = None;
        // SAFETY: `sender` came from `Box::leak` in `new`, is freed only
        // here, and no grant borrows it any more.
        drop(unsafe { Box::from_raw(self.sender.as_ptr()) });
    }
}

/// A message being read piece by piece.
#[derive(Debug)]
pub(crate) struct Reading {
    /// Borrows the [`Rx`]'s receiver.
    reader: MessageReader<'static>,
    id: u64,
    /// The last piece returned (C reads it through `shmsock_chunk::data`).
    piece: Vec<u8>,
    /// Bytes returned before `piece`.
    offset: usize,
    /// How the message ended (`SHMSOCK_END`, `SHMSOCK_ABANDONED`, or the
    /// error that ended it): later calls return the same.
    ended: Option<shmsock_status>,
}

/// The receiving half and its outstanding loan.
#[derive(Debug)]
pub(crate) struct Rx {
    /// Borrows `*receiver` (see the module docs); ended before it in `Drop`.
    msg: Option<Message<'static>>,
    /// Borrows `*receiver`, as `msg` (at most one of them is out).
    reading: Option<Reading>,
    msg_id: u64,
    receiver: NonNull<Receiver>,
    fd: RawFd,
    peer: Credentials,
    shutdown: Shared,
}

// SAFETY: as for `Tx`: `Receiver` is `Send` and the message or reader
// borrows only this `Rx`'s own receiver.
unsafe impl Send for Rx {}

impl Rx {
    pub(crate) fn new(r: Receiver, shutdown: Shared) -> Rx {
        let fd = r.as_fd().as_raw_fd();
        let peer = r.peer_credentials();
        Rx {
            msg: None,
            reading: None,
            msg_id: 0,
            receiver: NonNull::from(Box::leak(Box::new(r))),
            fd,
            peer,
            shutdown,
        }
    }

    pub(crate) fn shutdown(&self) -> Shared {
        self.shutdown.clone()
    }

    /// The receiver, if no loan is out.
    ///
    /// # Safety
    /// The lifetime is not tied to `self`: while the returned reference
    /// (or what borrows from it) lives, the caller makes no other
    /// reference to the receiver (no second call of this), and it either
    /// drops it before returning or stores what borrows from it in
    /// `self.msg`/`self.reading`, which `Drop` ends before freeing the
    /// receiver.
    unsafe fn receiver(&mut self) -> Result<&'static mut Receiver, Fail> {
        if self.msg.is_some() {
            return Err(Fail::busy(
                "a received message is outstanding: release it first",
            ));
        }
        if self.reading.is_some() {
            return Err(Fail::busy("a shmsock_reader is outstanding: free it first"));
        }
        // SAFETY: `receiver` came from `Box::leak` and is freed only in
        // `Drop`; no loan is out (checked above), so this is the only
        // reference. The unbounded lifetime is sound because every caller
        // either drops it before returning or stores what borrows it in
        // `self.msg`/`self.reading`, which `Drop` ends before freeing the
        // receiver, and while one is stored no other reference is made.
        Ok(unsafe { self.receiver.as_mut() })
    }

    /// Receives up to `max` messages with one release, calling `f` on each.
    pub(crate) fn recv_batch(
        &mut self,
        max: usize,
        wait: Wait,
        f: impl FnMut(&[u8]),
    ) -> Result<usize, Fail> {
        // SAFETY: `r` is the only reference to the receiver and is dropped
        // before this returns.
        let r = unsafe { self.receiver() }?;
        let n = match wait {
            Wait::Default => r.recv_batch(max, f)?,
            Wait::For(t) => r.recv_batch_timeout(max, t, f)?,
            Wait::Now => r.try_recv_batch(max, f)?,
        };
        if n == 0 && max > 0 {
            return Err(Fail::would_block());
        }
        Ok(n)
    }

    /// Starts reading the next message piece by piece; returns the loan's
    /// id and the message's length.
    pub(crate) fn read_message(&mut self, wait: Wait) -> Result<(u64, usize), Fail> {
        // SAFETY: `r` is the only reference to the receiver; the reader
        // borrowing it is stored in `self.reading` below (or dropped on
        // error).
        let r = unsafe { self.receiver() }?;
        let reader = match wait {
            Wait::Default => r.read_message()?,
            Wait::For(t) => r.read_message_timeout(t)?,
            Wait::Now => r.read_message_timeout(Duration::ZERO)?,
        };
        let len = reader.len();
        self.msg_id += 1;
        self.reading = Some(Reading {
            reader,
            id: self.msg_id,
            piece: Vec::new(),
            offset: 0,
            ended: None,
        });
        Ok((self.msg_id, len))
    }

    fn reading(&mut self, id: u64) -> Result<&mut Reading, Fail> {
        match &mut self.reading {
            Some(rd) if rd.id == id => Ok(rd),
            _ => Err(Fail::new(
                shmsock_status::SHMSOCK_BAD_HANDLE,
                "this shmsock_reader is no longer outstanding on its receiver",
            )),
        }
    }

    /// The next piece of reader `id`; `SHMSOCK_END` after the last.
    pub(crate) fn reader_next(&mut self, id: u64, wait: Wait) -> Result<shmsock_chunk, Fail> {
        let rd = self.reading(id)?;
        match rd.ended {
            Some(shmsock_status::SHMSOCK_END) => return Err(Fail::end()),
            Some(st) => {
                return Err(Fail::new(
                    st,
                    "the message already ended with this status; free the reader",
                ))
            }
            None => {}
        }
        rd.offset += rd.piece.len();
        let got = match wait {
            Wait::Default => rd.reader.next_chunk(&mut rd.piece),
            Wait::For(t) => rd.reader.next_chunk_timeout(&mut rd.piece, t),
            Wait::Now => rd.reader.next_chunk_timeout(&mut rd.piece, Duration::ZERO),
        };
        match got {
            Ok(true) => Ok(shmsock_chunk::of(&mut rd.piece, rd.offset)),
            Ok(false) => {
                rd.ended = Some(shmsock_status::SHMSOCK_END);
                Err(Fail::end())
            }
            Err(e) => {
                rd.piece.clear();
                let f = Fail::from(e);
                // A timeout leaves the reader where it was: call again.
                if f.status != shmsock_status::SHMSOCK_TIMEOUT {
                    rd.ended = Some(f.status);
                }
                Err(f)
            }
        }
    }

    /// Reader `id`'s (message length, bytes not yet returned).
    pub(crate) fn reader_state(&mut self, id: u64) -> Result<(usize, usize), Fail> {
        let rd = self.reading(id)?;
        Ok((rd.reader.len(), rd.reader.remaining()))
    }

    /// Ends reader `id` (the rest of its message is skipped). A reader
    /// that is not outstanding (already ended) is fine.
    pub(crate) fn reader_end(&mut self, id: u64) {
        if self.reading.as_ref().is_some_and(|rd| rd.id == id) {
            self.reading = None;
        }
    }

    pub(crate) fn fd(&self) -> RawFd {
        self.fd
    }

    pub(crate) fn has_loan(&self) -> bool {
        self.msg.is_some() || self.reading.is_some()
    }

    pub(crate) fn peer(&self) -> shmsock_credentials {
        self.peer.into()
    }

    pub(crate) fn recv(&mut self, wait: Wait) -> Result<shmsock_message, Fail> {
        // SAFETY: `r` is the only reference to the receiver; the message
        // borrowing it is stored in `self.msg` below (or dropped on
        // error).
        let r = unsafe { self.receiver() }?;
        let m = match wait {
            Wait::Default => r.recv()?,
            Wait::For(t) => r.recv_timeout(t)?,
            Wait::Now => r.try_recv()?.ok_or_else(Fail::would_block)?,
        };
        self.msg_id += 1;
        let out = shmsock_message {
            data: m.as_ptr(),
            len: m.len(),
            id: self.msg_id,
        };
        self.msg = Some(m);
        Ok(out)
    }

    pub(crate) fn release(&mut self, id: u64) -> Result<(), Fail> {
        match &self.msg {
            Some(_) if id == self.msg_id => {
                self.msg = None;
                Ok(())
            }
            Some(_) => Err(Fail::invalid(
                "not the outstanding message of this receiver",
            )),
            None => Err(Fail::invalid("no message is outstanding on this receiver")),
        }
    }
}

impl Drop for Rx {
    fn drop(&mut self) {
        // End the loan before freeing what it borrows.
        self.msg = None;
        self.reading = None;
        // SAFETY: `receiver` came from `Box::leak` in `new`, is freed only
        // here, and no message borrows it any more.
        drop(unsafe { Box::from_raw(self.receiver.as_ptr()) });
    }
}

/// Both halves of a connection.
#[derive(Debug)]
pub(crate) struct Conn {
    pub(crate) tx: Tx,
    pub(crate) rx: Rx,
}

impl Conn {
    pub(crate) fn new(c: Connection) -> Conn {
        // Before the split: the transport makes a shutdown handle only from
        // a whole connection.
        let sd = crate::shutdown::of(&c);
        let (s, r) = c.split();
        Conn {
            tx: Tx::new(s, sd.clone()),
            rx: Rx::new(r, sd),
        }
    }
}
