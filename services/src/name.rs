//! Service names, and the choice between a name (through the broker) and a
//! socket path (direct, no broker).

use std::path::{Path, PathBuf};

/// Longest service name in bytes.
pub const MAX_NAME_LEN: usize = 100;

/// A validated service name.
///
/// 1 to [`MAX_NAME_LEN`] bytes of ASCII letters, digits and `_ - . /`;
/// it starts with a letter or digit, and contains no `//`, no `..` and no
/// trailing `/`. So a name never looks like a path (`/…`, `./…`, `@…`),
/// never contains control characters, and compares byte for byte.
///
/// A name of the form `u<uid>/…` (such as `u1000/camera`) may only be
/// registered by processes of that uid: the broker enforces it, so such a
/// name cannot be taken by another user even right after a broker restart.
///
/// ```
/// use shmsock_services::Name;
/// assert!(Name::new("camera.front").is_ok());
/// assert!(Name::new("u1000/db").is_ok());
/// assert!(Name::new("/tmp/x.sock").is_err());
/// assert!(Name::new("a/../b").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Name(String);

impl Name {
    /// Validates `s`.
    ///
    /// # Errors
    /// A short text saying which rule `s` breaks.
    pub fn new(s: &str) -> Result<Name, &'static str> {
        Name::from_bytes(s.as_bytes())
    }

    /// Validates raw bytes (as received from the wire).
    ///
    /// # Errors
    /// As [`Name::new`].
    pub fn from_bytes(b: &[u8]) -> Result<Name, &'static str> {
        if b.is_empty() {
            return Err("empty");
        }
        if b.len() > MAX_NAME_LEN {
            return Err("longer than 100 bytes");
        }
        if !b[0].is_ascii_alphanumeric() {
            return Err("must start with a letter or digit");
        }
        if !b
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.' | b'/'))
        {
            return Err("only ASCII letters, digits and _ - . / are allowed");
        }
        if b.windows(2).any(|w| w == b"//" || w == b"..") {
            return Err("contains // or ..");
        }
        if b.ends_with(b"/") {
            return Err("ends with /");
        }
        // Checked above: ASCII only.
        match std::str::from_utf8(b) {
            Ok(s) => Ok(Name(s.to_owned())),
            Err(_) => Err("not UTF-8"),
        }
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The uid that alone may register this name, if it has the
    /// `u<uid>/` form.
    pub fn reserved_uid(&self) -> Option<u32> {
        let rest = self.0.strip_prefix('u')?;
        let (digits, _) = rest.split_once('/')?;
        if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        digits.parse().ok()
    }
}

impl std::fmt::Display for Name {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a service lives: a socket path (no broker involved, as plain
/// shmsock) or a name that a broker resolves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A listener's socket path (`@name` for an abstract socket).
    Path(PathBuf),
    /// A service name at the broker listening on `broker`.
    Name {
        /// The broker's socket path.
        broker: PathBuf,
        /// The service name.
        name: Name,
    },
}

impl Target {
    /// Parses `s`: anything starting with `/`, `.` or `@` is a socket path;
    /// anything else is a service name at the [default
    /// broker](crate::broker::default_socket_path).
    ///
    /// ```
    /// use shmsock_services::Target;
    /// assert!(matches!(Target::parse("/run/app.sock"), Ok(Target::Path(_))));
    /// assert!(matches!(Target::parse("@abstract"), Ok(Target::Path(_))));
    /// assert!(matches!(Target::parse("app.rpc"), Ok(Target::Name { .. })));
    /// ```
    ///
    /// # Errors
    /// [`crate::Error::BadName`] if `s` is neither a path nor a valid name.
    pub fn parse(s: &str) -> crate::Result<Target> {
        if s.starts_with(['/', '.', '@']) {
            return Ok(Target::Path(PathBuf::from(s)));
        }
        Ok(Target::Name {
            broker: crate::broker::default_socket_path(),
            name: Name::new(s).map_err(crate::Error::BadName)?,
        })
    }

    /// A name at a given broker.
    ///
    /// # Errors
    /// [`crate::Error::BadName`].
    pub fn name_at(broker: impl AsRef<Path>, name: &str) -> crate::Result<Target> {
        Ok(Target::Name {
            broker: broker.as_ref().to_owned(),
            name: Name::new(name).map_err(crate::Error::BadName)?,
        })
    }
}

impl From<&Path> for Target {
    fn from(p: &Path) -> Target {
        Target::Path(p.to_owned())
    }
}

impl From<PathBuf> for Target {
    fn from(p: PathBuf) -> Target {
        Target::Path(p)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn names() {
        for ok in [
            "a",
            "A9",
            "svc.rpc",
            "u1000/cam",
            "a-b_c.d/e",
            &"x".repeat(100),
        ] {
            assert!(Name::new(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "/abs",
            ".hidden",
            "@abs",
            "-x",
            "a//b",
            "a/../b",
            "a/",
            "sp ace",
            "nul\0",
            "é",
            &"x".repeat(101),
        ] {
            assert!(Name::new(bad).is_err(), "{bad:?}");
        }
        assert!(Name::from_bytes(&[b'a', 0xff]).is_err());
    }

    #[test]
    fn reserved_uid() {
        let r = |s| Name::new(s).unwrap().reserved_uid();
        assert_eq!(r("u1000/db"), Some(1000));
        assert_eq!(r("u0/x"), Some(0));
        assert_eq!(r("user/db"), None);
        assert_eq!(r("u/db"), None);
        assert_eq!(r("u1000"), None);
        assert_eq!(r("u99999999999/x"), None);
    }
}
