//! The bootstrap gate's full model check (docs/servers.md, "Why at most one cluster"):
//!
//! ```text
//! cargo run --release --example gate_model -- SERVERS [EXPECT] [durable|lapsing]
//!     [--crashes N] [--wipes N] [--attempts N] [--threads N]
//! ```
//!
//! Prints the states explored, the time, and the verdict (with a counterexample, if any).

#[path = "../tests/model/gate.rs"]
mod model;

use model::{GateModel, Rule};
use stateright::{Checker, Model};

fn main() {
    let mut args = std::env::args().skip(1);
    let mut positional = Vec::new();
    let (mut crashes, mut wipes, mut attempts, mut threads) = (1u8, 0u8, 2u8, 2usize);
    while let Some(a) = args.next() {
        let mut value = || -> u8 {
            args.next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{a} needs a number"))
        };
        match a.as_str() {
            "--crashes" => crashes = value(),
            "--wipes" => wipes = value(),
            "--attempts" => attempts = value(),
            "--threads" => threads = value().into(),
            _ => positional.push(a),
        }
    }
    let servers: usize = positional
        .first()
        .map_or(5, |s| s.parse().expect("SERVERS"));
    let expect: u32 = positional
        .get(1)
        .map_or(servers as u32, |s| s.parse().expect("EXPECT"));
    let rule = match positional.get(2).map(String::as_str) {
        None | Some("durable") => Rule::Durable,
        Some("lapsing") => Rule::Lapsing,
        Some(r) => panic!("unknown rule {r}: durable or lapsing"),
    };
    let mut m = GateModel::new(rule, servers, expect);
    m.crashes = crashes;
    m.wipes = wipes;
    m.attempts = attempts;
    println!(
        "{rule:?} rule, {servers} servers, expect {expect}, {crashes} crash(es), {wipes} restart(s) without data, {attempts} attempts, {threads} threads"
    );
    let started = std::time::Instant::now();
    let c = m.checker().threads(threads).spawn_bfs().join();
    println!(
        "{} states explored ({} generated) in {:.1?}, max depth {}",
        c.unique_state_count(),
        c.state_count(),
        started.elapsed(),
        c.max_depth()
    );
    let mut ok = true;
    for p in [
        "at most one cluster id",
        "at most one configuration initialised",
    ] {
        match c.discovery(p) {
            None => println!("holds: {p}"),
            Some(path) => {
                ok = false;
                println!("VIOLATED: {p}; counterexample:");
                for a in path.into_actions() {
                    println!("  {a:?}");
                }
            }
        }
    }
    if c.discovery("a cluster is named").is_none() {
        ok = false;
        println!("no cluster is ever named: the model is vacuous");
    }
    std::process::exit(if ok { 0 } else { 1 });
}
