//! Sealed memfd segments: create, map, seal; attach to a received fd after
//! checking that it is a memfd with the seals and the size agreed on.
//!
//! Every shared byte has one writer, enforced by the kernel: a segment we
//! create is mapped read-write by us and then sealed with
//! `F_SEAL_FUTURE_WRITE` before its fd leaves this process, so the peer can
//! only map it read-only; we map the peer's segment `PROT_READ`.
//!
//! A mapping of a file that can shrink is a SIGBUS waiting to happen: the peer
//! truncates, we touch a page past the new end and die. So nothing is mapped
//! here unless `F_SEAL_SHRINK` is already set on the fd, and `F_SEAL_SEAL`
//! guarantees no seal can be removed (seals can never be removed anyway) or
//! added later by the peer to break our assumptions.
//!
//! This module contains no `unsafe`: memmap2's [`MmapRaw`] maps without
//! handing out references, and nix wraps the fd calls.

use std::ffi::CStr;
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use memmap2::{MmapOptions, MmapRaw};
use nix::fcntl::{fallocate, fcntl, FallocateFlags, FcntlArg};
use nix::sys::memfd::{memfd_create, MFdFlags};
use nix::sys::stat::{fstat, SFlag};

use crate::error::{Error, Result};
use crate::seals::Seals;

/// Seals every shmsock segment carries: the size can never change, and no
/// seal can be added or removed.
pub const REQUIRED_SEALS: Seals = Seals::SHRINK.union(Seals::GROW).union(Seals::SEAL);

/// Seals of a frozen (immutable) segment: [`REQUIRED_SEALS`] plus `F_SEAL_WRITE`.
pub const FROZEN_SEALS: Seals = REQUIRED_SEALS.union(Seals::WRITE);

/// Seals of a ring segment made by [`Segment::create`]: [`REQUIRED_SEALS`]
/// plus `F_SEAL_FUTURE_WRITE`, added after the creator mapped it
/// read-write. No new writable mapping, `write(2)` or hole punch is
/// possible afterwards; the creator's own mapping stays writable, so the
/// creator is the only writer.
pub const RING_SEALS: Seals = REQUIRED_SEALS.union(Seals::FUTURE_WRITE);

/// Either of these seals makes a received segment read-only for everyone
/// but (for `F_SEAL_FUTURE_WRITE`) its creator.
const WRITE_SEALS: Seals = Seals::WRITE.union(Seals::FUTURE_WRITE);

/// Options for creating a segment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SegmentOptions {
    /// Back the segment with huge pages (`MFD_HUGETLB`). The size must then be
    /// a multiple of the huge page size, and the kernel must have huge pages
    /// reserved (`/proc/sys/vm/nr_hugepages`); creation fails otherwise.
    pub huge_pages: bool,
    /// Pre-fault the pages of the mapping (`MAP_POPULATE`).
    pub populate: bool,
}

/// A shared memory segment backed by a sealed memfd: read-write for its
/// creator ([`Segment::create`]), read-only for a peer that received it
/// ([`Segment::attach_read_only`]).
///
/// The mapping lives as long as the value; dropping it unmaps and closes the
/// fd. Only raw pointers to the memory are handed out: in a peer's segment
/// the peer can write any byte at any time, so no Rust reference may be
/// formed over it.
#[derive(Debug)]
pub struct Segment {
    map: MmapRaw,
    fd: OwnedFd,
    len: usize,
    writable: bool,
}

fn check_len(len: u64) -> Result<usize> {
    // `off_t` is i64: anything above i64::MAX cannot be a file size.
    if len == 0 || len > i64::MAX as u64 {
        return Err(Error::TooLarge {
            size: len,
            max: i64::MAX as u64,
        });
    }
    usize::try_from(len).map_err(|_| Error::TooLarge {
        size: len,
        max: usize::MAX as u64,
    })
}

fn new_memfd(name: &CStr, huge_pages: bool) -> Result<OwnedFd> {
    let mut flags = MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING;
    if huge_pages {
        flags |= MFdFlags::MFD_HUGETLB;
    }
    memfd_create(name, flags).map_err(|e| Error::io("memfd_create", e))
}

fn add_seals(fd: BorrowedFd<'_>, seals: Seals) -> Result<()> {
    fcntl(fd, FcntlArg::F_ADD_SEALS(seals.to_nix()))
        .map(drop)
        .map_err(|e| Error::io("fcntl(F_ADD_SEALS)", e))
}

/// Adds `seals`, retrying `EBUSY` (a transient page pin, or a writable
/// mapping being torn down) with a short backoff: 1, 4, 16, 64 ms.
fn add_seals_retrying(fd: BorrowedFd<'_>, seals: Seals) -> Result<()> {
    let mut backoff_ms = 1;
    loop {
        match fcntl(fd, FcntlArg::F_ADD_SEALS(seals.to_nix())) {
            Ok(_) => return Ok(()),
            Err(nix::errno::Errno::EINTR) => {}
            Err(nix::errno::Errno::EBUSY) if backoff_ms <= 64 => {
                std::thread::sleep(std::time::Duration::from_millis(backoff_ms));
                backoff_ms *= 4;
            }
            Err(e) => return Err(Error::io("fcntl(F_ADD_SEALS)", e)),
        }
    }
}

/// Reads the seals of `fd`. A file that does not support sealing (pipe,
/// socket, disk file, memfd without `MFD_ALLOW_SEALING` reports only
/// `F_SEAL_SEAL`) gives [`Error::NotMemfd`].
pub fn seals_of(fd: BorrowedFd<'_>) -> Result<Seals> {
    let bits = fcntl(fd, FcntlArg::F_GET_SEALS).map_err(|e| Error::NotMemfd(e.into()))?;
    Ok(Seals::from_bits(bits as u32))
}

/// Checks that `fd` is a regular shared-memory file with at least `need`
/// seals and exactly `expected` bytes, which must not exceed `max`, all of
/// them backed by allocated memory.
///
/// Order matters: the seals are read first, and only once `F_SEAL_SHRINK`
/// and `F_SEAL_GROW` are known to be set is the size read. A peer can
/// shrink or seal an unsealed file at any instant; read the other way
/// round, it could shrink and seal the file between our `fstat` and our
/// `F_GET_SEALS`, and we would map past EOF (SIGBUS on the first touch).
/// Seals can only be added, never removed, so once seen they hold, and the
/// size read after them is the size for good.
///
/// `one_of`, if not empty, is a set of seals at least one of which must be
/// present too (the write seals of a read-only attach).
fn check_fd(
    fd: BorrowedFd<'_>,
    need: Seals,
    one_of: Seals,
    expected: u64,
    max: u64,
) -> Result<usize> {
    // First read: the seals. A pipe or socket fails here (NotMemfd).
    let seals = seals_of(fd)?;
    #[cfg(test)]
    tests::between_checks(fd);
    if !seals.contains(need) || !(one_of.is_empty() || seals.intersects(one_of)) {
        return Err(Error::MissingSeals {
            have: seals.bits(),
            need: need.union(one_of).bits(),
        });
    }
    // Second read: type and size, stable now that SHRINK|GROW are set.
    let st = fstat(fd).map_err(|e| Error::io("fstat", e))?;
    if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFREG {
        return Err(Error::NotMemfd(std::io::Error::other(
            "fd is not a regular file (pipe, socket or device)",
        )));
    }
    // st_size is i64; a negative size cannot happen for a memfd, treat it as
    // a wrong size rather than wrapping.
    let actual = u64::try_from(st.st_size).unwrap_or(u64::MAX);
    if expected > max {
        return Err(Error::TooLarge {
            size: expected,
            max,
        });
    }
    if actual != expected {
        return Err(Error::WrongSize { expected, actual });
    }
    // Backing, from the same `fstat`: tmpfs and hugetlbfs count `st_blocks`
    // in 512-byte units whatever the block size. With a write seal
    // (F_SEAL_WRITE for a frozen file, F_SEAL_FUTURE_WRITE for a ring, one
    // of which `Segment::attach_read_only` and `FrozenSegment::attach`
    // require) this is final: both make the kernel refuse
    // `fallocate(FALLOC_FL_PUNCH_HOLE)` (EPERM), and seals are never
    // removed, so the pages counted here stay allocated. Only the plain
    // read-write `Segment::attach` (no write seal) checks a state the
    // sender can still change.
    let allocated = u64::try_from(st.st_blocks).unwrap_or(0).saturating_mul(512);
    if allocated < actual {
        return Err(Error::NotFullyBacked {
            size: actual,
            allocated,
        });
    }
    check_len(actual)
}

impl Segment {
    /// Creates a memfd of `len` bytes named `name` (the name shows in
    /// `/proc/<pid>/fd`), allocates all of its memory (`fallocate`), maps it
    /// read-write, then seals it with [`RING_SEALS`]: its size, and every
    /// future write, so that this mapping is the only writable one there
    /// will ever be (a peer that receives the fd can map it read-only
    /// only).
    ///
    /// # Errors
    /// [`Error::Io`] if a system call fails (e.g. no huge pages reserved, or
    /// not enough memory to back the segment),
    /// [`Error::TooLarge`] for a zero or absurd length.
    pub fn create(name: &CStr, len: u64, opts: SegmentOptions) -> Result<Self> {
        let len = check_len(len)?;
        let fd = new_memfd(name, opts.huge_pages)?;
        nix::unistd::ftruncate(&fd, len as i64).map_err(|e| Error::io("ftruncate", e))?;
        // Allocate every page now: a peer refuses a sparse segment (see
        // `check_fd`), and we pay for our own memory up front.
        fallocate(&fd, FallocateFlags::empty(), 0, len as libc::off_t)
            .map_err(|e| Error::io("fallocate", e))?;
        // Map read-write first: F_SEAL_FUTURE_WRITE refuses every writable
        // mapping made after it, but leaves this one writable. The fd has
        // not left this function yet, so nobody else can map it meanwhile.
        let seg = Self::map(fd, len, opts.populate, true)?;
        add_seals(seg.fd.as_fd(), RING_SEALS)?;
        Ok(seg)
    }

    /// Maps a memfd shared on purpose read-write (not a ring segment: those
    /// carry `F_SEAL_FUTURE_WRITE` and are attached with
    /// [`Segment::attach_read_only`]), after checking that it carries
    /// [`REQUIRED_SEALS`], that its size is exactly `expected` and at most
    /// `max` bytes, and that its memory is all allocated. On any error `fd`
    /// is closed.
    ///
    /// The backing check holds at attach time only: the file is not
    /// write-sealed, so the sender may still punch holes into it later (we
    /// would then allocate those pages again when we touch them).
    ///
    /// # Errors
    /// [`Error::NotMemfd`], [`Error::MissingSeals`], [`Error::WrongSize`],
    /// [`Error::TooLarge`], [`Error::NotFullyBacked`], or [`Error::Io`] if
    /// `mmap` fails.
    pub fn attach(fd: OwnedFd, expected: u64, max: u64) -> Result<Self> {
        let len = check_fd(fd.as_fd(), REQUIRED_SEALS, Seals::EMPTY, expected, max)?;
        Self::map(fd, len, false, true)
    }

    /// Maps a ring segment received from a peer read-only (`PROT_READ`),
    /// after checking that it is a memfd carrying [`REQUIRED_SEALS`] and
    /// `F_SEAL_FUTURE_WRITE` or `F_SEAL_WRITE` (so that no process but its
    /// creator can write it, and nobody can punch holes into it), whose
    /// size is exactly `expected` and at most `max` bytes, and whose memory
    /// is all allocated (final, given the write seal). On any error `fd` is
    /// closed.
    ///
    /// # Errors
    /// As [`Segment::attach`].
    pub fn attach_read_only(fd: OwnedFd, expected: u64, max: u64) -> Result<Self> {
        Self::attach_read_only_with(fd, expected, max, false)
    }

    /// [`Segment::attach_read_only`], pre-faulting the mapping's page
    /// tables (`MAP_POPULATE`) if `populate` is set: the first reads of the
    /// peer's data then take no page faults. The checks come first, so a
    /// refused fd is never mapped; the memory is all allocated already
    /// (checked), so populating it allocates nothing.
    ///
    /// # Errors
    /// As [`Segment::attach`].
    pub fn attach_read_only_with(
        fd: OwnedFd,
        expected: u64,
        max: u64,
        populate: bool,
    ) -> Result<Self> {
        let len = check_fd(fd.as_fd(), REQUIRED_SEALS, WRITE_SEALS, expected, max)?;
        Self::map(fd, len, populate, false)
    }

    fn map(fd: OwnedFd, len: usize, populate: bool, writable: bool) -> Result<Self> {
        let mut opts = MmapOptions::new();
        opts.len(len);
        if populate {
            opts.populate();
        }
        let map = if writable {
            opts.map_raw(&fd)
        } else {
            opts.map_raw_read_only(&fd)
        }
        .map_err(|e| Error::io("mmap", e))?;
        Ok(Segment {
            map,
            fd,
            len,
            writable,
        })
    }

    /// Whether this process mapped the segment writable (it created it).
    pub fn is_writable(&self) -> bool {
        self.writable
    }

    /// Start of the mapping. Valid for reads of `len()` bytes while `self`
    /// lives, and for writes only if [`Segment::is_writable`].
    pub fn as_ptr(&self) -> *mut u8 {
        self.map.as_mut_ptr()
    }

    /// Length of the mapping in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: a segment has at least one byte.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The memfd, to pass to the peer.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// An immutable segment: a memfd sealed with `F_SEAL_WRITE`, mapped
/// read-only. Because the kernel guarantees that nobody — not the peer, not
/// us — can modify the bytes any more, handing out `&[u8]` over it is sound.
#[derive(Debug)]
pub struct FrozenSegment {
    map: Option<MmapRaw>,
    fd: OwnedFd,
    len: usize,
}

impl FrozenSegment {
    /// Writes `data` into a new memfd with `write(2)` (no mapping on the
    /// writer side, so `F_SEAL_WRITE` cannot fail with `EBUSY`), then seals
    /// it with [`FROZEN_SEALS`]. The returned fd is ready to pass to a peer.
    ///
    /// # Errors
    /// [`Error::Io`] if a system call fails; [`Error::TooLarge`] for empty data.
    pub fn freeze(name: &CStr, data: &[u8]) -> Result<OwnedFd> {
        check_len(data.len() as u64)?;
        // `F_SEAL_WRITE` can fail with EBUSY while the kernel still sees an
        // extra reference on a page of the new file (it waits ~150 ms for
        // such pins itself). Seen once in the benchmark's 16 MiB runs;
        // retried with backoff, and as a last resort the data goes into a
        // fresh memfd.
        let mut last = None;
        for _ in 0..2 {
            let fd = new_memfd(name, false)?;
            let mut file = File::from(fd);
            file.write_all(data)
                .map_err(|e| Error::io("write(memfd)", e))?;
            let fd = OwnedFd::from(file);
            match add_seals_retrying(fd.as_fd(), FROZEN_SEALS) {
                Ok(()) => return Ok(fd),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or(Error::TooLarge { size: 0, max: 0 }))
    }

    /// Checks a received fd (memfd, [`FROZEN_SEALS`], exactly `expected`
    /// bytes, at most `max`, fully allocated) and maps it read-only. On
    /// error `fd` is closed. The backing check is final here: holes cannot
    /// be punched into a write-sealed file.
    ///
    /// # Errors
    /// As [`Segment::attach`].
    pub fn attach(fd: OwnedFd, expected: u64, max: u64) -> Result<Self> {
        let len = check_fd(fd.as_fd(), FROZEN_SEALS, Seals::EMPTY, expected, max)?;
        let map = MmapOptions::new()
            .len(len)
            .populate()
            .map_raw_read_only(&fd)
            .map_err(|e| Error::io("mmap", e))?;
        Ok(FrozenSegment {
            map: Some(map),
            fd,
            len,
        })
    }

    /// The bytes. Sound because the fd carries `F_SEAL_WRITE` (checked in
    /// [`FrozenSegment::attach`]): no process can change them while we read.
    pub fn as_slice(&self) -> &[u8] {
        match &self.map {
            // SAFETY: the mapping is `len` readable bytes (checked size, sealed
            // against shrinking) that stay mapped while `self` lives; the
            // memfd carries F_SEAL_WRITE, so no writable mapping or write(2)
            // can exist, which makes a shared reference valid.
            Some(map) => unsafe { std::slice::from_raw_parts(map.as_ptr(), self.len) },
            None => &[],
        }
    }

    /// The fd (for re-sending, or for `fstat`).
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Seek;

    fn name() -> &'static CStr {
        c"shmsock-test"
    }

    type Hook = fn(BorrowedFd<'_>);

    thread_local! {
        /// Run by `check_fd` between its first and its second read of the
        /// fd, to play a peer that changes the file in that window.
        static BETWEEN_CHECKS: std::cell::Cell<Option<Hook>> = const { std::cell::Cell::new(None) };
    }

    pub(super) fn between_checks(fd: BorrowedFd<'_>) {
        if let Some(hook) = BETWEEN_CHECKS.with(|h| h.get()) {
            hook(fd);
        }
    }

    /// Runs `f` with `hook` installed for this thread.
    fn with_hook<T>(hook: Hook, f: impl FnOnce() -> T) -> T {
        BETWEEN_CHECKS.with(|h| h.set(Some(hook)));
        let r = f();
        BETWEEN_CHECKS.with(|h| h.set(None));
        r
    }

    fn size_of_file(fd: BorrowedFd<'_>) -> i64 {
        fstat(fd).unwrap().st_size
    }

    /// Regression (SIGBUS): `check_fd` read the size before the seals. A
    /// peer that sends an unsealed memfd of the right size and then shrinks
    /// and seals it between the two reads got it mapped past EOF; the first
    /// touch killed us with SIGBUS. The hook plays that peer
    /// deterministically. The mapping is never touched: on the old code the
    /// test fails on the assertion, not by crashing.
    #[test]
    fn attach_rejects_memfd_shrunk_and_sealed_between_checks() {
        fn shrink_and_seal(fd: BorrowedFd<'_>) {
            nix::unistd::ftruncate(fd, 0).unwrap();
            add_seals(fd, REQUIRED_SEALS).unwrap();
        }
        fn shrink_and_freeze(fd: BorrowedFd<'_>) {
            nix::unistd::ftruncate(fd, 0).unwrap();
            add_seals(fd, FROZEN_SEALS).unwrap();
        }
        for frozen in [false, true] {
            let fd = memfd_create(c"race", MFdFlags::MFD_ALLOW_SEALING).unwrap();
            nix::unistd::ftruncate(&fd, 8192).unwrap();
            let probe = fd.try_clone().unwrap();
            let hook: Hook = if frozen {
                shrink_and_freeze
            } else {
                shrink_and_seal
            };
            let r = with_hook(hook, || {
                if frozen {
                    FrozenSegment::attach(fd, 8192, 1 << 20).map(|s| s.len)
                } else {
                    Segment::attach(fd, 8192, 1 << 20).map(|s| s.len())
                }
            });
            assert_eq!(size_of_file(probe.as_fd()), 0, "the hook ran");
            match r {
                Err(Error::MissingSeals { .. }) => {}
                Ok(len) => panic!(
                    "frozen={frozen}: mapped {len} bytes of a {}-byte file",
                    size_of_file(probe.as_fd())
                ),
                Err(e) => panic!("frozen={frozen}: {e:?}"),
            }
        }
    }

    #[test]
    fn create_is_sealed_and_cloexec() {
        let seg = Segment::create(name(), 8192, SegmentOptions::default()).unwrap();
        let seals = seals_of(seg.fd()).unwrap();
        assert!(seals.contains(REQUIRED_SEALS));
        let fl = fcntl(seg.fd(), FcntlArg::F_GETFD).unwrap();
        assert_ne!(fl & libc::FD_CLOEXEC, 0);
        assert_eq!(seg.len(), 8192);
        // Shrinking is refused by the kernel.
        assert!(nix::unistd::ftruncate(seg.fd(), 4096).is_err());
    }

    #[test]
    fn huge_pages_work_or_fail_cleanly() {
        // 2 MiB: one huge page. Machines without reserved huge pages refuse
        // with an I/O error (ENOMEM/EINVAL), never a panic or a bad mapping.
        match Segment::create(
            name(),
            2 << 20,
            SegmentOptions {
                huge_pages: true,
                populate: false,
            },
        ) {
            Ok(seg) => {
                assert_eq!(seg.len(), 2 << 20);
                assert!(seals_of(seg.fd()).unwrap().contains(REQUIRED_SEALS));
            }
            Err(Error::Io { op, .. }) => {
                assert!(
                    ["memfd_create", "ftruncate", "fallocate", "mmap"].contains(&op),
                    "{op}"
                )
            }
            Err(e) => panic!("{e:?}"),
        }
    }

    /// Regression: sealing with `F_SEAL_WRITE` failed at once on a
    /// transient EBUSY (seen in the benchmark). A writable mapping makes the
    /// kernel answer EBUSY deterministically; once it goes away, the
    /// retrying seal must succeed.
    #[test]
    fn write_seal_retries_transient_ebusy() {
        let fd = new_memfd(c"busy", false).unwrap();
        nix::unistd::ftruncate(&fd, 4096).unwrap();
        let map = MmapOptions::new().len(4096).map_raw(&fd).unwrap();
        let t = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(10));
            drop(map);
        });
        add_seals_retrying(fd.as_fd(), FROZEN_SEALS).unwrap();
        t.join().unwrap();
        assert!(seals_of(fd.as_fd()).unwrap().contains(FROZEN_SEALS));
    }

    #[test]
    fn attach_accepts_good_fd() {
        let seg = Segment::create(name(), 8192, SegmentOptions::default()).unwrap();
        assert!(seg.is_writable());
        assert!(seals_of(seg.fd()).unwrap().contains(RING_SEALS));
        let dup = seg.fd().try_clone_to_owned().unwrap();
        let other = Segment::attach_read_only(dup, 8192, 1 << 20).unwrap();
        assert!(!other.is_writable());
        // SAFETY: both mappings are 8192 bytes of the same memfd, and no
        // other thread touches them; we write through our writable one.
        unsafe { seg.as_ptr().write(42) };
        // SAFETY: as above; a read through the read-only mapping.
        assert_eq!(unsafe { other.as_ptr().read() }, 42);
        // Our own mapping stays writable after F_SEAL_FUTURE_WRITE; a new
        // writable mapping of the same fd is refused by the kernel.
        let dup = seg.fd().try_clone_to_owned().unwrap();
        match Segment::attach(dup, 8192, 1 << 20) {
            Err(Error::Io { op: "mmap", source }) => {
                assert_eq!(source.raw_os_error(), Some(libc::EPERM))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn read_only_attach_needs_a_write_seal() {
        let fd = memfd_create(c"rw", MFdFlags::MFD_ALLOW_SEALING).unwrap();
        nix::unistd::ftruncate(&fd, 8192).unwrap();
        fallocate(&fd, FallocateFlags::empty(), 0, 8192).unwrap();
        let dup = fd.try_clone().unwrap();
        add_seals(fd.as_fd(), REQUIRED_SEALS).unwrap();
        // Writable by its sender: not a segment we can trust to hold still.
        assert!(matches!(
            Segment::attach_read_only(dup, 8192, 1 << 20),
            Err(Error::MissingSeals { .. })
        ));
        // A frozen (F_SEAL_WRITE) memfd is accepted as well.
        let frozen = FrozenSegment::freeze(c"frozen", &[7u8; 8192]).unwrap();
        let seg = Segment::attach_read_only(frozen, 8192, 1 << 20).unwrap();
        // SAFETY: 8192 mapped bytes; a read.
        assert_eq!(unsafe { seg.as_ptr().read() }, 7);
    }

    #[test]
    fn attach_rejects_wrong_size() {
        let seg = Segment::create(name(), 8192, SegmentOptions::default()).unwrap();
        let dup = seg.fd().try_clone_to_owned().unwrap();
        match Segment::attach(dup, 4096, 1 << 20) {
            Err(Error::WrongSize {
                expected: 4096,
                actual: 8192,
            }) => {}
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn attach_rejects_over_max() {
        let seg = Segment::create(name(), 8192, SegmentOptions::default()).unwrap();
        let dup = seg.fd().try_clone_to_owned().unwrap();
        assert!(matches!(
            Segment::attach(dup, 8192, 4096),
            Err(Error::TooLarge { .. })
        ));
    }

    #[test]
    fn attach_rejects_unsealed_memfd() {
        let fd = memfd_create(c"unsealed", MFdFlags::MFD_ALLOW_SEALING).unwrap();
        nix::unistd::ftruncate(&fd, 8192).unwrap();
        assert!(matches!(
            Segment::attach(fd, 8192, 1 << 20),
            Err(Error::MissingSeals { .. })
        ));
    }

    #[test]
    fn attach_rejects_growable_memfd() {
        let fd = memfd_create(c"grow", MFdFlags::MFD_ALLOW_SEALING).unwrap();
        nix::unistd::ftruncate(&fd, 8192).unwrap();
        add_seals(fd.as_fd(), Seals::SHRINK | Seals::SEAL).unwrap();
        assert!(matches!(
            Segment::attach(fd, 8192, 1 << 20),
            Err(Error::MissingSeals { .. })
        ));
    }

    fn allocated(fd: BorrowedFd<'_>) -> u64 {
        fstat(fd).unwrap().st_blocks as u64 * 512
    }

    #[test]
    fn create_is_fully_backed() {
        let seg = Segment::create(name(), 8192 + 1024, SegmentOptions::default()).unwrap();
        assert!(allocated(seg.fd()) >= 8192 + 1024);
    }

    /// Regression (memory cost): a sealed memfd that was only `ftruncate`d
    /// cost its creator nothing; mapping and reading it made us allocate
    /// its pages. Refused now, whole or with a hole, ring or frozen.
    #[test]
    fn attach_rejects_sparse_memfd() {
        for (backed, seals) in [
            (0, REQUIRED_SEALS),
            (4096, REQUIRED_SEALS),
            (0, RING_SEALS),
            (8192, RING_SEALS),
            (0, FROZEN_SEALS),
            (8192, FROZEN_SEALS),
        ] {
            let fd = memfd_create(c"sparse", MFdFlags::MFD_ALLOW_SEALING).unwrap();
            nix::unistd::ftruncate(&fd, 3 * 4096).unwrap();
            if backed > 0 {
                fallocate(&fd, FallocateFlags::empty(), 4096, backed).unwrap();
            }
            add_seals(fd.as_fd(), seals).unwrap();
            let r = if seals.contains(Seals::WRITE) {
                FrozenSegment::attach(fd, 3 * 4096, 1 << 20).map(drop)
            } else if seals.contains(Seals::FUTURE_WRITE) {
                // A ring segment's seals: the read-only attach checks the
                // backing the same way.
                Segment::attach_read_only(fd, 3 * 4096, 1 << 20).map(drop)
            } else {
                Segment::attach(fd, 3 * 4096, 1 << 20).map(drop)
            };
            match r {
                Err(Error::NotFullyBacked {
                    size: 12288,
                    allocated,
                }) if allocated == backed as u64 => {}
                other => panic!("backed {backed}, seals {seals:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn attach_rejects_pipe() {
        let (r, _w) = nix::unistd::pipe().unwrap();
        assert!(matches!(
            Segment::attach(r, 8192, 1 << 20),
            Err(Error::NotMemfd(_))
        ));
    }

    #[test]
    fn attach_rejects_regular_file() {
        let mut f = std::fs::File::from(
            nix::fcntl::open(
                std::env::temp_dir().as_path(),
                nix::fcntl::OFlag::O_TMPFILE | nix::fcntl::OFlag::O_RDWR,
                nix::sys::stat::Mode::S_IRUSR | nix::sys::stat::Mode::S_IWUSR,
            )
            .unwrap(),
        );
        f.write_all(&[0u8; 8192]).unwrap();
        f.rewind().unwrap();
        let err = Segment::attach(OwnedFd::from(f), 8192, 1 << 20).unwrap_err();
        // A tmpfs /tmp supports seals (then the unsealed file lacks them);
        // a disk /tmp refuses F_GET_SEALS.
        assert!(
            matches!(err, Error::NotMemfd(_) | Error::MissingSeals { .. }),
            "{err:?}"
        );
    }

    #[test]
    fn attach_rejects_socket() {
        let (a, _b) = nix::sys::socket::socketpair(
            nix::sys::socket::AddressFamily::Unix,
            nix::sys::socket::SockType::Stream,
            None,
            nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        )
        .unwrap();
        assert!(matches!(
            Segment::attach(a, 8192, 1 << 20),
            Err(Error::NotMemfd(_))
        ));
    }

    #[test]
    fn frozen_roundtrip_and_checks() {
        let data: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
        let fd = FrozenSegment::freeze(c"frozen", &data).unwrap();
        assert!(seals_of(fd.as_fd()).unwrap().contains(FROZEN_SEALS));
        let dup = fd.try_clone().unwrap();
        let seg = FrozenSegment::attach(fd, data.len() as u64, 1 << 30).unwrap();
        assert_eq!(seg.as_slice(), &data[..]);
        // A ring segment (not write-sealed) is not accepted as frozen.
        let ring = Segment::create(name(), 8192, SegmentOptions::default()).unwrap();
        let rfd = ring.fd().try_clone_to_owned().unwrap();
        assert!(matches!(
            FrozenSegment::attach(rfd, 8192, 1 << 20),
            Err(Error::MissingSeals { .. })
        ));
        assert!(matches!(
            FrozenSegment::attach(dup, 5, 1 << 20),
            Err(Error::WrongSize { .. })
        ));
    }
}
