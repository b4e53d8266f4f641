//! placeholder
pub use shmsock_shm as shm;
