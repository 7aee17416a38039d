//! A job handed to a second core for the length of one step, for steps of a few microseconds where waking a pool
//! thread costs what the overlap saves. The helper spins (yielding now and then) between jobs; a job it has not
//! yet taken when the poster needs the result is run by the poster itself, so a helper that has not started a job
//! (descheduled, busy or absent) never stalls the poster; once it has, the poster waits for it. A job that panics
//! on the helper makes the poster panic too, at once.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Mutex, MutexGuard};

const IDLE: u8 = 0;
const POSTED: u8 = 1;
const RUNNING: u8 = 2;
const DONE: u8 = 3;
const CLOSED: u8 = 4;
const FAILED: u8 = 5;

/// Spins between yields of the helper's time slice.
const SPINS_PER_YIELD: u32 = 64;

/// One job's buffers `J` and the handshake between the poster and one helper running [`Side::serve`].
pub(super) struct Side<J> {
    state: AtomicU8,
    job: Mutex<J>,
}

impl<J: Send> Side<J> {
    pub(super) fn new(job: J) -> Self {
        Side {
            state: AtomicU8::new(IDLE),
            job: Mutex::new(job),
        }
    }

    fn lock(&self) -> MutexGuard<'_, J> {
        // A job that panicked leaves its buffers as they are; the panic itself reaches the caller through the
        // helper's thread scope.
        self.job.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The helper's loop: runs `work` on every posted job it takes, until [`Side::close`].
    pub(super) fn serve(&self, work: impl Fn(&mut J)) {
        let mut spins = 0u32;
        loop {
            match self.state.load(Ordering::Acquire) {
                CLOSED => return,
                POSTED if self.take() => {
                    // DONE even if `work` unwinds, so that the poster never waits on a job nobody runs.
                    let done = Finished(&self.state);
                    work(&mut self.lock());
                    drop(done);
                    spins = 0;
                }
                _ => pause(&mut spins),
            }
        }
    }

    fn take(&self) -> bool {
        self.state
            .compare_exchange(POSTED, RUNNING, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Fills the job with `fill` and posts it. The previous job must be finished.
    pub(super) fn post(&self, fill: impl FnOnce(&mut J)) {
        debug_assert_eq!(self.state.load(Ordering::Acquire), IDLE, "a job is pending");
        fill(&mut self.lock());
        self.state.store(POSTED, Ordering::Release);
    }

    /// The posted job's result: runs `work` here when no helper has taken the job yet, otherwise waits for the
    /// helper; then `read` sees the finished job.
    pub(super) fn finish<R>(&self, work: impl Fn(&mut J), read: impl FnOnce(&mut J) -> R) -> R {
        if self.take() {
            work(&mut self.lock());
        } else {
            let mut spins = 0u32;
            loop {
                match self.state.load(Ordering::Acquire) {
                    DONE => break,
                    FAILED => panic!("a DAG fit's side job panicked on its helper thread"),
                    _ => pause(&mut spins),
                }
            }
        }
        self.state.store(IDLE, Ordering::Release);
        read(&mut self.lock())
    }

    /// Ends [`Side::serve`] (after the job it is running, if any).
    pub(super) fn close(&self) {
        self.state.store(CLOSED, Ordering::Release);
    }
}

/// One turn of a wait: a spin, or every [`SPINS_PER_YIELD`]th turn a yield of the time slice.
fn pause(spins: &mut u32) {
    *spins = spins.wrapping_add(1);
    if spins.is_multiple_of(SPINS_PER_YIELD) {
        std::thread::yield_now();
    } else {
        std::hint::spin_loop();
    }
}

/// Marks the running job done when dropped, or failed when the job unwinds, unless the side was closed meanwhile
/// (a poster that unwound between post and finish): overwriting CLOSED would keep the helper spinning and its
/// scope waiting for ever.
struct Finished<'a>(&'a AtomicU8);

impl Drop for Finished<'_> {
    fn drop(&mut self) {
        let end = if std::thread::panicking() {
            FAILED
        } else {
            DONE
        };
        let _ = self
            .0
            .compare_exchange(RUNNING, end, Ordering::AcqRel, Ordering::Acquire);
    }
}

/// Closes a [`Side`] when dropped, so that a scope never waits on a helper after an early return or a panic.
pub(super) struct CloseOnDrop<'a, J: Send>(pub(super) Option<&'a Side<J>>);

impl<J: Send> Drop for CloseOnDrop<'_, J> {
    fn drop(&mut self) {
        if let Some(side) = self.0 {
            side.close();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn square(j: &mut (u64, u64)) {
        j.1 = j.0 * j.0;
    }

    #[test]
    fn the_poster_runs_a_job_no_helper_takes() {
        let side = Side::new((0u64, 0u64));
        for k in 0..5 {
            side.post(|j| j.0 = k);
            assert_eq!(side.finish(square, |j| j.1), k * k);
        }
    }

    /// Jobs give the same results whoever runs them; in every other job the poster waits until the helper has
    /// taken it, so both paths run.
    #[test]
    fn jobs_give_the_same_results_with_a_helper() {
        let side = Side::new((0u64, 0u64));
        let (mut mine, mut theirs) = (0, 0);
        std::thread::scope(|sc| {
            let _close = CloseOnDrop(Some(&side));
            let side = &side;
            sc.spawn(move || side.serve(square));
            for k in 0..2000u64 {
                side.post(|j| j.0 = k);
                if k % 2 == 0 {
                    while side.state.load(Ordering::Acquire) == POSTED {
                        std::thread::yield_now();
                    }
                }
                let ran_here = std::cell::Cell::new(false);
                let v = side.finish(
                    |j| {
                        ran_here.set(true);
                        square(j)
                    },
                    |j| j.1,
                );
                assert_eq!(v, k * k);
                if ran_here.get() {
                    mine += 1;
                } else {
                    theirs += 1;
                }
            }
        });
        assert!(theirs >= 1000, "the helper ran {theirs} jobs");
        assert_eq!(mine + theirs, 2000);
    }

    /// A poster that unwinds while the helper runs its job closes the side; the helper must still stop.
    #[test]
    fn closing_during_a_job_stops_the_helper() {
        let side = Side::new((0u64, 0u64));
        let started = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|sc| {
            let (s, started) = (&side, &started);
            let helper = sc.spawn(move || {
                s.serve(|j| {
                    started.store(true, Ordering::Release);
                    std::thread::sleep(std::time::Duration::from_millis(20));
                    square(j)
                })
            });
            s.post(|j| j.0 = 5);
            while !started.load(Ordering::Acquire) {
                std::thread::yield_now();
            }
            // The poster gives up on the running job (as an unwinding fit would) and closes.
            s.close();
            helper.join().expect("the helper stops");
        });
    }

    #[test]
    fn a_job_that_panics_on_the_helper_makes_the_poster_panic() {
        let side = Side::new((0u64, 0u64));
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            std::thread::scope(|sc| {
                let _close = CloseOnDrop(Some(&side));
                let s = &side;
                sc.spawn(move || s.serve(|_| panic!("job failed")));
                s.post(|j| j.0 = 3);
                // Let the helper take it (and panic), then ask for the result.
                while s.state.load(Ordering::Acquire) == POSTED {
                    std::thread::yield_now();
                }
                s.finish(square, |j| j.1)
            })
        }));
        assert!(result.is_err(), "{result:?}");
    }
}
