//! One end of a data link between the two benchmark processes, for each
//! transport compared. Every implementation writes each payload byte on
//! send ([`pattern::fill`]) and reads each on receive
//! ([`pattern::verify`]), whatever the transport.
//!
//! The one `unsafe` block borrows an inline shmsock message in place
//! ([`Message::as_slice_unchecked`]); it relies on the peer being our own
//! forked child running this same code, which never writes a record after
//! committing it.

use std::io::{BufReader, Read, Write};

use shmsock::{Connection, Message};

use super::child::Result;
use super::pattern;

/// Size of the read buffer of the byte-stream baselines: large enough that
/// a stream of small messages costs far fewer than one `read` each, so the
/// baseline is not handicapped.
const STREAM_READ_BUF: usize = 64 << 10;

/// One end of a link carrying messages of a fixed length.
pub trait Link {
    /// Writes message `seq` of `len` bytes (every byte) and sends it.
    ///
    /// # Errors
    /// Transport errors.
    fn send(&mut self, seq: u64, len: usize) -> Result<()>;

    /// Receives the next message and checks, reading every byte, that it
    /// is message `seq` of `len` bytes.
    ///
    /// # Errors
    /// Transport errors; [`pattern::Corrupt`] if the data is wrong.
    fn recv(&mut self, seq: u64, len: usize) -> Result<()>;

    /// Sends messages `seq0..seq0 + n` of `len` bytes, one way (by default
    /// one [`Link::send`] each).
    ///
    /// # Errors
    /// Transport errors.
    fn send_stream(&mut self, seq0: u64, n: u64, len: usize) -> Result<()> {
        (0..n).try_for_each(|i| self.send(seq0 + i, len))
    }

    /// Receives and checks messages `seq0..seq0 + n` of `len` bytes (by
    /// default one [`Link::recv`] each).
    ///
    /// # Errors
    /// Transport errors; [`pattern::Corrupt`] if the data is wrong.
    fn recv_stream(&mut self, seq0: u64, n: u64, len: usize) -> Result<()> {
        (0..n).try_for_each(|i| self.recv(seq0 + i, len))
    }
}

/// A zeroed buffer whose pages are already faulted in.
fn buffer(len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    pattern::fill(&mut v, u64::MAX);
    v
}

fn check_len(msg: &Message<'_>, seq: u64, len: usize) -> Result<()> {
    check_n(msg.len(), seq, len)
}

fn check_n(got_len: usize, seq: u64, len: usize) -> Result<()> {
    if got_len != len {
        return Err(pattern::Corrupt {
            seq,
            len,
            got_len,
            got_sum: 0,
            want_sum: pattern::expected(seq, len),
        }
        .into());
    }
    Ok(())
}

/// shmsock with the copying API: `send(&buf)`, then `recv_into` a private,
/// reused buffer (what a Unix stream's `read` into a buffer does): an
/// inline message is copied into it, a fragmented one was copied fragment
/// by fragment into the receiver's reassembly buffer, which is swapped
/// with it (no second copy).
pub struct ShmCopy {
    conn: Connection,
    tx: Vec<u8>,
    rx: Vec<u8>,
}

impl ShmCopy {
    /// Wraps a connection for messages of up to `max_len` bytes.
    pub fn new(conn: Connection, max_len: usize) -> Self {
        ShmCopy {
            conn,
            tx: buffer(max_len),
            rx: buffer(max_len),
        }
    }
}

impl Link for ShmCopy {
    fn send(&mut self, seq: u64, len: usize) -> Result<()> {
        let buf = &mut self.tx[..len];
        pattern::fill(buf, seq);
        self.conn.send(buf)?;
        Ok(())
    }

    fn recv(&mut self, seq: u64, len: usize) -> Result<()> {
        let n = self.conn.recv_into(&mut self.rx)?;
        check_n(n, seq, len)?;
        pattern::verify(&self.rx[..len], seq, len)?;
        Ok(())
    }
}

/// shmsock without copies on the sending side: `reserve` + fill in place +
/// `commit` for a message that fits one ring record; `write_message` for a
/// larger one, each fragment filled in place in the ring. The receiver
/// checksums an inline message in place and a fragmented one in its
/// reassembled buffer (`Message::as_sealed`): one copy in all, out of the
/// ring.
pub struct ShmZeroCopy {
    conn: Connection,
}

impl ShmZeroCopy {
    /// Wraps a connection for messages of up to `_max_len` bytes.
    pub fn new(conn: Connection, _max_len: usize) -> Self {
        ShmZeroCopy { conn }
    }
}

impl Link for ShmZeroCopy {
    fn send(&mut self, seq: u64, len: usize) -> Result<()> {
        if len <= self.conn.max_inline() {
            let mut grant = self.conn.reserve(len)?;
            pattern::fill(&mut grant, seq);
            grant.commit()?;
        } else {
            let mut w = self.conn.write_message(len)?;
            while let Some(mut chunk) = w.next_chunk()? {
                let at = chunk.range().start;
                pattern::fill_range(&mut chunk, seq, len, at);
                chunk.commit()?;
            }
        }
        Ok(())
    }

    fn recv(&mut self, seq: u64, len: usize) -> Result<()> {
        let msg = self.conn.recv()?;
        check_len(&msg, seq, len)?;
        match msg.as_sealed() {
            Some(bytes) => pattern::verify(bytes, seq, len)?,
            None => {
                // SAFETY: the peer is our own forked child (or parent)
                // running this module, which never touches a record after
                // committing it, so the bytes do not change while borrowed;
                // the borrow ends before `msg` releases the record.
                let bytes = unsafe { msg.as_slice_unchecked() };
                pattern::verify(bytes, seq, len)?;
            }
        }
        Ok(())
    }
}

/// shmsock's large-message path end to end, streamed: the sender fills
/// each fragment in the ring (`write_message`, as [`ShmZeroCopy`]); the
/// receiver reads the message piece by piece (`read_message`), each piece
/// (one ring record) copied into a reused private buffer of a fragment's
/// size and checksummed there, so the whole message is never held: what a
/// receiver that hashes, decodes or stores a large payload as it arrives
/// does. One copy in all, out of the ring into a cache-resident buffer.
/// A message that fits one record is sent with `reserve` and read as one
/// piece.
pub struct ShmStreamed {
    tx: ShmZeroCopy,
    piece: Vec<u8>,
}

impl ShmStreamed {
    /// Wraps a connection for messages of up to `max_len` bytes.
    pub fn new(conn: Connection, max_len: usize) -> Self {
        ShmStreamed {
            tx: ShmZeroCopy::new(conn, max_len),
            piece: Vec::new(),
        }
    }
}

impl Link for ShmStreamed {
    fn send(&mut self, seq: u64, len: usize) -> Result<()> {
        self.tx.send(seq, len)
    }

    fn recv(&mut self, seq: u64, len: usize) -> Result<()> {
        let mut r = self.tx.conn.read_message()?;
        let mut sum = pattern::Summer::default();
        while r.next_chunk(&mut self.piece)? {
            sum.add(&self.piece);
        }
        sum.verify(seq, len)?;
        Ok(())
    }
}

/// Messages per batch of [`ShmBatch`].
pub const BATCH: usize = 32;

/// shmsock with the batch API: streams go out [`BATCH`] messages per
/// `send_batch` (one publication) and come in up to [`BATCH`] per
/// `recv_batch` (one release), each copied out of the ring and checksummed.
/// A single message (a round trip) is a batch of one.
pub struct ShmBatch {
    conn: Connection,
    tx: Vec<u8>,
}

impl ShmBatch {
    /// Wraps a connection for messages of up to `max_len` bytes.
    pub fn new(conn: Connection, max_len: usize) -> Self {
        ShmBatch {
            conn,
            tx: buffer(BATCH * max_len),
        }
    }

    /// Receives up to `max` messages, checking them as `*seq`, `*seq + 1`,
    /// …; returns how many came.
    fn recv_some(&mut self, seq: &mut u64, max: usize, len: usize) -> Result<usize> {
        let mut bad = None;
        let n = self.conn.recv_batch(max, |m| {
            if bad.is_none() {
                if let Err(e) = pattern::verify(m, *seq, len) {
                    bad = Some(e);
                }
            }
            *seq += 1;
        })?;
        match bad {
            Some(e) => Err(e.into()),
            None => Ok(n),
        }
    }
}

impl Link for ShmBatch {
    fn send(&mut self, seq: u64, len: usize) -> Result<()> {
        self.send_stream(seq, 1, len)
    }

    fn recv(&mut self, seq: u64, len: usize) -> Result<()> {
        let mut s = seq;
        if self.recv_some(&mut s, 1, len)? != 1 {
            return Err("recv_batch returned no message".into());
        }
        Ok(())
    }

    fn send_stream(&mut self, seq0: u64, n: u64, len: usize) -> Result<()> {
        let mut seq = seq0;
        let end = seq0 + n;
        while seq < end {
            let k = (end - seq).min(BATCH as u64) as usize;
            let mut msgs: [&[u8]; BATCH] = [&[]; BATCH];
            for (i, (chunk, slot)) in self
                .tx
                .chunks_exact_mut(len)
                .zip(&mut msgs)
                .take(k)
                .enumerate()
            {
                pattern::fill(chunk, seq + i as u64);
                *slot = chunk;
            }
            let mut sent = 0;
            while sent < k {
                sent += self.conn.send_batch(&msgs[sent..k])?;
            }
            seq += k as u64;
        }
        Ok(())
    }

    fn recv_stream(&mut self, seq0: u64, n: u64, len: usize) -> Result<()> {
        let mut seq = seq0;
        let end = seq0 + n;
        while seq < end {
            let max = (end - seq).min(BATCH as u64) as usize;
            self.recv_some(&mut seq, max, len)?;
        }
        Ok(())
    }
}

/// A byte stream (Unix `SOCK_STREAM` socket, pipe) with length-prefixed
/// framing: one `write_all` of an 8-byte length and the payload; a buffered
/// `read_exact` of each.
pub struct Framed<R: Read, W: Write> {
    r: BufReader<R>,
    w: W,
    tx: Vec<u8>,
    rx: Vec<u8>,
}

impl<R: Read, W: Write> Framed<R, W> {
    /// A link reading from `r` and writing to `w`, for messages of up to
    /// `max_len` bytes.
    pub fn new(r: R, w: W, max_len: usize) -> Self {
        Framed {
            r: BufReader::with_capacity(STREAM_READ_BUF, r),
            w,
            tx: buffer(max_len + 8),
            rx: buffer(max_len),
        }
    }
}

impl<R: Read, W: Write> Link for Framed<R, W> {
    fn send(&mut self, seq: u64, len: usize) -> Result<()> {
        let frame = &mut self.tx[..8 + len];
        frame[..8].copy_from_slice(&(len as u64).to_le_bytes());
        pattern::fill(&mut frame[8..], seq);
        self.w.write_all(frame)?;
        Ok(())
    }

    fn recv(&mut self, seq: u64, len: usize) -> Result<()> {
        let mut hdr = [0u8; 8];
        self.r.read_exact(&mut hdr)?;
        let got = u64::from_le_bytes(hdr);
        if got != len as u64 {
            return Err(format!(
                "stream framing: message {seq} announced {got} bytes, expected {len}"
            )
            .into());
        }
        let buf = &mut self.rx[..len];
        self.r.read_exact(buf)?;
        pattern::verify(buf, seq, len)?;
        Ok(())
    }
}

/// A Unix `SOCK_SEQPACKET` socket: one datagram per message, sent with
/// `write`, received with `read` (a wrong length is detected).
pub struct SeqPacket<S: Read + Write> {
    sock: S,
    tx: Vec<u8>,
    rx: Vec<u8>,
}

impl<S: Read + Write> SeqPacket<S> {
    /// A link over the seqpacket socket `sock` (wrapped in any `Read +
    /// Write` owner of the fd), for messages of up to `max_len` bytes.
    pub fn new(sock: S, max_len: usize) -> Self {
        SeqPacket {
            sock,
            tx: buffer(max_len),
            // One spare byte: a longer datagram shows as a wrong length
            // rather than being cut to fit.
            rx: buffer(max_len + 1),
        }
    }
}

impl<S: Read + Write> Link for SeqPacket<S> {
    fn send(&mut self, seq: u64, len: usize) -> Result<()> {
        let buf = &mut self.tx[..len];
        pattern::fill(buf, seq);
        let n = self.sock.write(buf)?;
        if n != len {
            return Err(format!("seqpacket: sent {n} of {len} bytes").into());
        }
        Ok(())
    }

    fn recv(&mut self, seq: u64, len: usize) -> Result<()> {
        let n = self.sock.read(&mut self.rx[..len + 1])?;
        if n == 0 {
            return Err("seqpacket: peer hung up".into());
        }
        pattern::verify(&self.rx[..n], seq, len)?;
        Ok(())
    }
}

/// shmsock's async API on a current-thread tokio runtime: each operation
/// is one `block_on` of `send` / `recv` + `copy_to`, as for the tokio
/// `UnixStream` baseline ([`TokioFramed`]), so both pay the same runtime
/// overhead.
pub struct TokioShm {
    rt: tokio::runtime::Runtime,
    conn: shmsock::tokio::Connection,
    tx: Vec<u8>,
    rx: Vec<u8>,
}

/// A current-thread runtime (no thread of its own: the harness forks).
pub fn tokio_runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

impl TokioShm {
    /// Adopts a connection into a new runtime, for messages of up to
    /// `max_len` bytes.
    ///
    /// # Errors
    /// If the runtime cannot be built or the sockets registered.
    pub fn new(conn: Connection, max_len: usize) -> Result<Self> {
        let rt = tokio_runtime()?;
        let conn = {
            let _ctx = rt.enter();
            shmsock::tokio::Connection::from_std(conn)?
        };
        Ok(TokioShm {
            rt,
            conn,
            tx: buffer(max_len),
            rx: buffer(max_len),
        })
    }
}

impl Link for TokioShm {
    fn send(&mut self, seq: u64, len: usize) -> Result<()> {
        let buf = &mut self.tx[..len];
        pattern::fill(buf, seq);
        self.rt.block_on(self.conn.send(buf))?;
        Ok(())
    }

    fn recv(&mut self, seq: u64, len: usize) -> Result<()> {
        let buf = &mut self.rx[..len];
        let conn = &mut self.conn;
        self.rt.block_on(async {
            let msg = conn.recv().await?;
            check_len(&msg, seq, len)?;
            msg.copy_to(buf);
            Ok::<(), super::child::BoxError>(())
        })?;
        pattern::verify(buf, seq, len)?;
        Ok(())
    }
}

/// tokio's `UnixStream` with the framing of [`Framed`] (an 8-byte length,
/// then the payload, one `write_all`; a buffered `read_exact` of each).
pub struct TokioFramed {
    rt: tokio::runtime::Runtime,
    r: tokio::io::BufReader<tokio::net::unix::OwnedReadHalf>,
    w: tokio::net::unix::OwnedWriteHalf,
    tx: Vec<u8>,
    rx: Vec<u8>,
}

impl TokioFramed {
    /// Adopts a std stream into a new runtime.
    ///
    /// # Errors
    /// If the runtime cannot be built or the socket registered.
    pub fn new(s: std::os::unix::net::UnixStream, max_len: usize) -> Result<Self> {
        let rt = tokio_runtime()?;
        s.set_nonblocking(true)?;
        let (r, w) = {
            let _ctx = rt.enter();
            tokio::net::UnixStream::from_std(s)?.into_split()
        };
        Ok(TokioFramed {
            rt,
            r: tokio::io::BufReader::with_capacity(STREAM_READ_BUF, r),
            w,
            tx: buffer(max_len + 8),
            rx: buffer(max_len),
        })
    }
}

impl Link for TokioFramed {
    fn send(&mut self, seq: u64, len: usize) -> Result<()> {
        use tokio::io::AsyncWriteExt;
        let frame = &mut self.tx[..8 + len];
        frame[..8].copy_from_slice(&(len as u64).to_le_bytes());
        pattern::fill(&mut frame[8..], seq);
        self.rt.block_on(self.w.write_all(frame))?;
        Ok(())
    }

    fn recv(&mut self, seq: u64, len: usize) -> Result<()> {
        use tokio::io::AsyncReadExt;
        let (r, buf) = (&mut self.r, &mut self.rx[..len]);
        let got = self.rt.block_on(async {
            let mut hdr = [0u8; 8];
            r.read_exact(&mut hdr).await?;
            r.read_exact(buf).await?;
            Ok::<u64, std::io::Error>(u64::from_le_bytes(hdr))
        })?;
        if got != len as u64 {
            return Err(format!(
                "tokio stream framing: message {seq} announced {got} bytes, expected {len}"
            )
            .into());
        }
        pattern::verify(&self.rx[..len], seq, len)?;
        Ok(())
    }
}
