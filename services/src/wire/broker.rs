//! The broker protocol: one `SOCK_SEQPACKET` datagram per message. The
//! layout is given byte by byte in `docs/services.md` ("Broker"); all
//! integers are little-endian.
//!
//! Decoding never trusts a length: every field is checked against the
//! datagram's real size and the protocol's limits, reserved bytes must be
//! zero, and names are validated ([`crate::Name`]) before anything else
//! looks at them.

use super::WireError;
use crate::name::Name;

/// Version byte of every broker message.
pub const BROKER_VERSION: u8 = 1;
/// Largest broker message in bytes (header, fixed fields and the longest
/// name fit with room to spare). A longer datagram is a protocol violation.
pub const MAX_BROKER_MSG: usize = 256;
/// Size of the broker message header.
pub const BROKER_HEADER: usize = 8;

/// Who may look a name up (checked by the broker against the consumer's
/// `SO_PEERCRED`). The provider's own uid is always allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LookupPolicy {
    /// Any process that can reach the broker's socket.
    #[default]
    Any,
    /// Only processes of the provider's uid.
    SameUid,
    /// Only this uid (and the provider's).
    Uid(u32),
    /// Only processes whose primary gid is this one (and the provider's uid).
    Gid(u32),
}

impl LookupPolicy {
    fn encode(self) -> (u8, u32) {
        match self {
            LookupPolicy::Any => (0, 0),
            LookupPolicy::SameUid => (1, 0),
            LookupPolicy::Uid(u) => (2, u),
            LookupPolicy::Gid(g) => (3, g),
        }
    }

    fn decode(kind: u8, value: u32) -> Result<LookupPolicy, WireError> {
        match (kind, value) {
            (0, 0) => Ok(LookupPolicy::Any),
            (1, 0) => Ok(LookupPolicy::SameUid),
            (2, u) => Ok(LookupPolicy::Uid(u)),
            (3, g) => Ok(LookupPolicy::Gid(g)),
            (0 | 1, _) => Err(WireError::Reserved),
            (k, _) => Err(WireError::LookupPolicy(k)),
        }
    }

    /// Whether a consumer of `uid`/`gid` may look up a name that a provider
    /// of `owner_uid` registered with this policy.
    pub fn allows(self, owner_uid: u32, uid: u32, gid: u32) -> bool {
        uid == owner_uid
            || match self {
                LookupPolicy::Any => true,
                LookupPolicy::SameUid => false,
                LookupPolicy::Uid(u) => uid == u,
                LookupPolicy::Gid(g) => gid == g,
            }
    }
}

/// Why the broker refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// No live provider has this name.
    NotFound = 1,
    /// A live provider holds the name already.
    NameTaken = 2,
    /// The name's policy does not let this consumer look it up.
    Denied = 3,
    /// The client holds as many names as the broker allows.
    TooManyNames = 4,
    /// The provider has too many introductions it has not taken yet.
    ProviderBusy = 5,
    /// The name is reserved for another uid (its `u<uid>/` prefix, or a
    /// provider of that uid held it moments ago).
    Reserved = 6,
    /// The request was malformed; the broker closes the connection.
    Malformed = 7,
    /// The fd passed with a lookup is not a Unix `SOCK_SEQPACKET` socket.
    BadSocket = 8,
    /// Unregister of a name this client does not hold.
    NotOwner = 9,
    /// The broker ran out of a resource of its own (its fd table was full
    /// when the request's fd arrived); retry later.
    Resources = 10,
}

impl Refusal {
    fn from_u16(c: u16) -> Result<Refusal, WireError> {
        Ok(match c {
            1 => Refusal::NotFound,
            2 => Refusal::NameTaken,
            3 => Refusal::Denied,
            4 => Refusal::TooManyNames,
            5 => Refusal::ProviderBusy,
            6 => Refusal::Reserved,
            7 => Refusal::Malformed,
            8 => Refusal::BadSocket,
            9 => Refusal::NotOwner,
            10 => Refusal::Resources,
            c => return Err(WireError::Code(c)),
        })
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Refusal::NotFound => "no live provider has this name",
            Refusal::NameTaken => "a live provider holds this name",
            Refusal::Denied => "the name's policy refuses this client",
            Refusal::TooManyNames => "too many names held by this client",
            Refusal::ProviderBusy => "the provider has too many introductions pending",
            Refusal::Reserved => "the name is reserved for another uid",
            Refusal::Malformed => "malformed request",
            Refusal::BadSocket => "the fd passed is not a Unix seqpacket socket",
            Refusal::NotOwner => "this client does not hold the name",
            Refusal::Resources => "the broker is out of resources; retry later",
        })
    }
}

/// A process's credentials as the broker saw them (`SO_PEERCRED`); pid 0
/// means unknown (another PID namespace).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    /// Process id, 0 if unknown.
    pub pid: u32,
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
}

/// One broker message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BrokerMsg {
    /// Client → broker: take `name` for this connection, with a lookup
    /// policy.
    Register {
        /// Echoed in the reply.
        tag: u32,
        /// The name.
        name: Name,
        /// Who may look it up.
        policy: LookupPolicy,
    },
    /// Client → broker: give `name` up.
    Unregister {
        /// Echoed in the reply.
        tag: u32,
        /// The name.
        name: Name,
    },
    /// Client → broker, with one fd (an end of a connected seqpacket socket
    /// pair): hand this fd to the provider of `name`.
    Lookup {
        /// Echoed in the reply.
        tag: u32,
        /// The name.
        name: Name,
    },
    /// Broker → client: the request with this tag succeeded (register,
    /// unregister).
    Done {
        /// The request's tag.
        tag: u32,
    },
    /// Broker → consumer: the fd went to this provider.
    Introduced {
        /// The lookup's tag.
        tag: u32,
        /// The provider's credentials.
        provider: Peer,
    },
    /// Broker → client: the request with this tag was refused.
    Refused {
        /// The request's tag.
        tag: u32,
        /// Why.
        code: Refusal,
    },
    /// Broker → provider, with one fd: a consumer looked `name` up.
    Incoming {
        /// The consumer's credentials (on the broker connection).
        consumer: Peer,
        /// The name looked up.
        name: Name,
    },
}

/// Kind bytes.
mod kind {
    pub const REGISTER: u8 = 0x01;
    pub const UNREGISTER: u8 = 0x02;
    pub const LOOKUP: u8 = 0x03;
    pub const DONE: u8 = 0x81;
    pub const INTRODUCED: u8 = 0x82;
    pub const REFUSED: u8 = 0x83;
    pub const INCOMING: u8 = 0x90;
}

fn put_u32(b: &mut Vec<u8>, v: u32) {
    b.extend_from_slice(&v.to_le_bytes());
}

fn put_name(b: &mut Vec<u8>, n: &Name) {
    // A `Name` is at most `MAX_NAME_LEN` (< 256) bytes.
    b.push(n.as_str().len() as u8);
    b.extend_from_slice(n.as_str().as_bytes());
}

/// A checked reader over one datagram.
struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.b.len());
        let Some(end) = end else {
            return Err(WireError::Short {
                len: self.b.len(),
                need: self.at.saturating_add(n),
            });
        };
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, WireError> {
        let s = self.take(2)?;
        Ok(u16::from_le_bytes([s[0], s[1]]))
    }
    fn u32(&mut self) -> Result<u32, WireError> {
        let s = self.take(4)?;
        Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }
    fn name(&mut self) -> Result<Name, WireError> {
        let len = usize::from(self.u8()?);
        let s = self.take(len)?;
        Name::from_bytes(s).map_err(WireError::Name)
    }
    fn peer(&mut self) -> Result<Peer, WireError> {
        Ok(Peer {
            pid: self.u32()?,
            uid: self.u32()?,
            gid: self.u32()?,
        })
    }
    fn end(&self) -> Result<(), WireError> {
        match self.b.len() - self.at {
            0 => Ok(()),
            n => Err(WireError::Trailing(n)),
        }
    }
}

impl BrokerMsg {
    /// Number of fds that travel with this kind of message.
    pub fn fds(&self) -> usize {
        match self {
            BrokerMsg::Lookup { .. } | BrokerMsg::Incoming { .. } => 1,
            _ => 0,
        }
    }

    /// The message's bytes (at most [`MAX_BROKER_MSG`]).
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(64);
        let (k, tag) = match self {
            BrokerMsg::Register { tag, .. } => (kind::REGISTER, *tag),
            BrokerMsg::Unregister { tag, .. } => (kind::UNREGISTER, *tag),
            BrokerMsg::Lookup { tag, .. } => (kind::LOOKUP, *tag),
            BrokerMsg::Done { tag } => (kind::DONE, *tag),
            BrokerMsg::Introduced { tag, .. } => (kind::INTRODUCED, *tag),
            BrokerMsg::Refused { tag, .. } => (kind::REFUSED, *tag),
            BrokerMsg::Incoming { .. } => (kind::INCOMING, 0),
        };
        b.extend_from_slice(&[BROKER_VERSION, k, 0, 0]);
        put_u32(&mut b, tag);
        match self {
            BrokerMsg::Register { name, policy, .. } => {
                let (pk, pv) = policy.encode();
                b.extend_from_slice(&[pk, 0, 0, 0]);
                put_u32(&mut b, pv);
                put_name(&mut b, name);
            }
            BrokerMsg::Unregister { name, .. } | BrokerMsg::Lookup { name, .. } => {
                put_name(&mut b, name)
            }
            BrokerMsg::Done { .. } => {}
            BrokerMsg::Introduced { provider, .. } => {
                for v in [provider.pid, provider.uid, provider.gid] {
                    put_u32(&mut b, v);
                }
            }
            BrokerMsg::Refused { code, .. } => {
                b.extend_from_slice(&(*code as u16).to_le_bytes());
            }
            BrokerMsg::Incoming { consumer, name } => {
                for v in [consumer.pid, consumer.uid, consumer.gid] {
                    put_u32(&mut b, v);
                }
                put_name(&mut b, name);
            }
        }
        b
    }

    /// Decodes one datagram. Every field is checked; nothing may follow
    /// the last field.
    ///
    /// # Errors
    /// [`WireError`] saying what is wrong.
    pub fn decode(b: &[u8]) -> Result<BrokerMsg, WireError> {
        if b.len() > MAX_BROKER_MSG {
            return Err(WireError::Oversized);
        }
        let mut r = Reader { b, at: 0 };
        let version = r.u8()?;
        if version != BROKER_VERSION {
            return Err(WireError::Version(version));
        }
        let k = r.u8()?;
        if r.u16()? != 0 {
            return Err(WireError::Reserved);
        }
        let tag = r.u32()?;
        let m = match k {
            kind::REGISTER => {
                let pk = r.u8()?;
                if r.take(3)? != [0, 0, 0] {
                    return Err(WireError::Reserved);
                }
                let pv = r.u32()?;
                let policy = LookupPolicy::decode(pk, pv)?;
                BrokerMsg::Register {
                    tag,
                    name: r.name()?,
                    policy,
                }
            }
            kind::UNREGISTER => BrokerMsg::Unregister {
                tag,
                name: r.name()?,
            },
            kind::LOOKUP => BrokerMsg::Lookup {
                tag,
                name: r.name()?,
            },
            kind::DONE => BrokerMsg::Done { tag },
            kind::INTRODUCED => BrokerMsg::Introduced {
                tag,
                provider: r.peer()?,
            },
            kind::REFUSED => BrokerMsg::Refused {
                tag,
                code: Refusal::from_u16(r.u16()?)?,
            },
            kind::INCOMING => {
                if tag != 0 {
                    return Err(WireError::Reserved);
                }
                BrokerMsg::Incoming {
                    consumer: r.peer()?,
                    name: r.name()?,
                }
            }
            k => return Err(WireError::Kind(k)),
        };
        r.end()?;
        Ok(m)
    }

    /// Whether a client may send this kind to the broker.
    pub fn is_request(&self) -> bool {
        matches!(
            self,
            BrokerMsg::Register { .. } | BrokerMsg::Unregister { .. } | BrokerMsg::Lookup { .. }
        )
    }

    /// The kind byte.
    pub fn kind_byte(&self) -> u8 {
        match self {
            BrokerMsg::Register { .. } => kind::REGISTER,
            BrokerMsg::Unregister { .. } => kind::UNREGISTER,
            BrokerMsg::Lookup { .. } => kind::LOOKUP,
            BrokerMsg::Done { .. } => kind::DONE,
            BrokerMsg::Introduced { .. } => kind::INTRODUCED,
            BrokerMsg::Refused { .. } => kind::REFUSED,
            BrokerMsg::Incoming { .. } => kind::INCOMING,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn name(s: &str) -> Name {
        Name::new(s).unwrap()
    }

    #[test]
    fn round_trips() {
        let p = Peer {
            pid: 7,
            uid: 1000,
            gid: 100,
        };
        let msgs = [
            BrokerMsg::Register {
                tag: 1,
                name: name("svc.a"),
                policy: LookupPolicy::Gid(5),
            },
            BrokerMsg::Unregister {
                tag: 2,
                name: name("x"),
            },
            BrokerMsg::Lookup {
                tag: 3,
                name: name("a/b-c_d"),
            },
            BrokerMsg::Done { tag: 4 },
            BrokerMsg::Introduced {
                tag: 5,
                provider: p,
            },
            BrokerMsg::Refused {
                tag: 6,
                code: Refusal::Denied,
            },
            BrokerMsg::Incoming {
                consumer: p,
                name: name("z"),
            },
        ];
        for m in msgs {
            let b = m.encode();
            assert!(b.len() <= MAX_BROKER_MSG);
            assert_eq!(BrokerMsg::decode(&b).unwrap(), m);
            // Every strict prefix is refused, and so is a trailing byte.
            for n in 0..b.len() {
                assert!(BrokerMsg::decode(&b[..n]).is_err(), "{m:?} prefix {n}");
            }
            let mut long = b.clone();
            long.push(0);
            assert_eq!(BrokerMsg::decode(&long), Err(WireError::Trailing(1)));
        }
    }

    #[test]
    fn register_bytes_are_as_documented() {
        let m = BrokerMsg::Register {
            tag: 0x0403_0201,
            name: name("ab"),
            policy: LookupPolicy::Uid(0x0a0b_0c0d),
        };
        assert_eq!(
            m.encode(),
            [1, 1, 0, 0, 1, 2, 3, 4, 2, 0, 0, 0, 0x0d, 0x0c, 0x0b, 0x0a, 2, b'a', b'b']
        );
    }

    #[test]
    fn garbage_refused() {
        assert_eq!(BrokerMsg::decode(&[2, 1, 0, 0]), Err(WireError::Version(2)));
        assert_eq!(
            BrokerMsg::decode(&[1, 0x55, 0, 0, 0, 0, 0, 0]),
            Err(WireError::Kind(0x55))
        );
        assert_eq!(
            BrokerMsg::decode(&[1, 3, 1, 0, 0, 0, 0, 0, 1, b'a']),
            Err(WireError::Reserved)
        );
        // A name length past the end.
        assert!(matches!(
            BrokerMsg::decode(&[1, 3, 0, 0, 0, 0, 0, 0, 200, b'a']),
            Err(WireError::Short { .. })
        ));
        // A bad name.
        assert!(matches!(
            BrokerMsg::decode(&[1, 3, 0, 0, 0, 0, 0, 0, 2, b'.', b'.']),
            Err(WireError::Name(_))
        ));
        assert_eq!(
            BrokerMsg::decode(&[0u8; MAX_BROKER_MSG + 1]),
            Err(WireError::Oversized)
        );
    }

    #[test]
    fn policy() {
        assert!(LookupPolicy::Any.allows(1, 2, 3));
        assert!(!LookupPolicy::SameUid.allows(1, 2, 3));
        assert!(LookupPolicy::SameUid.allows(1, 1, 3));
        assert!(LookupPolicy::Uid(2).allows(1, 2, 3));
        assert!(!LookupPolicy::Uid(2).allows(1, 4, 3));
        assert!(LookupPolicy::Gid(3).allows(1, 9, 3));
        assert!(!LookupPolicy::Gid(3).allows(1, 9, 4));
    }
}
