//! In-process tests (threads); the cross-process and hostile cases are in
//! `services/tests/pubsub_fork.rs`.

use std::os::unix::net::UnixStream;
use std::time::Duration;

use super::*;

const T: Duration = Duration::from_secs(10);

fn pair_with(opts: PublisherOptions, sub: SubscriberOptions) -> (Publisher, Subscriber) {
    let mut p = Publisher::new(opts).unwrap();
    let (a, b) = UnixStream::pair().unwrap();
    let t = std::thread::spawn(move || Subscriber::from_stream(b, sub).unwrap());
    p.add_subscriber_stream(a).unwrap();
    p.wait_for_subscribers(1, T).unwrap();
    (p, t.join().unwrap())
}

#[test]
fn stream_pair_round_trip_and_close() {
    let (mut p, mut s) = pair_with(
        PublisherOptions::new().capacity(4096),
        SubscriberOptions::new(),
    );
    let t = std::thread::spawn(move || {
        let mut buf = Vec::new();
        for i in 0..10_000u64 {
            let r = s.recv_timeout(&mut buf, T).unwrap();
            assert_eq!((r.seq, r.lost), (i, 0));
            assert_eq!(buf, i.to_le_bytes().repeat((i % 20) as usize));
        }
        assert!(matches!(s.recv_timeout(&mut buf, T), Err(Error::Closed)));
    });
    for i in 0..10_000u64 {
        let msg = i.to_le_bytes().repeat((i % 20) as usize);
        if i % 2 == 0 {
            p.send_timeout(&msg, T).unwrap();
        } else {
            let mut loan = p.loan(msg.len()).unwrap();
            loan.copy_from_slice(&msg);
            loan.publish();
        }
    }
    p.close();
    t.join().unwrap();
}

#[test]
fn path_subscribe_with_history() {
    let dir = std::env::temp_dir().join(format!("shmsock-ps-{}", std::process::id()));
    let _ = std::fs::remove_file(&dir);
    let mut p = Publisher::create(&dir, PublisherOptions::new().history(4)).unwrap();
    for i in 0..10u64 {
        p.send(&i.to_le_bytes()).unwrap();
    }
    let path = dir.clone();
    let t = std::thread::spawn(move || {
        let mut s = Subscriber::subscribe(&path, SubscriberOptions::new().history(3)).unwrap();
        let mut buf = Vec::new();
        let seqs: Vec<u64> = (0..4)
            .map(|_| s.recv_timeout(&mut buf, T).unwrap().seq)
            .collect();
        assert_eq!(seqs, [7, 8, 9, 10]);
    });
    p.wait_for_subscribers(1, T).unwrap();
    p.send(&10u64.to_le_bytes()).unwrap();
    t.join().unwrap();
    drop(p);
    assert!(!dir.exists(), "socket path removed on drop");
}

#[test]
fn too_large_is_refused() {
    let mut p = Publisher::new(PublisherOptions::new().capacity(1024)).unwrap();
    assert!(matches!(
        p.send(&[0; 600]),
        Err(Error::TooLarge { max: 496, .. })
    ));
}

#[test]
fn drop_oldest_publisher_never_waits() {
    let (mut p, mut s) = pair_with(
        PublisherOptions::new()
            .capacity(1024)
            .policy(Policy::DropOldest),
        SubscriberOptions::new(),
    );
    for i in 0..1000u64 {
        assert!(p.try_send(&i.to_le_bytes()).unwrap().is_some());
    }
    let mut buf = Vec::new();
    let r = s.try_recv(&mut buf).unwrap().unwrap();
    assert_eq!(r.seq, r.lost);
    assert!(r.lost > 900);
    assert_eq!(buf, r.seq.to_le_bytes());
}

#[test]
fn block_evicts_a_stuck_subscriber_after_max_lag() {
    let (mut p, mut s) = pair_with(
        PublisherOptions::new()
            .capacity(1024)
            .max_lag(Duration::from_millis(50)),
        SubscriberOptions::new(),
    );
    // The subscriber never reads: the ring fills, then the publisher waits
    // max_lag and disconnects it.
    let start = std::time::Instant::now();
    for i in 0..100u64 {
        p.send_timeout(&i.to_le_bytes(), T).unwrap();
    }
    assert!(start.elapsed() >= Duration::from_millis(50));
    assert_eq!((p.subscriber_count(), p.evicted_count()), (0, 1));
    // Its unread messages were overwritten after the eviction: it learns
    // it was evicted, and is never handed the overwritten bytes.
    let mut buf = Vec::new();
    assert!(matches!(s.try_recv(&mut buf), Err(Error::Evicted)));
    assert!(matches!(s.recv_timeout(&mut buf, T), Err(Error::Evicted)));
}

#[test]
fn duration_max_options_mean_never_not_a_panic() {
    // `max_lag(Duration::MAX)` and `handshake_timeout(Duration::MAX)` said
    // "never" and panicked the publisher (`Instant + Duration` overflow)
    // once a subscriber connected or stalled.
    let (mut p, mut s) = pair_with(
        PublisherOptions::new()
            .capacity(1024)
            .max_lag(Duration::MAX)
            .handshake_timeout(Duration::MAX),
        SubscriberOptions::new(),
    );
    // Fill the ring: the stalled subscriber is never evicted, the publisher
    // times out instead.
    let mut sent = 0u64;
    while p
        .send_timeout(&sent.to_le_bytes(), Duration::from_millis(50))
        .is_ok()
    {
        sent += 1;
    }
    assert_eq!((p.subscriber_count(), p.evicted_count()), (1, 0));
    let mut buf = Vec::new();
    s.recv_timeout(&mut buf, T).unwrap();
    assert_eq!(buf, 0u64.to_le_bytes());
}

#[test]
fn subscriber_refuses_a_ring_above_its_limit() {
    let mut p = Publisher::new(PublisherOptions::new().capacity(1 << 20)).unwrap();
    let (a, b) = UnixStream::pair().unwrap();
    let t = std::thread::spawn(move || {
        Subscriber::from_stream(b, SubscriberOptions::new().max_capacity(1 << 16))
    });
    p.add_subscriber_stream(a).unwrap();
    let _ = p.wait_for_subscribers(1, Duration::from_millis(200));
    match t.join().unwrap() {
        Err(Error::RingTooLarge { capacity, max }) => {
            assert_eq!((capacity, max), (1 << 20, 1 << 16))
        }
        other => panic!("{other:?}"),
    }
}

/// A broker may hand over `SOCK_SEQPACKET` sockets: the same protocol works
/// on them (every message is one datagram, read whole).
#[test]
fn works_over_a_seqpacket_pair() {
    use rustix::net::{socketpair, AddressFamily, SocketFlags, SocketType};
    let (a, b) = socketpair(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )
    .unwrap();
    let (a, b) = (UnixStream::from(a), UnixStream::from(b));
    let mut p = Publisher::new(PublisherOptions::new().capacity(4096)).unwrap();
    let t = std::thread::spawn(move || {
        let mut s = Subscriber::from_stream(b, SubscriberOptions::new()).unwrap();
        let mut buf = Vec::new();
        for i in 0..5_000u64 {
            let r = s.recv_timeout(&mut buf, T).unwrap();
            assert_eq!((r.seq, &buf[..]), (i, &i.to_le_bytes()[..]));
        }
        assert!(matches!(s.recv_timeout(&mut buf, T), Err(Error::Closed)));
    });
    p.add_subscriber_stream(a).unwrap();
    p.wait_for_subscribers(1, T).unwrap();
    for i in 0..5_000u64 {
        p.send_timeout(&i.to_le_bytes(), T).unwrap();
    }
    p.close();
    t.join().unwrap();
}

#[test]
#[allow(unsafe_code)] // borrows a sample in place, as users of the zero-copy read do
fn in_place_reads_under_block() {
    let (mut p, mut s) = pair_with(
        PublisherOptions::new().capacity(4096),
        SubscriberOptions::new(),
    );
    let t = std::thread::spawn(move || {
        for i in 0..20_000u64 {
            let sample = if i % 2 == 0 {
                s.read_timeout(T).unwrap()
            } else {
                loop {
                    if let Some(x) = s.try_read().unwrap() {
                        break x;
                    }
                    std::thread::yield_now();
                }
            };
            assert_eq!(sample.seq(), i);
            assert_eq!(
                sample.to_vec().unwrap(),
                i.to_le_bytes().repeat((i % 9) as usize)
            );
            // SAFETY: an honest publisher under Block that has not evicted
            // us does not write a record we hold.
            let view = unsafe { sample.as_slice_unchecked() };
            assert_eq!(view.len(), 8 * (i % 9) as usize);
            assert!(sample.is_intact());
        }
        assert!(matches!(s.read_timeout(T), Err(Error::Closed)));
    });
    for i in 0..20_000u64 {
        p.send_timeout(&i.to_le_bytes().repeat((i % 9) as usize), T)
            .unwrap();
    }
    p.close();
    t.join().unwrap();
}

#[test]
fn in_place_reads_refused_under_drop_oldest() {
    let (mut p, mut s) = pair_with(
        PublisherOptions::new().policy(Policy::DropOldest),
        SubscriberOptions::new(),
    );
    // Refused whether or not a message is there.
    assert!(matches!(
        s.try_read(),
        Err(Error::Shm(shmsock_shm::Error::WrongPolicy(_)))
    ));
    p.send(b"x").unwrap();
    assert!(matches!(
        s.read_timeout(T),
        Err(Error::Shm(shmsock_shm::Error::WrongPolicy(_)))
    ));
    let mut buf = Vec::new();
    assert_eq!(s.recv_timeout(&mut buf, T).unwrap().seq, 0);
}

/// An idle publisher (nothing to send) lets subscribers join by waiting in
/// `poll_timeout`.
#[test]
fn idle_publisher_accepts_in_poll_timeout() {
    let mut p = Publisher::new(PublisherOptions::new()).unwrap();
    let (a, b) = UnixStream::pair().unwrap();
    p.add_subscriber_stream(a).unwrap();
    let t = std::thread::spawn(move || Subscriber::from_stream(b, SubscriberOptions::new()));
    let deadline = std::time::Instant::now() + T;
    while p.subscriber_count() == 0 {
        assert!(std::time::Instant::now() < deadline);
        p.poll_timeout(Duration::from_millis(100)).unwrap();
    }
    let mut s = t.join().unwrap().unwrap();
    p.send(b"late").unwrap();
    let mut buf = Vec::new();
    assert_eq!(s.recv_timeout(&mut buf, T).unwrap().seq, 0);
    assert_eq!(buf, b"late");
}

#[test]
fn try_send_never_waits_for_a_hung_broker() {
    // A named publisher whose broker dies and is replaced by one that
    // accepts connections and never answers: housekeeping (every 256th
    // send) reconnects, and a try_send used to wait up to 5 s there for the
    // registration reply. try_loan, send_timeout and poll share the path.
    use crate::broker::testing::{abstract_path, HungBroker, ThreadBroker};
    use std::time::Instant;
    let path = abstract_path("pub-hung");
    let broker = ThreadBroker::start(&path);
    let mut p = Publisher::create_named(
        &path,
        "svc.pubhung",
        crate::LookupPolicy::SameUid,
        PublisherOptions::new().policy(Policy::DropOldest),
    )
    .unwrap();
    broker.stop();
    let hung = HungBroker::start(&path);
    let give_up = Instant::now() + Duration::from_secs(10);
    let mut longest = Duration::ZERO;
    let mut after = 0;
    // Until the hung broker took the connection, then 2000 sends more
    // (several housekeeping rounds while the registration is unanswered).
    while after < 2000 && Instant::now() < give_up {
        let t = Instant::now();
        assert!(p.try_send(b"tick").unwrap().is_some());
        longest = longest.max(t.elapsed());
        if hung.accepted() >= 1 {
            after += 1;
        } else {
            std::thread::sleep(Duration::from_micros(100));
        }
    }
    assert_eq!(after, 2000, "the publisher never reconnected");
    // The bug took 5 s (the registration timeout); generous for a busy
    // machine.
    let bound = Duration::from_millis(2500);
    assert!(longest < bound, "try_send took {longest:?}");
    let t = Instant::now();
    p.poll_timeout(Duration::from_millis(20)).unwrap();
    assert!(t.elapsed() < bound, "poll_timeout took {:?}", t.elapsed());
}

#[test]
fn subscribing_to_a_hung_publisher_times_out() {
    // A publisher that is stopped or hung, its accept backlog full: the
    // blocking connect of `subscribe` slept in the kernel until it would
    // accept, with no bound. Now the handshake timeout bounds the connect.
    use crate::broker::testing::{within, FullBacklog};
    use std::time::Instant;
    let path = std::env::temp_dir().join(format!("shmsock-ps-full-{}", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let full = FullBacklog::start(path.to_str().unwrap(), rustix::net::SocketType::STREAM);
    let p = path.clone();
    let (r, took) = within(Duration::from_secs(60), move || {
        let t = Instant::now();
        let opts = SubscriberOptions::new().handshake_timeout(Duration::from_millis(200));
        (Subscriber::subscribe(&p, opts), t.elapsed())
    });
    assert!(matches!(r, Err(Error::Timeout)), "{r:?}");
    // Generous: the bound is the 200 ms timeout, the bug was forever.
    assert!(took < Duration::from_secs(30), "took {took:?}");
    drop(full);
    let _ = std::fs::remove_file(&path);
}

#[test]
fn subscribing_to_a_publisher_that_never_answers_times_out() {
    // Listening, room in the backlog, never accepting nor answering: the
    // connect succeeds and the handshake times out.
    use crate::broker::testing::within;
    use std::os::unix::net::UnixListener;
    let path = std::env::temp_dir().join(format!("shmsock-ps-mute-{}", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).unwrap();
    let p = path.clone();
    let r = within(Duration::from_secs(60), move || {
        let opts = SubscriberOptions::new().handshake_timeout(Duration::from_millis(200));
        Subscriber::subscribe(&p, opts)
    });
    assert!(matches!(r, Err(Error::Timeout)), "{r:?}");
    drop(listener);
    let _ = std::fs::remove_file(&path);
}

#[test]
fn subscribing_by_name_through_a_hung_broker_times_out() {
    // The lookup and the handshake share the options' deadline.
    use crate::broker::testing::{abstract_path, within, HungBroker};
    let path = abstract_path("sub-hung");
    let hung = HungBroker::start(&path);
    let target = crate::Target::name_at(&path, "svc.subhung").unwrap();
    let r = within(Duration::from_secs(60), move || {
        let opts = SubscriberOptions::new().handshake_timeout(Duration::from_millis(200));
        Subscriber::subscribe_to(target, opts)
    });
    match r {
        Err(Error::Broker(e)) => assert!(e.is_timeout(), "{e:?}"),
        r => panic!("{r:?}"),
    }
    drop(hung);
}

#[test]
fn registering_a_publisher_with_a_hung_broker_times_out() {
    use crate::broker::testing::{abstract_path, within, HungBroker};
    use std::time::Instant;
    let path = abstract_path("pub-reg-hung");
    let hung = HungBroker::start(&path);
    let p = path.clone();
    let (r, took) = within(Duration::from_secs(60), move || {
        let t = Instant::now();
        let opts = PublisherOptions::new().broker_timeout(Duration::from_millis(200));
        let r = Publisher::create_named(&p, "svc.pubreg", crate::LookupPolicy::SameUid, opts);
        (r.map(|_| ()), t.elapsed())
    });
    match r {
        Err(Error::Broker(e)) => assert!(e.is_timeout(), "{e:?}"),
        r => panic!("{r:?}"),
    }
    // The fixed registration timeout was 5 s; generous for a busy machine.
    assert!(took < Duration::from_millis(2500), "took {took:?}");
    drop(hung);
}
