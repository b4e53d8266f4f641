//! The broker and request/response between real processes (forked, one
//! case after another on the main thread): name lookup and direct
//! traffic; a provider killed (name dropped) and restarted (found again);
//! the broker killed and restarted while traffic flows; name hijacking by
//! another uid; hostile broker clients; rpc with many outstanding requests
//! and timeouts.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use shmsock_testkit::harness as common;

use std::io::IoSlice;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use rustix::net::{
    sendmsg, AddressFamily, SendAncillaryBuffer, SendAncillaryMessage, SendFlags, SocketAddrUnix,
    SocketFlags, SocketType,
};
use shmsock::Builder;
use shmsock_services::broker::{lookup, BrokerOptions, Provider};
use shmsock_services::rpc::{Client, Server, ServerOptions};
use shmsock_services::wire::BrokerMsg;
use shmsock_services::{connect, Error, LookupPolicy, Name, Refusal, Target};

static N: AtomicU32 = AtomicU32::new(0);

fn path() -> String {
    format!(
        "@shmsock-svc-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

const WAIT: Duration = Duration::from_secs(30);
const T: Duration = Duration::from_secs(5);

fn broker_process(p: &str) -> common::Child {
    broker_process_with(p, BrokerOptions::new())
}

fn broker_process_with(p: &str, opts: BrokerOptions) -> common::Child {
    let p = p.to_owned();
    common::spawn(move || {
        let mut b = opts.bind(&p).unwrap();
        b.run().unwrap();
    })
}

/// Waits until the broker at `p` answers (a lookup of a name nobody holds
/// is refused as not found).
fn wait_broker(p: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        match lookup(p, "probe.none", T) {
            Err(Error::Refused(Refusal::NotFound)) => return,
            r => {
                assert!(Instant::now() < deadline, "broker at {p} not up: {r:?}");
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
}

/// A provider process: registers `name` (retrying while the broker is not
/// up) and echoes on every connection, each in a thread.
fn echo_provider(broker: &str, name: &str) -> common::Child {
    let (b, n) = (broker.to_owned(), name.to_owned());
    common::spawn(move || {
        let deadline = Instant::now() + WAIT;
        let mut p = loop {
            match Provider::register(&b, &n, LookupPolicy::SameUid) {
                Ok(p) => break p,
                Err(e) => {
                    assert!(Instant::now() < deadline, "{e}");
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        };
        loop {
            let intro = p.accept().unwrap();
            std::thread::spawn(move || {
                let Ok(mut c) = intro.accept(&Builder::new()) else {
                    return;
                };
                loop {
                    let m = match c.recv() {
                        Ok(m) => m.to_vec(),
                        Err(_) => return,
                    };
                    if c.send(&m).is_err() {
                        return;
                    }
                }
            });
        }
    })
}

/// Looks `name` up until it resolves (or `WAIT` passes).
fn connect_eventually(broker: &str, name: &str) -> shmsock::Connection {
    let deadline = Instant::now() + WAIT;
    let t = Target::name_at(broker, name).unwrap();
    loop {
        match connect(&t, &Builder::new()) {
            Ok(c) => return c,
            Err(e) => {
                assert!(Instant::now() < deadline, "{name} never found: {e}");
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
}

fn echo(c: &mut shmsock::Connection, n: usize) {
    for i in 0..n {
        let m = format!("message {i}");
        c.send(m.as_bytes()).unwrap();
        assert_eq!(c.recv_timeout(WAIT).unwrap().to_vec(), m.as_bytes());
    }
}

fn lookup_and_direct_traffic() {
    let b = path();
    let broker = broker_process(&b);
    wait_broker(&b);
    let prov = echo_provider(&b, "echo.a");
    let mut c = connect_eventually(&b, "echo.a");
    echo(&mut c, 1000);
    // A large message crosses too (fragments through the rings, directly).
    let big = vec![7u8; 3 << 20];
    c.send(&big).unwrap();
    assert_eq!(c.recv_timeout(WAIT).unwrap().to_vec(), big);
    // The provider's credentials come with the lookup.
    let (_s, peer) = lookup(&b, "echo.a", T).unwrap();
    assert_eq!(peer.pid, prov.pid.as_raw() as u32);
    // Unknown names are refused, bad ones never leave the process.
    assert!(matches!(
        lookup(&b, "echo.none", T),
        Err(Error::Refused(Refusal::NotFound))
    ));
    assert!(matches!(lookup(&b, "../x", T), Err(Error::BadName(_))));
    drop(c);
    prov.kill();
    broker.kill();
}

fn provider_killed_then_restarted() {
    let b = path();
    let broker = broker_process(&b);
    wait_broker(&b);
    let prov = echo_provider(&b, "svc.restart");
    let mut c = connect_eventually(&b, "svc.restart");
    echo(&mut c, 10);
    prov.kill();
    // The established connection sees the provider's death.
    assert!(c.recv_timeout(WAIT).unwrap_err().is_disconnected());
    // The broker drops the name (EOF on the registration socket).
    let deadline = Instant::now() + WAIT;
    loop {
        match lookup(&b, "svc.restart", T) {
            Err(Error::Refused(Refusal::NotFound)) => break,
            r => {
                assert!(Instant::now() < deadline, "name not dropped: {r:?}");
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
    // A restarted provider (same uid: the reservation lets it in) is found.
    let prov = echo_provider(&b, "svc.restart");
    let mut c = connect_eventually(&b, "svc.restart");
    echo(&mut c, 10);
    prov.kill();
    broker.kill();
}

fn broker_killed_and_restarted_while_traffic_flows() {
    let b = path();
    let broker = broker_process(&b);
    wait_broker(&b);
    let prov = echo_provider(&b, "svc.durable");
    let mut c = connect_eventually(&b, "svc.durable");
    echo(&mut c, 100);
    broker.kill();
    // The introduced connection is direct: it does not notice.
    echo(&mut c, 1000);
    assert!(matches!(
        lookup(&b, "svc.durable", T),
        Err(Error::Io { .. })
    ));
    // A new broker at the same path; the provider re-registers by itself.
    let broker = broker_process(&b);
    let mut c2 = connect_eventually(&b, "svc.durable");
    echo(&mut c2, 100);
    echo(&mut c, 100);
    drop((c, c2));
    prov.kill();
    broker.kill();
}

/// Switches this (child) process to `uid`/`gid`.
fn become_user(uid: u32, gid: u32) {
    nix::unistd::setgroups(&[]).unwrap();
    nix::unistd::setgid(nix::unistd::Gid::from_raw(gid)).unwrap();
    nix::unistd::setuid(nix::unistd::Uid::from_raw(uid)).unwrap();
}

fn hijack_by_another_uid_refused() {
    let b = path();
    let broker = broker_process_with(
        &b,
        BrokerOptions::new().reservation(Duration::from_secs(60)),
    );
    wait_broker(&b);
    let me = rustix::process::geteuid().as_raw();
    let owner = format!("u{me}/owned");
    let mut p = Provider::register(&b, "svc.victim", LookupPolicy::SameUid).unwrap();
    if me == 0 {
        // A provider may let one other user in, or one group.
        p.add("svc.for-nobody", LookupPolicy::Uid(65534)).unwrap();
        p.add("svc.for-group", LookupPolicy::Gid(65534)).unwrap();
        p.add("svc.for-root-group", LookupPolicy::Gid(0)).unwrap();
        // Root: a real second user, in its own process (abstract sockets
        // have no file permissions, so it reaches the broker).
        let b2 = b.clone();
        let owner2 = owner.clone();
        let other = common::spawn(move || {
            become_user(65534, 65534);
            let err = |r: Result<Provider, Error>| match r {
                Err(Error::Refused(code)) => code,
                r => panic!("registered: {r:?}"),
            };
            // Over a live name of another user.
            assert_eq!(
                err(Provider::register(&b2, "svc.victim", LookupPolicy::Any)),
                Refusal::NameTaken
            );
            // A name reserved for another uid by its prefix.
            assert_eq!(
                err(Provider::register(&b2, &owner2, LookupPolicy::Any)),
                Refusal::Reserved
            );
            // Its own prefix is fine.
            Provider::register(&b2, "u65534/mine", LookupPolicy::Any).unwrap();
            // The victim's SameUid policy refuses the lookup.
            assert!(matches!(
                lookup(&b2, "svc.victim", T),
                Err(Error::Refused(Refusal::Denied))
            ));
            // Policies naming this uid or its group let it in; another
            // group's does not.
            lookup(&b2, "svc.for-nobody", T).unwrap();
            lookup(&b2, "svc.for-group", T).unwrap();
            assert!(matches!(
                lookup(&b2, "svc.for-root-group", T),
                Err(Error::Refused(Refusal::Denied))
            ));
        });
        other.wait(WAIT);
        // The provider got the two introductions it allowed, no more.
        for _ in 0..2 {
            let i = p.accept_timeout(WAIT).unwrap();
            assert_eq!(i.consumer().uid, 65534);
        }
        assert!(p.try_accept().unwrap().is_none());
        // The victim dies: its name stays reserved to its uid.
        drop(p);
        let b2 = b.clone();
        let other = common::spawn(move || {
            become_user(65534, 65534);
            let deadline = Instant::now() + WAIT;
            // Until the broker sees the death the name is taken; then reserved.
            loop {
                match Provider::register(&b2, "svc.victim", LookupPolicy::Any) {
                    Err(Error::Refused(Refusal::Reserved)) => break,
                    Err(Error::Refused(Refusal::NameTaken)) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(5))
                    }
                    r => panic!("{r:?}"),
                }
            }
        });
        other.wait(WAIT);
        // Its own uid may take it back.
        let _p = Provider::register(&b, "svc.victim", LookupPolicy::SameUid).unwrap();
    } else {
        // Not root, cannot switch uid: the same rules checked from one uid.
        // Over a live name (another connection of ours), refused.
        assert!(matches!(
            Provider::register(&b, "svc.victim", LookupPolicy::Any),
            Err(Error::Refused(Refusal::NameTaken))
        ));
        // A prefix naming another uid.
        let theirs = format!("u{}/x", me + 1);
        assert!(matches!(
            Provider::register(&b, &theirs, LookupPolicy::Any),
            Err(Error::Refused(Refusal::Reserved))
        ));
        drop(p);
    }
    // Without root, lookup policies that exclude the consumer cannot be
    // shown from one uid (the owner's uid is always allowed): the unit test
    // `wire::broker::tests::policy` covers the rule itself.
    broker.kill();
}

fn raw_connect(p: &str) -> OwnedFd {
    let s = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )
    .unwrap();
    let addr = SocketAddrUnix::new_abstract_name(&p.as_bytes()[1..]).unwrap();
    rustix::net::connect(&s, &addr).unwrap();
    s
}

fn raw_send(sock: BorrowedFd<'_>, bytes: &[u8], fds: &[BorrowedFd<'_>]) -> bool {
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(8))];
    let mut cmsg = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() {
        assert!(cmsg.push(SendAncillaryMessage::ScmRights(fds)));
    }
    sendmsg(
        sock,
        &[IoSlice::new(bytes)],
        &mut cmsg,
        SendFlags::NOSIGNAL | SendFlags::DONTWAIT,
    )
    .is_ok()
}

fn lookup_msg(name: &str) -> Vec<u8> {
    BrokerMsg::Lookup {
        tag: 9,
        name: Name::new(name).unwrap(),
    }
    .encode()
}

fn hostile_clients_cannot_stall_the_broker() {
    let b = path();
    let broker = broker_process_with(&b, BrokerOptions::new().max_clients_per_uid(1000));
    wait_broker(&b);
    let prov = echo_provider(&b, "svc.good");
    let mut c = connect_eventually(&b, "svc.good");
    echo(&mut c, 10);
    let broker_fds = || {
        std::fs::read_dir(format!("/proc/{}/fd", broker.pid))
            .unwrap()
            .count()
    };
    let fds_before = broker_fds();
    let b2 = b.clone();
    let hostile = common::spawn(move || {
        let mut held = Vec::new();
        // Silent clients: connect, say nothing, hold their slot.
        for _ in 0..50 {
            held.push(raw_connect(&b2));
        }
        // A client that floods lookups and never reads its replies: the
        // broker stops reading it when its queue is full.
        let flood = raw_connect(&b2);
        let memfd = rustix::fs::memfd_create("x", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
        let mut sent = 0;
        for _ in 0..10_000 {
            if raw_send(flood.as_fd(), &lookup_msg("svc.nothere"), &[memfd.as_fd()]) {
                sent += 1;
            }
        }
        assert!(sent > 0);
        held.push(flood);
        let garbage: [&[u8]; 6] = [
            b"",
            b"\x01",
            &[0xff; 200],
            &[0u8; 4096],                 // oversized
            &lookup_msg("svc.good")[..9], // truncated
            &[1, 0x81, 0, 0, 0, 0, 0, 0], // a reply kind
        ];
        for g in garbage {
            let s = raw_connect(&b2);
            raw_send(s.as_fd(), g, &[]);
            held.push(s);
        }
        // Wrong fd counts: a lookup without its fd, one with three, a
        // register with one.
        let (x, y) = rustix::net::socketpair(
            AddressFamily::UNIX,
            SocketType::SEQPACKET,
            SocketFlags::CLOEXEC,
            None,
        )
        .unwrap();
        for fds in [&[][..], &[x.as_fd(), y.as_fd(), memfd.as_fd()][..]] {
            let s = raw_connect(&b2);
            raw_send(s.as_fd(), &lookup_msg("svc.good"), fds);
            held.push(s);
        }
        let s = raw_connect(&b2);
        let reg = BrokerMsg::Register {
            tag: 1,
            name: Name::new("svc.evil").unwrap(),
            policy: LookupPolicy::Any,
        }
        .encode();
        raw_send(s.as_fd(), &reg, &[x.as_fd()]);
        held.push(s);
        // A lookup with something that is not a seqpacket socket.
        let s = raw_connect(&b2);
        raw_send(s.as_fd(), &lookup_msg("svc.good"), &[memfd.as_fd()]);
        held.push(s);
        // Keep everything open while the parent checks.
        std::thread::sleep(Duration::from_secs(600));
    });
    // Meanwhile, good clients are served promptly, again and again.
    let start = Instant::now();
    for _ in 0..20 {
        let t = Target::name_at(&b, "svc.good").unwrap();
        let mut c = connect(&t, &Builder::new()).unwrap();
        echo(&mut c, 5);
    }
    assert!(start.elapsed() < WAIT);
    echo(&mut c, 10);
    // A malformed request is answered with `Malformed` and a hang-up.
    let s = raw_connect(&b);
    raw_send(s.as_fd(), b"\x01\x55\0\0\x07\0\0\0", &[]);
    let mut buf = [0u8; 64];
    rustix::net::sockopt::set_socket_timeout(&s, rustix::net::sockopt::Timeout::Recv, Some(WAIT))
        .unwrap();
    let n = rustix::net::recv(&s, &mut buf, rustix::net::RecvFlags::empty())
        .unwrap()
        .0;
    assert_eq!(
        BrokerMsg::decode(&buf[..n]).unwrap(),
        BrokerMsg::Refused {
            tag: 7,
            code: Refusal::Malformed
        }
    );
    let n = rustix::net::recv(&s, &mut buf, rustix::net::RecvFlags::empty())
        .unwrap()
        .0;
    assert_eq!(n, 0, "not hung up");
    // A lookup with a memfd instead of a socket is refused (not forwarded).
    let s = raw_connect(&b);
    let memfd = rustix::fs::memfd_create("x", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
    raw_send(s.as_fd(), &lookup_msg("svc.good"), &[memfd.as_fd()]);
    rustix::net::sockopt::set_socket_timeout(&s, rustix::net::sockopt::Timeout::Recv, Some(WAIT))
        .unwrap();
    let n = rustix::net::recv(&s, &mut buf, rustix::net::RecvFlags::empty())
        .unwrap()
        .0;
    assert_eq!(
        BrokerMsg::decode(&buf[..n]).unwrap(),
        BrokerMsg::Refused {
            tag: 9,
            code: Refusal::BadSocket
        }
    );
    hostile.kill();
    drop(s);
    // Every fd the hostile clients made the broker hold (their sockets, the
    // fds in their malformed messages) is closed again.
    let deadline = Instant::now() + WAIT;
    while broker_fds() != fds_before {
        assert!(
            Instant::now() < deadline,
            "broker holds {} fds, {fds_before} before",
            broker_fds()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    prov.kill();
    broker.kill();
}

fn per_client_limits() {
    let b = path();
    let broker = broker_process_with(
        &b,
        BrokerOptions::new()
            .max_names_per_client(2)
            .max_clients_per_uid(3),
    );
    wait_broker(&b);
    let mut p = Provider::register(&b, "n.one", LookupPolicy::Any).unwrap();
    p.add("n.two", LookupPolicy::Any).unwrap();
    assert!(matches!(
        p.add("n.three", LookupPolicy::Any),
        Err(Error::Refused(Refusal::TooManyNames))
    ));
    // Clients per uid: p is one; two more fit, a fourth is closed at once.
    let a = raw_connect(&b);
    let c = raw_connect(&b);
    let d = raw_connect(&b);
    raw_send(d.as_fd(), &lookup_msg("n.one"), &[]);
    let mut buf = [0u8; 64];
    rustix::net::sockopt::set_socket_timeout(&d, rustix::net::sockopt::Timeout::Recv, Some(WAIT))
        .unwrap();
    let r = rustix::net::recv(&d, &mut buf, rustix::net::RecvFlags::empty());
    assert!(matches!(r, Ok((0, _)) | Err(_)), "{r:?}");
    drop((a, c, d, p));
    broker.kill();
}

/// Regression: when the broker's own fd table is full, a lookup's fd cannot
/// be installed (`MSG_CTRUNC` with room left). That is the broker's
/// failure: the client gets `Refused(Resources)` and stays connected (it
/// was dropped as malformed before).
fn broker_out_of_fds_blames_nobody() {
    let b = path();
    let p = b.clone();
    let broker = common::spawn(move || {
        let mut br = BrokerOptions::new().bind(&p).unwrap();
        // Room for exactly one more fd: the client's connection.
        let highest = std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u64>().ok())
            .max()
            .unwrap();
        let mut lim = rustix::process::getrlimit(rustix::process::Resource::Nofile);
        lim.current = Some(highest + 2);
        rustix::process::setrlimit(rustix::process::Resource::Nofile, lim).unwrap();
        // Fill the gaps below, then free exactly one slot.
        let mut filler = Vec::new();
        while let Ok(f) = std::fs::File::open("/dev/null") {
            filler.push(f);
        }
        filler.pop();
        br.run().unwrap();
    });
    // Wait until it listens (a raw connect succeeds), then use that client.
    let deadline = Instant::now() + WAIT;
    let s = loop {
        let s = rustix::net::socket_with(
            AddressFamily::UNIX,
            SocketType::SEQPACKET,
            SocketFlags::CLOEXEC,
            None,
        )
        .unwrap();
        let addr = SocketAddrUnix::new_abstract_name(&b.as_bytes()[1..]).unwrap();
        if rustix::net::connect(&s, &addr).is_ok() {
            break s;
        }
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(5));
    };
    rustix::net::sockopt::set_socket_timeout(&s, rustix::net::sockopt::Timeout::Recv, Some(WAIT))
        .unwrap();
    let (x, _y) = rustix::net::socketpair(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )
    .unwrap();
    let mut buf = [0u8; 64];
    assert!(raw_send(s.as_fd(), &lookup_msg("svc.any"), &[x.as_fd()]));
    let n = rustix::net::recv(&s, &mut buf, rustix::net::RecvFlags::empty())
        .unwrap()
        .0;
    assert_eq!(
        BrokerMsg::decode(&buf[..n]).unwrap(),
        BrokerMsg::Refused {
            tag: 9,
            code: Refusal::Resources
        }
    );
    // Still connected and served.
    let reg = BrokerMsg::Register {
        tag: 5,
        name: Name::new("svc.after").unwrap(),
        policy: LookupPolicy::Any,
    }
    .encode();
    assert!(raw_send(s.as_fd(), &reg, &[]));
    let n = rustix::net::recv(&s, &mut buf, rustix::net::RecvFlags::empty())
        .unwrap()
        .0;
    assert_eq!(
        BrokerMsg::decode(&buf[..n]).unwrap(),
        BrokerMsg::Done { tag: 5 }
    );
    broker.kill();
}

fn rpc_server(target: &str) -> common::Child {
    let t = target.to_owned();
    common::spawn(move || {
        let deadline = Instant::now() + WAIT;
        let server = loop {
            match Server::serve_with(t.as_str(), ServerOptions::default()) {
                Ok(s) => break s,
                Err(e) => {
                    assert!(Instant::now() < deadline, "{e}");
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        };
        server
            .run(|req| match req.kind {
                1 => Ok(req.body.to_vec()),
                2 => {
                    std::thread::sleep(Duration::from_millis(300));
                    Ok(b"slow".to_vec())
                }
                3 => Err("no such thing".into()),
                k => Err(format!("unknown kind {k}")),
            })
            .unwrap();
    })
}

fn rpc_client_work(target: &str) {
    let deadline = Instant::now() + WAIT;
    let mut c = loop {
        match Client::connect(target) {
            Ok(c) => break c,
            Err(e) => {
                assert!(Instant::now() < deadline, "{e}");
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    };
    // Many outstanding, waited for in reverse order.
    let ids: Vec<_> = (0..500u32)
        .map(|i| c.send_request(1, &i.to_le_bytes()).unwrap())
        .collect();
    assert_eq!(c.outstanding(), 500);
    for (i, id) in ids.iter().enumerate().rev() {
        assert_eq!(c.wait(*id, WAIT).unwrap(), (i as u32).to_le_bytes());
    }
    // Per-request timeout: the slow one times out, later ones still work
    // and its late reply is dropped.
    let slow = c.send_request(2, b"").unwrap();
    assert!(matches!(
        c.wait(slow, Duration::from_millis(20)),
        Err(Error::Timeout)
    ));
    assert_eq!(c.call(1, b"after", WAIT).unwrap(), b"after");
    // Remote errors are per request.
    assert!(matches!(c.call(3, b"", WAIT), Err(Error::Remote(t)) if t == "no such thing"));
    assert_eq!(c.call(1, b"still", WAIT).unwrap(), b"still");
    // A zero-copy request body.
    let id = c
        .send_request_with(1, 4, |b| b.copy_from_slice(b"zcpy"))
        .unwrap();
    assert_eq!(c.wait(id, WAIT).unwrap(), b"zcpy");
}

fn rpc_many_clients(target: &str) {
    let server = rpc_server(target);
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let t = target.to_owned();
            common::spawn(move || rpc_client_work(&t))
        })
        .collect();
    for c in clients {
        c.wait(WAIT);
    }
    server.kill();
}

fn rpc_by_path() {
    rpc_many_clients(&path());
}

fn rpc_by_name() {
    let b = path();
    let broker = broker_process(&b);
    wait_broker(&b);
    std::env::set_var("SHMSOCK_BROKER", &b);
    rpc_many_clients("rpc.test");
    std::env::remove_var("SHMSOCK_BROKER");
    broker.kill();
}

/// Publish/subscribe by name: the publisher registers a name with the
/// broker, three subscriber processes find it by name, and every message
/// reaches each of them byte for byte, directly (the broker only made the
/// introductions).
fn pubsub_by_name() {
    use shmsock_services::pubsub::{
        Policy, Publisher, PublisherOptions, Subscriber, SubscriberOptions,
    };
    const N: u64 = 20_000;
    const SUBS: usize = 3;
    let b = path();
    let broker = broker_process(&b);
    wait_broker(&b);
    let target = Target::name_at(&b, "prices.test").unwrap();
    let mut publisher = Publisher::serve(
        &target,
        LookupPolicy::SameUid,
        PublisherOptions::new()
            .policy(Policy::Block)
            .capacity(1 << 16),
    )
    .unwrap();
    let subs: Vec<common::Child> = (0..SUBS)
        .map(|_| {
            let target = target.clone();
            common::spawn(move || {
                let mut s = Subscriber::subscribe_to(&target, SubscriberOptions::new()).unwrap();
                let mut buf = Vec::new();
                for i in 0..N {
                    s.recv_timeout(&mut buf, WAIT).unwrap();
                    let want: Vec<u8> = (0..(i % 200) as usize)
                        .map(|k| (k as u64 ^ i) as u8)
                        .collect();
                    assert_eq!(buf, want, "message {i}");
                }
            })
        })
        .collect();
    publisher.wait_for_subscribers(SUBS, WAIT).unwrap();
    for i in 0..N {
        let msg: Vec<u8> = (0..(i % 200) as usize)
            .map(|k| (k as u64 ^ i) as u8)
            .collect();
        publisher.send_timeout(&msg, WAIT).unwrap();
    }
    for s in subs {
        s.wait(WAIT);
    }
    // Not registered twice: the name is the live publisher's.
    assert!(Publisher::serve(&target, LookupPolicy::SameUid, PublisherOptions::new()).is_err());
    drop(publisher);
    broker.kill();
}

fn main() {
    common::run(&[
        ("lookup_and_direct_traffic", lookup_and_direct_traffic),
        (
            "provider_killed_then_restarted",
            provider_killed_then_restarted,
        ),
        (
            "broker_killed_and_restarted_while_traffic_flows",
            broker_killed_and_restarted_while_traffic_flows,
        ),
        (
            "hijack_by_another_uid_refused",
            hijack_by_another_uid_refused,
        ),
        (
            "hostile_clients_cannot_stall_the_broker",
            hostile_clients_cannot_stall_the_broker,
        ),
        ("per_client_limits", per_client_limits),
        (
            "broker_out_of_fds_blames_nobody",
            broker_out_of_fds_blames_nobody,
        ),
        ("rpc_by_path", rpc_by_path),
        ("rpc_by_name", rpc_by_name),
        ("pubsub_by_name", pubsub_by_name),
    ]);
}
