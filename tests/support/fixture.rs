//! The processes a test talks to besides muster: the Python fixture servers of tests/fixtures
//! (moto and its counting front, the fake IMDS, the fake GCE, the fake DNS), and etcd for the
//! benches. One type for all: spawned, waited for, killed when dropped, its log printed when the
//! test panics.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::http::http;
use super::{poll, run_ok, Block};

/// How long a fixture may take to answer: moto imports the whole AWS model first.
const STARTUP: Duration = Duration::from_secs(60);

/// A helper process, SIGKILLed and reaped when dropped (also when the test fails).
pub struct Fixture {
    what: String,
    child: Child,
    /// Where its output goes (None: thrown away), in a temp dir of its own.
    log: Option<(tempfile::TempDir, PathBuf)>,
}

impl Fixture {
    /// Spawns `cmd`, its output kept for a failure message; `what` names it there.
    pub fn spawn(what: &str, mut cmd: Command) -> Fixture {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("fixture.log");
        let log = std::fs::File::create(&path).expect("fixture log");
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log);
        let child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {what}: {e}"));
        Fixture {
            what: what.into(),
            child,
            log: Some((dir, path)),
        }
    }

    /// Spawns `cmd` with its output thrown away (the benches: nothing else on the machine).
    pub fn spawn_quiet(what: &str, mut cmd: Command) -> Fixture {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {what}: {e}"));
        Fixture {
            what: what.into(),
            child,
            log: None,
        }
    }

    /// `python3 tests/fixtures/SCRIPT ARGS…`.
    pub fn python(script: &str, args: &[&str]) -> Fixture {
        let mut cmd = Command::new("python3");
        cmd.arg(script_path(script)).args(args);
        Fixture::spawn(script, cmd)
    }

    /// Waits until `GET path` on `addr` gets any answer; panics with the fixture's log if it
    /// exits or does not answer in time.
    pub fn wait_http(mut self, addr: &str, path: &str) -> Fixture {
        let answered = poll(STARTUP, Duration::from_millis(50), || {
            if http(addr, "GET", path).is_some() {
                return Some(true);
            }
            matches!(self.child.try_wait(), Ok(Some(_))).then_some(false)
        });
        match answered {
            Some(true) => self,
            Some(false) => panic!("{} exited before answering on {addr}", self.what),
            None => panic!("{} did not answer on {addr} within {STARTUP:?}", self.what),
        }
    }

    /// The process id (for its memory use).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the fixture printed so far ("" when its output is thrown away).
    pub fn log(&self) -> String {
        self.log
            .as_ref()
            .and_then(|(_, p)| std::fs::read_to_string(p).ok())
            .unwrap_or_default()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() && self.log.is_some() {
            eprintln!("=== log of {} ===\n{}", self.what, self.log());
        }
    }
}

/// tests/fixtures/NAME.
pub fn script_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Runs `python3 tests/fixtures/SCRIPT ARGS…` to its end (the moto layouts); panics with its
/// stderr if it fails.
pub fn run_script(script: &str, args: &[&str]) {
    let mut cmd = Command::new("python3");
    cmd.arg(script_path(script)).args(args);
    run_ok(&format!("{script} {args:?}"), cmd);
}

/// A plain moto server on 127.B.0.1:5000 (python3 with moto is installed by the test command:
/// `pip install 'moto[server]'`); answering when returned.
pub fn moto(block: Block) -> Fixture {
    let host = block.ip(1);
    let mut cmd = Command::new("python3");
    cmd.args(["-m", "moto.server", "-H", &host, "-p", "5000"]);
    Fixture::spawn("moto", cmd).wait_http(&format!("{host}:5000"), "/moto-api/")
}

/// moto behind the counting front (tests/fixtures/moto_counting.py) on 127.B.0.1:5000, the first
/// `throttle` EC2 requests refused as AWS refuses a throttled account; answering when returned.
pub fn moto_counting(block: Block, throttle: u32) -> Fixture {
    let host = block.ip(1);
    Fixture::python("moto_counting.py", &[&host, "5000", &throttle.to_string()])
        .wait_http(&format!("{host}:5000"), "/muster-test/calls")
}

/// The EC2 calls counted by [`moto_counting`] on `host` (`127.B.0.1:5000`), by action; Null
/// while it does not answer.
pub fn moto_calls(host: &str) -> serde_json::Value {
    http(host, "GET", "/muster-test/calls")
        .and_then(|(_, b)| serde_json::from_str(&b).ok())
        .unwrap_or(serde_json::Value::Null)
}

/// The provider string of the aws provider against a moto `endpoint`, with `filter` appended.
pub fn aws_provider(endpoint: &str, filter: &str) -> String {
    format!("provider=aws endpoint={endpoint} region=us-east-1 access_key_id=test secret_access_key=test {filter}")
}
