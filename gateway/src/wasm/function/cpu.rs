//! A function's CPU account: the CPU time of the thread while a call into the guest is being
//! polled (the guest's code and the host calls it makes in that poll), summed over the polls, which
//! may run on different worker threads. Time the call is pending (waiting for the client, an
//! upstream, a timer or room in a stream), what a worker thread does between polls, and time the
//! thread is preempted do not count, however loaded the machine.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// CPU time spent by polls of a guest's calls. Shared by the store's epoch callback, which reads
/// it while a poll runs, and [`CpuMeter::metered`], which counts each poll.
#[derive(Debug, Default)]
pub(crate) struct CpuMeter {
    /// Nanoseconds of the polls that ended since the last reset.
    spent: AtomicU64,
    /// The thread's CPU clock when the poll in progress started, in nanoseconds plus one (0: no
    /// poll in progress).
    poll_start: AtomicU64,
}

impl CpuMeter {
    /// Forgets what was spent: a new request begins.
    pub(crate) fn reset(&self) {
        self.spent.store(0, Ordering::Relaxed);
    }

    /// CPU time spent so far, the poll in progress included (when called from inside it).
    pub(crate) fn spent(&self) -> Duration {
        let mut ns = self.spent.load(Ordering::Relaxed);
        if let Some(start) = self.poll_start.load(Ordering::Relaxed).checked_sub(1) {
            ns += thread_cpu_ns().saturating_sub(start);
        }
        Duration::from_nanos(ns)
    }

    /// Runs `call` (a call into the guest), counting the thread's CPU time of each of its polls.
    /// Polls of one call never overlap, and the epoch callback runs inside them, on their thread.
    pub(crate) async fn metered<F: Future>(&self, call: F) -> F::Output {
        let mut call = std::pin::pin!(call);
        std::future::poll_fn(|cx| {
            let start = thread_cpu_ns();
            self.poll_start.store(start + 1, Ordering::Relaxed);
            let r = call.as_mut().poll(cx);
            self.poll_start.store(0, Ordering::Relaxed);
            self.spent
                .fetch_add(thread_cpu_ns().saturating_sub(start), Ordering::Relaxed);
            r
        })
        .await
    }
}

/// The calling thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`: user and system time of this thread
/// only), in nanoseconds; 0 if the clock cannot be read.
fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec it is given, which lives for the call.
    #[allow(unsafe_code)]
    let ok = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) } == 0;
    if !ok {
        return 0;
    }
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Poll;

    /// Work done while the call is polled counts; time it is pending does not, nor work the
    /// thread does between its polls.
    #[test]
    fn polls_count_and_waits_between_them_do_not() {
        let meter = CpuMeter::default();
        let spin = |d: Duration| {
            let start = thread_cpu_ns();
            while thread_cpu_ns() - start < d.as_nanos() as u64 {
                std::hint::black_box(0u64);
            }
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let mut polls = 0;
        let inside = rt.block_on(async {
            let call = std::future::poll_fn(|cx| {
                polls += 1;
                spin(Duration::from_millis(20));
                if polls == 3 {
                    return Poll::Ready(meter.spent());
                }
                cx.waker().wake_by_ref();
                Poll::Pending
            });
            let other = async {
                // Work between the polls, on the same thread, is not the call's.
                for _ in 0..3 {
                    spin(Duration::from_millis(30));
                    tokio::task::yield_now().await;
                }
            };
            let (inside, ()) = tokio::join!(meter.metered(call), other);
            inside
        });
        assert_eq!(polls, 3);
        // Read inside the third poll: two whole polls and most of the third.
        assert!(inside >= Duration::from_millis(60), "{inside:?}");
        let total = meter.spent();
        assert!(
            total >= Duration::from_millis(60) && total < Duration::from_millis(90),
            "{total:?}"
        );
        meter.reset();
        assert_eq!(meter.spent(), Duration::ZERO);
    }
}
