//! `muster members`: the member list as the local agent sees it, in Consul's columns.

use clap::Args;
use regex::Regex;

use super::client::HttpArgs;
use crate::http::agent::MemberJson;

#[derive(Debug, Args)]
pub struct MembersCmd {
    #[command(flatten)]
    pub http: HttpArgs,
    /// Show every tag instead of the summary columns.
    #[arg(long)]
    pub detailed: bool,
    /// Only members whose status matches this regular expression (alive, leaving, left, failed).
    #[arg(long, value_name = "REGEX")]
    pub status: Option<String>,
}

fn status_word(code: u8) -> &'static str {
    match code {
        1 => "alive",
        2 => "leaving",
        3 => "left",
        4 => "failed",
        _ => "none",
    }
}

pub async fn run(cmd: MembersCmd) -> u8 {
    let filter = match cmd
        .status
        .as_deref()
        .map(|s| Regex::new(&format!("^(?:{s})$")))
    {
        None => None,
        Some(Ok(r)) => Some(r),
        Some(Err(e)) => {
            eprintln!("-status is not a valid regular expression: {e}");
            return 1;
        }
    };
    let mut members: Vec<MemberJson> = match cmd.http.client().get_json("/v1/agent/members").await {
        Ok(m) => m,
        Err(failure) => return failure.report("Error retrieving members"),
    };
    members.retain(|m| {
        filter
            .as_ref()
            .is_none_or(|r| r.is_match(status_word(m.status)))
    });
    if members.is_empty() {
        return 2;
    }
    // Servers first, then by name (Consul's order).
    members.sort_by(|a, b| {
        let server = |m: &MemberJson| m.tags.get("role").map(String::as_str) != Some("consul");
        (server(a), &a.name).cmp(&(server(b), &b.name))
    });
    let mut rows: Vec<Vec<String>> = Vec::new();
    if cmd.detailed {
        rows.push(vec![
            "Node".into(),
            "Address".into(),
            "Status".into(),
            "Tags".into(),
        ]);
        for m in &members {
            let tags = m
                .tags
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",");
            rows.push(vec![
                m.name.clone(),
                addr(m),
                status_word(m.status).into(),
                tags,
            ]);
        }
    } else {
        rows.push(
            [
                "Node", "Address", "Status", "Type", "Build", "Protocol", "DC",
            ]
            .map(String::from)
            .to_vec(),
        );
        for m in &members {
            let kind = match m.tags.get("role").map(String::as_str) {
                Some("consul") => "server",
                Some("node") => "client",
                _ => "unknown",
            };
            let build = m
                .tags
                .get("build")
                .map(|b| b.split(':').next().unwrap_or("").to_string())
                .unwrap_or_default();
            let vsn = m.tags.get("vsn").cloned().unwrap_or_default();
            let dc = m.tags.get("dc").cloned().unwrap_or_default();
            rows.push(vec![
                m.name.clone(),
                addr(m),
                status_word(m.status).into(),
                kind.into(),
                build,
                vsn,
                dc,
            ]);
        }
    }
    print!("{}", table(&rows));
    0
}

fn addr(m: &MemberJson) -> String {
    match m.addr.parse::<std::net::IpAddr>() {
        Ok(ip) => std::net::SocketAddr::new(ip, m.port).to_string(),
        Err(_) => format!("{}:{}", m.addr, m.port),
    }
}

/// Left-aligned columns separated by two spaces.
pub fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (c, cell) in r.iter().enumerate() {
            if c + 1 == r.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}  ", w = widths[c]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}
