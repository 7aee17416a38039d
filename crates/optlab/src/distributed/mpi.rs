//! The MPI [`Collectives`] (cargo feature `mpi`): one worker per rank of `MPI_COMM_WORLD`, started by `mpirun`.
//! Sums gather every rank's buffer and add them in rank order on each rank, so results equal the in-process
//! group's bit for bit. When a rank dies, Open MPI's `mpirun` stops the others and reports which rank exited; a
//! rank that stops responding without dying is caught by a timeout: collectives are started non-blocking and
//! polled, and a rank that waits longer than `OPTLAB_COLLECTIVE_TIMEOUT` seconds (default 600) prints which
//! collective it waited at and aborts the job.

use super::{ordered_sum, Communicator as Collectives};
use crate::{Error, Result};
use mpi::environment::Universe;
use mpi::request::{Request, Scope};
use mpi::topology::SimpleCommunicator;
use mpi::traits::*;
use std::cell::Cell;
use std::time::{Duration, Instant};

/// The environment variable that sets the collective timeout, in seconds.
pub const TIMEOUT_VAR: &str = "OPTLAB_COLLECTIVE_TIMEOUT";

/// This process's rank of the MPI world. Holding it keeps MPI initialized; dropping it finalizes MPI.
pub struct MpiComm {
    world: SimpleCommunicator,
    sent: Cell<u64>,
    timeout: Duration,
    // Declared last: finalizes MPI after the communicator is gone.
    _universe: Universe,
}

impl MpiComm {
    /// Initializes MPI (once per process) and joins the world; the collective timeout comes from
    /// [`TIMEOUT_VAR`].
    pub fn init() -> Result<Self> {
        let timeout = match std::env::var(TIMEOUT_VAR) {
            Err(_) => Duration::from_secs(600),
            Ok(v) => match v.parse::<f64>() {
                Ok(s) if s.is_finite() && s > 0.0 && s < 1e9 => Duration::from_secs_f64(s),
                _ => {
                    return Err(Error::invalid(format!(
                        "{TIMEOUT_VAR} must be a number of seconds > 0, got `{v}`"
                    )))
                }
            },
        };
        let universe = mpi::initialize().ok_or_else(|| {
            Error::Distributed("MPI was already initialized in this process".into())
        })?;
        Ok(Self {
            world: universe.world(),
            sent: Cell::new(0),
            timeout,
            _universe: universe,
        })
    }

    /// Polls `req` until it completes; past the timeout, reports which collective hung and aborts the job (the
    /// other ranks are then stopped by mpirun).
    fn wait<'a, D: ?Sized, S: Scope<'a>>(&self, mut req: Request<'a, D, S>, what: &str) {
        let deadline = Instant::now() + self.timeout;
        let mut polls = 0u32;
        loop {
            match req.test() {
                Ok(_) => return,
                Err(r) => req = r,
            }
            if Instant::now() >= deadline {
                eprintln!(
                    "error: distributed: rank {} waited more than {:.0} s for the other ranks at {what}: a rank stopped responding ({TIMEOUT_VAR} sets the limit)",
                    self.world.rank(),
                    self.timeout.as_secs_f64()
                );
                self.world.abort(1);
            }
            polls += 1;
            if polls < 1000 {
                std::hint::spin_loop();
            } else {
                std::thread::sleep(Duration::from_micros(50));
            }
        }
    }

    fn gather<T: Copy + Default + mpi::datatype::Equivalence>(&self, buf: &[T]) -> Result<Vec<T>> {
        let bytes = std::mem::size_of_val(buf);
        crate::memory::check(
            "the gathered buffers of an all-reduce",
            (bytes * self.size()) as f64,
            "use fewer ranks or a smaller model",
        )?;
        // Every rank must send the same length: check it first, so a mismatch is an error and not a crash.
        let mut lens = vec![0u64; self.size()];
        let len = buf.len() as u64;
        mpi::request::scope(|sc| {
            self.wait(
                self.world
                    .immediate_all_gather_into(sc, &len, &mut lens[..]),
                "an all-reduce",
            )
        });
        if let Some(r) = lens.iter().position(|&l| l != buf.len() as u64) {
            return Err(Error::Distributed(format!(
                "ranks disagree on a collective's length: rank {} sent {}, rank {r} sent {}",
                self.rank(),
                buf.len(),
                lens[r]
            )));
        }
        let mut all = vec![T::default(); buf.len() * self.size()];
        mpi::request::scope(|sc| {
            self.wait(
                self.world.immediate_all_gather_into(sc, buf, &mut all[..]),
                "an all-reduce",
            )
        });
        self.sent.set(self.sent.get() + bytes as u64);
        Ok(all)
    }
}

impl Collectives for MpiComm {
    fn rank(&self) -> usize {
        self.world.rank() as usize
    }

    fn size(&self) -> usize {
        self.world.size() as usize
    }

    fn all_reduce_sum(&self, buf: &mut [f64]) -> Result<()> {
        let all = self.gather(buf)?;
        if !buf.is_empty() {
            ordered_sum(&all, buf.len(), buf, |a, b| a + b);
        }
        Ok(())
    }

    fn all_reduce_sum_f32(&self, buf: &mut [f32]) -> Result<()> {
        let all = self.gather(buf)?;
        if !buf.is_empty() {
            ordered_sum(&all, buf.len(), buf, |a, b| a + b);
        }
        Ok(())
    }

    fn broadcast(&self, buf: &mut [f64], root: usize) -> Result<()> {
        if root >= self.size() {
            return Err(Error::invalid(format!(
                "broadcast root {root} is not a rank of a world of {}",
                self.size()
            )));
        }
        self.world.process_at_rank(root as i32).broadcast_into(buf);
        if self.rank() == root {
            self.sent
                .set(self.sent.get() + std::mem::size_of_val(buf) as u64);
        }
        Ok(())
    }

    fn barrier(&self) -> Result<()> {
        self.wait(self.world.immediate_barrier(), "a barrier");
        Ok(())
    }

    fn bytes_sent(&self) -> u64 {
        self.sent.get()
    }

    fn abort(&self, message: &str) {
        eprintln!("error: rank {} failed: {message}", self.rank());
        self.world.abort(1)
    }
}
