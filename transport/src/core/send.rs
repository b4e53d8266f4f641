//! The sending half's non-blocking core: our ring's producer, the socket
//! our data wake-ups go out on (and the peer's space wake-ups and hang-up
//! come in on), the large-message writer and the liveness checks. Never
//! waits: where the blocking [`crate::Sender`] would wait for space, these
//! methods report that the ring is full and leave the waiting to the
//! caller's policy.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;

use shmsock_shm::ring::{self, Producer, Wake, WakeKind};

use crate::core::frag::{fragment_len, LargeSend};
use crate::core::{notify, DRAIN_BUDGET};
use crate::error::{Error, ProtocolViolation, Result};
use crate::error_map::{protocol, send_ring_err, sock_err};
use crate::fdpass::{recv_control, Recv};
use crate::options::{Credentials, PIPELINE_FRAGMENT};
use crate::shutdown::ShutFlag;
use crate::wire::{Control, FRAG_HEADER, TAG_FRAG, TAG_FRAG_ABORT, TAG_FRAG_START};

/// Sends between two non-blocking looks at the socket for a dead peer.
const LIVENESS_EVERY: u32 = 256;

/// Our ring's producer and its socket: the state of a sending half.
pub(crate) struct SendCore {
    pub(crate) prod: Producer,
    pub(crate) sock: OwnedFd,
    peer_max_message: u64,
    pub(crate) peer: Credentials,
    /// A fragmented message was cut short (its send timed out, or its
    /// future was dropped): the next record we write must be
    /// `TAG_FRAG_ABORT`.
    pub(crate) abort_pending: bool,
    pub(crate) peer_gone: bool,
    since_check: u32,
    /// `try_space` found the ring full and armed the space wake-up.
    pub(crate) armed: bool,
    /// Set by a [`crate::ShutdownHandle`]: every later send fails at once.
    shut: Arc<ShutFlag>,
    /// Payload bytes of a full fragment record ([`fragment_len`]).
    frag: usize,
    /// Messages longer than this go in fragments even if they fit one
    /// record ([`crate::Builder::pipeline_threshold`]).
    pipeline_above: usize,
    /// Payload bytes of the fragments of such a message.
    pipeline_frag: usize,
}

impl SendCore {
    pub(crate) fn new(
        prod: Producer,
        sock: OwnedFd,
        peer: Credentials,
        peer_max_message: u64,
        fragment_size: usize,
        pipeline_threshold: usize,
        shut: Arc<ShutFlag>,
    ) -> Self {
        let frag = fragment_len(prod.capacity(), prod.max_record_len(), fragment_size);
        let pipeline_frag = if fragment_size == 0 {
            fragment_len(prod.capacity(), prod.max_record_len(), PIPELINE_FRAGMENT).min(frag)
        } else {
            frag
        };
        SendCore {
            frag,
            pipeline_above: pipeline_threshold,
            pipeline_frag,
            prod,
            sock,
            peer_max_message,
            peer,
            abort_pending: false,
            peer_gone: false,
            since_check: 0,
            armed: false,
            shut,
        }
    }

    pub(crate) fn protocol(&self, violation: ProtocolViolation) -> Error {
        protocol(self.peer.pid, violation)
    }

    pub(crate) fn ring_err(&self, e: shmsock_shm::Error) -> Error {
        send_ring_err(self.peer.pid, e)
    }

    /// Largest message that travels inline (one record).
    #[inline]
    pub(crate) fn max_inline(&self) -> usize {
        self.prod.max_record_len()
    }

    /// Payload bytes of a full fragment record.
    pub(crate) fn fragment_len(&self) -> usize {
        self.frag
    }

    /// Whether `send` sends a message of `len` bytes in fragments: it does
    /// not fit one record, or it is long enough to gain from pipelining
    /// ([`crate::Builder::pipeline_threshold`]) and the receiver has
    /// consumed everything we sent (it waits for this message, so a first
    /// fragment lets it start sooner). Behind a backlog the message goes as
    /// one record: the receiver is busy anyway, and one record per message
    /// streams faster than fragments (`docs/performance.md`, "Block and
    /// large messages").
    #[inline]
    pub(crate) fn fragments(&mut self, len: usize) -> bool {
        if len > self.max_inline() {
            return true;
        }
        if len <= self.pipeline_above {
            return false;
        }
        // The consumer's cursor only steers this choice: a lying peer
        // picks how its own messages arrive, which it could not tell
        // apart anyway. An invalid cursor shows on the reserve that
        // follows.
        let written = self.prod.position();
        self.prod.consumed().is_ok_and(|c| c == written)
    }

    /// Largest message the peer accepts.
    pub(crate) fn peer_max_message(&self) -> u64 {
        self.peer_max_message
    }

    /// Pays the wake-up owed to the peer's parked reader, if any.
    #[inline]
    pub(crate) fn wake_reader(&mut self, wake: Wake) -> Result<()> {
        // The common case of a busy stream, kept off the redeeming path
        // (a call and a move of the token per message otherwise).
        if !wake.is_owed() {
            return Ok(());
        }
        match notify::wake_data(wake, self.sock.as_fd()) {
            Ok(()) => Ok(()),
            Err(e) => {
                self.peer_gone = true;
                Err(sock_err("sendmsg(wake)", e))
            }
        }
    }

    /// Handles one receive result on the sender's socket (space wake-ups
    /// and the peer's hang-up). Returns `false` if nothing was there.
    pub(crate) fn handle(&mut self, r: Recv) -> Result<bool> {
        match r {
            Recv::Empty => Ok(false),
            Recv::Eof => {
                self.peer_gone = true;
                Ok(true)
            }
            Recv::Msg(m) => match m.checked().map_err(|v| self.protocol(v))? {
                (Control::WakeSpace, _) => Ok(true),
                (other, _) => Err(self.protocol(ProtocolViolation::Unexpected {
                    kind: other.kind() as u8,
                    context: "on the sender's socket",
                })),
            },
        }
    }

    /// Reads what the peer's receiver sent us, non-blocking; notes EOF.
    /// Returns whether the socket was found empty (`false`: the budget ran
    /// out or the peer hung up first).
    pub(crate) fn drain(&mut self) -> Result<bool> {
        for _ in 0..DRAIN_BUDGET {
            let r = recv_control(self.sock.as_fd()).map_err(|e| sock_err("recvmsg", e))?;
            if !self.handle(r)? {
                return Ok(true);
            }
            if self.peer_gone {
                break;
            }
        }
        Ok(false)
    }

    /// Cheap periodic liveness check on the send fast path.
    #[inline]
    pub(crate) fn check_peer(&mut self) -> Result<()> {
        self.check_peer_after(1)
    }

    /// [`SendCore::check_peer`] for a call that sends `sends` messages.
    #[inline]
    pub(crate) fn check_peer_after(&mut self, sends: u32) -> Result<()> {
        self.since_check = self.since_check.saturating_add(sends);
        if self.since_check >= LIVENESS_EVERY {
            self.since_check = 0;
            self.drain()?;
        }
        if self.peer_gone || self.shut.is_set() {
            return Err(Error::Disconnected);
        }
        Ok(())
    }

    /// Refuses a message above the peer's limit.
    #[inline]
    pub(crate) fn check_len(&self, len: usize) -> Result<()> {
        if len as u64 > self.peer_max_message {
            return Err(Error::MessageTooLarge {
                len: len as u64,
                max: self.peer_max_message,
            });
        }
        Ok(())
    }

    /// Refuses a zero-copy reservation that does not fit one record (or is
    /// above the peer's limit).
    pub(crate) fn check_reservable(&self, len: usize) -> Result<()> {
        self.check_len(len)?;
        let max = self.prod.max_record_len();
        if len > max {
            return Err(Error::MessageTooLarge {
                len: len as u64,
                max: max as u64,
            });
        }
        Ok(())
    }

    /// Whether a record of `len` bytes fits now.
    #[inline]
    pub(crate) fn can_reserve(&mut self, len: usize) -> Result<bool> {
        self.prod.can_reserve(len).map_err(|e| self.ring_err(e))
    }

    /// Reserves a record of `len` bytes tagged `tag` if it fits now
    /// (`None`: the ring is full). One space check, where
    /// [`SendCore::can_reserve`] + [`SendCore::take_fitting`] make two: the
    /// per-record send path.
    #[inline]
    pub(crate) fn try_take(
        &mut self,
        len: usize,
        tag: u16,
    ) -> Result<Option<ring::WriteGrant<'_>>> {
        let pid = self.peer.pid;
        self.prod
            .try_reserve_tagged(len, tag)
            .map_err(|e| send_ring_err(pid, e))
    }

    /// Reserves a record of `len` bytes tagged `tag`, which
    /// [`SendCore::can_reserve`] said fits.
    #[inline]
    pub(crate) fn take_fitting(&mut self, len: usize, tag: u16) -> Result<ring::WriteGrant<'_>> {
        self.take_fitting_parts(len, tag).map(|(g, _, _)| g)
    }

    /// [`SendCore::take_fitting`], with what a grant that wakes the reader
    /// on commit also needs: the socket and the liveness flag (disjoint
    /// borrows of `self`).
    #[inline]
    pub(crate) fn take_fitting_parts(
        &mut self,
        len: usize,
        tag: u16,
    ) -> Result<(ring::WriteGrant<'_>, BorrowedFd<'_>, &mut bool)> {
        let pid = self.peer.pid;
        match self
            .prod
            .try_reserve_tagged(len, tag)
            .map_err(|e| send_ring_err(pid, e))?
        {
            Some(g) => Ok((g, self.sock.as_fd(), &mut self.peer_gone)),
            None => {
                // The producer's copy of the consumer cursor only moves
                // forward, so space that `can_reserve` saw cannot vanish.
                debug_assert!(false, "ring space vanished between check and reserve");
                // Not reachable; should the ring's state ever be
                // inconsistent, the ring is as good as poisoned.
                Err(protocol(pid, ProtocolViolation::Poisoned))
            }
        }
    }

    /// Whether a record of `len` bytes fits now; if not, arms the space
    /// wake-up (parks, re-checks) and returns `false`: the socket becomes
    /// readable when the peer frees space.
    pub(crate) fn try_space(&mut self, len: usize) -> Result<bool> {
        if self.can_reserve(len)? {
            return Ok(true);
        }
        // An event loop (or tokio) polls our socket: a socket wake-up.
        self.prod.park(WakeKind::Socket);
        if !self.can_reserve(len)? {
            self.armed = true;
            return Ok(false);
        }
        self.prod.unpark();
        Ok(true)
    }

    /// Consumes the wake-ups an armed `try_*` call asked for, so that a
    /// level-triggered poller does not report them again.
    pub(crate) fn disarm(&mut self) -> Result<()> {
        if self.armed {
            self.armed = false;
            self.drain()?;
            if self.peer_gone {
                return Err(Error::Disconnected);
            }
        }
        Ok(())
    }

    /// Publishes the staged records; wakes the reader if it is parked.
    pub(crate) fn publish_staged(&mut self) -> Result<()> {
        let wake = self.prod.publish();
        self.wake_reader(wake)
    }

    /// Writes one record of `len` bytes tagged `tag`, filled by `fill`, if
    /// it fits now (`Ok(false)` if not). Wakes a parked reader.
    pub(crate) fn try_write_record(
        &mut self,
        len: usize,
        tag: u16,
        fill: impl FnOnce(&mut ring::WriteGrant<'_>),
    ) -> Result<bool> {
        if !self.can_reserve(len)? {
            return Ok(false);
        }
        let mut g = self.take_fitting(len, tag)?;
        fill(&mut g);
        let wake = g.commit();
        self.wake_reader(wake)?;
        Ok(true)
    }

    /// Writes the abort record owed by a cut-short large message, if one is
    /// owed and it fits now. Returns whether nothing is owed any more.
    pub(crate) fn try_write_abort(&mut self) -> Result<bool> {
        if !self.abort_pending {
            return Ok(true);
        }
        if !self.try_write_record(0, TAG_FRAG_ABORT, |_| {})? {
            return Ok(false);
        }
        self.abort_pending = false;
        Ok(true)
    }

    /// Starts writing `len` bytes as a fragmented message (see
    /// [`crate::core::frag`]).
    pub(crate) fn large_start(&self, len: usize) -> LargeSend {
        // A message that would fit one record is split only to pipeline
        // it: in pieces small enough that the receiver starts early.
        let frag = if len > self.max_inline() {
            self.frag
        } else {
            self.pipeline_frag
        };
        LargeSend::new(len, frag)
    }

    /// Writes the fragments of `data` that fit now. Returns `None` when
    /// the whole message is written, or `Some(len)`: the ring lacks space
    /// for the next record of `len` bytes (wait, then call again). After an
    /// error, or when the caller gives up, call [`SendCore::large_abandon`].
    pub(crate) fn large_step(&mut self, ls: &mut LargeSend, data: &[u8]) -> Result<Option<usize>> {
        while let Some((range, tag)) = ls.next_record() {
            let chunk = &data[range.clone()];
            let len = if tag == TAG_FRAG_START {
                FRAG_HEADER + chunk.len()
            } else {
                chunk.len()
            };
            let written = if tag == TAG_FRAG_START {
                let total = (data.len() as u64).to_le_bytes();
                self.try_write_record(len, TAG_FRAG_START, |g| {
                    g.fill_from(&total);
                    g.fill_at(FRAG_HEADER, chunk);
                })
            } else {
                self.try_write_record(len, TAG_FRAG, |g| g.fill_from(chunk))
            };
            if !written? {
                return Ok(Some(len));
            }
            ls.started = true;
            ls.advance(range.end);
        }
        Ok(None)
    }

    /// Gives up on the large message `ls`: if its first fragment was
    /// published, the next record we write tells the peer to drop it.
    pub(crate) fn large_abandon(&mut self, ls: &LargeSend) {
        if ls.started && !ls.is_done() {
            self.abort_pending = true;
        }
    }

    /// Publishes nothing new; marks our ring closed so the peer drains it
    /// and then sees [`Error::Disconnected`]. Done on drop.
    fn close(&mut self) {
        // Best effort: if the peer is gone it no longer waits.
        let _ = notify::wake_data(self.prod.close(), self.sock.as_fd());
    }
}

impl std::fmt::Debug for SendCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendCore")
            .field("peer", &self.peer)
            .field("ring", &self.prod)
            .finish()
    }
}

impl Drop for SendCore {
    fn drop(&mut self) {
        self.close();
    }
}
