//! The clients of the fault suite: what they send during the faults, and the record of every
//! operation's call, answer and times that the checks at the end judge.
//!
//! Two kinds of client run at once, each a thread sending one request at a time to an agent it
//! picks at random (servers and client agents alike):
//! - **unique-key writers** put `w/<client>-<n>` = `<client>-<n>`; a write counts as
//!   acknowledged only on `200 true`, and anything else (an error, a timeout) leaves its fate
//!   unknown;
//! - **register clients** read, write and compare-and-set the one key `reg`, with reads both
//!   `?consistent` and in the default mode, and record each operation for the linearizability
//!   checker. A CAS expects the value a read of the same client just returned, by that read's
//!   ModifyIndex: values are unique, so "the index is still N" is "the value is still v".

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use base64::Engine;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use super::checker::{Entry, Op, ABSENT};
use super::support::Client;

/// The clients' HTTP client: a request gets longer than muster's own write deadline (12 s,
/// docs/servers.md) before it counts as unanswered.
const CLIENT: Client = Client::new(Duration::from_secs(1), Duration::from_secs(15));

/// The register's key.
pub const REGISTER: &str = "reg";

/// One unique-key write and what became of it.
#[derive(Clone, Debug)]
pub struct Write {
    pub key: String,
    pub value: String,
    pub acked: bool,
}

/// What the clients did, shared by their threads.
#[derive(Default)]
pub struct Record {
    pub writes: Mutex<Vec<Write>>,
    pub register: Mutex<Vec<Entry>>,
}

/// The running clients; [`Workload::stop`] ends them and hands back the record.
pub struct Workload {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    record: Arc<Record>,
}

impl Workload {
    /// Starts `writers` unique-key writers and `registers` register clients against the
    /// agents whose HTTP APIs are `addrs`, their choices drawn from `seed`.
    pub fn start(addrs: Vec<String>, writers: u64, registers: u64, seed: u64) -> Workload {
        let stop = Arc::new(AtomicBool::new(false));
        let record = Arc::new(Record::default());
        let t0 = Instant::now();
        let mut threads = Vec::new();
        for c in 0..writers + registers {
            let (stop, record, addrs) = (stop.clone(), record.clone(), addrs.clone());
            let rng = StdRng::seed_from_u64(seed.wrapping_mul(31).wrapping_add(c));
            let register = c >= writers;
            threads.push(std::thread::spawn(move || {
                let mut client = Clients {
                    id: c + 1,
                    seq: 0,
                    rng,
                    addrs,
                    t0,
                    record,
                };
                while !stop.load(Ordering::Relaxed) {
                    if register {
                        client.register_op();
                    } else {
                        client.unique_write();
                    }
                    // Pacing, not waiting: two cores run five servers, two client agents and
                    // the clients, and a client flat out would starve the agents.
                    std::thread::sleep(Duration::from_millis(15));
                }
            }));
        }
        Workload {
            stop,
            threads,
            record,
        }
    }

    /// Stops the clients, waits for their last operations, and gives what they recorded.
    pub fn stop(self) -> (Vec<Write>, Vec<Entry>) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().expect("a workload client panicked");
        }
        let writes = self.record.writes.lock().unwrap().clone();
        let register = self.record.register.lock().unwrap().clone();
        (writes, register)
    }
}

/// One client thread's state.
struct Clients {
    id: u64,
    seq: u64,
    rng: StdRng,
    addrs: Vec<String>,
    t0: Instant,
    record: Arc<Record>,
}

impl Clients {
    fn pick(&mut self) -> String {
        let i = self.rng.random_range(0..self.addrs.len());
        self.addrs[i].clone()
    }

    fn now(&self) -> u64 {
        self.t0.elapsed().as_micros() as u64
    }

    /// A value no other operation writes: the client's id and its sequence number.
    fn fresh(&mut self) -> u64 {
        self.seq += 1;
        self.id * 1_000_000_000 + self.seq
    }

    fn unique_write(&mut self) {
        let v = self.fresh();
        let key = format!("w/{}-{}", self.id, v % 1_000_000_000);
        let value = v.to_string();
        let addr = self.pick();
        let answer = CLIENT.text(&addr, "PUT", &format!("/v1/kv/{key}"), value.as_bytes());
        let acked = matches!(answer, Some((200, ref b)) if b.trim() == "true");
        self.record
            .writes
            .lock()
            .unwrap()
            .push(Write { key, value, acked });
    }

    /// One read, write or CAS of the register, recorded.
    fn register_op(&mut self) {
        match self.rng.random_range(0..4) {
            0 => {
                self.read(true);
            }
            1 => {
                self.read(false);
            }
            2 => {
                let value = self.fresh();
                let (call, answer) = self.put_register("", value);
                let done = matches!(answer, Some((200, ref b)) if b.trim() == "true");
                self.push(call, done, Op::Write { value, done });
            }
            _ => {
                let Some((expect, index)) = self.read(true) else {
                    return;
                };
                let new = self.fresh();
                let (call, answer) = self.put_register(&format!("?cas={index}"), new);
                let ok = match answer {
                    Some((200, ref b)) if b.trim() == "true" => Some(true),
                    Some((200, ref b)) if b.trim() == "false" => Some(false),
                    _ => None,
                };
                self.push(call, ok.is_some(), Op::Cas { expect, new, ok });
            }
        }
    }

    /// PUTs `value` to the register (with `query`, e.g. `?cas=N`) through an agent picked at
    /// random: the call time and the answer.
    fn put_register(&mut self, query: &str, value: u64) -> (u64, Option<(u16, String)>) {
        let addr = self.pick();
        let call = self.now();
        let path = format!("/v1/kv/{REGISTER}{query}");
        (
            call,
            CLIENT.text(&addr, "PUT", &path, value.to_string().as_bytes()),
        )
    }

    /// Reads the register; records the read when it was answered, and gives the value and its
    /// ModifyIndex (0 for no key, as `?cas=0` takes it).
    fn read(&mut self, consistent: bool) -> Option<(u64, u64)> {
        let addr = self.pick();
        let path = if consistent {
            format!("/v1/kv/{REGISTER}?consistent")
        } else {
            format!("/v1/kv/{REGISTER}")
        };
        let call = self.now();
        let (status, body) = CLIENT.text(&addr, "GET", &path, b"")?;
        let ret = self.now();
        let (saw, index) = match status {
            404 => (ABSENT, 0),
            200 => {
                let v: serde_json::Value = serde_json::from_str(&body).ok()?;
                let text = base64::engine::general_purpose::STANDARD
                    .decode(v[0]["Value"].as_str()?)
                    .ok()?;
                let saw: u64 = String::from_utf8(text).ok()?.parse().ok()?;
                (saw, v[0]["ModifyIndex"].as_u64()?)
            }
            _ => return None,
        };
        self.record.register.lock().unwrap().push(Entry {
            call,
            ret: Some(ret),
            op: Op::Read { saw },
        });
        Some((saw, index))
    }

    fn push(&self, call: u64, answered: bool, op: Op) {
        let ret = answered.then(|| self.now());
        self.record
            .register
            .lock()
            .unwrap()
            .push(Entry { call, ret, op });
    }
}
