//! Reading a message piece by piece: [`MessageReader`], for messages too
//! big to hold at once (or to start processing before their end arrives).
//! Each piece is one ring record (a fragment of a large message, or the
//! whole of an inline one), copied out into the caller's buffer and
//! released at once; nothing is reassembled.

use std::time::Duration;

use crate::api::receiver::Receiver;
use crate::core::recv::StreamNext;
use crate::core::{deadline, Deadline};
#[cfg(doc)]
use crate::error::Error;
use crate::error::Result;

/// The message being read piece by piece: see [`Receiver::read_message`].
///
/// Dropping the reader before the last piece discards the rest of the
/// message: the receiver skips its remaining fragments before the next
/// message.
pub struct MessageReader<'a> {
    rx: &'a mut Receiver,
    total: usize,
    /// Bytes handed to the caller so far.
    returned: usize,
    /// The first piece, taken while the message was started.
    first: Option<Vec<u8>>,
}

impl<'a> MessageReader<'a> {
    pub(crate) fn new(rx: &'a mut Receiver, total: usize, first: Vec<u8>) -> Self {
        MessageReader {
            rx,
            total,
            returned: 0,
            first: Some(first),
        }
    }

    /// The message's length, as its sender announced it (at most our
    /// `max_message`, checked).
    pub fn len(&self) -> usize {
        self.total
    }

    /// Whether the message is empty.
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// Bytes not yet returned by [`MessageReader::next_chunk`].
    pub fn remaining(&self) -> usize {
        self.total - self.returned
    }

    /// Replaces `buf`'s contents with the next piece of the message,
    /// waiting for it per the receiver's wait strategy and default timeout.
    /// Returns `false` (and leaves `buf` empty) once the whole message has
    /// been returned.
    ///
    /// # Errors
    /// [`Error::Abandoned`] if the sender gave the message up midway (the
    /// connection is fine; the next call reads the next message),
    /// [`Error::Timeout`] (call again to continue), and as
    /// [`Receiver::recv`].
    pub fn next_chunk(&mut self, buf: &mut Vec<u8>) -> Result<bool> {
        let timeout = self.rx.default_timeout();
        self.next_chunk_within(buf, timeout)
    }

    /// [`MessageReader::next_chunk`] with an explicit timeout.
    ///
    /// # Errors
    /// As [`MessageReader::next_chunk`].
    pub fn next_chunk_timeout(&mut self, buf: &mut Vec<u8>, timeout: Duration) -> Result<bool> {
        self.next_chunk_within(buf, Some(timeout))
    }

    fn next_chunk_within(&mut self, buf: &mut Vec<u8>, timeout: Option<Duration>) -> Result<bool> {
        if let Some(mut first) = self.first.take() {
            if !first.is_empty() {
                std::mem::swap(buf, &mut first);
                // `buf`'s old allocation serves the next message's start.
                self.rx.core.assembled = first;
                self.returned += buf.len();
                return Ok(true);
            }
        }
        let at = deadline(timeout);
        loop {
            match self.rx.core.stream_next(buf)? {
                StreamNext::Chunk(n) => {
                    self.returned += n;
                    return Ok(true);
                }
                StreamNext::End => {
                    buf.clear();
                    return Ok(false);
                }
                StreamNext::Empty => self.rx.wait_fragment(at)?,
            }
        }
    }

    /// Reads the rest of the message into `dst` (appended): the same as
    /// collecting every piece.
    ///
    /// # Errors
    /// As [`MessageReader::next_chunk`].
    pub fn read_to_end(&mut self, dst: &mut Vec<u8>) -> Result<usize> {
        let mut piece = Vec::new();
        let start = dst.len();
        while self.next_chunk(&mut piece)? {
            dst.extend_from_slice(&piece);
        }
        Ok(dst.len() - start)
    }
}

impl Drop for MessageReader<'_> {
    fn drop(&mut self) {
        self.rx.core.stream_end();
    }
}

impl std::fmt::Debug for MessageReader<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MessageReader")
            .field("len", &self.total)
            .field("returned", &self.returned)
            .finish()
    }
}

impl Receiver {
    /// Starts reading the next message piece by piece, waiting for its
    /// start per the wait strategy and the default timeout: for messages
    /// too big to hold at once, or to process a large message while the
    /// rest of it is still arriving. Each piece is one ring record (a
    /// fragment of a quarter ring, or a whole inline message), copied into
    /// your buffer; nothing is reassembled, so memory stays bounded by the
    /// ring whatever the message's size.
    ///
    /// # Examples
    /// ```no_run
    /// # fn demo(rx: &mut shmsock_transport::Receiver, out: &mut std::fs::File) -> Result<(), Box<dyn std::error::Error>> {
    /// use std::io::Write;
    /// let mut reader = rx.read_message()?;
    /// println!("{} bytes coming", reader.len());
    /// let mut piece = Vec::new();
    /// while reader.next_chunk(&mut piece)? {
    ///     out.write_all(&piece)?;
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`Receiver::recv`].
    pub fn read_message(&mut self) -> Result<MessageReader<'_>> {
        let timeout = self.default_timeout();
        self.read_message_within(timeout)
    }

    /// [`Receiver::read_message`] with an explicit timeout for the wait
    /// for the message's start.
    ///
    /// # Errors
    /// As [`Receiver::recv`].
    pub fn read_message_timeout(&mut self, timeout: Duration) -> Result<MessageReader<'_>> {
        self.read_message_within(Some(timeout))
    }

    fn read_message_within(&mut self, timeout: Option<Duration>) -> Result<MessageReader<'_>> {
        let mut d = Deadline::new(timeout);
        let mut first = std::mem::take(&mut self.core.assembled);
        let st = loop {
            match self.core.stream_start(&mut d, &mut first) {
                Ok(Some(st)) => break st,
                Ok(None) => {}
                Err(e) => {
                    self.core.assembled = first;
                    return Err(e);
                }
            }
            if let Err(e) = self.wait_data(d.get()) {
                self.core.assembled = first;
                return Err(e);
            }
        };
        Ok(MessageReader::new(self, st.total, first))
    }
}
