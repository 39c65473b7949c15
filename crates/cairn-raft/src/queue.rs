//! An unbounded queue whose receiver sleeps at once when it is empty.
//!
//! crossbeam's blocking receive spins, then yields the CPU a few times before it sleeps.
//! On a machine whose cores are all busy, every yield is a context switch: a member
//! serving linearizable reads had its Raft thread yield some 2,400 times a second, four
//! or five times for each time it slept. This queue keeps crossbeam's channel for the
//! messages and sleeps with `thread::park_timeout` instead; a sender that finds the
//! receiver asleep unparks it.

use std::sync::atomic::{fence, AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::Thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{RecvError, RecvTimeoutError, SendError, TryRecvError};

/// Where the receiver sleeps.
#[derive(Default)]
struct Bell {
    /// Set while the receiver is asleep or about to be.
    sleeping: AtomicBool,
    /// The receiving thread, from its first wait on.
    thread: OnceLock<Thread>,
}

impl Bell {
    fn ring(&self) {
        // Pairs with the receiver's fence: either it sees what changed, or this sees it
        // asleep.
        fence(Ordering::SeqCst);
        if self.sleeping.load(Ordering::Relaxed) {
            if let Some(t) = self.thread.get() {
                t.unpark();
            }
        }
    }
}

/// The sending side; cloning it makes another sender.
pub(crate) struct QueueSender<T> {
    /// Taken only when the sender drops.
    tx: Option<crossbeam_channel::Sender<T>>,
    bell: Arc<Bell>,
}

impl<T> Clone for QueueSender<T> {
    fn clone(&self) -> Self {
        QueueSender {
            tx: self.tx.clone(),
            bell: self.bell.clone(),
        }
    }
}

impl<T> Drop for QueueSender<T> {
    fn drop(&mut self) {
        // Dropped first, so that a receiver woken by the last sender finds the channel
        // disconnected.
        drop(self.tx.take());
        self.bell.ring();
    }
}

impl<T> std::fmt::Debug for QueueSender<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueSender")
            .field("len", &self.len())
            .finish()
    }
}

/// The receiving side, for one thread.
pub(crate) struct QueueReceiver<T> {
    rx: crossbeam_channel::Receiver<T>,
    bell: Arc<Bell>,
}

pub(crate) fn unbounded<T>() -> (QueueSender<T>, QueueReceiver<T>) {
    let (tx, rx) = crossbeam_channel::unbounded();
    let bell = Arc::new(Bell::default());
    (
        QueueSender {
            tx: Some(tx),
            bell: bell.clone(),
        },
        QueueReceiver { rx, bell },
    )
}

impl<T> QueueSender<T> {
    pub(crate) fn send(&self, value: T) -> Result<(), SendError<T>> {
        match &self.tx {
            Some(tx) => tx.send(value)?,
            None => return Err(SendError(value)),
        }
        self.bell.ring();
        Ok(())
    }

    /// Values queued and not yet received.
    pub(crate) fn len(&self) -> usize {
        self.tx.as_ref().map_or(0, |tx| tx.len())
    }
}

impl<T> QueueReceiver<T> {
    pub(crate) fn try_recv(&self) -> Result<T, TryRecvError> {
        self.rx.try_recv()
    }

    /// The next value, waiting as long as it takes; an error once every sender is gone.
    pub(crate) fn recv(&self) -> Result<T, RecvError> {
        loop {
            match self.recv_timeout(Duration::from_secs(3600)) {
                Ok(v) => return Ok(v),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return Err(RecvError),
            }
        }
    }

    /// The next value, waiting for it at most `timeout`.
    pub(crate) fn recv_timeout(&self, timeout: Duration) -> Result<T, RecvTimeoutError> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.rx.try_recv() {
                Ok(v) => return Ok(v),
                Err(TryRecvError::Disconnected) => return Err(RecvTimeoutError::Disconnected),
                Err(TryRecvError::Empty) => {}
            }
            self.bell.thread.get_or_init(std::thread::current);
            self.bell.sleeping.store(true, Ordering::Relaxed);
            fence(Ordering::SeqCst);
            let next = self.rx.try_recv();
            let now = Instant::now();
            if !matches!(next, Err(TryRecvError::Empty)) || now >= deadline {
                self.bell.sleeping.store(false, Ordering::Relaxed);
                return match next {
                    Ok(v) => Ok(v),
                    Err(TryRecvError::Disconnected) => Err(RecvTimeoutError::Disconnected),
                    Err(TryRecvError::Empty) => Err(RecvTimeoutError::Timeout),
                };
            }
            // An unpark that came after the check above makes this return at once.
            std::thread::park_timeout(deadline - now);
            self.bell.sleeping.store(false, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn a_sleeping_receiver_wakes_for_each_value_and_times_out_without_one() {
        let (tx, rx) = unbounded::<u32>();
        let started = Instant::now();
        assert_eq!(
            rx.recv_timeout(Duration::from_millis(30)),
            Err(RecvTimeoutError::Timeout)
        );
        assert!(started.elapsed() >= Duration::from_millis(30));
        let sender = std::thread::spawn(move || {
            for i in 0..10_000 {
                tx.send(i).unwrap();
                if i % 1000 == 0 {
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
        });
        for want in 0..10_000 {
            // Far longer than the test may take: a lost wake-up fails it.
            assert_eq!(rx.recv_timeout(Duration::from_secs(60)), Ok(want));
        }
        sender.join().unwrap();
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(60)),
            Err(RecvTimeoutError::Disconnected)
        );
    }

    #[test]
    fn a_sleeping_receiver_wakes_when_the_last_sender_goes() {
        let (tx, rx) = unbounded::<u32>();
        let other = tx.clone();
        let dropper = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            drop(other);
            std::thread::sleep(Duration::from_millis(50));
            drop(tx);
        });
        let started = Instant::now();
        assert_eq!(rx.recv(), Err(RecvError));
        assert!(started.elapsed() < Duration::from_secs(60));
        dropper.join().unwrap();
    }
}
