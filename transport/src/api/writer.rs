//! Zero-copy writing of a message of any size: [`MessageWriter`] hands out
//! the message's bytes as [`Chunk`]s that live in the ring itself, so the
//! caller fills them in place (from a file, a camera, a serializer)
//! without a staging buffer and without branching on
//! [`Sender::max_inline`].
//!
//! A message that fits one record is one chunk (an inline record). A larger
//! one is the same fragments [`Sender::send`] would write
//! ([`crate::core::frag`]): the receiver copies each one out and releases
//! it while the caller fills the next, so the two sides work in parallel
//! and the ring never holds more than its capacity.

use std::time::{Duration, Instant};

use shmsock_shm::ring;

use crate::api::sender::Sender;
use crate::core::deadline;
use crate::core::frag::LargeSend;
use crate::core::notify;
#[cfg(doc)]
use crate::error::Error;
use crate::error::Result;
use crate::error_map::sock_err;
use crate::wire::{FRAG_HEADER, TAG_FRAG_START, TAG_INLINE};

/// A message being written in place, chunk by chunk: see
/// [`Sender::write_message`].
///
/// Dropping the writer before the last chunk is committed abandons the
/// message: the receiver never sees any of it (if fragments were already
/// published, the next record this sender writes tells the receiver to
/// drop them).
pub struct MessageWriter<'a> {
    tx: &'a mut Sender,
    /// The message's length.
    len: usize,
    /// `None` for an inline message (one chunk), else the fragment cursor.
    large: Option<LargeSend>,
    /// Whether every byte has been committed.
    done: bool,
}

/// One chunk of a [`MessageWriter`]'s message, in the ring: write it
/// through `DerefMut` (or [`Chunk::fill_from`]), then [`commit`](Chunk::commit)
/// it. Dropping it uncommitted publishes nothing; the writer offers the
/// same range again.
pub struct Chunk<'a> {
    grant: ring::WriteGrant<'a>,
    /// Where the caller's bytes start in the record (after a fragment
    /// header).
    skip: usize,
    /// The message's byte range this chunk holds.
    range: std::ops::Range<usize>,
    sock: std::os::fd::BorrowedFd<'a>,
    peer_gone: &'a mut bool,
    large: Option<&'a mut LargeSend>,
    done: &'a mut bool,
}

impl<'a> MessageWriter<'a> {
    pub(crate) fn new(tx: &'a mut Sender, len: usize) -> Self {
        let large = (len > tx.max_inline()).then(|| tx.core.large_start(len));
        MessageWriter {
            tx,
            len,
            large,
            done: false,
        }
    }

    /// The message's length.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the message is empty (it is still sent, as one empty chunk).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether every chunk has been committed: the message is sent.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// The next chunk to fill, waiting for ring space per the sender's wait
    /// strategy and its default timeout; `Ok(None)` once the whole message
    /// is committed.
    ///
    /// # Errors
    /// [`Error::Timeout`], [`Error::Disconnected`], [`Error::Protocol`],
    /// [`Error::Io`]. The message is then abandoned when the writer drops.
    pub fn next_chunk(&mut self) -> Result<Option<Chunk<'_>>> {
        let timeout = self.tx.default_timeout();
        self.next_chunk_within(deadline(timeout))
    }

    /// [`MessageWriter::next_chunk`] with an explicit timeout for this
    /// call's wait.
    ///
    /// # Errors
    /// As [`MessageWriter::next_chunk`].
    pub fn next_chunk_timeout(&mut self, timeout: Duration) -> Result<Option<Chunk<'_>>> {
        self.next_chunk_within(deadline(Some(timeout)))
    }

    fn next_chunk_within(&mut self, deadline: Option<Instant>) -> Result<Option<Chunk<'_>>> {
        if self.done {
            return Ok(None);
        }
        let (range, tag, skip) = match &self.large {
            None => (0..self.len, TAG_INLINE, 0),
            Some(ls) => match ls.next_record() {
                Some((r, tag)) if tag == TAG_FRAG_START => (r, tag, FRAG_HEADER),
                Some((r, tag)) => (r, tag, 0),
                None => {
                    debug_assert!(false, "a finished large message is marked done");
                    return Ok(None);
                }
            },
        };
        let record = skip + range.len();
        let mid = self.large.as_ref().is_some_and(|ls| ls.started);
        self.tx.space_for(record, deadline, mid)?;
        let (mut grant, sock, peer_gone) = self.tx.core.take_fitting_parts(record, tag)?;
        if skip > 0 {
            grant.fill_from(&(self.len as u64).to_le_bytes());
        }
        Ok(Some(Chunk {
            grant,
            skip,
            range,
            sock,
            peer_gone,
            large: self.large.as_mut(),
            done: &mut self.done,
        }))
    }

    /// Copies `data` into the message through its chunks: the same as
    /// filling each chunk with the next bytes of `data`. `data` must be the
    /// whole message.
    ///
    /// # Errors
    /// [`Error::MessageTooLarge`] if `data` is not [`MessageWriter::len`]
    /// bytes long (nothing is written), and as [`MessageWriter::next_chunk`].
    pub fn write_all(&mut self, data: &[u8]) -> Result<()> {
        if data.len() != self.len {
            return Err(crate::error::Error::MessageTooLarge {
                len: data.len() as u64,
                max: self.len as u64,
            });
        }
        while let Some(mut chunk) = self.next_chunk()? {
            let r = chunk.range();
            chunk.fill_from(&data[r]);
            chunk.commit()?;
        }
        Ok(())
    }
}

impl Drop for MessageWriter<'_> {
    fn drop(&mut self) {
        if let Some(ls) = &self.large {
            // Published fragments of an unfinished message: owe the abort.
            self.tx.core.large_abandon(ls);
        }
    }
}

impl std::fmt::Debug for MessageWriter<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MessageWriter")
            .field("len", &self.len)
            .field("fragmented", &self.large.is_some())
            .field("done", &self.done)
            .finish()
    }
}

impl Chunk<'_> {
    /// The range of the message's bytes this chunk holds.
    pub fn range(&self) -> std::ops::Range<usize> {
        self.range.clone()
    }

    /// Copies `src` into the start of the chunk.
    ///
    /// # Panics
    /// If `src` is longer than the chunk.
    pub fn fill_from(&mut self, src: &[u8]) {
        self[..src.len()].copy_from_slice(src);
    }

    /// Publishes the chunk (the message is sent with its last chunk).
    ///
    /// # Errors
    /// [`Error::Disconnected`] if the wake-up for a parked peer cannot be
    /// sent because it is gone.
    pub fn commit(self) -> Result<()> {
        let end = self.range.end;
        let wake = self.grant.commit();
        match self.large {
            None => *self.done = true,
            Some(ls) => {
                ls.started = true;
                ls.advance(end);
                *self.done = ls.is_done();
            }
        }
        if let Err(e) = notify::wake_data(wake, self.sock) {
            *self.peer_gone = true;
            return Err(sock_err("sendmsg(wake)", e));
        }
        Ok(())
    }
}

impl std::ops::Deref for Chunk<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.grant[self.skip..]
    }
}

impl std::ops::DerefMut for Chunk<'_> {
    /// Sound: the ring's memory is written only by this process (the peer
    /// maps it read-only, `docs/design.md`), and the grant is exclusive.
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.grant[self.skip..]
    }
}

impl std::fmt::Debug for Chunk<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chunk").field("range", &self.range).finish()
    }
}
