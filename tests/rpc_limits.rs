//! The server RPC port under faults, through real processes: a host that opens too many
//! connections, connections left idle or stalled halfway through a frame, a server that stops
//! (SIGSTOP: its kernel still accepts, nothing reads), and a server whose disk fills up.
//! The numbers are those of docs/servers.md, "Deadlines and limits".

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use support::*;

const T: Duration = Duration::from_secs(30);

/// `MAX_CONNS_PER_CLIENT`, `IDLE_TIMEOUT` and `FRAME_TIMEOUT` of src/server/rpc.rs.
const CAP: usize = 100;
const IDLE: Duration = Duration::from_secs(30);
const FRAME: Duration = Duration::from_secs(10);

/// Three servers on `block`, formed, with a leader.
fn cluster(block: Block) -> Vec<Agent> {
    let s = servers(
        block,
        3,
        3,
        &["-retry-join", &block.ip(1), "-retry-join", &block.ip(2)],
    );
    let refs: Vec<&Agent> = s.iter().collect();
    wait_for_leader(&refs, T);
    s
}

/// A TCP connection to `to` from the address `from` (port chosen by the system).
fn connect_from(from: &str, to: &str) -> TcpStream {
    let to: SocketAddr = to.parse().unwrap();
    let from: SocketAddr = format!("{from}:0").parse().unwrap();
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    s.bind(&from.into()).unwrap();
    s.connect_timeout(&to.into(), Duration::from_secs(2))
        .unwrap_or_else(|e| panic!("connect {from} → {to}: {e}"));
    let s: TcpStream = s.into();
    s.set_nonblocking(true).unwrap();
    s
}

/// Whether the other side has closed `s` (end of stream or reset), without waiting.
fn closed(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) if e.kind() == ErrorKind::WouldBlock => false,
        Err(_) => true,
    }
}

/// One host opens more connections than the cap: the excess is closed at once and logged
/// once, the cluster keeps serving, the admitted connections are closed when idle, a frame
/// that stalls halfway is cut off, and the host may connect again once its connections are gone.
#[test]
fn the_rpc_port_caps_connections_and_closes_idle_and_stalled_ones() {
    let net = Block::RpcLimits;
    let s = cluster(net);
    let target = format!("{}:8300", net.ip(1));
    let (flooder, staller) = (net.ip(50), net.ip(51));

    step(
        1,
        "one host opens the cap's worth of connections, then ten more",
    );
    let opened = Instant::now();
    let mut admitted: Vec<TcpStream> = (0..CAP).map(|_| connect_from(&flooder, &target)).collect();
    let mut excess: Vec<TcpStream> = (0..10).map(|_| connect_from(&flooder, &target)).collect();
    wait_until(
        Duration::from_secs(5),
        "the ten over the cap are closed",
        || excess.iter_mut().all(closed),
    );
    assert!(
        !admitted.iter_mut().any(closed),
        "the first {CAP} connections stay open"
    );
    let refusals = s[0].log().matches("refusing connections from").count();
    assert_eq!(refusals, 1, "one line for the burst:\n{}", s[0].log());

    step(
        2,
        "the cluster keeps serving meanwhile, through the flooded server too",
    );
    s[0].put("during-flood", "v");
    for a in &s {
        wait_until(T, "every server reads the write", || {
            a.get_consistent("during-flood").as_deref() == Some("v")
        });
    }
    let refs: Vec<&Agent> = s.iter().collect();
    wait_for_leader(&refs, T);

    step(
        3,
        "a connection sends half a frame and stalls: cut off after the frame deadline",
    );
    let mut stalled = connect_from(&staller, &target);
    stalled.set_nonblocking(false).unwrap();
    stalled.write_all(&100u32.to_be_bytes()).unwrap();
    stalled.write_all(&[0u8; 10]).unwrap();
    stalled.set_nonblocking(true).unwrap();
    let t0 = Instant::now();
    wait_until(
        FRAME + Duration::from_secs(5),
        "the stalled connection is closed",
        || closed(&mut stalled),
    );
    let cut = t0.elapsed();
    eprintln!("a frame stalled halfway was cut off after {cut:?}");
    assert!(
        cut >= FRAME - Duration::from_secs(1),
        "cut off by the frame deadline, not sooner: {cut:?}"
    );

    step(
        4,
        "the admitted connections, idle all along, are closed after the idle timeout",
    );
    wait_until(
        IDLE + Duration::from_secs(10),
        "every idle connection is closed",
        || admitted.iter_mut().all(closed),
    );
    let idle_for = opened.elapsed();
    eprintln!("{CAP} idle connections were closed {idle_for:?} after they were opened");
    assert!(
        idle_for >= IDLE - Duration::from_secs(1),
        "closed by the idle timeout, not sooner: {idle_for:?}"
    );

    step(5, "their slots are free again: the same host is admitted");
    let mut again = connect_from(&flooder, &target);
    let shut = poll(
        Duration::from_millis(500),
        Duration::from_millis(50),
        || closed(&mut again).then_some(()),
    );
    assert!(shut.is_none(), "a new connection from the host is admitted");
}

/// The server a client agent forwards to stops (SIGSTOP: its kernel still accepts and
/// acknowledges, nothing reads or answers). The client's next write must move on to another
/// server within the ping deadline (1 s of silence, 2 s for the ping), well inside the 7 s
/// hold, instead of waiting out the request's own 10 s deadline.
#[test]
fn a_client_moves_on_from_a_stopped_server_within_the_ping_deadline() {
    let net = Block::StoppedServer;
    let s = cluster(net);
    let client = Agent::start("c1", &net.ip(9), &["-join", &net.ip(1)]);
    let c = client.http_addr();
    wait_until(T, "the client writes through a server", || {
        http_full(&c, "PUT", "/v1/kv/before", b"v")
            .is_some_and(|(st, _, b)| st == 200 && b == b"true")
    });

    step(
        1,
        "find the server the client uses: the lowest node id (src/client/mod.rs)",
    );
    let members = client.members().expect("client answers");
    let preferred = members
        .iter()
        .filter(|m| m["Tags"]["role"] == "consul")
        .min_by_key(|m| m["Tags"]["id"].as_str().unwrap_or("").to_string())
        .and_then(|m| m["Name"].as_str())
        .expect("servers in the client's view")
        .to_string();
    let victim = s.iter().find(|a| a.name == preferred).unwrap();
    // Three more writes, so the client surely holds its connection to that server.
    for i in 0..3 {
        let key = format!("/v1/kv/warm-{i}");
        let (st, _, _) = http_full(&c, "PUT", &key, b"v").expect("client answers");
        assert_eq!(st, 200);
    }

    step(
        2,
        &format!("SIGSTOP {preferred}; a write through the client still succeeds, soon"),
    );
    victim.signal(libc::SIGSTOP);
    let t0 = Instant::now();
    let answer = http_full(&c, "PUT", "/v1/kv/after-stop", b"v");
    let took = t0.elapsed();
    victim.signal(libc::SIGCONT);
    eprintln!("write through the client with its server stopped: {answer:?} after {took:?}");
    let (st, _, body) = answer.expect("the client answers");
    assert_eq!((st, body.as_slice()), (200, b"true".as_slice()));
    assert!(
        took < Duration::from_secs(6),
        "moved on within the ping deadline (3 s, plus the other server's answer): {took:?}"
    );
    wait_until(
        T,
        "the write is readable through the stopped-and-resumed server",
        || victim.get_consistent("after-stop").as_deref() == Some("v"),
    );
}

/// A server's disk fills up while the cluster takes writes (its data dir on an 8 MiB tmpfs in
/// a mount namespace of its own, filled by a filler file). It must not stay a zombie, alive in
/// gossip with Raft stopped: it logs one line naming its store, the cause and the fix, leaves
/// gracefully and exits 2; the two others keep committing, and every write acknowledged before
/// is still there.
#[test]
fn a_server_whose_disk_fills_up_says_so_leaves_and_exits() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    let net = Block::FullDisk;
    let flags = server_flags(3, &[&net.ip(1), &net.ip(2)]);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let s1 = Agent::start("s1", &net.ip(1), &flags);
    let s2 = Agent::start("s2", &net.ip(2), &flags);
    let mut s3 = Agent::spec("s3", &net.ip(3))
        .args(&flags)
        .data_on_tmpfs("8m")
        .start();
    wait_for_leader(&[&s1, &s2, &s3], T);
    let store = s3.data_dir().join("raft");

    step(1, "writers commit 16 KiB values through s1 and s2");
    let addrs = [s1.http_addr(), s2.http_addr()];
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let (stop, counter) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicUsize::new(0)),
    );
    let value = vec![b'x'; 16 << 10];
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (addrs, acked, stop, counter, value) = (
                addrs.clone(),
                acked.clone(),
                stop.clone(),
                counter.clone(),
                value.clone(),
            );
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let n = counter.fetch_add(1, Ordering::Relaxed);
                    let key = format!("w/{n:05}");
                    let addr = &addrs[(n + w) % 2];
                    if let Some((200, _, b)) =
                        http_full(addr, "PUT", &format!("/v1/kv/{key}"), &value)
                    {
                        if b == b"true" {
                            acked.lock().unwrap().push(key);
                        }
                    }
                }
            })
        })
        .collect();
    wait_until(T, "the first writes are acknowledged", || {
        acked.lock().unwrap().len() >= 20
    });

    step(2, "fill s3's disk");
    let filler = s3.data_dir_as_seen_by_agent().join("filler");
    let mut f = std::fs::File::create(&filler).unwrap_or_else(|e| {
        panic!(
            "create {}: {e} (is the test run as root?)",
            filler.display()
        )
    });
    let chunk = vec![0u8; 64 << 10];
    let full = loop {
        if let Err(e) = f.write_all(&chunk) {
            break e;
        }
    };
    drop(f);
    eprintln!("filler stopped: {full}");
    assert_eq!(full.raw_os_error(), Some(libc::ENOSPC), "the tmpfs is full");
    let filled = Instant::now();

    step(3, "s3 says what failed, where, and what to do: one line");
    wait_until(T, "s3 logs its store failure", || {
        s3.log().contains("the Raft store in")
    });
    let log = s3.log();
    let line = log
        .lines()
        .find(|l| l.contains("the Raft store in"))
        .unwrap()
        .to_string();
    eprintln!("s3: {line}");
    assert_eq!(
        log.matches("the Raft store in").count(),
        1,
        "one line:\n{log}"
    );
    assert!(line.contains("ERROR"), "{line}");
    assert!(
        line.contains(&store.display().to_string()),
        "names the store: {line}"
    );
    assert!(
        line.contains("No space left on device"),
        "names the cause: {line}"
    );
    assert!(
        line.contains("Free space on that disk"),
        "names the fix: {line}"
    );

    step(4, "s3 leaves gracefully and exits 2");
    wait_until(T, "s1 sees s3 left", || s1.sees("s3", "left"));
    let code = s3.wait_exit(T);
    eprintln!(
        "s3 exited {code:?} {:?} after its disk filled",
        filled.elapsed()
    );
    assert_eq!(code, Some(2), "s3 exits non-zero:\n{}", s3.log());

    step(
        5,
        "the two others keep committing; s3 is out of their configuration",
    );
    let before = acked.lock().unwrap().len();
    wait_until(T, "more writes are acknowledged after s3 left", || {
        acked.lock().unwrap().len() >= before + 20
    });
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
    wait_until(T, "s1 and s2 are the voters", || {
        s1.voters() == ["s1", "s2"]
    });

    step(6, "every acknowledged write is still there");
    let acked = acked.lock().unwrap().clone();
    let (st, body) = http(&s1.http_addr(), "GET", "/v1/kv/w/?keys&consistent").expect("s1 answers");
    assert_eq!(st, 200, "{body}");
    let keys: std::collections::BTreeSet<String> = serde_json::from_str(&body).unwrap();
    let missing: Vec<&String> = acked.iter().filter(|k| !keys.contains(*k)).collect();
    eprintln!(
        "{} writes acknowledged, {} missing",
        acked.len(),
        missing.len()
    );
    assert!(missing.is_empty(), "acknowledged writes lost: {missing:?}");
}
