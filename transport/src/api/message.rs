//! [`Message`]: a received message, lent by the receiver that returned it.

use std::os::fd::BorrowedFd;

use shmsock_shm::ring;

use crate::core::notify;

/// A received message. Inline messages are read in place from the ring
/// and release their space on drop; larger ones were reassembled from
/// fragments into the receiver's own buffer, which the message lends.
///
/// # Why a message borrows its receiver
/// `Message<'_>` holds the receiver mutably borrowed, for two reasons that
/// make reading in place possible:
/// - An inline message *is* its ring record: the bytes stay in shared
///   memory and the record's space goes back to the sender only when the
///   message is dropped. The ring is single-consumer, so the next record
///   cannot be read (nor this one released twice) while it lives.
/// - A reassembled message lends the receiver's reassembly buffer, which
///   the next large message reuses (no allocation per message).
///
/// The borrow covers whatever `recv` was called on. Called on a whole
/// [`Connection`](crate::Connection), it holds the sending half too, so a
/// server cannot reply while it holds the request. Either copy the message
/// out first ([`Message::to_vec`], [`Message::into_vec`], or
/// [`Message::copy_to`] into a buffer of your own), or borrow the halves
/// apart with [`Connection::halves`](crate::Connection::halves) (or
/// [`Connection::split`](crate::Connection::split) them): a message from
/// the receiving half leaves the sending half free.
///
/// # Examples
/// ```no_run
/// # fn main() -> Result<(), shmsock_transport::Error> {
/// let mut conn = shmsock_transport::Connection::connect("/tmp/s.sock")?;
/// let (tx, rx) = conn.halves();
/// let msg = rx.recv()?;
/// // Reply while the request is still in the ring: no copy of it.
/// let mut reply = tx.reserve(msg.len())?;
/// msg.copy_to(&mut reply);
/// reply.commit()?;
/// # Ok(()) }
/// ```
pub struct Message<'a> {
    inner: Inner<'a>,
}

enum Inner<'a> {
    Ring {
        guard: Option<ring::ReadGuard<'a>>,
        sock: BorrowedFd<'a>,
    },
    /// A message reassembled from fragments into the receiver's buffer.
    Assembled(&'a mut Vec<u8>),
}

impl<'a> Message<'a> {
    /// An inline message read in place; `sock` wakes a parked producer on
    /// release.
    #[inline]
    pub(crate) fn ring(guard: ring::ReadGuard<'a>, sock: BorrowedFd<'a>) -> Self {
        Message {
            inner: Inner::Ring {
                guard: Some(guard),
                sock,
            },
        }
    }

    /// A message reassembled into the receiver's buffer.
    pub(crate) fn assembled(buf: &'a mut Vec<u8>) -> Self {
        Message {
            inner: Inner::Assembled(buf),
        }
    }
}

impl Message<'_> {
    /// Payload length.
    pub fn len(&self) -> usize {
        match &self.inner {
            Inner::Ring { guard, .. } => guard.as_ref().map_or(0, |g| g.len()),
            Inner::Assembled(v) => v.len(),
        }
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Copies the first `dst.len().min(self.len())` bytes into `dst` and
    /// returns how many were copied.
    pub fn copy_to(&self, dst: &mut [u8]) -> usize {
        match &self.inner {
            Inner::Ring { guard, .. } => guard.as_ref().map_or(0, |g| g.copy_to(dst)),
            Inner::Assembled(v) => {
                let n = dst.len().min(v.len());
                dst[..n].copy_from_slice(&v[..n]);
                n
            }
        }
    }

    /// Copies the payload into a new vector.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = vec![0; self.len()];
        self.copy_to(&mut v);
        v
    }

    /// The payload as a vector: moved out without a copy for a message that
    /// was reassembled from fragments, copied for an inline one (whose ring
    /// space is released when this returns).
    pub fn into_vec(mut self) -> Vec<u8> {
        match &mut self.inner {
            Inner::Assembled(v) => std::mem::take(&mut **v),
            Inner::Ring { .. } => self.to_vec(),
        }
    }
    /// Moves the message into `buf`, replacing what `buf` held and reusing
    /// its allocation: an inline message is copied out of the ring; a
    /// reassembled one trades places with `buf` (no copy: the receiver
    /// keeps `buf`'s old allocation for its next large message). Returns
    /// the message's length. With a `buf` kept across calls, receiving
    /// allocates nothing per message once it has grown.
    ///
    /// # Examples
    /// ```no_run
    /// # fn demo(rx: &mut shmsock_transport::Receiver) -> shmsock_transport::Result<()> {
    /// let mut buf = Vec::new();
    /// loop {
    ///     let n = rx.recv()?.move_into(&mut buf);
    ///     println!("{n} bytes: {:?}", &buf[..n.min(8)]);
    /// }
    /// # }
    /// ```
    pub fn move_into(mut self, buf: &mut Vec<u8>) -> usize {
        match &mut self.inner {
            Inner::Assembled(v) => std::mem::swap(&mut **v, buf),
            Inner::Ring { guard, .. } => {
                buf.clear();
                if let Some(g) = guard.as_ref() {
                    g.append_to(0, buf);
                }
            }
        }
        buf.len()
    }

    /// The payload as a slice, if that is sound whatever the peer does:
    /// `Some` for messages larger than one ring record, which were
    /// reassembled into our own memory; `None` for inline ones, which are
    /// read in place from the ring (see [`Message::as_slice_unchecked`]).
    pub fn as_sealed(&self) -> Option<&[u8]> {
        match &self.inner {
            Inner::Ring { .. } => None,
            Inner::Assembled(v) => Some(v),
        }
    }

    /// Raw pointer to the payload, valid for [`len`](Message::len) bytes
    /// until the message is dropped; never null (dangling but aligned when
    /// the payload is empty). For foreign-language bindings that must hand
    /// out an address without forming a Rust reference to memory the peer
    /// can write: for inline messages the bytes lie in the peer's ring (see
    /// [`Message::as_slice_unchecked`]), so read them as untrusted.
    pub fn as_ptr(&self) -> *const u8 {
        match &self.inner {
            Inner::Ring { guard, .. } => match guard {
                Some(g) => g.as_ptr(),
                None => std::ptr::NonNull::<u8>::dangling().as_ptr(),
            },
            Inner::Assembled(v) => v.as_ptr(),
        }
    }

    /// The payload in place, without copying.
    ///
    /// # Safety
    /// For inline messages the bytes lie in the ring, which the peer can
    /// still write if it breaks the protocol. The caller must trust the
    /// peer not to modify a message it has sent while the slice lives.
    /// (Reassembled messages are always safe; prefer [`Message::as_sealed`].)
    #[allow(unsafe_code)] // the one place the transport lends ring memory; contract above
    pub unsafe fn as_slice_unchecked(&self) -> &[u8] {
        match &self.inner {
            Inner::Ring { guard, .. } => match guard {
                // SAFETY: forwarded to the caller (see above).
                Some(g) => unsafe { g.as_slice_unchecked() },
                None => &[],
            },
            Inner::Assembled(v) => v,
        }
    }
}

impl Drop for Message<'_> {
    fn drop(&mut self) {
        if let Inner::Ring { guard, sock } = &mut self.inner {
            if let Some(g) = guard.take() {
                let wake = g.release();
                // Nothing owed (a busy stream): no redeeming call per message.
                if wake.is_owed() {
                    // Best effort: if the peer is gone it no longer waits.
                    let _ = notify::wake_space(wake, *sock);
                }
            }
        }
    }
}

impl std::fmt::Debug for Message<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Message")
            .field("len", &self.len())
            .field("sealed", &self.as_sealed().is_some())
            .finish()
    }
}
