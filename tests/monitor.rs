//! `muster monitor` (issue 14 item 3; docs/configuration.md, "Monitor"): a running server's log
//! lines reach a monitor as they are logged, in text and in JSON; a monitor asking for more
//! detail than the agent logs is told what to change; a bad level is refused by name.

mod support;

use std::process::Command;
use std::time::Duration;

use support::*;

const T: Duration = Duration::from_secs(30);

fn monitor(agent: &Agent, args: &[&str]) -> Fixture {
    let mut cmd = Command::new(bin());
    cmd.arg("monitor")
        .args(args)
        .env("MUSTER_HTTP_ADDR", agent.http_addr());
    Fixture::spawn("muster monitor", cmd)
}

#[test]
fn monitor_streams_the_agents_lines_in_text_and_json() {
    let block = Block::Monitor;
    let s1 = Agent::start("s1", &block.ip(1), &["-server", "-bootstrap-expect", "1"]);
    wait_until(T, "s1 leads", || s1.is_leader());

    step(1, "a text monitor sees a line logged after it started");
    let text = monitor(&s1, &[]);
    // Each reload logs one info line; repeated until the monitor (started meanwhile) shows one.
    wait_until(T, "the reload's line in the monitor", || {
        ok(s1.cli(&["reload"]));
        text.log()
            .contains("[INFO]  reload asked over the API: nothing changed")
    });

    step(
        2,
        "a JSON monitor at debug: told the agent logs at info, then JSON lines",
    );
    let json = monitor(&s1, &["-log-level", "debug", "-log-json"]);
    wait_until(T, "the JSON monitor's first line and a reload line", || {
        ok(s1.cli(&["reload"]));
        json.log().contains("reload asked over the API")
    });
    let out = json.log();
    assert!(
        out.lines()
            .next()
            .unwrap_or("")
            .contains("debug lines are not produced: set log_level = \"debug\" and reload"),
        "{out}"
    );
    let line = out
        .lines()
        .find(|l| l.contains("reload asked over the API"))
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
    assert_eq!(v["@level"], "info", "{v}");
    assert!(v["@message"]
        .as_str()
        .unwrap()
        .starts_with("reload asked over the API"));

    step(3, "a level that is not one is refused by name");
    let o = s1.cli(&["monitor", "-log-level", "loud"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("Error starting monitor: 400 loglevel \"loud\" is not a level"),
        "{}",
        stderr(&o)
    );
}
