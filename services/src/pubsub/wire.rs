//! Every byte of the publish/subscribe protocol that crosses the socket
//! (see `docs/services.md`, "Publish/subscribe wire format"). Pure
//! encoding and decoding, no I/O.
//!
//! The handshake is three fixed-size 32-byte messages, little-endian; then
//! only single control bytes flow. The format works on a `SOCK_STREAM`
//! and on a `SOCK_SEQPACKET` Unix socket alike: every message is sent with
//! one `sendmsg` and read with reads that never cross its end.

use shmsock_shm::fanout::Policy;

/// First four bytes of every handshake message: `"SSPS"`.
pub const PUBSUB_MAGIC: [u8; 4] = *b"SSPS";
/// Publish/subscribe protocol version this build speaks.
pub const PUBSUB_VERSION: u16 = 1;
/// Length of every handshake message.
pub const HANDSHAKE_LEN: usize = 32;

/// Kind byte (offset 6) of a handshake message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// Subscriber → publisher, first: the history it asks for. No fd.
    Hello = 1,
    /// Publisher → subscriber: ring geometry, policy, start position and
    /// sequence number. One fd: the data segment.
    Welcome = 2,
    /// Subscriber → publisher: its cursor segment is ready. One fd: the
    /// cursor segment.
    Ready = 3,
    /// Publisher → subscriber instead of `Welcome`: refused. No fd.
    Refuse = 4,
}

impl Kind {
    /// Fds a message of this kind carries.
    pub fn fds(self) -> usize {
        match self {
            Kind::Welcome | Kind::Ready => 1,
            Kind::Hello | Kind::Refuse => 0,
        }
    }
}

/// Control byte after the handshake, either direction: "look at the shared
/// memory" (new data, or space).
pub const CTL_WAKE: u8 = 0x01;
/// Control byte, publisher → subscriber: you were disconnected (no
/// progress for `max_lag`, or a protocol violation); the socket closes next.
pub const CTL_EVICTED: u8 = 0x02;
/// Control byte, subscriber → publisher: unsubscribe (the socket closes
/// next; closing it alone does the same).
pub const CTL_BYE: u8 = 0x03;

/// Why a publisher refused a subscriber (byte 7 of `Refuse`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
#[non_exhaustive]
pub enum RefuseReason {
    /// The `Hello` was malformed or of another version.
    BadHello = 1,
    /// The publisher has its maximum number of subscribers.
    Full = 2,
}

/// A decoded handshake message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handshake {
    /// See [`Kind::Hello`].
    Hello {
        /// Messages of history asked for (the publisher gives at most what
        /// it keeps).
        history: u32,
    },
    /// See [`Kind::Welcome`].
    Welcome {
        /// Slow-subscriber policy.
        policy: Policy,
        /// Data-area capacity in bytes.
        capacity: u64,
        /// Byte position of the first record to read.
        start: u64,
        /// Sequence number of that record.
        start_seq: u64,
    },
    /// See [`Kind::Ready`].
    Ready,
    /// See [`Kind::Refuse`]; the raw reason byte.
    Refuse {
        /// [`RefuseReason`] as a byte (unknown values are kept).
        reason: u8,
    },
}

/// Why bytes are not a valid handshake message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Not `"SSPS"`.
    #[error("bad magic")]
    BadMagic,
    /// Another protocol version.
    #[error("protocol version {0}, this build speaks 1")]
    Version(u16),
    /// Unknown kind byte.
    #[error("unknown message kind {0}")]
    Kind(u8),
    /// A reserved byte is not zero, or a field is out of range.
    #[error("invalid field: {0}")]
    Field(&'static str),
}

fn policy_byte(p: Policy) -> u8 {
    match p {
        Policy::Block => 1,
        Policy::DropOldest => 2,
    }
}

impl Handshake {
    /// The message's kind.
    pub fn kind(&self) -> Kind {
        match self {
            Handshake::Hello { .. } => Kind::Hello,
            Handshake::Welcome { .. } => Kind::Welcome,
            Handshake::Ready => Kind::Ready,
            Handshake::Refuse { .. } => Kind::Refuse,
        }
    }

    /// Encodes the message (reserved bytes zero).
    pub fn encode(&self) -> [u8; HANDSHAKE_LEN] {
        let mut b = [0u8; HANDSHAKE_LEN];
        b[0..4].copy_from_slice(&PUBSUB_MAGIC);
        b[4..6].copy_from_slice(&PUBSUB_VERSION.to_le_bytes());
        b[6] = self.kind() as u8;
        match *self {
            Handshake::Hello { history } => b[8..12].copy_from_slice(&history.to_le_bytes()),
            Handshake::Welcome {
                policy,
                capacity,
                start,
                start_seq,
            } => {
                b[7] = policy_byte(policy);
                b[8..16].copy_from_slice(&capacity.to_le_bytes());
                b[16..24].copy_from_slice(&start.to_le_bytes());
                b[24..32].copy_from_slice(&start_seq.to_le_bytes());
            }
            Handshake::Ready => {}
            Handshake::Refuse { reason } => b[7] = reason,
        }
        b
    }

    /// Decodes a message; every reserved byte must be zero.
    ///
    /// # Errors
    /// The [`DecodeError`] found.
    pub fn decode(b: &[u8; HANDSHAKE_LEN]) -> Result<Self, DecodeError> {
        if b[0..4] != PUBSUB_MAGIC {
            return Err(DecodeError::BadMagic);
        }
        let version = u16::from_le_bytes([b[4], b[5]]);
        if version != PUBSUB_VERSION {
            return Err(DecodeError::Version(version));
        }
        let u64_at = |o: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&b[o..o + 8]);
            u64::from_le_bytes(w)
        };
        let zero = |r: std::ops::Range<usize>| b[r].iter().all(|&x| x == 0);
        match b[6] {
            1 => {
                if b[7] != 0 || !zero(12..32) {
                    return Err(DecodeError::Field("reserved bytes of Hello"));
                }
                Ok(Handshake::Hello {
                    history: u32::from_le_bytes([b[8], b[9], b[10], b[11]]),
                })
            }
            2 => {
                let policy = match b[7] {
                    1 => Policy::Block,
                    2 => Policy::DropOldest,
                    _ => return Err(DecodeError::Field("policy")),
                };
                Ok(Handshake::Welcome {
                    policy,
                    capacity: u64_at(8),
                    start: u64_at(16),
                    start_seq: u64_at(24),
                })
            }
            3 => {
                if !zero(7..32) {
                    return Err(DecodeError::Field("reserved bytes of Ready"));
                }
                Ok(Handshake::Ready)
            }
            4 => {
                if !zero(8..32) {
                    return Err(DecodeError::Field("reserved bytes of Refuse"));
                }
                Ok(Handshake::Refuse { reason: b[7] })
            }
            k => Err(DecodeError::Kind(k)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_exact_bytes() {
        let w = Handshake::Welcome {
            policy: Policy::DropOldest,
            capacity: 1 << 20,
            start: 4096,
            start_seq: 7,
        };
        let b = w.encode();
        assert_eq!(&b[..8], b"SSPS\x01\x00\x02\x02");
        assert_eq!(Handshake::decode(&b), Ok(w));
        for m in [
            Handshake::Hello { history: 9 },
            Handshake::Ready,
            Handshake::Refuse { reason: 2 },
        ] {
            assert_eq!(Handshake::decode(&m.encode()), Ok(m));
        }
        let mut bad = Handshake::Ready.encode();
        bad[20] = 1;
        assert!(Handshake::decode(&bad).is_err());
        bad = Handshake::Ready.encode();
        bad[4] = 9;
        assert_eq!(Handshake::decode(&bad), Err(DecodeError::Version(9)));
    }
}
