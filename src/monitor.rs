//! The agent's log lines for `muster monitor` and `GET /v1/agent/monitor` (docs/configuration.md,
//! "Monitor"): a `tracing` layer beside the stderr (and log file) output that hands every event
//! the agent logs to the monitors listening, over a broadcast channel. One per process, like the
//! logging it belongs to; `muster agent` installs it. Nothing is formatted while no monitor
//! listens. A monitor that falls behind by more than [`BACKLOG`] lines is told how many it missed.

use std::fmt::Write as _;
use std::sync::{Arc, OnceLock};

use tokio::sync::broadcast;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

/// Lines kept for a slow monitor before it misses some.
pub const BACKLOG: usize = 1024;

static LINES: OnceLock<broadcast::Sender<Arc<LogLine>>> = OnceLock::new();

/// One event as the agent logged it.
#[derive(Debug, Clone)]
pub struct LogLine {
    /// RFC 3339, UTC, milliseconds.
    pub timestamp: String,
    pub level: Level,
    pub message: String,
    /// The event's other fields, in order, formatted with `Debug`/`Display` as logged.
    pub fields: Vec<(String, String)>,
}

impl LogLine {
    /// `2026-12-02T17:00:00.000Z [INFO]  message key=value`, Consul's monitor layout.
    pub fn text(&self) -> String {
        let mut out = format!(
            "{} [{}] {:width$}{}",
            self.timestamp,
            self.level,
            "",
            self.message,
            width = 5 - self.level.as_str().len()
        );
        for (k, v) in &self.fields {
            let _ = write!(out, " {k}={v}");
        }
        out
    }

    /// One JSON object, with hclog's names (`@timestamp`, `@level`, `@message`).
    pub fn json(&self) -> String {
        let mut m = serde_json::Map::new();
        m.insert("@timestamp".into(), self.timestamp.clone().into());
        m.insert(
            "@level".into(),
            self.level.as_str().to_ascii_lowercase().into(),
        );
        m.insert("@message".into(), self.message.clone().into());
        for (k, v) in &self.fields {
            m.insert(k.clone(), v.clone().into());
        }
        serde_json::Value::Object(m).to_string()
    }
}

/// The layer `muster agent` adds to its subscriber.
pub fn layer() -> MonitorLayer {
    let tx = LINES.get_or_init(|| broadcast::channel(BACKLOG).0).clone();
    MonitorLayer { tx }
}

/// A new monitor's feed of lines, or `None` when this process's logging has no monitor layer
/// (an agent started in process by a test).
pub fn subscribe() -> Option<broadcast::Receiver<Arc<LogLine>>> {
    LINES.get().map(broadcast::Sender::subscribe)
}

pub struct MonitorLayer {
    tx: broadcast::Sender<Arc<LogLine>>,
}

struct Fields {
    message: String,
    fields: Vec<(String, String)>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_string();
        } else {
            self.fields
                .push((field.name().to_string(), value.to_string()));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.message = format!("{value:?}");
        } else {
            self.fields
                .push((field.name().to_string(), format!("{value:?}")));
        }
    }
}

fn now_rfc3339() -> String {
    let t = time::OffsetDateTime::now_utc();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

impl<S: Subscriber> Layer<S> for MonitorLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        if self.tx.receiver_count() == 0 {
            return;
        }
        let mut f = Fields {
            message: String::new(),
            fields: Vec::new(),
        };
        event.record(&mut f);
        let line = LogLine {
            timestamp: now_rfc3339(),
            level: *event.metadata().level(),
            message: f.message,
            fields: f.fields,
        };
        // No receiver left between the check and now: nothing to do.
        let _ = self.tx.send(Arc::new(line));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_in_text_and_json() {
        let l = LogLine {
            timestamp: "2026-12-02T17:00:00.000Z".into(),
            level: Level::INFO,
            message: "member joined".into(),
            fields: vec![("member".into(), "c1".into())],
        };
        assert_eq!(
            l.text(),
            "2026-12-02T17:00:00.000Z [INFO]  member joined member=c1"
        );
        let v: serde_json::Value = serde_json::from_str(&l.json()).unwrap();
        assert_eq!(v["@level"], "info");
        assert_eq!(v["@message"], "member joined");
        assert_eq!(v["member"], "c1");
    }
}
