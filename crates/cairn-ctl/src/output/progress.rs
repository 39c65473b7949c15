//! The progress line etcdctl's `check perf` and `check datascale` print (the
//! `cheggaaa/pb.v1` bar they start), as it looks when stdout is not a terminal: every
//! 200 ms a carriage return and ` done / total  percent%`, followed by the estimated time
//! left (` 00m59s`) while it is above a second; finishing prints the line once more with
//! the whole seconds spent (` 1s`) and a newline.
//!
//! The line is drawn by a thread of its own (writing to stdout blocks), reading the count
//! from an atomic the work adds to. On a terminal pb.v1 also draws a bar to the
//! terminal's width; cairnctl prints the same line as through a pipe.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::go::gofmt;
use crate::output::printer;

/// How often the line is drawn again.
const REFRESH: Duration = Duration::from_millis(200);

/// A progress line being drawn.
pub struct Progress {
    /// The count drawn; the work adds to it.
    pub done: Arc<AtomicU64>,
    stop: mpsc::Sender<bool>,
    thread: Option<JoinHandle<()>>,
}

impl Progress {
    /// Starts drawing the count of `done` against `total`.
    pub fn start(total: u64) -> Progress {
        Progress::spawn(total, false)
    }

    /// Starts drawing the whole seconds passed against `total` seconds (`check perf`'s
    /// bar, which etcdctl advances once a second).
    pub fn seconds(total: u64) -> Progress {
        Progress::spawn(total, true)
    }

    fn spawn(total: u64, clock: bool) -> Progress {
        let done = Arc::new(AtomicU64::new(0));
        let (stop, stopped) = mpsc::channel::<bool>();
        let count = Arc::clone(&done);
        let thread = std::thread::spawn(move || draw(total, clock, &count, &stopped));
        Progress {
            done,
            stop,
            thread: Some(thread),
        }
    }

    /// Draws the line a last time with the time spent, and a newline.
    pub fn finish(mut self) {
        self.end(true);
    }

    /// Stops drawing, leaving the line as it is (no newline: what etcdctl's `check perf`
    /// leaves, its bar being a second short when the results are printed).
    pub fn stop(mut self) {
        self.end(false);
    }

    fn end(&mut self, finish: bool) {
        let _ = self.stop.send(finish);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.end(false);
    }
}

/// The drawing thread: redraws every [`REFRESH`] until told to stop; with `clock` the
/// count is the whole seconds passed.
fn draw(total: u64, clock: bool, done: &AtomicU64, stopped: &mpsc::Receiver<bool>) {
    let start = Instant::now();
    let mut seen = 0u64;
    let mut changed = start;
    loop {
        let finish = match stopped.recv_timeout(REFRESH) {
            Ok(finish) => Some(finish),
            Err(mpsc::RecvTimeoutError::Disconnected) => Some(false),
            Err(mpsc::RecvTimeoutError::Timeout) => None,
        };
        let now = Instant::now();
        if clock {
            done.store(
                now.duration_since(start).as_secs().min(total),
                Ordering::Relaxed,
            );
        }
        let current = done.load(Ordering::Relaxed);
        match finish {
            Some(true) => {
                let spent = Duration::from_secs(now.duration_since(start).as_secs());
                let text = format!("\r{} {}\n", counts(current, total), gofmt::duration(spent));
                printer::out(text.as_bytes());
                return;
            }
            Some(false) => return,
            None => {}
        }
        if current != seen {
            seen = current;
            changed = now;
        }
        let mut line = format!("\r{}", counts(current, total));
        if let Some(left) = time_left(current, total, start, changed, now) {
            line.push(' ');
            line.push_str(&left);
        }
        printer::out(line.as_bytes());
    }
}

/// ` done / total  percent%`, as pb.v1 lays out its counters and percentage.
fn counts(current: u64, total: u64) -> String {
    let percent = if total > 0 {
        current as f64 * 100.0 / total as f64
    } else {
        current as f64 / 100.0
    };
    format!(" {current} / {total}  {percent:6.2}%")
}

/// pb.v1's estimate of the time left: the time per step so far (up to the last change)
/// times the steps left, less the time since the last change, in whole seconds; shown
/// only above zero, as `00m59s` (hours in front when there are any).
fn time_left(
    current: u64,
    total: u64,
    start: Instant,
    changed: Instant,
    now: Instant,
) -> Option<String> {
    if current == 0 || total <= current {
        return None;
    }
    let per_step = changed.duration_since(start).as_secs_f64() / current as f64;
    let left = (total - current) as f64 * per_step - now.duration_since(changed).as_secs_f64();
    let secs = left.max(0.0) as u64;
    if secs == 0 {
        return None;
    }
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    Some(if h > 0 {
        format!("{h}h{m:02}m{s:02}s")
    } else {
        format!("{m:02}m{s:02}s")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_laid_out_as_pb_lays_them_out() {
        assert_eq!(counts(0, 10000), " 0 / 10000    0.00%");
        assert_eq!(counts(1028, 10000), " 1028 / 10000   10.28%");
        assert_eq!(counts(10000, 10000), " 10000 / 10000  100.00%");
        assert_eq!(counts(1, 60), " 1 / 60    1.67%");
    }

    #[test]
    fn time_left_in_minutes_and_seconds() {
        let start = Instant::now();
        let at = |s: u64| start + Duration::from_secs(s);
        assert_eq!(
            time_left(1, 60, start, at(1), at(1)).as_deref(),
            Some("00m59s")
        );
        assert_eq!(
            time_left(59, 60, start, at(59), at(59)).as_deref(),
            Some("00m01s")
        );
        assert_eq!(time_left(59, 60, start, at(59), at(60)), None);
        assert_eq!(time_left(0, 60, start, start, at(1)), None);
        assert_eq!(
            time_left(1, 3600, start, at(2), at(2)).as_deref(),
            Some("1h59m58s")
        );
    }
}
