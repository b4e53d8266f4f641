//! Control messages: every byte that crosses the socket (see
//! `docs/protocol.md`). Pure encoding and decoding, no I/O, so that the
//! decoder can be fuzzed on its own.
//!
//! Every message is one `SOCK_SEQPACKET` datagram, little-endian, starting
//! with a kind byte and three zero bytes. Lengths are exact per kind;
//! reserved bytes must be zero.

use thiserror::Error;

/// Magic of the handshake messages: `"SHMSOCKP"`.
pub const PROTOCOL_MAGIC: u64 = u64::from_le_bytes(*b"SHMSOCKP");
/// Protocol version this build speaks.
pub const PROTOCOL_VERSION: u32 = 3;
/// Longest control message of this version, in bytes.
pub const MAX_CONTROL_LEN: usize = 48;
/// Most fds any control message carries.
pub const MAX_FDS: usize = 2;

/// Ring record tag (bits 32–47 of a record header): a whole message in one
/// record.
pub const TAG_INLINE: u16 = 0;
/// Ring record tag 1 announced a large-message memfd in protocol version 1.
/// Retired: a record with this tag is a protocol violation.
pub const TAG_RETIRED_LARGE: u16 = 1;
/// Ring record tag: the first fragment of a message larger than one record.
/// Payload: the message's total length ([`FRAG_HEADER`] bytes, u64 LE),
/// then its first bytes.
pub const TAG_FRAG_START: u16 = 2;
/// Ring record tag: a following fragment (the next bytes, never empty).
pub const TAG_FRAG: u16 = 3;
/// Ring record tag: the sender abandoned the fragmented message in progress
/// (empty payload).
pub const TAG_FRAG_ABORT: u16 = 4;
/// Bytes of the total-length header at the start of a [`TAG_FRAG_START`]
/// payload.
pub const FRAG_HEADER: usize = 8;

/// Kind byte of each control message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// Client → server, first message: limits, ring memfd, back channel.
    Hello = 1,
    /// Server → client: limits and the server's ring memfd.
    Welcome = 2,
    /// Server → client during the handshake: refusal with a reason.
    Reject = 3,
    /// Producer → consumer: the ring has data (sent only if the consumer
    /// parked).
    WakeData = 4,
    /// Consumer → producer: the ring has space (sent only if the producer
    /// parked).
    WakeSpace = 5,
    /// Retired: the memfd of a large message in protocol 1. Decoded only so
    /// that a connection can refuse it.
    Large = 6,
}

impl Kind {
    /// Number of fds a message of this kind carries.
    pub fn fds(self) -> usize {
        match self {
            Kind::Hello => 2,
            Kind::Welcome | Kind::Large => 1,
            Kind::Reject | Kind::WakeData | Kind::WakeSpace => 0,
        }
    }

    fn len(self) -> usize {
        match self {
            Kind::Hello | Kind::Welcome => 48,
            Kind::Reject | Kind::Large => 24,
            Kind::WakeData | Kind::WakeSpace => 8,
        }
    }

    fn from_u8(b: u8) -> Option<Kind> {
        Some(match b {
            1 => Kind::Hello,
            2 => Kind::Welcome,
            3 => Kind::Reject,
            4 => Kind::WakeData,
            5 => Kind::WakeSpace,
            6 => Kind::Large,
            _ => return None,
        })
    }
}

/// Why a handshake was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum RejectReason {
    /// Protocol versions differ.
    #[error("protocol version mismatch")]
    Version,
    /// The credentials policy refused the peer.
    #[error("credentials refused")]
    Credentials,
    /// A limit (ring size, message size) is out of range.
    #[error("limits out of range")]
    Limits,
    /// The handshake was malformed.
    #[error("malformed handshake")]
    Malformed,
    /// The rejecting side ran out of its own resources (file descriptors,
    /// memory) during the handshake: not the peer's fault; it may retry.
    #[error("peer out of resources")]
    Resources,
    /// A reason this version does not know.
    #[error("unknown reason {0}")]
    Other(u32),
}

impl RejectReason {
    fn code(self) -> u32 {
        match self {
            RejectReason::Version => 1,
            RejectReason::Credentials => 2,
            RejectReason::Limits => 3,
            RejectReason::Malformed => 4,
            RejectReason::Resources => 5,
            RejectReason::Other(c) => c,
        }
    }
    fn from_code(c: u32) -> Self {
        match c {
            1 => RejectReason::Version,
            2 => RejectReason::Credentials,
            3 => RejectReason::Limits,
            4 => RejectReason::Malformed,
            5 => RejectReason::Resources,
            c => RejectReason::Other(c),
        }
    }
}

/// Body of `Hello` and `Welcome`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hello {
    /// Capacity of the ring the sender of this message created and writes.
    pub ring_capacity: u64,
    /// Largest message the sender of this message accepts.
    pub max_message: u64,
    /// [`HELLO_ASYMMETRIC_FENCES`] or 0 (version 3; other bits refused).
    pub flags: u32,
}

/// `Hello`/`Welcome` flag: the sender registered for
/// `MEMBARRIER_CMD_GLOBAL_EXPEDITED` and runs its rings with asymmetric
/// fences if the other side does too (`docs/design.md`).
pub const HELLO_ASYMMETRIC_FENCES: u32 = 1;

/// A decoded control message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// See [`Kind::Hello`].
    Hello(Hello),
    /// See [`Kind::Welcome`].
    Welcome(Hello),
    /// See [`Kind::Reject`].
    Reject {
        /// The rejecting side's protocol version.
        version: u32,
        /// Why.
        reason: RejectReason,
    },
    /// See [`Kind::WakeData`].
    WakeData,
    /// See [`Kind::WakeSpace`].
    WakeSpace,
    /// See [`Kind::Large`].
    Large {
        /// Sequence number of the large message (0, 1, 2, ... per direction).
        seq: u64,
        /// Length in bytes.
        len: u64,
    },
}

/// Why a control message could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum WireError {
    /// Empty datagram.
    #[error("empty message")]
    Empty,
    /// Unknown kind byte.
    #[error("unknown kind {0}")]
    UnknownKind(u8),
    /// Wrong length for the kind.
    #[error("kind {kind} must be {expected} bytes, got {got}")]
    Length {
        /// Kind byte.
        kind: u8,
        /// Length of the kind.
        expected: usize,
        /// Length received.
        got: usize,
    },
    /// Reserved bytes are not zero.
    #[error("reserved bytes of kind {0} are not zero")]
    Reserved(u8),
    /// Handshake magic is wrong.
    #[error("bad magic {0:#018x}")]
    Magic(u64),
    /// Handshake version differs from ours (the rest was not decoded).
    #[error("protocol version {0}")]
    Version(u32),
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[off..off + 4]);
    u32::from_le_bytes(w)
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[off..off + 8]);
    u64::from_le_bytes(w)
}

impl Control {
    /// The message's kind.
    pub fn kind(&self) -> Kind {
        match self {
            Control::Hello(_) => Kind::Hello,
            Control::Welcome(_) => Kind::Welcome,
            Control::Reject { .. } => Kind::Reject,
            Control::WakeData => Kind::WakeData,
            Control::WakeSpace => Kind::WakeSpace,
            Control::Large { .. } => Kind::Large,
        }
    }

    /// Encodes into `buf`, returning the bytes used.
    pub fn encode(&self, buf: &mut [u8; MAX_CONTROL_LEN]) -> usize {
        let kind = self.kind();
        let n = kind.len();
        buf[..n].fill(0);
        buf[0] = kind as u8;
        match *self {
            Control::Hello(h) | Control::Welcome(h) => {
                buf[4..8].copy_from_slice(&PROTOCOL_VERSION.to_le_bytes());
                buf[8..16].copy_from_slice(&PROTOCOL_MAGIC.to_le_bytes());
                buf[16..24].copy_from_slice(&h.ring_capacity.to_le_bytes());
                buf[24..32].copy_from_slice(&h.max_message.to_le_bytes());
                buf[32..36].copy_from_slice(&h.flags.to_le_bytes());
            }
            Control::Reject { version, reason } => {
                buf[4..8].copy_from_slice(&version.to_le_bytes());
                buf[8..16].copy_from_slice(&PROTOCOL_MAGIC.to_le_bytes());
                buf[16..20].copy_from_slice(&reason.code().to_le_bytes());
            }
            Control::WakeData | Control::WakeSpace => {}
            Control::Large { seq, len } => {
                buf[8..16].copy_from_slice(&seq.to_le_bytes());
                buf[16..24].copy_from_slice(&len.to_le_bytes());
            }
        }
        n
    }

    /// Decodes one datagram. Handshake messages are checked for magic and
    /// version before anything else, so that a peer of another version gets
    /// [`WireError::Version`], not a length error.
    ///
    /// # Errors
    /// A [`WireError`] saying what is wrong.
    pub fn decode(b: &[u8]) -> Result<Control, WireError> {
        let &k = b.first().ok_or(WireError::Empty)?;
        let kind = Kind::from_u8(k).ok_or(WireError::UnknownKind(k))?;
        if matches!(kind, Kind::Hello | Kind::Welcome | Kind::Reject) && b.len() >= 16 {
            let magic = u64_at(b, 8);
            if magic != PROTOCOL_MAGIC {
                return Err(WireError::Magic(magic));
            }
            let version = u32_at(b, 4);
            if version != PROTOCOL_VERSION && kind != Kind::Reject {
                return Err(WireError::Version(version));
            }
        }
        if b.len() != kind.len() {
            return Err(WireError::Length {
                kind: k,
                expected: kind.len(),
                got: b.len(),
            });
        }
        if b[1..4] != [0, 0, 0] {
            return Err(WireError::Reserved(k));
        }
        let zero = |r: std::ops::Range<usize>| {
            if b[r].iter().all(|&x| x == 0) {
                Ok(())
            } else {
                Err(WireError::Reserved(k))
            }
        };
        Ok(match kind {
            Kind::Hello | Kind::Welcome => {
                zero(36..48)?;
                let flags = u32_at(b, 32);
                if flags & !HELLO_ASYMMETRIC_FENCES != 0 {
                    return Err(WireError::Reserved(k));
                }
                let h = Hello {
                    ring_capacity: u64_at(b, 16),
                    max_message: u64_at(b, 24),
                    flags,
                };
                if kind == Kind::Hello {
                    Control::Hello(h)
                } else {
                    Control::Welcome(h)
                }
            }
            Kind::Reject => {
                zero(20..24)?;
                Control::Reject {
                    version: u32_at(b, 4),
                    reason: RejectReason::from_code(u32_at(b, 16)),
                }
            }
            Kind::WakeData | Kind::WakeSpace => {
                zero(4..8)?;
                if kind == Kind::WakeData {
                    Control::WakeData
                } else {
                    Control::WakeSpace
                }
            }
            Kind::Large => {
                zero(4..8)?;
                Control::Large {
                    seq: u64_at(b, 8),
                    len: u64_at(b, 16),
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> Vec<Control> {
        let h = Hello {
            ring_capacity: 1 << 20,
            max_message: 1 << 30,
            flags: HELLO_ASYMMETRIC_FENCES,
        };
        vec![
            Control::Hello(h),
            Control::Welcome(h),
            Control::Reject {
                version: 7,
                reason: RejectReason::Limits,
            },
            Control::WakeData,
            Control::WakeSpace,
            Control::Large {
                seq: 3,
                len: u64::MAX,
            },
        ]
    }

    #[test]
    fn roundtrip_every_kind() {
        for c in all() {
            let mut buf = [0u8; MAX_CONTROL_LEN];
            let n = c.encode(&mut buf);
            assert_eq!(Control::decode(&buf[..n]), Ok(c));
            // Every shorter or longer datagram is refused.
            for m in 0..n {
                assert!(Control::decode(&buf[..m]).is_err(), "{c:?} cut to {m}");
            }
            let mut long = buf[..n].to_vec();
            long.push(0);
            assert!(Control::decode(&long).is_err());
        }
    }

    #[test]
    fn reserved_bytes_and_unknown_kinds_refused() {
        for c in all() {
            let mut buf = [0u8; MAX_CONTROL_LEN];
            let n = c.encode(&mut buf);
            for i in 1..4 {
                let mut b = buf;
                b[i] = 1;
                assert_eq!(Control::decode(&b[..n]), Err(WireError::Reserved(buf[0])));
            }
        }
        for k in [0u8, 7, 255] {
            assert_eq!(Control::decode(&[k; 8]), Err(WireError::UnknownKind(k)));
        }
    }

    #[test]
    fn hello_flags_roundtrip_and_unknown_bits_refused() {
        for flags in [0, HELLO_ASYMMETRIC_FENCES] {
            let c = Control::Welcome(Hello {
                ring_capacity: 4096,
                max_message: 1,
                flags,
            });
            let mut buf = [0u8; MAX_CONTROL_LEN];
            let n = c.encode(&mut buf);
            assert_eq!(u32::from_le_bytes(buf[32..36].try_into().unwrap()), flags);
            assert_eq!(Control::decode(&buf[..n]), Ok(c));
            for bit in 1..32 {
                let mut b = buf;
                b[32..36].copy_from_slice(&(flags | 1 << bit).to_le_bytes());
                assert_eq!(Control::decode(&b[..n]), Err(WireError::Reserved(2)));
            }
            for i in 36..48 {
                let mut b = buf;
                b[i] = 1;
                assert_eq!(Control::decode(&b[..n]), Err(WireError::Reserved(2)));
            }
        }
    }

    #[test]
    fn version_checked_before_length() {
        let mut buf = [0u8; MAX_CONTROL_LEN];
        let n = Control::Hello(Hello {
            ring_capacity: 4096,
            max_message: 1,
            flags: 0,
        })
        .encode(&mut buf);
        let other = PROTOCOL_VERSION + 1;
        buf[4..8].copy_from_slice(&other.to_le_bytes());
        assert_eq!(Control::decode(&buf[..n]), Err(WireError::Version(other)));
        // A future, longer hello still reports the version.
        let mut long = buf.to_vec();
        long.resize(64, 0);
        assert_eq!(Control::decode(&long), Err(WireError::Version(other)));
        buf[8] ^= 1;
        assert!(matches!(
            Control::decode(&buf[..n]),
            Err(WireError::Magic(_))
        ));
    }

    #[test]
    fn decode_never_panics_on_random_bytes() {
        let mut s = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..200_000 {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let len = (s % 80) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|i| (s.rotate_left(i as u32 * 7) as u8) % if i == 0 { 8 } else { 255 })
                .collect();
            let _ = Control::decode(&bytes);
        }
    }
}
