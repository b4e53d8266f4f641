//! Claiming a filesystem path for a listening Unix socket, shared by
//! [`crate::Listener`] and the service broker (`shmsock-services`), so that
//! both treat an existing file at their path alike:
//!
//! 1. before `bind`, [`claim`]: a socket file nobody listens on (a stale
//!    one, left by a process that died) is removed; a live one
//!    ([`is_live_socket`]) is refused with `AddrInUse`; a file that is not a
//!    socket is never removed (`AlreadyExists`);
//! 2. after `bind` and before `listen`, [`own`]: the file gets its mode
//!    (nobody can connect before `listen`, so the mode is in place before
//!    the first client can reach it) and its identity (device, inode) is
//!    recorded in a [`SocketFile`];
//! 3. the [`SocketFile`] removes the file when dropped, only if it is still
//!    the same file (not replaced by another process meanwhile).
//!
//! Abstract names (`@name`) have no file: [`claim`] and [`own`] do nothing
//! for them.
//!
//! Public for `shmsock-services`, not part of the supported API.

use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use rustix::fs::Mode;
use rustix::io::Errno;
use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};

/// What failed while claiming or setting up a socket path: the operation,
/// the path (if the operation names one) and the operating system's error.
/// Each crate turns it into its own `Error::Io`.
#[derive(Debug)]
pub struct PathError {
    /// The operation.
    pub op: &'static str,
    /// The socket path involved, if any.
    pub path: Option<PathBuf>,
    /// The operating system's error.
    pub source: io::Error,
}

impl PathError {
    fn at(op: &'static str, path: &Path, source: impl Into<io::Error>) -> Self {
        PathError {
            op,
            path: Some(path.to_owned()),
            source: source.into(),
        }
    }
}

/// Whether `path` names an abstract socket (`@name`).
pub fn is_abstract(path: &Path) -> bool {
    path.as_os_str().as_encoded_bytes().starts_with(b"@")
}

/// The socket address of `path`: `@name` is the abstract name `name`,
/// anything else a filesystem path.
///
/// # Errors
/// If the path is too long for a socket address.
pub fn socket_addr(path: &Path) -> Result<SocketAddrUnix, PathError> {
    use std::os::unix::ffi::OsStrExt;
    let bytes = path.as_os_str().as_bytes();
    let r = match bytes.strip_prefix(b"@") {
        Some(name) => SocketAddrUnix::new_abstract_name(name),
        None => SocketAddrUnix::new(path),
    };
    r.map_err(|e| PathError::at("socket address", path, e))
}

/// Whether a process listens on the socket file at `path`. The probe is
/// non-blocking: a blocking `connect` to a listener whose accept backlog is
/// full (a server that is stopped or hung) sleeps until it accepts, with
/// no bound; a full backlog (`EAGAIN`) means someone listens there.
///
/// # Errors
/// If the probe socket cannot be made, or `connect` fails for another
/// reason than nobody listening.
pub fn is_live_socket(path: &Path) -> Result<bool, PathError> {
    let addr = socket_addr(path)?;
    let probe = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
        None,
    )
    .map_err(|e| PathError {
        op: "socket",
        path: None,
        source: e.into(),
    })?;
    loop {
        return match rustix::net::connect(&probe, &addr) {
            // Someone is listening (our probe is dropped at once; the
            // server sees a client that hangs up before its handshake), or
            // listens with its backlog full.
            Ok(()) | Err(Errno::AGAIN) => Ok(true),
            Err(Errno::INTR) => continue,
            Err(Errno::CONNREFUSED) | Err(Errno::NOENT) => Ok(false),
            Err(e) => Err(PathError::at("connect (probing existing socket)", path, e)),
        };
    }
}

/// Makes `path` free for `bind`: removes a stale socket file there; does
/// nothing for an abstract name or a free path.
///
/// # Errors
/// `AddrInUse` with the operation `live_op` if a process listens on the
/// socket file (such as "bind (a live listener owns this socket)");
/// `AlreadyExists` if the path exists and is not a socket; the failure of
/// `lstat`, of the probe or of `unlink`.
pub fn claim(path: &Path, live_op: &'static str) -> Result<(), PathError> {
    if is_abstract(path) {
        return Ok(());
    }
    match rustix::fs::lstat(path) {
        Ok(st)
            if rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Socket =>
        {
            if is_live_socket(path)? {
                return Err(PathError::at(
                    live_op,
                    path,
                    io::Error::from(io::ErrorKind::AddrInUse),
                ));
            }
            rustix::fs::unlink(path).map_err(|e| PathError::at("unlink stale socket", path, e))
        }
        Ok(_) => Err(PathError::at(
            "bind (path exists and is not a socket)",
            path,
            io::Error::from(io::ErrorKind::AlreadyExists),
        )),
        Err(Errno::NOENT) => Ok(()),
        Err(e) => Err(PathError::at("lstat", path, e)),
    }
}

/// After `bind`, before `listen`: gives the socket file at `path` the
/// permission bits `mode` and records its identity. `None` for an abstract
/// name. On failure the file just bound is removed.
///
/// The mode is set on the file the path names, never on what a symbolic
/// link there points to: another user who can write to the directory could
/// replace the socket with a link to a file of ours between `bind` and
/// this call, and a `chmod` of the path would then change that file's
/// mode. So the path is opened with `O_PATH | O_NOFOLLOW`, the open file
/// must be a socket owned by our effective user, and the mode is set
/// through `/proc/self/fd` (on that file, whatever the path names by
/// then). Without `/proc` this fails rather than follow the path.
///
/// # Errors
/// The failure of `open`, `fstat` or `chmod` (with the operation), or
/// `AlreadyExists` if the path no longer names a socket of ours.
pub fn own(path: &Path, mode: u32) -> Result<Option<SocketFile>, PathError> {
    if is_abstract(path) {
        return Ok(None);
    }
    let owned = own_file(path, mode);
    if owned.is_err() {
        // Best effort: the error to report is the one above. This removes
        // whatever the path names (a socket, or a link put in its place),
        // never a link's target.
        let _ = rustix::fs::unlink(path);
    }
    owned.map(Some)
}

/// [`own`] for a filesystem path.
fn own_file(path: &Path, mode: u32) -> Result<SocketFile, PathError> {
    use rustix::fs::{FileType, OFlags};
    let fd = rustix::fs::open(
        path,
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| PathError::at("open (O_PATH, to chmod the socket file)", path, e))?;
    let st = rustix::fs::fstat(&fd).map_err(|e| PathError::at("fstat", path, e))?;
    if FileType::from_raw_mode(st.st_mode) != FileType::Socket
        || st.st_uid != rustix::process::geteuid().as_raw()
    {
        return Err(PathError::at(
            "chmod (the path no longer names the socket just bound)",
            path,
            io::Error::from(io::ErrorKind::AlreadyExists),
        ));
    }
    // `fchmod` does not take an `O_PATH` descriptor; its `/proc` link does,
    // and names the open file itself, not the path.
    let link = format!("/proc/self/fd/{}", fd.as_raw_fd());
    rustix::fs::chmod(link.as_str(), Mode::from_raw_mode(mode))
        .map_err(|e| PathError::at("chmod (through /proc/self/fd)", path, e))?;
    Ok(SocketFile {
        path: path.to_owned(),
        dev: st.st_dev,
        ino: st.st_ino,
    })
}

/// A socket file this process bound; removed on drop if the path still
/// names the same file (device and inode), so that a listener never
/// removes the socket of another that took the path over.
#[derive(Debug)]
pub struct SocketFile {
    path: PathBuf,
    dev: u64,
    ino: u64,
}

impl SocketFile {
    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        // Only remove the file if it is still ours (not replaced).
        if let Ok(st) = rustix::fs::lstat(&self.path) {
            if st.st_dev == self.dev && st.st_ino == self.ino {
                // Best effort: nothing to do about a failure in drop.
                let _ = rustix::fs::unlink(&self.path);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, PermissionsExt};

    /// A fresh directory of this test's own, removed on drop.
    struct Dir(PathBuf);

    impl Dir {
        fn new(name: &str) -> Dir {
            let d = std::env::temp_dir()
                .join(format!("shmsock-socket-path-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&d);
            std::fs::create_dir(&d).unwrap();
            Dir(d)
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn mode(p: &Path) -> u32 {
        std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn own_sets_the_mode_of_the_socket_and_removes_it_on_drop() {
        let d = Dir::new("own");
        let path = d.0.join("s");
        let _l = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let file = own(&path, 0o640).unwrap().expect("a file");
        assert_eq!(mode(&path), 0o640);
        drop(file);
        assert!(!path.exists());
    }

    #[test]
    fn own_never_changes_the_mode_of_what_a_link_points_to() {
        // Another user who can write to the directory replaced the socket
        // with a link to a private file of ours between `bind` and `own`.
        // A `chmod` of the path made that file world-writable.
        let d = Dir::new("link");
        let secret = d.0.join("secret");
        std::fs::write(&secret, b"key").unwrap();
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
        let path = d.0.join("s");
        symlink(&secret, &path).unwrap();
        let err = own(&path, 0o666).unwrap_err();
        assert_eq!(mode(&secret), 0o600, "the link's target kept its mode");
        assert_eq!(err.source.kind(), io::ErrorKind::AlreadyExists, "{err:?}");
        assert!(secret.exists(), "only the link was removed");
        assert!(std::fs::symlink_metadata(&path).is_err());
    }

    #[test]
    fn own_refuses_a_path_that_is_no_longer_a_socket() {
        let d = Dir::new("file");
        let path = d.0.join("s");
        std::fs::write(&path, b"").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let err = own(&path, 0o666).unwrap_err();
        assert_eq!(err.source.kind(), io::ErrorKind::AlreadyExists, "{err:?}");
    }
}
