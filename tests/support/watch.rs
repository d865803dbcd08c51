//! The leader watch of the rolling-replacement test and the autoscale bench: a thread that asks
//! every live server, over and over, whether it is leader, and keeps the longest stretch during
//! which none was.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::agent::is_leader_at;
use super::http::Client;

/// Leaderless stretches seen by a [`LeaderWatch`].
struct Stretches {
    /// The longest stretch that ended with a leader.
    longest: Duration,
    /// The stretch still open when the watch stopped, if any.
    open: Option<Duration>,
}

/// Polls the HTTP APIs it is given every `every`, in a thread of its own.
pub struct LeaderWatch {
    stop: Arc<AtomicBool>,
    addrs: Arc<Mutex<Vec<String>>>,
    handle: Option<JoinHandle<Stretches>>,
}

impl LeaderWatch {
    /// Starts watching the servers whose HTTP APIs are `addrs`, asking through `client`.
    pub fn start(addrs: Vec<String>, every: Duration, client: Client) -> LeaderWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let addrs = Arc::new(Mutex::new(addrs));
        let (st, ad) = (stop.clone(), addrs.clone());
        let handle = std::thread::spawn(move || {
            let mut longest = Duration::ZERO;
            let mut without: Option<Instant> = None;
            while !st.load(Ordering::Relaxed) {
                let list = ad.lock().unwrap().clone();
                let has = list.iter().any(|a| is_leader_at(&client, a));
                match (has, without) {
                    (true, Some(t)) => {
                        longest = longest.max(t.elapsed());
                        without = None;
                    }
                    (false, None) => without = Some(Instant::now()),
                    _ => {}
                }
                std::thread::sleep(every);
            }
            Stretches {
                longest,
                open: without.map(|t| t.elapsed()),
            }
        });
        LeaderWatch {
            stop,
            addrs,
            handle: Some(handle),
        }
    }

    /// The servers to ask from now on (one joined, one left).
    pub fn set(&self, addrs: Vec<String>) {
        *self.addrs.lock().unwrap() = addrs;
    }

    /// Stops; the longest leaderless stretch, counting one still open at the end.
    pub fn finish(self) -> Duration {
        let s = self.join();
        s.open.map_or(s.longest, |open| s.longest.max(open))
    }

    /// Stops; the longest leaderless stretch that ended with a leader (the autoscale bench's
    /// figure, which has always left a stretch still open at the end out).
    pub fn finish_closed(self) -> Duration {
        self.join().longest
    }

    fn join(mut self) -> Stretches {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.take().unwrap().join().unwrap()
    }
}

impl Drop for LeaderWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
