//! `muster info`: the agent's `Stats`, one section at a time, keys sorted (Consul's layout).

use clap::Args;
use serde_json::Value;

use super::client::HttpArgs;

#[derive(Debug, Args)]
pub struct InfoCmd {
    #[command(flatten)]
    pub http: HttpArgs,
}

pub async fn run(cmd: InfoCmd) -> u8 {
    let v: Value = match cmd.http.client().get_json("/v1/agent/self").await {
        Ok(v) => v,
        Err(failure) => return failure.report("Error querying agent"),
    };
    let Some(stats) = v.get("Stats").and_then(Value::as_object) else {
        eprintln!("Error querying agent: the answer has no Stats");
        return 1;
    };
    let mut sections: Vec<_> = stats.iter().collect();
    sections.sort_by(|a, b| a.0.cmp(b.0));
    for (name, body) in sections {
        println!("{name}:");
        if let Some(obj) = body.as_object() {
            let mut keys: Vec<_> = obj.iter().collect();
            keys.sort_by(|a, b| a.0.cmp(b.0));
            for (k, v) in keys {
                let shown = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                println!("\t{k} = {shown}");
            }
        }
    }
    0
}
