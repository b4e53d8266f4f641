//! Memfd seals (`F_SEAL_*`) as this crate's own type, so that no type of the
//! OS crate appears in the public API.

/// A set of memfd seals, as `fcntl(F_GET_SEALS)` reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Seals(u32);

impl Seals {
    /// No seal.
    pub const EMPTY: Seals = Seals(0);
    /// `F_SEAL_SEAL`: no seal can be added any more.
    pub const SEAL: Seals = Seals(libc::F_SEAL_SEAL as u32);
    /// `F_SEAL_SHRINK`: the file cannot shrink.
    pub const SHRINK: Seals = Seals(libc::F_SEAL_SHRINK as u32);
    /// `F_SEAL_GROW`: the file cannot grow.
    pub const GROW: Seals = Seals(libc::F_SEAL_GROW as u32);
    /// `F_SEAL_WRITE`: nobody can write the file any more.
    pub const WRITE: Seals = Seals(libc::F_SEAL_WRITE as u32);
    /// `F_SEAL_FUTURE_WRITE`: no new write access (mappings made before it
    /// stay writable).
    pub const FUTURE_WRITE: Seals = Seals(libc::F_SEAL_FUTURE_WRITE as u32);

    /// The seals of the raw `F_GET_SEALS` value `bits` (unknown bits kept).
    pub const fn from_bits(bits: u32) -> Seals {
        Seals(bits)
    }

    /// The raw `F_*` bits.
    pub const fn bits(self) -> u32 {
        self.0
    }

    /// Both sets.
    pub const fn union(self, other: Seals) -> Seals {
        Seals(self.0 | other.0)
    }

    /// Whether every seal of `other` is in `self`.
    pub const fn contains(self, other: Seals) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether any seal of `other` is in `self`.
    pub const fn intersects(self, other: Seals) -> bool {
        self.0 & other.0 != 0
    }

    /// Whether no seal is set.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The same bits as nix's type, for `fcntl`.
    pub(crate) fn to_nix(self) -> nix::fcntl::SealFlag {
        nix::fcntl::SealFlag::from_bits_retain(self.0 as i32)
    }
}

impl std::ops::BitOr for Seals {
    type Output = Seals;
    fn bitor(self, other: Seals) -> Seals {
        self.union(other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_match_the_kernel_and_nix() {
        use nix::fcntl::SealFlag as N;
        for (ours, theirs) in [
            (Seals::SEAL, N::F_SEAL_SEAL),
            (Seals::SHRINK, N::F_SEAL_SHRINK),
            (Seals::GROW, N::F_SEAL_GROW),
            (Seals::WRITE, N::F_SEAL_WRITE),
            (Seals::FUTURE_WRITE, N::F_SEAL_FUTURE_WRITE),
        ] {
            assert_eq!(ours.to_nix(), theirs);
        }
        let s = Seals::SHRINK.union(Seals::GROW);
        assert!(s.contains(Seals::SHRINK) && !s.contains(Seals::WRITE));
        assert!(s.intersects(Seals::GROW.union(Seals::WRITE)));
        assert!(Seals::EMPTY.is_empty() && !s.is_empty());
    }
}
