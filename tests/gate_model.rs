//! The bootstrap gate model-checked (docs/servers.md, "Why at most one cluster"): the old
//! rule's double initialisation is found, and the agent's rule holds for three servers. The
//! five-server check takes minutes: `cargo run --release --example gate_model -- 5`.

#[path = "model/gate.rs"]
mod model;

use model::{GateModel, Rule};
use stateright::{Checker, HasDiscoveries, Model};

#[test]
fn the_old_rule_initialises_two_clusters_with_one_server_more_than_expect() {
    let m = GateModel::new(Rule::Lapsing, 4, 3);
    let started = std::time::Instant::now();
    let first = HasDiscoveries::AnyOf(["at most one cluster id"].into());
    let c = m.checker().finish_when(first).spawn_bfs().join();
    let trace = c
        .discovery("at most one cluster id")
        .expect("the old rule lets two clusters form");
    println!(
        "old rule, 4 servers, expect 3: counterexample after {} states, {:?}:",
        c.unique_state_count(),
        started.elapsed()
    );
    for a in trace.into_actions() {
        println!("  {a:?}");
    }
}

#[test]
fn the_durable_rule_initialises_one_cluster_at_most_with_three_servers() {
    let mut m = GateModel::new(Rule::Durable, 3, 3);
    m.crashes = 1;
    m.wipes = 1;
    m.attempts = 3;
    let started = std::time::Instant::now();
    let c = m.checker().spawn_bfs().join();
    println!(
        "durable rule, 3 servers, expect 3, 1 crash, 1 restart without data, 3 attempts: {} states in {:?}",
        c.unique_state_count(),
        started.elapsed()
    );
    c.assert_properties();
}
