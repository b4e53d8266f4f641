//! The objects behind `shmsock_conn`, `shmsock_sender` and
//! `shmsock_receiver`: a transport [`Sender`]/[`Receiver`] on the heap plus
//! the one write grant or message it may have lent to C.
//!
//! Invariant kept by this module (the reason for its `unsafe`): a lent
//! grant (message) borrows the `Sender` (`Receiver`) that its [`Tx`]
//! ([`Rx`]) owns through a raw pointer from `Box::leak`. While the
//! loan is out, no other reference to that half is made (every accessor
//! checks for an outstanding loan first and fails with `SHMSOCK_BUSY`),
//! and `Drop` ends the loan before it frees the half. The half never
//! moves: it stays in its box until `Drop`.

use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::ptr::NonNull;
use std::time::Duration;

use shmsock_transport::{Connection, Credentials, Message, Receiver, Sender, WriteGrant};

use crate::status::Fail;

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

/// The sending half and its outstanding grant.
#[derive(Debug)]
pub(crate) struct Tx {
    /// Borrows `*sender` (see the module docs); ended before it in `Drop`.
    grant: Option<WriteGrant<'static>>,
    /// Id of the last grant lent (0: none yet).
    grant_id: u64,
    sender: NonNull<Sender>,
    fd: RawFd,
    peer: Credentials,
    max_inline: usize,
}

// SAFETY: `Sender` is `Send`; the grant borrows only this `Tx`'s own
// sender (on the heap, not moved), so moving the `Tx` to another thread
// moves the borrow together with what it borrows, as moving a `Sender` and
// a grant of it together would.
unsafe impl Send for Tx {}

impl Tx {
    pub(crate) fn new(s: Sender) -> Tx {
        let fd = s.as_fd().as_raw_fd();
        let peer = s.peer_credentials();
        let max_inline = s.max_inline();
        Tx {
            grant: None,
            grant_id: 0,
            sender: NonNull::from(Box::leak(Box::new(s))),
            fd,
            peer,
            max_inline,
        }
    }

    /// The sender, if no grant is out.
    fn sender(&mut self) -> Result<&mut Sender, Fail> {
        if self.grant.is_some() {
            return Err(Fail::busy(
                "a write grant is outstanding: commit or abort it first",
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
        self.grant.is_some()
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
}

impl Drop for Tx {
    fn drop(&mut self) {
        // End the loan before freeing what it borrows.
        self.grant = None;
        // SAFETY: `sender` came from `Box::leak` in `new`, is freed only
        // here, and no grant borrows it any more.
        drop(unsafe { Box::from_raw(self.sender.as_ptr()) });
    }
}

/// The receiving half and its outstanding message.
#[derive(Debug)]
pub(crate) struct Rx {
    /// Borrows `*receiver` (see the module docs); ended before it in `Drop`.
    msg: Option<Message<'static>>,
    msg_id: u64,
    receiver: NonNull<Receiver>,
    fd: RawFd,
    peer: Credentials,
}

// SAFETY: as for `Tx`: `Receiver` is `Send` and the message borrows only
// this `Rx`'s own receiver.
unsafe impl Send for Rx {}

impl Rx {
    pub(crate) fn new(r: Receiver) -> Rx {
        let fd = r.as_fd().as_raw_fd();
        let peer = r.peer_credentials();
        Rx {
            msg: None,
            msg_id: 0,
            receiver: NonNull::from(Box::leak(Box::new(r))),
            fd,
            peer,
        }
    }

    pub(crate) fn fd(&self) -> RawFd {
        self.fd
    }

    pub(crate) fn has_loan(&self) -> bool {
        self.msg.is_some()
    }

    pub(crate) fn peer(&self) -> shmsock_credentials {
        self.peer.into()
    }

    pub(crate) fn recv(&mut self, wait: Wait) -> Result<shmsock_message, Fail> {
        if self.msg.is_some() {
            return Err(Fail::busy(
                "a received message is outstanding: release it first",
            ));
        }
        // SAFETY: `receiver` came from `Box::leak` and is freed only in
        // `Drop`; no message is out (checked above), so this is the only
        // reference. The unbounded lifetime is sound because the message
        // made from it is stored in `self.msg`, which `Drop` ends before
        // freeing the receiver, and while it is stored no other reference
        // is made.
        let r: &'static mut Receiver = unsafe { self.receiver.as_mut() };
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
        let (s, r) = c.split();
        Conn {
            tx: Tx::new(s),
            rx: Rx::new(r),
        }
    }
}
