//! The request/response header in front of every rpc message on a shmsock
//! connection (see `docs/services.md`, "Request/response").

use super::WireError;

/// Size of the request/response header.
pub const RPC_HEADER: usize = 16;

/// Flag bits of the rpc header.
pub mod rpc_flags {
    /// Set on replies; clear on requests.
    pub const REPLY: u16 = 1;
    /// On a reply: the body is a UTF-8 error text, not a result.
    pub const ERROR: u16 = 2;
    /// On a request: no reply is wanted.
    pub const ONEWAY: u16 = 4;
    /// Every defined bit.
    pub const ALL: u16 = REPLY | ERROR | ONEWAY;
}

/// The header in front of every request/response message.
///
/// | offset | size | field |
/// | --- | --- | --- |
/// | 0 | 8 | request id (chosen by the client, echoed in the reply) |
/// | 8 | 4 | message kind (the application's; typed messages put their `KIND` here) |
/// | 12 | 2 | flags ([`rpc_flags`]) |
/// | 14 | 2 | reserved, zero |
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RpcHeader {
    /// Request id.
    pub id: u64,
    /// Message kind.
    pub kind: u32,
    /// Flags.
    pub flags: u16,
}

impl RpcHeader {
    /// The header's bytes.
    pub fn encode(&self) -> [u8; RPC_HEADER] {
        let mut b = [0u8; RPC_HEADER];
        b[0..8].copy_from_slice(&self.id.to_le_bytes());
        b[8..12].copy_from_slice(&self.kind.to_le_bytes());
        b[12..14].copy_from_slice(&self.flags.to_le_bytes());
        b
    }

    /// Splits a message into its header and body.
    ///
    /// # Errors
    /// [`WireError::Short`], [`WireError::Flags`] for unknown flag bits or
    /// `ERROR` on a request, [`WireError::Reserved`].
    pub fn decode(msg: &[u8]) -> Result<(RpcHeader, &[u8]), WireError> {
        let Some((h, body)) = msg.split_first_chunk::<RPC_HEADER>() else {
            return Err(WireError::Short {
                len: msg.len(),
                need: RPC_HEADER,
            });
        };
        let mut id = [0u8; 8];
        id.copy_from_slice(&h[0..8]);
        let kind = u32::from_le_bytes([h[8], h[9], h[10], h[11]]);
        let flags = u16::from_le_bytes([h[12], h[13]]);
        if h[14] != 0 || h[15] != 0 {
            return Err(WireError::Reserved);
        }
        let is_reply = flags & rpc_flags::REPLY != 0;
        let bad = flags & !rpc_flags::ALL != 0
            || (!is_reply && flags & rpc_flags::ERROR != 0)
            || (is_reply && flags & rpc_flags::ONEWAY != 0);
        if bad {
            return Err(WireError::Flags(flags));
        }
        Ok((
            RpcHeader {
                id: u64::from_le_bytes(id),
                kind,
                flags,
            },
            body,
        ))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn rpc_header() {
        let h = RpcHeader {
            id: 0x0102_0304_0506_0708,
            kind: 9,
            flags: rpc_flags::REPLY | rpc_flags::ERROR,
        };
        let mut b = h.encode().to_vec();
        b.extend_from_slice(b"body");
        assert_eq!(RpcHeader::decode(&b).unwrap(), (h, &b"body"[..]));
        assert!(RpcHeader::decode(&b[..15]).is_err());
        b[14] = 1;
        assert_eq!(RpcHeader::decode(&b), Err(WireError::Reserved));
        let bad = RpcHeader {
            flags: rpc_flags::ERROR,
            ..h
        };
        assert_eq!(
            RpcHeader::decode(&bad.encode()),
            Err(WireError::Flags(rpc_flags::ERROR))
        );
        let bad = RpcHeader { flags: 0x80, ..h };
        assert_eq!(
            RpcHeader::decode(&bad.encode()),
            Err(WireError::Flags(0x80))
        );
    }
}
