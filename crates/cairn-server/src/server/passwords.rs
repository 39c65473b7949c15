//! The slow part of auth: bcrypt, kept off the async workers and bounded.
//!
//! Password work waits in one line. At most one runner per core (a tokio blocking thread)
//! takes jobs from it: a hash alone, verifications up to [`bcrypt::LANES`] at once, which
//! bcrypt's lanes compute in about the time of one or two (see [`cairn_auth::bcrypt`]).
//! So under a burst of Authenticate requests a core checks several passwords per bcrypt
//! run, where etcd checks one.
//!
//! At most [`PASSWORD_QUEUE`] jobs wait beyond those running; any more are refused with
//! "too many requests". A job holds its place until it is done, even if its caller went
//! away meanwhile (a runner then skips it), so a stranger sending Authenticate and hanging
//! up cannot grow the line past its bound: the CPU and memory one stranger can take are
//! bounded.

use std::collections::VecDeque;
use std::sync::Arc;

use cairn_auth::bcrypt::{self, HashError, LANES};
use cairn_proto::EtcdError;
use parking_lot::Mutex;
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};

/// Password jobs waiting for a runner before more are refused.
pub const PASSWORD_QUEUE: usize = 256;

/// The bounded pool of password work.
pub(crate) struct PasswordPool {
    runners: usize,
    places: Arc<Semaphore>,
    line: Arc<Mutex<Line>>,
}

#[derive(Default)]
struct Line {
    jobs: VecDeque<Job>,
    running: usize,
}

struct Job {
    work: Work,
    /// The job's place in the line, given back when it is done.
    place: OwnedSemaphorePermit,
}

enum Work {
    Verify {
        password: String,
        hash: Vec<u8>,
        done: oneshot::Sender<bool>,
    },
    Hash {
        password: String,
        cost: u32,
        done: oneshot::Sender<Result<String, HashError>>,
    },
}

impl Work {
    fn abandoned(&self) -> bool {
        match self {
            Work::Verify { done, .. } => done.is_closed(),
            Work::Hash { done, .. } => done.is_closed(),
        }
    }
}

impl PasswordPool {
    /// A pool of `runners` runners and [`PASSWORD_QUEUE`] places beyond them.
    pub(crate) fn new(runners: usize) -> PasswordPool {
        let runners = runners.max(1);
        PasswordPool {
            runners,
            places: Arc::new(Semaphore::new(runners * LANES + PASSWORD_QUEUE)),
            line: Arc::default(),
        }
    }

    /// A pool with one runner per core.
    pub(crate) fn per_core() -> PasswordPool {
        PasswordPool::new(std::thread::available_parallelism().map_or(2, |n| n.get()))
    }

    /// Whether `password` matches the bcrypt `hash`; a malformed hash matches nothing.
    pub(crate) async fn verify(&self, password: String, hash: Vec<u8>) -> Result<bool, EtcdError> {
        self.ask(|done| Work::Verify {
            password,
            hash,
            done,
        })
        .await
    }

    /// `password` hashed at `cost` with a fresh salt.
    pub(crate) async fn hash(
        &self,
        password: String,
        cost: u32,
    ) -> Result<Result<String, HashError>, EtcdError> {
        self.ask(|done| Work::Hash {
            password,
            cost,
            done,
        })
        .await
    }

    async fn ask<T>(&self, work: impl FnOnce(oneshot::Sender<T>) -> Work) -> Result<T, EtcdError> {
        let (done, answer) = oneshot::channel();
        self.submit(work(done))?;
        answer.await.map_err(|_| EtcdError::Stopped)
    }

    fn submit(&self, work: Work) -> Result<(), EtcdError> {
        let place = self
            .places
            .clone()
            .try_acquire_owned()
            .map_err(|_| EtcdError::TooManyRequests)?;
        let start_runner = {
            let mut line = self.line.lock();
            line.jobs.push_back(Job { work, place });
            let start = line.running < self.runners;
            if start {
                line.running += 1;
            }
            start
        };
        if start_runner {
            let line = self.line.clone();
            tokio::task::spawn_blocking(move || run(&line));
        }
        Ok(())
    }
}

/// A runner: takes jobs until the line is empty.
fn run(line: &Mutex<Line>) {
    while let Some(batch) = next_batch(line) {
        let mut verifies = Vec::with_capacity(batch.len());
        for job in batch {
            match job.work {
                Work::Hash {
                    password,
                    cost,
                    done,
                } => {
                    let _ = done.send(bcrypt::hash(password.as_bytes(), cost));
                }
                Work::Verify {
                    password,
                    hash,
                    done,
                } => verifies.push((password, hash, done, job.place)),
            }
        }
        if verifies.is_empty() {
            continue;
        }
        let pairs: Vec<(&[u8], &[u8])> = verifies
            .iter()
            .map(|(p, h, _, _)| (p.as_bytes(), h.as_slice()))
            .collect();
        let matched = bcrypt::verify_batch(&pairs);
        for ((_, _, done, _place), ok) in verifies.into_iter().zip(matched) {
            let _ = done.send(ok);
        }
    }
}

/// The next jobs to run together: a hash alone, or the verifications at the front of the
/// line, up to [`LANES`]. Jobs whose callers went away are dropped. None, and the runner
/// counted out, when the line is empty.
fn next_batch(line: &Mutex<Line>) -> Option<Vec<Job>> {
    let mut line = line.lock();
    line.jobs.retain(|j| !j.work.abandoned());
    let Some(first) = line.jobs.pop_front() else {
        line.running -= 1;
        return None;
    };
    let mut batch = vec![first];
    if matches!(batch[0].work, Work::Verify { .. }) {
        while batch.len() < LANES
            && matches!(
                line.jobs.front(),
                Some(Job {
                    work: Work::Verify { .. },
                    ..
                })
            )
        {
            batch.extend(line.jobs.pop_front());
        }
    }
    Some(batch)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Made by Go's bcrypt at cost 4.
    const BENCH_PW_HASH: &[u8] = b"$2a$04$Dsul8J/hMBZZY872e4LL4uM3A1l.6C8K3GG3QRTm8HkcBGuV84XW.";

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_burst_of_checks_and_hashes_gets_each_its_own_answer() {
        let pool = Arc::new(PasswordPool::new(2));
        let mut tasks = Vec::new();
        for i in 0..11 {
            let pool = pool.clone();
            tasks.push(tokio::spawn(async move {
                if i == 5 {
                    let h = pool.hash("fresh".into(), 4).await.unwrap().unwrap();
                    return pool.verify("fresh".into(), h.into_bytes()).await.unwrap();
                }
                let pw = if i % 3 == 0 { "wrong" } else { "bench-pw" };
                pool.verify(pw.into(), BENCH_PW_HASH.to_vec())
                    .await
                    .unwrap()
            }));
        }
        let mut answers = Vec::new();
        for t in tasks {
            answers.push(t.await.unwrap());
        }
        let want: Vec<bool> = (0..11).map(|i| i == 5 || i % 3 != 0).collect();
        assert_eq!(answers, want);
        assert_eq!(
            pool.verify("x".into(), b"not a hash".to_vec()).await,
            Ok(false)
        );
        assert!(matches!(
            pool.hash("x".into(), 3).await,
            Ok(Err(HashError::Cost(3)))
        ));
        // Every runner goes home once the line is empty (just after its last answer).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while pool.line.lock().running > 0 {
            assert!(std::time::Instant::now() < deadline, "a runner stayed");
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        assert_eq!(pool.places.available_permits(), 2 * LANES + PASSWORD_QUEUE);
    }

    /// A stranger hammering Authenticate: with every place taken the next request is
    /// refused at once, and served again once places come back.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn password_work_is_bounded_and_the_overflow_refused() {
        let pool = PasswordPool::new(1);
        let all = (LANES + PASSWORD_QUEUE) as u32;
        let held = pool.places.clone().acquire_many_owned(all).await.unwrap();
        let refused = pool.verify("bench-pw".into(), BENCH_PW_HASH.to_vec()).await;
        assert_eq!(refused, Err(EtcdError::TooManyRequests));
        assert!(
            pool.line.lock().jobs.is_empty(),
            "a refused job does not wait"
        );
        drop(held);
        let ok = pool.verify("bench-pw".into(), BENCH_PW_HASH.to_vec()).await;
        assert_eq!(ok, Ok(true));
    }

    /// A caller that hangs up does not leave its job behind for good: the job is skipped
    /// or finished, its place comes back, and the runner goes home.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn abandoned_jobs_give_their_places_back() {
        let pool = PasswordPool::new(1);
        for _ in 0..3 {
            let gone = pool.verify("bench-pw".into(), BENCH_PW_HASH.to_vec());
            drop(tokio::time::timeout(std::time::Duration::ZERO, gone).await);
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while pool.places.available_permits() < LANES + PASSWORD_QUEUE
            || pool.line.lock().running > 0
        {
            assert!(
                std::time::Instant::now() < deadline,
                "places never came back"
            );
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        assert!(pool.line.lock().jobs.is_empty());
    }
}
