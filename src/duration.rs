//! Durations written the way Go's `time.ParseDuration` reads them, because Consul config files,
//! command lines and HTTP bodies carry them in that form: `30s`, `1m30s`, `500ms`, `1.5h`, `250us`.
//!
//! A module of its own because two layers read and write them: the configuration (files and
//! flags) and the HTTP API (`?wait=`, autopilot settings, `/v1/agent/self`); neither should have
//! to import the other for it.

use std::time::Duration;

/// A text that is not a Go duration. The caller cannot retry: the operator or client must send
/// another value (the message says what was wrong and shows valid forms).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{input:?} is not a duration: {why} (write a number with a unit, e.g. 500ms, 30s, 1m30s)")]
pub struct DurationError {
    /// The text as given.
    pub input: String,
    /// What is wrong with it.
    pub why: String,
}

/// Parses a Go-style duration. A bare `0` is accepted (as Go does); any other number needs a unit.
pub fn parse_go_duration(input: &str) -> Result<Duration, DurationError> {
    let s = input.trim();
    let fail = |why: &str| {
        Err(DurationError {
            input: input.to_string(),
            why: why.to_string(),
        })
    };
    if s.is_empty() {
        return fail("it is empty");
    }
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.starts_with('-') {
        return fail("it is negative");
    }
    let s = s.strip_prefix('+').unwrap_or(s);
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return fail("expected a number");
        }
        let value: f64 = match rest[..num_len].parse() {
            Ok(v) => v,
            Err(_) => return fail("bad number"),
        };
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let nanos_per_unit = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            "" => return fail("a number is missing its unit"),
            u => return fail(&format!("unknown unit {u:?} (use ns, us, ms, s, m or h)")),
        };
        rest = &rest[unit_len..];
        total += value * nanos_per_unit;
    }
    if total > u64::MAX as f64 {
        return fail("it is too long");
    }
    Ok(Duration::from_nanos(total.round() as u64))
}

/// Formats a duration in the same notation, shortest exact form (`1m30s`, `500ms`).
pub fn format_go_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".into();
    }
    if nanos % 1_000_000_000 != 0 {
        if nanos % 1_000_000 == 0 {
            return format!("{}ms", nanos / 1_000_000);
        }
        return format!("{:.3}ms", nanos as f64 / 1e6);
    }
    let mut secs = d.as_secs();
    let mut out = String::new();
    if secs >= 3600 {
        out.push_str(&format!("{}h", secs / 3600));
        secs %= 3600;
    }
    if secs >= 60 {
        out.push_str(&format!("{}m", secs / 60));
        secs %= 60;
    }
    if secs > 0 {
        out.push_str(&format!("{secs}s"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_forms() {
        let cases = [
            ("30s", 30_000),
            ("1m30s", 90_000),
            ("500ms", 500),
            ("1.5s", 1_500),
            ("1h", 3_600_000),
            ("0", 0),
        ];
        for (s, ms) in cases {
            assert_eq!(
                parse_go_duration(s).unwrap(),
                Duration::from_millis(ms),
                "{s}"
            );
        }
        assert_eq!(
            parse_go_duration("250us").unwrap(),
            Duration::from_micros(250)
        );
    }

    #[test]
    fn rejects_with_reason() {
        for s in ["", "30", "-1s", "5 parsecs", "s", "1x"] {
            let e = parse_go_duration(s).unwrap_err().to_string();
            assert!(e.contains("is not a duration"), "{s}: {e}");
        }
    }

    #[test]
    fn formats_round_trip() {
        for s in ["30s", "1m30s", "500ms", "1h0m0s"] {
            let d = parse_go_duration(s).unwrap();
            assert_eq!(parse_go_duration(&format_go_duration(d)).unwrap(), d);
        }
    }
}
