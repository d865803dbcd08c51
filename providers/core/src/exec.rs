//! `provider=exec command="…" timeout=5s`: runs a command through `sh -c` and reads one address
//! per line of its output, so any source works without recompiling muster.

use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;

use crate::addr::JoinAddr;
use crate::args::ProviderArgs;
use crate::provider::{Candidates, KeySpec, Provider, ProviderError};

pub struct Exec;

const KEYS: &[KeySpec] = &[
    KeySpec {
        name: "command",
        help: "a shell command printing one address per line (blank lines and # comments ignored)",
        required: true,
        secret: false,
    },
    KeySpec {
        name: "timeout",
        help: "how long it may run, in seconds or with a unit (500ms, 5s); default 5s",
        required: false,
        secret: false,
    },
];

fn timeout(args: &ProviderArgs) -> Result<Duration, ProviderError> {
    let Some(t) = args.get("timeout") else {
        return Ok(Duration::from_secs(5));
    };
    let (num, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
    let n: u64 = num
        .parse()
        .map_err(|_| ProviderError::BadArgs(format!("timeout={t:?}: use e.g. 500ms or 5s")))?;
    let d = match unit {
        "" | "s" => Duration::from_secs(n),
        "ms" => Duration::from_millis(n),
        "m" => Duration::from_secs(n * 60),
        _ => {
            return Err(ProviderError::BadArgs(format!(
                "timeout={t:?}: use e.g. 500ms or 5s"
            )))
        }
    };
    if d.is_zero() {
        return Err(ProviderError::BadArgs("timeout must be more than 0".into()));
    }
    Ok(d)
}

/// How many lines of a failed command's stderr its error carries, and how many characters.
const STDERR_LINES: usize = 5;
const STDERR_CHARS: usize = 600;

/// One line on a command that failed: how it ended (exit code or signal) and the first lines
/// of its stderr, or that it printed none, so that the operator sees why without rerunning it.
fn failed(status: &std::process::ExitStatus, stderr: &[u8]) -> String {
    use std::os::unix::process::ExitStatusExt;
    let how = match (status.code(), status.signal()) {
        (Some(code), _) => format!("command exited with status {code}"),
        (None, Some(sig)) => format!("command was killed by signal {sig}"),
        (None, None) => format!("command failed ({status})"),
    };
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    if lines.is_empty() {
        return format!("{how} and printed nothing on stderr; run it by hand to see why");
    }
    let mut shown = lines[..lines.len().min(STDERR_LINES)].join(" | ");
    if shown.chars().count() > STDERR_CHARS {
        shown = shown.chars().take(STDERR_CHARS).collect::<String>() + "…";
    } else if lines.len() > STDERR_LINES {
        shown.push_str(" | …");
    }
    format!("{how}; its stderr: {shown}")
}

impl Provider for Exec {
    fn name(&self) -> &'static str {
        "exec"
    }
    fn keys(&self) -> &'static [KeySpec] {
        KEYS
    }
    fn help(&self) -> &'static str {
        "Runs the command with `sh -c`; a non-zero exit or a line that is not an address is an\n\
         error naming it. Permissions: whatever the command needs.\n\
         Example: provider=exec command=\"cat /etc/muster/servers\"\n"
    }
    fn validate(&self, args: &ProviderArgs) -> Result<(), ProviderError> {
        timeout(args).map(|_| ())
    }
    fn addrs<'a>(
        &'a self,
        args: &'a ProviderArgs,
    ) -> BoxFuture<'a, Result<Candidates, ProviderError>> {
        async move {
            let command = args.get("command").unwrap_or_default();
            let limit = timeout(args)?;
            let child = tokio::process::Command::new("sh")
                .arg("-c")
                .arg(command)
                .kill_on_drop(true)
                .stdin(std::process::Stdio::null())
                .output();
            let out = tokio::time::timeout(limit, child)
                .await
                .map_err(|_| {
                    ProviderError::Unreachable(format!("command did not finish within {limit:?}"))
                })?
                .map_err(|e| ProviderError::Unreachable(format!("cannot run sh: {e}")))?;
            if !out.status.success() {
                return Err(ProviderError::Other(failed(&out.status, &out.stderr)));
            }
            let mut addrs = Vec::new();
            for (i, line) in String::from_utf8_lossy(&out.stdout).lines().enumerate() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                JoinAddr::parse(line)
                    .map_err(|e| ProviderError::Other(format!("output line {}: {e}", i + 1)))?;
                addrs.push(line.to_string());
            }
            Ok(addrs)
        }
        .boxed()
    }
}
