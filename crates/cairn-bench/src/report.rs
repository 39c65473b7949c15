//! Latency statistics of one run and how they are printed.
//!
//! Latencies are kept in seconds as `f64`. Only successful requests contribute latencies;
//! failed ones are counted per error text. For example, latencies of 1, 2, 3 and 4 ms give
//! an average of 2.5 ms, a population stddev of about 1.118 ms, a p50 of 2 ms and a p99
//! of 4 ms (nearest rank).

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// The percentiles every report lists, as etcd's benchmark does.
pub const PERCENTILES: [f64; 8] = [10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.9];

/// How many histogram buckets a report has.
const BUCKETS: usize = 10;

/// The widest histogram bar, in marks.
const BAR_WIDTH: u64 = 40;

/// One histogram bucket: latencies above the previous bound and up to `upper`.
#[derive(Debug, Clone, PartialEq)]
pub struct Bucket {
    /// Upper bound in seconds.
    pub upper: f64,
    /// Requests in this bucket.
    pub count: u64,
}

/// The outcome of one benchmark run.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// Workload name (`put`, `range`, `txn`, `check-perf`).
    pub workload: String,
    /// Wall time from the first request to the last response, in seconds.
    pub total: f64,
    /// Requests that succeeded.
    pub ok: u64,
    /// Failed requests by error text.
    pub errors: BTreeMap<String, u64>,
    /// Slowest successful request, seconds (0 when none succeeded).
    pub slowest: f64,
    /// Fastest successful request, seconds.
    pub fastest: f64,
    /// Mean latency, seconds.
    pub average: f64,
    /// Population standard deviation of the latencies, seconds.
    pub stddev: f64,
    /// Successful requests per second of wall time.
    pub rps: f64,
    /// `(percentile, latency in seconds)` for each of [`PERCENTILES`].
    pub percentiles: Vec<(f64, f64)>,
    /// Latency histogram between fastest and slowest.
    pub histogram: Vec<Bucket>,
    /// Whether `--max-duration` ended the run before `--total` requests were made.
    pub cut_short: bool,
    /// What a defragment made during the run did (`bench put --defrag-around`).
    pub defrag: Option<DefragFigures>,
}

/// A defragment made during a put run, and the puts it overlapped.
#[derive(Debug, Clone, PartialEq)]
pub struct DefragFigures {
    /// From the Defragment call to its response, seconds.
    pub took: f64,
    /// The slowest successful put that was in flight at some point of the defragment,
    /// seconds (0 if none was).
    pub slowest_put: f64,
    /// Successful puts that were in flight at some point of the defragment.
    pub puts: u64,
    /// The Defragment call's error, if it failed.
    pub error: Option<String>,
}

/// The `p`th percentile (0 < p <= 100) of sorted values by nearest rank.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let n = sorted.len();
    // Nearest rank: the smallest value with at least p% of values at or below it. The
    // epsilon keeps float error (0.999 * 1000 = 999.0000000000001) from adding a rank.
    let rank = ((p / 100.0) * n as f64 - 1e-9).ceil() as usize;
    let idx = rank.clamp(1, n) - 1;
    sorted.get(idx).copied()
}

/// Mean and population standard deviation.
fn mean_stddev(values: &[f64]) -> (f64, f64) {
    if values.is_empty() {
        return (0.0, 0.0);
    }
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = values.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
    (mean, var.sqrt())
}

/// Counts sorted values into [`BUCKETS`] equal-width buckets from fastest to slowest.
fn histogram(sorted: &[f64]) -> Vec<Bucket> {
    let (Some(&lo), Some(&hi)) = (sorted.first(), sorted.last()) else {
        return Vec::new();
    };
    let width = (hi - lo) / BUCKETS as f64;
    let mut buckets: Vec<Bucket> = (1..=BUCKETS)
        .map(|i| Bucket {
            upper: if i == BUCKETS {
                hi
            } else {
                lo + width * i as f64
            },
            count: 0,
        })
        .collect();
    let mut b = 0;
    for &v in sorted {
        while b + 1 < buckets.len() && v > buckets[b].upper {
            b += 1;
        }
        buckets[b].count += 1;
    }
    buckets
}

impl Report {
    /// Builds a report from the latencies of successful requests (any order), the failed
    /// requests by error text, and the wall time of the run.
    pub fn new(
        workload: &str,
        mut latencies: Vec<f64>,
        errors: BTreeMap<String, u64>,
        total: Duration,
        cut_short: bool,
    ) -> Report {
        latencies.sort_by(f64::total_cmp);
        let total = total.as_secs_f64();
        let (average, stddev) = mean_stddev(&latencies);
        let ok = latencies.len() as u64;
        Report {
            workload: workload.to_string(),
            total,
            ok,
            errors,
            slowest: latencies.last().copied().unwrap_or(0.0),
            fastest: latencies.first().copied().unwrap_or(0.0),
            average,
            stddev,
            rps: if total > 0.0 { ok as f64 / total } else { 0.0 },
            percentiles: PERCENTILES
                .iter()
                .filter_map(|&p| percentile(&latencies, p).map(|v| (p, v)))
                .collect(),
            histogram: histogram(&latencies),
            cut_short,
            defrag: None,
        }
    }

    /// Failed requests in all.
    pub fn failed(&self) -> u64 {
        self.errors.values().sum()
    }

    /// The latency at percentile `p` in seconds, if it is one of [`PERCENTILES`].
    pub fn at(&self, p: f64) -> Option<f64> {
        self.percentiles
            .iter()
            .find(|(q, _)| (q - p).abs() < 1e-9)
            .map(|(_, v)| *v)
    }

    /// A one-line JSON summary; latencies in milliseconds.
    pub fn to_json(&self) -> String {
        let ms = |s: f64| (s * 1e6).round() / 1e3;
        let mut pct = serde_json::Map::new();
        for (p, v) in &self.percentiles {
            pct.insert(format!("p{p}"), serde_json::json!(ms(*v)));
        }
        let mut json = serde_json::json!({
            "workload": self.workload,
            "ok": self.ok,
            "failed": self.failed(),
            "errors": self.errors,
            "total_secs": (self.total * 1e4).round() / 1e4,
            "rps": (self.rps * 10.0).round() / 10.0,
            "slowest_ms": ms(self.slowest),
            "fastest_ms": ms(self.fastest),
            "average_ms": ms(self.average),
            "stddev_ms": ms(self.stddev),
            "percentiles_ms": pct,
            "cut_short": self.cut_short,
        });
        if let (Some(d), Some(map)) = (&self.defrag, json.as_object_mut()) {
            map.insert("defrag_ms".into(), serde_json::json!(ms(d.took)));
            map.insert(
                "defrag_slowest_put_ms".into(),
                serde_json::json!(ms(d.slowest_put)),
            );
            map.insert("defrag_puts".into(), serde_json::json!(d.puts));
            map.insert("defrag_error".into(), serde_json::json!(d.error));
        }
        json.to_string()
    }
}

/// Formats a percentile label as `10`, `99.9`.
fn label(p: f64) -> String {
    if p.fract() == 0.0 {
        format!("{p:.0}")
    } else {
        format!("{p}")
    }
}

impl fmt::Display for Report {
    /// The text report: summary, histogram, percentiles, then errors if any.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "\nSummary:")?;
        writeln!(f, "  Total:\t{:.4} secs.", self.total)?;
        writeln!(f, "  Slowest:\t{:.4} secs.", self.slowest)?;
        writeln!(f, "  Fastest:\t{:.4} secs.", self.fastest)?;
        writeln!(f, "  Average:\t{:.4} secs.", self.average)?;
        writeln!(f, "  Stddev:\t{:.4} secs.", self.stddev)?;
        writeln!(f, "  Requests/sec:\t{:.4}", self.rps)?;
        if let Some(d) = &self.defrag {
            writeln!(f, "  Defragment:\t{:.4} secs.", d.took)?;
            writeln!(
                f,
                "  Slowest put during it:\t{:.4} secs. (of {} puts)",
                d.slowest_put, d.puts
            )?;
        }
        if self.cut_short {
            writeln!(
                f,
                "  (stopped by --max-duration after {} requests)",
                self.ok + self.failed()
            )?;
        }
        if !self.histogram.is_empty() {
            writeln!(f, "\nResponse time histogram:")?;
            let max = self
                .histogram
                .iter()
                .map(|b| b.count)
                .max()
                .unwrap_or(0)
                .max(1);
            for b in &self.histogram {
                let marks = (b.count * BAR_WIDTH).div_ceil(max) as usize;
                writeln!(f, "  {:.4} [{}]\t|{}", b.upper, b.count, "∎".repeat(marks))?;
            }
        }
        if !self.percentiles.is_empty() {
            writeln!(f, "\nLatency distribution:")?;
            for (p, v) in &self.percentiles {
                writeln!(f, "  {}% in {:.4} secs.", label(*p), v)?;
            }
        }
        if !self.errors.is_empty() {
            writeln!(f, "\nError distribution:")?;
            for (e, n) in &self.errors {
                writeln!(f, "  [{n}]\t{e}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_nearest_rank() {
        let v: Vec<f64> = (1..=1000).map(f64::from).collect();
        let cases = [
            (10.0, 100.0),
            (25.0, 250.0),
            (50.0, 500.0),
            (99.0, 990.0),
            (99.9, 999.0),
            (100.0, 1000.0),
            (0.01, 1.0),
        ];
        for (p, want) in cases {
            assert_eq!(percentile(&v, p), Some(want), "p{p}");
        }
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(percentile(&[7.0], 99.9), Some(7.0));
        assert_eq!(percentile(&[1.0, 2.0, 3.0, 4.0], 50.0), Some(2.0));
        assert_eq!(percentile(&[1.0, 2.0, 3.0, 4.0], 99.0), Some(4.0));
    }

    #[test]
    fn summary_figures() {
        let lats = vec![0.004, 0.001, 0.003, 0.002];
        let mut errors = BTreeMap::new();
        errors.insert("boom".to_string(), 2);
        let r = Report::new("put", lats, errors, Duration::from_secs(2), false);
        assert_eq!(r.ok, 4);
        assert_eq!(r.failed(), 2);
        assert_eq!(r.fastest, 0.001);
        assert_eq!(r.slowest, 0.004);
        assert!((r.average - 0.0025).abs() < 1e-12);
        assert!((r.stddev - 0.001_118_033_988_75).abs() < 1e-9);
        assert_eq!(r.rps, 2.0);
        assert_eq!(r.at(50.0), Some(0.002));
        assert_eq!(r.at(99.9), Some(0.004));
        assert_eq!(r.histogram.iter().map(|b| b.count).sum::<u64>(), 4);
        assert_eq!(r.histogram.last().map(|b| b.upper), Some(0.004));
        let text = r.to_string();
        assert!(text.contains("  Requests/sec:\t2.0000\n"), "{text}");
        assert!(text.contains("  99.9% in 0.0040 secs.\n"), "{text}");
        assert!(text.contains("  [2]\tboom\n"), "{text}");
        let json: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(json["ok"], 4);
        assert_eq!(json["percentiles_ms"]["p99.9"], 4.0);
        assert!(!r.to_json().contains('\n'));
    }

    #[test]
    fn empty_run_has_no_latencies() {
        let r = Report::new("range", Vec::new(), BTreeMap::new(), Duration::ZERO, true);
        assert_eq!(r.rps, 0.0);
        assert!(r.histogram.is_empty());
        assert!(r.percentiles.is_empty());
        assert!(r.to_string().contains("stopped by --max-duration"));
    }
}
