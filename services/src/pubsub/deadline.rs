//! Deadlines that read the clock only when a call has to wait.
//!
//! `recv_timeout`, `read_timeout` and `loan_timeout` used to read the clock
//! on entry to turn their timeout into a deadline. On a stream where the
//! message (or the space) is already there, that `clock_gettime` was a
//! large part of the call (about a fifth of the fan-out bench's samples on
//! a 2-vCPU VM, where the vDSO clock is slow). A [`Deadline`] made from a
//! timeout starts counting when it is first asked for, i.e. when the call
//! first has to wait; the few microseconds of spinning before that are not
//! counted.

use std::time::{Duration, Instant};

/// A deadline, resolved from a timeout on first use.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Deadline {
    timeout: Option<Duration>,
    resolved: Option<Option<Instant>>,
}

impl Deadline {
    /// No deadline: wait as long as it takes.
    pub(crate) fn never() -> Deadline {
        Deadline {
            timeout: None,
            resolved: Some(None),
        }
    }

    /// `timeout` from the first [`Deadline::get`].
    pub(crate) fn after(timeout: Duration) -> Deadline {
        Deadline {
            timeout: Some(timeout),
            resolved: None,
        }
    }

    /// The deadline (`None`: never; also when `timeout` overflows
    /// `Instant`), reading the clock the first time only.
    pub(crate) fn get(&mut self) -> Option<Instant> {
        if let Some(at) = self.resolved {
            return at;
        }
        let at = self.timeout.and_then(|t| Instant::now().checked_add(t));
        self.resolved = Some(at);
        at
    }
}

/// `t + d`, or about 34 years after `t` if that overflows `Instant` (a
/// `Duration::MAX` option means "never"): never panics.
pub(crate) fn later(t: Instant, d: Duration) -> Instant {
    t.checked_add(d)
        .or_else(|| t.checked_add(Duration::from_secs(1 << 30)))
        .unwrap_or(t)
}

#[cfg(test)]
mod tests {
    use super::Deadline;
    use std::time::{Duration, Instant};

    #[test]
    fn resolves_once_from_the_first_use() {
        assert_eq!(Deadline::never().get(), None);
        let before = Instant::now();
        let mut d = Deadline::after(Duration::from_secs(5));
        let first = d.get().expect("a deadline");
        assert!(first >= before + Duration::from_secs(5));
        std::thread::sleep(Duration::from_millis(2));
        assert_eq!(d.get(), Some(first), "resolved once, then fixed");
        assert_eq!(Deadline::after(Duration::MAX).get(), None);
    }
}
