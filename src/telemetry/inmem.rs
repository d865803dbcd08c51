//! The in-memory sink behind `/v1/agent/metrics` in JSON: Consul's (go-metrics') `InmemSink`
//! shape, so that tools reading Consul's JSON read muster's (docs/metrics.md).
//!
//! Counters and samples are aggregated per 10 s interval aligned on the wall clock; the answer
//! shows the last complete interval (the current one while it is the only one), as Consul's.
//! Gauges keep their last value: muster sets most of them when the endpoint is asked, so the
//! current value is the one worth showing.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use metrics::{
    Counter, CounterFn, Gauge, GaugeFn, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder,
    SharedString, Unit,
};
use serde::Serialize;

/// Consul's interval and how many intervals it keeps (one minute).
const INTERVAL: Duration = Duration::from_secs(10);
const KEPT: usize = 6;

/// Count, sum, sum of squares, min and max of what was recorded in one interval.
#[derive(Debug, Clone, Copy, Default)]
struct Aggregate {
    count: u64,
    sum: f64,
    sum_sq: f64,
    min: f64,
    max: f64,
}

impl Aggregate {
    fn ingest(&mut self, v: f64) {
        if self.count == 0 || v < self.min {
            self.min = v;
        }
        if self.count == 0 || v > self.max {
            self.max = v;
        }
        self.count += 1;
        self.sum += v;
        self.sum_sq += v * v;
    }

    /// go-metrics' sample standard deviation (0 below two samples).
    fn stddev(&self) -> f64 {
        let n = self.count as f64;
        let div = n * (n - 1.0);
        if div == 0.0 {
            return 0.0;
        }
        ((n * self.sum_sq - self.sum * self.sum) / div)
            .max(0.0)
            .sqrt()
    }
}

#[derive(Debug, Default)]
struct Interval {
    /// Start, in whole seconds since the epoch (a multiple of [`INTERVAL`]).
    start: u64,
    counters: HashMap<Key, Aggregate>,
    samples: HashMap<Key, Aggregate>,
}

#[derive(Debug, Default)]
struct State {
    intervals: VecDeque<Interval>,
    gauges: HashMap<Key, f64>,
    /// The last value of each counter set with `absolute` (gossip's totals, read when asked):
    /// the interval gets the difference.
    absolutes: HashMap<Key, u64>,
}

impl State {
    fn current(&mut self, now: SystemTime) -> &mut Interval {
        let secs = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        let start = secs - secs % INTERVAL.as_secs();
        if self.intervals.back().is_none_or(|i| i.start != start) {
            self.intervals.push_back(Interval {
                start,
                ..Default::default()
            });
            while self.intervals.len() > KEPT {
                self.intervals.pop_front();
            }
        }
        self.intervals.back_mut().expect("just pushed")
    }
}

/// The sink; a [`Recorder`] whose handles write into it.
#[derive(Debug, Default)]
pub struct Inmem {
    state: Mutex<State>,
}

/// One gauge of the JSON answer.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct GaugeValue {
    pub name: String,
    pub value: f64,
    pub labels: BTreeMap<String, String>,
}

/// One counter or sample of the JSON answer: the interval's aggregate.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct SampledValue {
    pub name: String,
    pub count: u64,
    /// Sum per second of the interval.
    pub rate: f64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
    pub mean: f64,
    pub stddev: f64,
    pub labels: BTreeMap<String, String>,
}

/// The whole JSON answer, Consul's `MetricsSummary`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Summary {
    /// The interval's start, as Go prints a time (`2026-12-02 16:40:00 +0000 UTC`).
    pub timestamp: String,
    pub gauges: Vec<GaugeValue>,
    /// Consul's points (go-metrics' `AddSample` without aggregation); muster records none.
    pub points: Vec<serde_json::Value>,
    pub counters: Vec<SampledValue>,
    pub samples: Vec<SampledValue>,
}

fn labels(key: &Key) -> BTreeMap<String, String> {
    key.labels()
        .map(|l| (l.key().to_string(), l.value().to_string()))
        .collect()
}

fn sampled(key: &Key, a: &Aggregate) -> SampledValue {
    let mean = if a.count == 0 {
        0.0
    } else {
        a.sum / a.count as f64
    };
    SampledValue {
        name: key.name().to_string(),
        count: a.count,
        rate: a.sum / INTERVAL.as_secs_f64(),
        sum: a.sum,
        min: a.min,
        max: a.max,
        mean,
        stddev: a.stddev(),
        labels: labels(key),
    }
}

fn go_time(secs: u64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(secs as i64)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02} +0000 UTC",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

impl Inmem {
    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.state.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// The JSON answer at `now`.
    pub fn summary(&self, now: SystemTime) -> Summary {
        self.with(|s| {
            s.current(now);
            let n = s.intervals.len();
            let shown = &s.intervals[n.saturating_sub(2)];
            let sorted = |m: &HashMap<Key, Aggregate>| {
                let mut v: Vec<SampledValue> = m.iter().map(|(k, a)| sampled(k, a)).collect();
                v.sort_by(|a, b| (&a.name, &a.labels).cmp(&(&b.name, &b.labels)));
                v
            };
            let mut gauges: Vec<GaugeValue> = s
                .gauges
                .iter()
                .map(|(k, v)| GaugeValue {
                    name: k.name().to_string(),
                    value: *v,
                    labels: labels(k),
                })
                .collect();
            gauges.sort_by(|a, b| (&a.name, &a.labels).cmp(&(&b.name, &b.labels)));
            Summary {
                timestamp: go_time(shown.start),
                gauges,
                points: Vec::new(),
                counters: sorted(&shown.counters),
                samples: sorted(&shown.samples),
            }
        })
    }
}

/// A handle of one metric (counter, gauge or histogram alike) into the sink.
struct Handle {
    sink: Arc<Inmem>,
    key: Key,
}

impl CounterFn for Handle {
    fn increment(&self, value: u64) {
        self.sink.with(|s| {
            s.current(SystemTime::now())
                .counters
                .entry(self.key.clone())
                .or_default()
                .ingest(value as f64)
        });
    }

    fn absolute(&self, value: u64) {
        self.sink.with(|s| {
            let last = s.absolutes.insert(self.key.clone(), value).unwrap_or(0);
            // A total that went down started again (a restart of its source): all of it is new.
            let delta = if value >= last { value - last } else { value };
            if delta > 0 {
                s.current(SystemTime::now())
                    .counters
                    .entry(self.key.clone())
                    .or_default()
                    .ingest(delta as f64);
            }
        });
    }
}

impl GaugeFn for Handle {
    fn increment(&self, value: f64) {
        self.sink
            .with(|s| *s.gauges.entry(self.key.clone()).or_default() += value);
    }

    fn decrement(&self, value: f64) {
        self.sink
            .with(|s| *s.gauges.entry(self.key.clone()).or_default() -= value);
    }

    fn set(&self, value: f64) {
        self.sink.with(|s| {
            s.gauges.insert(self.key.clone(), value);
        });
    }
}

impl HistogramFn for Handle {
    fn record(&self, value: f64) {
        self.sink.with(|s| {
            s.current(SystemTime::now())
                .samples
                .entry(self.key.clone())
                .or_default()
                .ingest(value)
        });
    }
}

/// The recorder side of [`Inmem`], for the fan-out.
#[derive(Debug, Clone)]
pub struct InmemRecorder(pub Arc<Inmem>);

impl InmemRecorder {
    fn handle(&self, key: &Key) -> Arc<Handle> {
        Arc::new(Handle {
            sink: self.0.clone(),
            key: key.clone(),
        })
    }
}

impl Recorder for InmemRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(self.handle(key))
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(self.handle(key))
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::from_arc(self.handle(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_aggregate_like_go_metrics() {
        let sink = Arc::new(Inmem::default());
        let r = InmemRecorder(sink.clone());
        let meta = Metadata::new("t", metrics::Level::INFO, None);
        let key = Key::from_parts(
            "muster.kvs.request",
            vec![metrics::Label::new("method", "GET")],
        );
        let h = r.register_histogram(&key, &meta);
        for v in [1.0, 2.0, 3.0] {
            h.record(v);
        }
        let c = r.register_counter(&Key::from_name("muster.memberlist.udp.sent"), &meta);
        c.absolute(100);
        c.absolute(150);
        let g = r.register_gauge(&Key::from_name("muster.raft.leader"), &meta);
        g.set(1.0);
        let s = sink.summary(SystemTime::now());
        let sample = &s.samples[0];
        assert_eq!(
            (sample.count, sample.sum, sample.min, sample.max),
            (3, 6.0, 1.0, 3.0)
        );
        assert_eq!(sample.mean, 2.0);
        assert!((sample.stddev - 1.0).abs() < 1e-9);
        assert_eq!(sample.labels["method"], "GET");
        assert_eq!((s.counters[0].count, s.counters[0].sum), (2, 150.0));
        assert_eq!(s.gauges[0].value, 1.0);
        assert!(s.timestamp.ends_with(" +0000 UTC"), "{}", s.timestamp);
    }

    #[test]
    fn the_last_complete_interval_is_shown() {
        let sink = Inmem::default();
        let t0 = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let add = |at: SystemTime, times: u64| {
            sink.with(|s| {
                for _ in 0..times {
                    s.current(at)
                        .counters
                        .entry(Key::from_name("a"))
                        .or_default()
                        .ingest(1.0)
                }
            })
        };
        add(t0, 1);
        // The first interval is the only one: it is shown.
        assert_eq!(sink.summary(t0).counters[0].count, 1);
        add(t0 + INTERVAL, 2);
        // During the second, the first (complete) one is shown.
        assert_eq!(sink.summary(t0 + INTERVAL).counters[0].count, 1);
        assert_eq!(sink.summary(t0 + 2 * INTERVAL).counters[0].count, 2);
    }
}
