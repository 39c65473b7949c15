//! Prometheus's text format written as etcd's Go client writes it, so the same series read
//! the same to a script that greps `/metrics`: numbers in Go's shortest `%g` form
//! (`2.147483648e+09`, `5e-05`, a bucket bound `le="1.048576e+06"`), not Rust's
//! (`2147483648`, `0.00005`).

use std::fmt::Write;

use prometheus::proto::{Metric, MetricFamily, MetricType};

/// Writes `families` in the text format. A family with no series is left out, as Go's
/// client leaves it out.
pub fn encode(families: &[MetricFamily]) -> String {
    let mut out = String::with_capacity(160 * 1024);
    for family in families {
        let series = family.get_metric();
        if series.is_empty() {
            continue;
        }
        let name = family.name();
        if !family.help().is_empty() {
            out.push_str("# HELP ");
            out.push_str(name);
            out.push(' ');
            push_escaped(&mut out, family.help(), false);
            out.push('\n');
        }
        let kind = match family.get_field_type() {
            MetricType::COUNTER => "counter",
            MetricType::GAUGE => "gauge",
            MetricType::HISTOGRAM => "histogram",
            MetricType::SUMMARY => "summary",
            MetricType::UNTYPED => "untyped",
        };
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for m in series {
            match family.get_field_type() {
                MetricType::COUNTER => {
                    sample(&mut out, name, "", m, None, m.get_counter().get_value())
                }
                MetricType::GAUGE => sample(&mut out, name, "", m, None, m.get_gauge().get_value()),
                #[allow(deprecated)] // the only accessor the crate has for it
                MetricType::UNTYPED => {
                    sample(&mut out, name, "", m, None, m.get_untyped().get_value())
                }
                MetricType::HISTOGRAM => {
                    let h = m.get_histogram();
                    let mut inf = false;
                    for b in h.get_bucket() {
                        let bound = b.upper_bound();
                        inf |= bound == f64::INFINITY;
                        let count = b.cumulative_count() as f64;
                        sample(&mut out, name, "_bucket", m, Some(("le", bound)), count);
                    }
                    let count = h.get_sample_count() as f64;
                    if !inf {
                        sample(
                            &mut out,
                            name,
                            "_bucket",
                            m,
                            Some(("le", f64::INFINITY)),
                            count,
                        );
                    }
                    sample(&mut out, name, "_sum", m, None, h.get_sample_sum());
                    sample(&mut out, name, "_count", m, None, count);
                }
                MetricType::SUMMARY => {
                    let s = m.get_summary();
                    for q in s.get_quantile() {
                        let at = Some(("quantile", q.quantile()));
                        sample(&mut out, name, "", m, at, q.value());
                    }
                    sample(&mut out, name, "_sum", m, None, s.sample_sum());
                    sample(&mut out, name, "_count", m, None, s.sample_count() as f64);
                }
            }
        }
    }
    out
}

/// One line: `name_suffix{labels,extra="x"} value`.
fn sample(
    out: &mut String,
    name: &str,
    suffix: &str,
    m: &Metric,
    extra: Option<(&str, f64)>,
    value: f64,
) {
    out.push_str(name);
    out.push_str(suffix);
    let labels = m.get_label();
    if !labels.is_empty() || extra.is_some() {
        out.push('{');
        for (i, l) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(l.name());
            out.push_str("=\"");
            push_escaped(out, l.value(), true);
            out.push('"');
        }
        if let Some((label, bound)) = extra {
            if !labels.is_empty() {
                out.push(',');
            }
            out.push_str(label);
            out.push_str("=\"");
            push_go_float(out, bound);
            out.push('"');
        }
        out.push('}');
    }
    out.push(' ');
    push_go_float(out, value);
    out.push('\n');
}

/// `\` and a newline escaped (and `"` in label values), as the text format wants.
fn push_escaped(out: &mut String, text: &str, quote: bool) {
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if quote => out.push_str("\\\""),
            c => out.push(c),
        }
    }
}

/// `f` as Go's client writes a sample: `0`, `1`, `-1`, `NaN`, `+Inf` and `-Inf` spelled
/// out, anything else as `strconv.FormatFloat(f, 'g', -1, 64)`: the shortest digits that
/// read back as `f`, in exponent form (`e+06`, two digits at least) when the decimal
/// exponent is below -4 or at least 6, else plainly.
pub fn push_go_float(out: &mut String, f: f64) {
    if f == 0.0 {
        out.push('0');
    } else if f == 1.0 {
        out.push('1');
    } else if f == -1.0 {
        out.push_str("-1");
    } else if f.is_nan() {
        out.push_str("NaN");
    } else if f.is_infinite() {
        out.push_str(if f > 0.0 { "+Inf" } else { "-Inf" });
    } else if f.abs() >= 1e6 || f.abs() < 1e-4 {
        // The shortest digits of an `f` at or above 1e6 cannot read below 1e6 (an exact
        // double), nor those of one below the double nearest 1e-4 reach `0.0001`: the
        // bounds on `f` are the bounds on its shortest form's exponent.
        let sci = format!("{f:e}");
        let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
        let exp: i32 = exp.parse().unwrap_or(0);
        let sign = if exp < 0 { '-' } else { '+' };
        let _ = write!(out, "{mantissa}e{sign}{:02}", exp.unsigned_abs());
    } else {
        let _ = write!(out, "{f}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn go(f: f64) -> String {
        let mut s = String::new();
        push_go_float(&mut s, f);
        s
    }

    /// Values as etcd 3.5.1 (Go 1.16) wrote them on its `/metrics`.
    #[test]
    fn floats_read_as_gos_client_writes_them() {
        for (f, text) in [
            (0.0, "0"),
            (-0.0, "0"),
            (1.0, "1"),
            (-1.0, "-1"),
            (20480.0, "20480"),
            (999_999.0, "999999"),
            (1e6, "1e+06"),
            (1_048_576.0, "1.048576e+06"),
            (2_147_483_648.0, "2.147483648e+09"),
            (7_090_504.0, "7.090504e+06"),
            (1.796_593_233_97e9, "1.79659323397e+09"),
            (18_446_744_073_709_551_615.0, "1.8446744073709552e+19"),
            (1e100, "1e+100"),
            (-2_500_000.0, "-2.5e+06"),
            (0.0001, "0.0001"),
            (0.000_222_658, "0.000222658"),
            (0.002_730_065_000_000_000_3, "0.0027300650000000003"),
            (2.1243e-05, "2.1243e-05"),
            (5e-5, "5e-05"),
            (9.999_999_999_999_999e-5, "9.999999999999999e-05"),
            (0.25, "0.25"),
            (f64::NAN, "NaN"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
        ] {
            assert_eq!(go(f), text, "{f:e}");
        }
    }

    #[test]
    fn families_are_written_as_gos_client_writes_them() {
        let registry = prometheus::Registry::new();
        let opts = prometheus::Opts::new("c_total", "A \\ counter\nof things.");
        let c = prometheus::IntCounterVec::new(opts, &["path"]).unwrap();
        registry.register(Box::new(c.clone())).unwrap();
        c.with_label_values(&["a\"b\\c\nd"]).inc_by(3_000_000);
        let h = prometheus::Histogram::with_opts(
            prometheus::HistogramOpts::new("h_bytes", "Sizes.").buckets(vec![1024.0, 1_048_576.0]),
        )
        .unwrap();
        registry.register(Box::new(h.clone())).unwrap();
        h.observe(2048.0);
        let empty = prometheus::IntCounterVec::new(prometheus::Opts::new("e", "E."), &["x"]);
        registry.register(Box::new(empty.unwrap())).unwrap();
        assert_eq!(
            encode(&registry.gather()),
            "# HELP c_total A \\\\ counter\\nof things.\n\
             # TYPE c_total counter\n\
             c_total{path=\"a\\\"b\\\\c\\nd\"} 3e+06\n\
             # HELP h_bytes Sizes.\n\
             # TYPE h_bytes histogram\n\
             h_bytes_bucket{le=\"1024\"} 0\n\
             h_bytes_bucket{le=\"1.048576e+06\"} 1\n\
             h_bytes_bucket{le=\"+Inf\"} 1\n\
             h_bytes_sum 2048\n\
             h_bytes_count 1\n"
        );
    }
}
