//! [`Connection`]: a [`Sender`] and a [`Receiver`] in one, as the
//! handshake leaves them ([`Parts`]).

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

use shmsock_shm::ring::{Consumer, Producer};

use crate::api::message::Message;
use crate::api::reader::MessageReader;
use crate::api::receiver::Receiver;
use crate::api::sender::{Batch, Sender, WriteGrant};
use crate::api::writer::MessageWriter;
use crate::core::recv::RecvCore;
use crate::core::send::SendCore;
use crate::error::Result;
use crate::options::{Credentials, WaitStrategy};
use crate::shutdown::{ShutFlag, ShutdownHandle};

/// Everything the handshake produces.
pub(crate) struct Parts {
    pub(crate) prod: Producer,
    pub(crate) tx_sock: OwnedFd,
    pub(crate) cons: Consumer,
    pub(crate) rx_sock: OwnedFd,
    pub(crate) peer: Credentials,
    pub(crate) peer_max_message: u64,
    pub(crate) max_message: u64,
    pub(crate) wait: WaitStrategy,
    pub(crate) timeout: Option<Duration>,
    /// Blocked calls sleep on a futex (else on the socket).
    pub(crate) futex: bool,
    /// Payload bytes of a fragment we send ([`crate::Builder::fragment_size`];
    /// 0: a quarter of the ring).
    pub(crate) fragment_size: usize,
    /// [`crate::Builder::pipeline_threshold`].
    pub(crate) pipeline_threshold: usize,
}

impl Parts {
    /// The two non-blocking cores and their shared shutdown flag; `wait`
    /// and `timeout` stay for the wrappers' policy.
    pub(crate) fn into_cores(self) -> (SendCore, RecvCore, Arc<ShutFlag>) {
        let shut = Arc::new(ShutFlag::default());
        let tx = SendCore::new(
            self.prod,
            self.tx_sock,
            self.peer,
            self.peer_max_message,
            self.fragment_size,
            self.pipeline_threshold,
            shut.clone(),
        );
        let rx = RecvCore::new(self.cons, self.rx_sock, self.peer, self.max_message);
        (tx, rx, shut)
    }
}

/// A bidirectional connection: a [`Sender`] and a [`Receiver`] in one.
#[derive(Debug)]
pub struct Connection {
    tx: Sender,
    rx: Receiver,
    shut: Arc<ShutFlag>,
}

impl Connection {
    pub(crate) fn from_parts(p: Parts) -> Self {
        let (wait, timeout, futex) = (p.wait, p.timeout, p.futex);
        let (tx, rx, shut) = p.into_cores();
        let mut tx = Sender::new(tx, wait, timeout);
        let mut rx = Receiver::new(rx, wait, timeout);
        if futex {
            tx.use_futex(shut.clone());
            rx.use_futex(shut.clone());
        }
        Connection { tx, rx, shut }
    }

    /// The two cores, their shutdown flag and the wait strategy, for
    /// another waiting policy (the async wrappers).
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn into_cores(self) -> (SendCore, RecvCore, Arc<ShutFlag>, WaitStrategy) {
        let (tx, wait) = self.tx.into_core();
        (tx, self.rx.into_core(), self.shut, wait)
    }

    /// Connects to a listener with default options
    /// ([`Builder`](crate::Builder) for others).
    ///
    /// # Errors
    /// See [`Builder::connect`](crate::Builder::connect).
    pub fn connect(path: impl AsRef<std::path::Path>) -> Result<Connection> {
        crate::Builder::new().connect(path)
    }

    /// Sends a message (see [`Sender::send`]).
    ///
    /// # Errors
    /// As [`Sender::send`].
    pub fn send(&mut self, data: &[u8]) -> Result<()> {
        self.tx.send(data)
    }

    /// Sends with an explicit timeout (see [`Sender::send_timeout`]).
    ///
    /// # Errors
    /// As [`Sender::send`].
    pub fn send_timeout(&mut self, data: &[u8], timeout: Duration) -> Result<()> {
        self.tx.send_timeout(data, timeout)
    }

    /// Sends if the ring has room (see [`Sender::try_send`]).
    ///
    /// # Errors
    /// As [`Sender::try_send`].
    pub fn try_send(&mut self, data: &[u8]) -> Result<bool> {
        self.tx.try_send(data)
    }

    /// Reserves ring space for a zero-copy message (see [`Sender::reserve`]).
    ///
    /// # Errors
    /// As [`Sender::reserve`].
    pub fn reserve(&mut self, len: usize) -> Result<WriteGrant<'_>> {
        self.tx.reserve(len)
    }

    /// Reserves with an explicit timeout (see [`Sender::reserve_timeout`]).
    ///
    /// # Errors
    /// As [`Sender::reserve`].
    pub fn reserve_timeout(&mut self, len: usize, timeout: Duration) -> Result<WriteGrant<'_>> {
        self.tx.reserve_timeout(len, timeout)
    }

    /// Starts a message of any size to be written in place, chunk by
    /// chunk: see [`Sender::write_message`].
    ///
    /// # Errors
    /// As [`Sender::write_message`].
    pub fn write_message(&mut self, len: usize) -> Result<MessageWriter<'_>> {
        self.tx.write_message(len)
    }

    /// A handle that ends this connection from any thread, waking every
    /// call that waits on it (see [`ShutdownHandle`]). Take it before
    /// [`split`](Connection::split) to end both halves.
    ///
    /// # Errors
    /// [`Error::Io`](crate::Error::Io) if the sockets cannot be duplicated (fd limit).
    pub fn shutdown_handle(&self) -> Result<ShutdownHandle> {
        ShutdownHandle::new(
            self.shut.clone(),
            &[self.tx.as_fd(), self.rx.as_fd()],
            vec![self.tx.core.prod.wake_word(), self.rx.core.cons.wake_word()],
        )
    }

    /// Receives a message (see [`Receiver::recv`]).
    ///
    /// # Errors
    /// As [`Receiver::recv`].
    pub fn recv(&mut self) -> Result<Message<'_>> {
        self.rx.recv()
    }

    /// Receives with an explicit timeout (see [`Receiver::recv_timeout`]).
    ///
    /// # Errors
    /// As [`Receiver::recv`].
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Message<'_>> {
        self.rx.recv_timeout(timeout)
    }

    /// Receives without blocking (see [`Receiver::try_recv`]).
    ///
    /// # Errors
    /// As [`Receiver::try_recv`].
    pub fn try_recv(&mut self) -> Result<Option<Message<'_>>> {
        self.rx.try_recv()
    }

    /// Receives the next message into `buf`, reusing its allocation (see
    /// [`Receiver::recv_into`]). Returns its length.
    ///
    /// # Examples
    /// ```no_run
    /// # fn demo(conn: &mut shmsock_transport::Connection) -> shmsock_transport::Result<()> {
    /// let mut buf = Vec::new();
    /// loop {
    ///     let n = conn.recv_into(&mut buf)?;
    ///     println!("{n} bytes");
    /// }
    /// # }
    /// ```
    ///
    /// # Errors
    /// As [`Receiver::recv`].
    pub fn recv_into(&mut self, buf: &mut Vec<u8>) -> Result<usize> {
        self.rx.recv_into(buf)
    }

    /// Starts reading the next message piece by piece, without holding it
    /// whole (see [`Receiver::read_message`]).
    ///
    /// # Errors
    /// As [`Receiver::recv`].
    pub fn read_message(&mut self) -> Result<MessageReader<'_>> {
        self.rx.read_message()
    }

    /// [`Connection::read_message`] with an explicit timeout for the wait
    /// for the message's start.
    ///
    /// # Errors
    /// As [`Receiver::recv`].
    pub fn read_message_timeout(&mut self, timeout: Duration) -> Result<MessageReader<'_>> {
        self.rx.read_message_timeout(timeout)
    }

    /// Sends many messages with one publication (see
    /// [`Sender::send_batch`]).
    ///
    /// # Errors
    /// As [`Sender::send_batch`].
    pub fn send_batch(&mut self, msgs: &[&[u8]]) -> Result<usize> {
        self.tx.send_batch(msgs)
    }

    /// Sends a batch with an explicit timeout (see
    /// [`Sender::send_batch_timeout`]).
    ///
    /// # Errors
    /// As [`Sender::send_batch`].
    pub fn send_batch_timeout(&mut self, msgs: &[&[u8]], timeout: Duration) -> Result<usize> {
        self.tx.send_batch_timeout(msgs, timeout)
    }

    /// Starts a batch of messages published together (see
    /// [`Sender::batch`]).
    pub fn batch(&mut self) -> Batch<'_> {
        self.tx.batch()
    }

    /// Receives up to `max` messages with one release (see
    /// [`Receiver::recv_batch`]).
    ///
    /// # Errors
    /// As [`Receiver::recv_batch`].
    pub fn recv_batch(&mut self, max: usize, f: impl FnMut(&[u8])) -> Result<usize> {
        self.rx.recv_batch(max, f)
    }

    /// Receives a batch with an explicit timeout (see
    /// [`Receiver::recv_batch_timeout`]).
    ///
    /// # Errors
    /// As [`Receiver::recv_batch`].
    pub fn recv_batch_timeout(
        &mut self,
        max: usize,
        timeout: Duration,
        f: impl FnMut(&[u8]),
    ) -> Result<usize> {
        self.rx.recv_batch_timeout(max, timeout, f)
    }

    /// Receives a batch without blocking (see [`Receiver::try_recv_batch`]).
    ///
    /// # Errors
    /// As [`Receiver::try_recv_batch`].
    pub fn try_recv_batch(&mut self, max: usize, f: impl FnMut(&[u8])) -> Result<usize> {
        self.rx.try_recv_batch(max, f)
    }

    /// Splits into halves that can live on two threads.
    pub fn split(self) -> (Sender, Receiver) {
        (self.tx, self.rx)
    }

    /// The sending half.
    pub fn sender(&mut self) -> &mut Sender {
        &mut self.tx
    }

    /// The receiving half.
    pub fn receiver(&mut self) -> &mut Receiver {
        &mut self.rx
    }

    /// Both halves, borrowed apart: a [`Message`] received through the
    /// [`Receiver`] leaves the [`Sender`] free, so a server can reply while
    /// it still holds the request in the ring (see [`Message`] for why a
    /// message borrows what received it).
    pub fn halves(&mut self) -> (&mut Sender, &mut Receiver) {
        (&mut self.tx, &mut self.rx)
    }

    /// Credentials of the peer process (`SO_PEERCRED` at connect time).
    pub fn peer_credentials(&self) -> Credentials {
        self.tx.peer_credentials()
    }

    /// Largest message that travels inline through the ring.
    pub fn max_inline(&self) -> usize {
        self.tx.max_inline()
    }

    /// Whether the rings run with asymmetric fences (both processes
    /// registered for `membarrier` and asked for it; see
    /// [`Builder::asymmetric_fences`](crate::Builder::asymmetric_fences)).
    pub fn asymmetric_fences(&self) -> bool {
        self.tx.core.prod.fences() == shmsock_shm::ring::Fences::Asymmetric
    }
}

impl AsFd for Connection {
    /// The receiving socket: see [`Receiver::try_recv`] for what
    /// readability means.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.rx.as_fd()
    }
}
