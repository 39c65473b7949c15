//! Bounded waits for something a test can observe, instead of sleeping and hoping.
//!
//! A wait polls its check until the check returns `Ok`, and fails the test once its
//! deadline passes, naming what it waited for and what the check saw last.

use std::fmt::{Debug, Display};
use std::future::Future;
use std::time::{Duration, Instant};

/// How long a wait pauses between two checks.
const POLL: Duration = Duration::from_millis(50);

/// Calls `check` until it returns `Ok` and returns that value; panics once `timeout` has
/// passed, with `what` it waited for and the last `Err` (what it saw instead).
pub fn wait_until<T, E: Debug>(
    timeout: Duration,
    what: impl Display,
    mut check: impl FnMut() -> Result<T, E>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        match check() {
            Ok(v) => return v,
            Err(seen) => fail_after(deadline, timeout, &what, seen),
        }
        std::thread::sleep(POLL);
    }
}

/// [`wait_until`] for a check that is a future (build it afresh on each call).
pub async fn wait_until_async<T, E: Debug, F: Future<Output = Result<T, E>>>(
    timeout: Duration,
    what: impl Display,
    mut check: impl FnMut() -> F,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        match check().await {
            Ok(v) => return v,
            Err(seen) => fail_after(deadline, timeout, &what, seen),
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Fails the test once `deadline` has passed: it waited `timeout` for `what` and saw `seen`.
fn fail_after(deadline: Instant, timeout: Duration, what: &impl Display, seen: impl Debug) {
    assert!(
        Instant::now() < deadline,
        "waited {timeout:?} for {what}; last saw: {seen:?}"
    );
}
