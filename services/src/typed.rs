//! Typed messages over request/response (optional features).
//!
//! A type implements [`Kind`] to give its message kind, a number carried in
//! the [`RpcHeader`](crate::wire::RpcHeader)'s `kind` field, so that a
//! server can tell requests apart before decoding them
//! ([`Request::is`](crate::rpc::Request::is)), as the original pattern's
//! typed messages do.
//!
//! - feature `serde`: any `Serialize`/`Deserialize` type, encoded with
//!   postcard (chosen by measurement against bincode: see
//!   `docs/services.md`). Decoding reads only the bytes received: a length
//!   inside the message cannot make it allocate more than the message holds.
//! - feature `pod`: plain-old-data types through `bytemuck`: the request is
//!   written straight into the ring (no encoding, no intermediate buffer);
//!   on receipt it is copied out once (the ring is memory the peer can
//!   write, so no reference into it is ever handed out) and its length must
//!   be exactly `size_of::<T>()`.
//!
//! # Example (`pod`)
//! ```no_run
//! # #[cfg(feature = "pod")]
//! # fn main() -> Result<(), shmsock_services::Error> {
//! use std::time::Duration;
//! use shmsock_services::rpc::{Client, Server};
//! use shmsock_services::typed::Kind;
//!
//! #[repr(C)]
//! #[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
//! struct Add { a: u64, b: u64 }
//! impl Kind for Add { const KIND: u32 = 1; }
//!
//! let server = Server::serve("/tmp/typed-doc.sock")?;
//! std::thread::spawn(move || server.run(|req| {
//!     let add: Add = req.pod().map_err(|e| e.to_string())?;
//!     Ok(shmsock_services::typed::pod_reply(&(add.a + add.b)))
//! }));
//! let mut client = Client::connect("/tmp/typed-doc.sock")?;
//! let sum: u64 = client.call_pod(&Add { a: 2, b: 3 }, Duration::from_secs(5))?;
//! assert_eq!(sum, 5);
//! # Ok(()) }
//! # #[cfg(not(feature = "pod"))]
//! # fn main() {}
//! ```

use crate::rpc::Request;
#[cfg(any(feature = "serde", feature = "pod"))]
use crate::{
    error::{Error, Result},
    rpc::Client,
};
#[cfg(any(feature = "serde", feature = "pod"))]
use std::time::Duration;

/// A typed message's kind, carried in the rpc header.
pub trait Kind {
    /// The kind number (the application's to allocate).
    const KIND: u32;
}

impl Request<'_> {
    /// Whether this request is of `T`'s kind.
    pub fn is<T: Kind>(&self) -> bool {
        self.kind == T::KIND
    }

    #[cfg(any(feature = "serde", feature = "pod"))]
    fn expect_kind<T: Kind>(&self) -> Result<()> {
        if self.kind != T::KIND {
            return Err(Error::Codec(format!(
                "message kind {} where {} was expected",
                self.kind,
                T::KIND
            )));
        }
        Ok(())
    }
}

#[cfg(feature = "serde")]
mod serde_impl {
    use super::*;
    use serde::de::DeserializeOwned;
    use serde::Serialize;

    /// Encodes `v` with postcard.
    ///
    /// # Errors
    /// [`Error::Codec`] if serde refuses the value.
    pub fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>> {
        postcard::to_allocvec(v).map_err(|e| Error::Codec(e.to_string()))
    }

    /// Decodes a postcard message; every byte must be used.
    ///
    /// # Errors
    /// [`Error::Codec`] for malformed input or trailing bytes.
    pub fn decode<T: DeserializeOwned>(b: &[u8]) -> Result<T> {
        let (v, rest) = postcard::take_from_bytes(b).map_err(|e| Error::Codec(e.to_string()))?;
        if !rest.is_empty() {
            return Err(Error::Codec(format!("{} trailing bytes", rest.len())));
        }
        Ok(v)
    }

    /// A handler's reply: `v` encoded, or the encoding error as the error
    /// reply.
    ///
    /// # Errors
    /// The encoding error's text.
    pub fn serde_reply<T: Serialize>(v: &T) -> std::result::Result<Vec<u8>, String> {
        encode(v).map_err(|e| e.to_string())
    }

    impl Request<'_> {
        /// Decodes the body as `T`, checking that the kind is `T::KIND`.
        ///
        /// # Errors
        /// [`Error::Codec`] for another kind or a malformed body.
        pub fn decode<T: DeserializeOwned + Kind>(&self) -> Result<T> {
            self.expect_kind::<T>()?;
            decode(self.body)
        }
    }

    impl Client {
        /// Sends `req` (kind `Req::KIND`), waits for the reply and decodes it.
        ///
        /// # Errors
        /// As [`Client::call`]; [`Error::Codec`].
        pub fn call_serde<Req, Resp>(&mut self, req: &Req, timeout: Duration) -> Result<Resp>
        where
            Req: Serialize + Kind,
            Resp: DeserializeOwned,
        {
            let body = encode(req)?;
            let r = self.call(Req::KIND, &body, timeout)?;
            decode(&r)
        }
    }
}
#[cfg(feature = "serde")]
pub use serde_impl::{decode, encode, serde_reply};

#[cfg(feature = "pod")]
mod pod_impl {
    use super::*;
    use bytemuck::Pod;

    fn read<T: Pod>(b: &[u8]) -> Result<T> {
        if b.len() != std::mem::size_of::<T>() {
            return Err(Error::Codec(format!(
                "{} bytes where a {}-byte value was expected",
                b.len(),
                std::mem::size_of::<T>()
            )));
        }
        // A copy out of the received bytes: no alignment needed.
        Ok(bytemuck::pod_read_unaligned(b))
    }

    /// A handler's reply holding `v`'s bytes.
    pub fn pod_reply<T: Pod>(v: &T) -> Vec<u8> {
        bytemuck::bytes_of(v).to_vec()
    }

    impl Request<'_> {
        /// The body as a `T`, checking the kind and the exact length.
        ///
        /// # Errors
        /// [`Error::Codec`] for another kind or another length.
        pub fn pod<T: Pod + Kind>(&self) -> Result<T> {
            self.expect_kind::<T>()?;
            read(self.body)
        }
    }

    impl Client {
        /// Writes `req` straight into the ring (kind `Req::KIND`), waits for
        /// the reply and reads it as a `Resp`.
        ///
        /// # Errors
        /// As [`Client::send_request_with`] and [`Client::wait`];
        /// [`Error::Codec`] if the reply's length is not `Resp`'s size.
        pub fn call_pod<Req, Resp>(&mut self, req: &Req, timeout: Duration) -> Result<Resp>
        where
            Req: Pod + Kind,
            Resp: Pod,
        {
            let bytes = bytemuck::bytes_of(req);
            let id =
                self.send_request_with(Req::KIND, bytes.len(), |b| b.copy_from_slice(bytes))?;
            let r = self.wait(id, timeout)?;
            read(&r)
        }
    }
}
#[cfg(feature = "pod")]
pub use pod_impl::pod_reply;
