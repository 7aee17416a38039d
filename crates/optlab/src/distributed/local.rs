//! The in-process [`Communicator`]: `R` workers on `R` threads meeting at a shared slot table. A worker that
//! returns an error, panics or waits longer than the timeout at a collective makes every other worker's next
//! collective fail with an [`Error::Distributed`] naming it, so a group never hangs.

use super::{ordered_sum, Communicator};
use crate::{Error, Result};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How long a worker waits for the others at one collective before the group is declared failed.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

type Reduce<'a> = &'a dyn Fn(&[Vec<f64>], usize) -> Vec<f64>;

struct State {
    arrived: usize,
    generation: u64,
    slots: Vec<Vec<f64>>,
    result: Arc<Vec<f64>>,
    failed: Option<String>,
}

struct Shared {
    size: usize,
    timeout: Duration,
    state: Mutex<State>,
    turn: Condvar,
}

/// One worker's end of an in-process group. A clone is another handle on the same worker (for an owner such as
/// a trainer that keeps its communicator).
#[derive(Clone)]
pub struct LocalComm {
    rank: usize,
    shared: Arc<Shared>,
    sent: Arc<AtomicU64>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A worker that panicked while holding the lock left consistent data: every write is one assignment.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn fail(&self, message: String) {
        let mut s = self.lock();
        s.failed.get_or_insert(message);
        drop(s);
        self.turn.notify_all();
    }
}

impl LocalComm {
    /// Deposits `data`, waits for every worker, returns `reduce` of all deposits (computed once, by the last
    /// worker to arrive).
    fn exchange(&self, data: Vec<f64>, reduce: Reduce<'_>) -> Result<Arc<Vec<f64>>> {
        let sh = &self.shared;
        let mut s = sh.lock();
        if let Some(f) = &s.failed {
            return Err(Error::Distributed(f.clone()));
        }
        let gen = s.generation;
        s.slots[self.rank] = data;
        s.arrived += 1;
        if s.arrived == sh.size {
            let len = s.slots[0].len();
            if let Some(r) = s.slots.iter().position(|v| v.len() != len) {
                let msg = format!(
                    "workers disagree on a collective's length: worker 0 sent {len} values, worker {r} sent {}",
                    s.slots[r].len()
                );
                s.failed = Some(msg.clone());
                drop(s);
                sh.turn.notify_all();
                return Err(Error::Distributed(msg));
            }
            s.result = Arc::new(reduce(&s.slots, len));
            s.arrived = 0;
            s.generation += 1;
            let out = s.result.clone();
            drop(s);
            sh.turn.notify_all();
            return Ok(out);
        }
        let deadline = Instant::now() + sh.timeout;
        while s.generation == gen && s.failed.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                let msg = format!(
                    "worker {} waited more than {:.0} s for the others at a collective",
                    self.rank,
                    sh.timeout.as_secs_f64()
                );
                s.failed = Some(msg.clone());
                drop(s);
                sh.turn.notify_all();
                return Err(Error::Distributed(msg));
            }
            s = sh
                .turn
                .wait_timeout(s, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        if s.generation == gen {
            return Err(Error::Distributed(s.failed.clone().unwrap_or_default()));
        }
        Ok(s.result.clone())
    }
}

impl LocalComm {
    fn count(&self, bytes: usize) {
        self.sent.fetch_add(bytes as u64, Ordering::Relaxed);
    }
}

fn sum_f64(slots: &[Vec<f64>], len: usize) -> Vec<f64> {
    let flat: Vec<f64> = slots.iter().flatten().copied().collect();
    let mut out = vec![0.0; len];
    if len > 0 {
        ordered_sum(&flat, len, &mut out, |a, b| a + b);
    }
    out
}

fn sum_f32(slots: &[Vec<f64>], len: usize) -> Vec<f64> {
    let flat: Vec<f32> = slots.iter().flatten().map(|&v| v as f32).collect();
    let mut out = vec![0.0f32; len];
    if len > 0 {
        ordered_sum(&flat, len, &mut out, |a, b| a + b);
    }
    out.into_iter().map(f64::from).collect()
}

fn nothing(_: &[Vec<f64>], _: usize) -> Vec<f64> {
    Vec::new()
}

impl Communicator for LocalComm {
    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.shared.size
    }

    fn all_reduce_sum(&self, buf: &mut [f64]) -> Result<()> {
        self.count(buf.len() * 8);
        let r = self.exchange(buf.to_vec(), &sum_f64)?;
        buf.copy_from_slice(&r);
        Ok(())
    }

    fn all_reduce_sum_f32(&self, buf: &mut [f32]) -> Result<()> {
        self.count(buf.len() * 4);
        let r = self.exchange(buf.iter().map(|&v| f64::from(v)).collect(), &sum_f32)?;
        for (b, v) in buf.iter_mut().zip(r.iter()) {
            *b = *v as f32;
        }
        Ok(())
    }

    fn broadcast(&self, buf: &mut [f64], root: usize) -> Result<()> {
        if root >= self.size() {
            return Err(Error::invalid(format!(
                "broadcast root {root} is not a worker of a group of {}",
                self.size()
            )));
        }
        // Every worker deposits (the length check covers all); the reduction keeps the root's.
        let r = self.exchange(buf.to_vec(), &|s, _| s[root].clone())?;
        if self.rank == root {
            self.count(buf.len() * 8);
        }
        buf.copy_from_slice(&r);
        Ok(())
    }

    fn barrier(&self) -> Result<()> {
        self.exchange(Vec::new(), &nothing).map(|_| ())
    }

    fn bytes_sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    fn abort(&self, message: &str) {
        self.shared
            .fail(format!("worker {} failed: {message}", self.rank));
    }
}

/// Calls `abort` when a worker leaves its closure by a panic.
struct PanicGuard<'a>(&'a LocalComm, bool);

impl Drop for PanicGuard<'_> {
    fn drop(&mut self) {
        if !self.1 {
            self.0.abort("it panicked");
        }
    }
}

/// Runs `work` on `workers` threads, one [`LocalComm`] each, and returns their results in rank order. The first
/// worker's own error is returned (not the "another worker failed" errors it caused in the others).
pub fn run<T: Send>(
    workers: usize,
    timeout: Duration,
    work: impl Fn(&LocalComm) -> Result<T> + Sync,
) -> Result<Vec<T>> {
    if workers == 0 {
        return Err(Error::invalid("the number of workers must be >= 1"));
    }
    let shared = Arc::new(Shared {
        size: workers,
        timeout,
        state: Mutex::new(State {
            arrived: 0,
            generation: 0,
            slots: vec![Vec::new(); workers],
            result: Arc::new(Vec::new()),
            failed: None,
        }),
        turn: Condvar::new(),
    });
    let comms: Vec<LocalComm> = (0..workers)
        .map(|rank| LocalComm {
            rank,
            shared: shared.clone(),
            sent: Arc::new(AtomicU64::new(0)),
        })
        .collect();
    let results: Vec<Result<T>> = std::thread::scope(|scope| {
        let handles: Vec<_> = comms
            .iter()
            .map(|c| {
                let work = &work;
                scope.spawn(move || {
                    let mut guard = PanicGuard(c, false);
                    let r = work(c);
                    if let Err(e) = &r {
                        if !matches!(e, Error::Distributed(_)) {
                            c.abort(&e.to_string());
                        }
                    }
                    guard.1 = true;
                    r
                })
            })
            .collect();
        handles
            .into_iter()
            .enumerate()
            .map(|(rank, h)| {
                h.join()
                    .unwrap_or_else(|_| Err(Error::Distributed(format!("worker {rank} panicked"))))
            })
            .collect()
    });
    if let Some(own) = results
        .iter()
        .position(|r| matches!(r, Err(e) if !matches!(e, Error::Distributed(_))))
    {
        return Err(results.into_iter().nth(own).unwrap().err().unwrap());
    }
    results.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_in_rank_order_and_broadcasts() {
        let out = run(3, DEFAULT_TIMEOUT, |c| {
            let mut v = vec![c.rank() as f64 + 0.5, 1.0];
            c.all_reduce_sum(&mut v)?;
            let mut f = vec![1e8f32, 1.0, -1e8][c.rank()..c.rank() + 1].to_vec();
            c.all_reduce_sum_f32(&mut f)?;
            let mut b = vec![c.rank() as f64; 2];
            c.broadcast(&mut b, 2)?;
            c.barrier()?;
            Ok((v, f[0], b, c.bytes_sent()))
        })
        .unwrap();
        for (v, f, b, _) in &out {
            assert_eq!(v, &vec![4.5, 3.0]);
            // (1e8 + 1) rounds to 1e8 in f32, then − 1e8: 0, the rank-order f32 sum.
            assert_eq!(*f, 0.0);
            assert_eq!(b, &vec![2.0, 2.0]);
        }
        assert_eq!(out[2].3, 16 + 4 + 16);
        assert_eq!(out[0].3, 16 + 4);
    }

    #[test]
    fn a_failing_worker_stops_the_others() {
        let err = run(3, DEFAULT_TIMEOUT, |c| {
            if c.rank() == 1 {
                return Err::<(), _>(Error::invalid("bad shard"));
            }
            let mut v = vec![1.0];
            loop {
                c.all_reduce_sum(&mut v)?;
            }
        })
        .unwrap_err();
        assert_eq!(err.to_string(), "bad shard");
        let err = run(2, Duration::from_millis(50), |c| {
            if c.rank() == 0 {
                c.barrier()?;
            }
            Ok(())
        })
        .unwrap_err();
        assert!(err.to_string().contains("waited more than"), "{err}");
        let err = run(2, DEFAULT_TIMEOUT, |c| {
            let mut v = vec![0.0; 1 + c.rank()];
            c.all_reduce_sum(&mut v)
        })
        .unwrap_err();
        assert!(err.to_string().contains("disagree"), "{err}");
    }
}
