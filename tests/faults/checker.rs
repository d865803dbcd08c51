//! A linearizability checker for one compare-and-set register, and the tests that show it can
//! fail.
//!
//! The history is what the workload's clients saw: every operation with the time it was sent
//! and the time its answer came (none when it timed out or the connection broke). The register
//! is linearizable when every operation can be given one instant between its call and its
//! return such that, taken in that order, each answer is what a single register would have
//! given ("Linearizability: a correctness condition for concurrent objects", Herlihy and Wing,
//! 1990). An operation without an answer may have taken effect at any instant after its call,
//! or never.
//!
//! The search is the one of Wing and Gong, with the cache of Lowe ("Testing for
//! linearizability", 2017): depth first over "which operations are linearized so far" and "the
//! register's value", never visiting the same pair twice. Values are numbers, unique per write,
//! with 0 for "no key".

use std::collections::HashMap;

/// The value of "the key does not exist".
pub const ABSENT: u64 = 0;

/// What one operation did, as its client saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// A read that answered `saw` (reads without an answer tell nothing and are left out).
    Read { saw: u64 },
    /// A write of `value`; `done` when it was acknowledged, false when its fate is unknown.
    Write { value: u64, done: bool },
    /// A compare-and-set from `expect` to `new`: `Some(true)` applied, `Some(false)` refused
    /// (the value was not `expect`), `None` unknown.
    Cas {
        expect: u64,
        new: u64,
        ok: Option<bool>,
    },
}

/// One operation of the history: microseconds since the run began.
#[derive(Clone, Copy, Debug)]
pub struct Entry {
    pub call: u64,
    /// None: no answer came (the operation may or may not have taken effect).
    pub ret: Option<u64>,
    pub op: Op,
}

/// The checker's verdict.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Linearizable,
    /// No order explains the answers; the most answered operations some order did explain
    /// (how far the search got before it broke).
    NotLinearizable {
        explained: usize,
    },
    /// The search gave up after this many steps (a history too concurrent to decide here).
    Undecided {
        steps: u64,
    },
}

/// The register's value after `op` taken from `state`, or None if `op`'s answer is impossible
/// from `state`.
fn step(state: u64, op: Op) -> Option<u64> {
    match op {
        Op::Read { saw } => (saw == state).then_some(state),
        Op::Write { value, .. } => Some(value),
        Op::Cas {
            expect,
            new,
            ok: Some(true) | None,
        } => (state == expect).then_some(new),
        Op::Cas {
            expect,
            ok: Some(false),
            ..
        } => (state != expect).then_some(state),
    }
}

/// Judges `history` against a register that starts without the key. Gives up after
/// `max_steps` visited search nodes.
pub fn check(history: &[Entry], max_steps: u64) -> Verdict {
    let mut ops: Vec<Entry> = history.to_vec();
    ops.sort_by_key(|e| e.call);
    let n = ops.len();
    let answered = ops.iter().filter(|e| e.ret.is_some()).count();
    let words = n.div_ceil(64).max(1);
    let bit = |set: &[u64], i: usize| set[i / 64] & (1 << (i % 64)) != 0;

    // A search node: which operations are linearized (answered ones, and unanswered ones,
    // apart), the register's value, and how many answered operations that covers. Two nodes
    // with the same answered set and value differ only in which unanswered operations are used
    // up; the one that used up fewer can do everything the other can (an unanswered operation
    // is optional), so a node is skipped when one with a subset of its used-up unanswered
    // operations was already visited. Without that, every subset of the timed-out writes
    // would be a node of its own.
    let mut seen: HashMap<(Vec<u64>, u64), Vec<Vec<u64>>> = HashMap::new();
    let mut stack: Vec<(Vec<u64>, Vec<u64>, u64, usize)> =
        vec![(vec![0; words], vec![0; words], ABSENT, 0)];
    let mut steps = 0u64;
    let mut best = 0usize;
    while let Some((done, used, state, count)) = stack.pop() {
        if count == answered {
            return Verdict::Linearizable;
        }
        steps += 1;
        if steps > max_steps {
            return Verdict::Undecided { steps };
        }
        best = best.max(count);
        let taken = |i: usize| bit(&done, i) || bit(&used, i);
        // The earliest return among answered operations not yet linearized: an operation
        // called after it cannot come next (that one must be placed first).
        let first_return = (0..n)
            .filter(|&i| !taken(i))
            .filter_map(|i| ops[i].ret)
            .min()
            .unwrap_or(u64::MAX);
        for i in 0..n {
            if taken(i) {
                continue;
            }
            if ops[i].call > first_return {
                break; // sorted by call: every later one is called even later
            }
            let Some(next) = step(state, ops[i].op) else {
                continue;
            };
            let (mut d, mut u) = (done.clone(), used.clone());
            let target = if ops[i].ret.is_some() { &mut d } else { &mut u };
            target[i / 64] |= 1 << (i % 64);
            let variants = seen.entry((d.clone(), next)).or_default();
            let dominated = variants
                .iter()
                .any(|v| v.iter().zip(&u).all(|(a, b)| a & !b == 0));
            if !dominated {
                variants.push(u.clone());
                let c = count + usize::from(ops[i].ret.is_some());
                stack.push((d, u, next, c));
            }
        }
    }
    Verdict::NotLinearizable { explained: best }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STEPS: u64 = 1_000_000;

    fn e(call: u64, ret: u64, op: Op) -> Entry {
        Entry {
            call,
            ret: Some(ret),
            op,
        }
    }
    fn lost(call: u64, op: Op) -> Entry {
        Entry {
            call,
            ret: None,
            op,
        }
    }
    fn w(value: u64) -> Op {
        Op::Write { value, done: true }
    }
    fn r(saw: u64) -> Op {
        Op::Read { saw }
    }
    fn cas(expect: u64, new: u64, ok: bool) -> Op {
        Op::Cas {
            expect,
            new,
            ok: Some(ok),
        }
    }
    fn ok(h: &[Entry]) -> bool {
        check(h, STEPS) == Verdict::Linearizable
    }
    fn broken(h: &[Entry]) -> bool {
        matches!(check(h, STEPS), Verdict::NotLinearizable { .. })
    }

    #[test]
    fn sequential_histories_that_a_register_gives_pass() {
        assert!(ok(&[]));
        assert!(ok(&[e(0, 1, r(ABSENT))]));
        assert!(ok(&[
            e(0, 1, w(1)),
            e(2, 3, r(1)),
            e(4, 5, cas(1, 2, true)),
            e(6, 7, r(2))
        ]));
        assert!(ok(&[
            e(0, 1, w(1)),
            e(2, 3, cas(5, 2, false)),
            e(4, 5, r(1))
        ]));
        assert!(ok(&[e(0, 1, cas(ABSENT, 7, true)), e(2, 3, r(7))]));
    }

    #[test]
    fn a_stale_read_after_an_acknowledged_write_fails() {
        // The partitioned-leader bug: v1 written, v2 written and acknowledged, then v1 read.
        assert!(broken(&[e(0, 1, w(1)), e(2, 3, w(2)), e(4, 5, r(1))]));
        assert!(broken(&[e(0, 1, w(1)), e(2, 3, r(ABSENT))]));
    }

    #[test]
    fn a_read_of_a_value_never_written_fails() {
        assert!(broken(&[e(0, 1, w(1)), e(2, 3, r(9))]));
    }

    #[test]
    fn a_refused_cas_whose_value_appears_fails() {
        // The double-applied write: the CAS took effect, yet its client was told "false".
        assert!(broken(&[
            e(0, 1, w(1)),
            e(2, 3, cas(1, 2, false)),
            e(4, 5, r(2))
        ]));
    }

    #[test]
    fn a_cas_applied_twice_fails() {
        // Two clients both succeed in moving 1 → something: only one can have seen 1.
        assert!(broken(&[
            e(0, 1, w(1)),
            e(2, 5, cas(1, 2, true)),
            e(3, 6, cas(1, 3, true)),
        ]));
    }

    #[test]
    fn concurrent_operations_may_take_either_order() {
        // A read overlapping a write may see the old or the new value.
        assert!(ok(&[e(0, 1, w(1)), e(2, 5, w(2)), e(3, 4, r(1))]));
        assert!(ok(&[e(0, 1, w(1)), e(2, 5, w(2)), e(3, 4, r(2))]));
        // Two overlapping writes; later reads fix the order as 2 then 1.
        assert!(ok(&[e(0, 4, w(1)), e(1, 3, w(2)), e(5, 6, r(1))]));
        // Only one of two concurrent CASes from the same value wins.
        assert!(ok(&[
            e(0, 1, w(1)),
            e(2, 5, cas(1, 2, true)),
            e(3, 6, cas(1, 3, false)),
            e(7, 8, r(2)),
        ]));
    }

    #[test]
    fn reads_may_not_go_back_in_time() {
        // w1 done before w2 begins; a read sees 2, a later read sees 1 again.
        assert!(broken(&[
            e(0, 1, w(1)),
            e(2, 10, w(2)),
            e(3, 4, r(2)),
            e(5, 6, r(1)),
        ]));
    }

    #[test]
    fn an_unanswered_write_may_or_may_not_have_happened() {
        assert!(ok(&[lost(0, w(1)), e(5, 6, r(1))]));
        assert!(ok(&[lost(0, w(1)), e(5, 6, r(ABSENT))]));
        // ...but once seen it cannot be unseen.
        assert!(broken(&[
            e(0, 1, w(3)),
            lost(2, w(1)),
            e(5, 6, r(1)),
            e(7, 8, r(3)),
        ]));
        // An unanswered CAS applies only if its expectation held.
        assert!(broken(&[
            e(0, 1, w(3)),
            lost(
                2,
                Op::Cas {
                    expect: 4,
                    new: 5,
                    ok: None
                }
            ),
            e(5, 6, r(5)),
        ]));
    }

    #[test]
    fn a_long_concurrent_history_is_decided() {
        // Four clients, 400 operations, each round a write and reads of it: linearizable.
        let mut h = Vec::new();
        for round in 0..100u64 {
            let t = round * 10;
            h.push(e(t, t + 6, w(round + 1)));
            h.push(e(t + 1, t + 2, r(round)));
            h.push(e(t + 7, t + 8, r(round + 1)));
            h.push(lost(t + 3, w(1000 + round)));
        }
        // Round 0's first read saw the initial "no key".
        assert!(ok(&h));
        // The same, with one read in the middle seeing an overwritten value.
        h[201].op = r(3);
        assert!(broken(&h));
    }
}
