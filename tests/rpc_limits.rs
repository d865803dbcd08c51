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
