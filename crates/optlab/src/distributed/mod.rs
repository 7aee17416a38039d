//! Workers that cooperate by collectives: the [`Communicator`] trait, an in-process implementation over threads
//! ([`local`], what tests and one-machine runs use) and an MPI one ([`mpi`], cargo feature `mpi`: one process per
//! rank under `mpirun`). Algorithms are written once, SPMD-style, against the trait (P09, data-parallel training).
//!
//! Sums are reduced in rank order 0, 1, …, R−1 by both implementations (MPI gathers, then every rank adds in that
//! order), so a run on R MPI ranks equals the same run over R threads bit for bit, and every rank holds the same
//! bits afterwards. That costs R times the message in memory, which is small for the models this is used with.

pub mod local;
#[cfg(feature = "mpi")]
pub mod mpi;

use crate::{Error, Result};

/// A group of `size()` workers; each holds one `Communicator` with its own `rank()`. Every collective must be
/// called by all workers in the same order with buffers of the same length; a worker that fails or stops makes
/// the others' collectives return [`Error::Distributed`] instead of waiting forever.
pub trait Communicator {
    /// This worker's index in `0..size()`.
    fn rank(&self) -> usize;
    /// The number of workers.
    fn size(&self) -> usize;
    /// Replaces `buf` on every worker by the sum over workers, added in rank order.
    fn all_reduce_sum(&self, buf: &mut [f64]) -> Result<()>;
    /// As [`Communicator::all_reduce_sum`] in f32 arithmetic (each partial sum rounded to f32).
    fn all_reduce_sum_f32(&self, buf: &mut [f32]) -> Result<()>;
    /// Copies `root`'s `buf` into every worker's.
    fn broadcast(&self, buf: &mut [f64], root: usize) -> Result<()>;
    /// Waits until every worker has arrived.
    fn barrier(&self) -> Result<()>;
    /// Bytes this worker has contributed to collectives so far (the payload, not the transport's overhead).
    fn bytes_sent(&self) -> u64;
    /// Tells the other workers that this one failed with `message`, so that their collectives return an error.
    /// MPI cannot be told politely: it aborts the job (every rank exits with `mpirun`'s report).
    fn abort(&self, message: &str);
}

/// The examples `0..n` split into `workers` contiguous shards whose sizes differ by at most one (the first
/// `n mod workers` shards hold one more). Refused when a shard would hold fewer than `min_per_worker` examples.
pub fn shards(
    n: usize,
    workers: usize,
    min_per_worker: usize,
) -> Result<Vec<std::ops::Range<usize>>> {
    if workers == 0 {
        return Err(Error::invalid("the number of workers must be >= 1"));
    }
    let base = n / workers;
    if base < min_per_worker.max(1) {
        return Err(Error::invalid(format!(
            "{n} examples over {workers} workers leaves {base} per worker; each needs at least {} (use fewer workers or more data)",
            min_per_worker.max(1)
        )));
    }
    let extra = n % workers;
    let mut start = 0;
    Ok((0..workers)
        .map(|w| {
            let len = base + usize::from(w < extra);
            let r = start..start + len;
            start += len;
            r
        })
        .collect())
}

/// Adds `rows` (each `len` long, in rank order) into `out`, rounding with `round` after every addition.
pub(crate) fn ordered_sum<T: Copy>(rows: &[T], len: usize, out: &mut [T], add: impl Fn(T, T) -> T) {
    out.copy_from_slice(&rows[..len]);
    for row in rows[len..].chunks_exact(len) {
        for (o, v) in out.iter_mut().zip(row) {
            *o = add(*o, *v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_cover_the_data_once() {
        let s = shards(10, 3, 1).unwrap();
        assert_eq!(s, vec![0..4, 4..7, 7..10]);
        assert_eq!(shards(8, 2, 4).unwrap(), vec![0..4, 4..8]);
        assert!(shards(7, 2, 4)
            .unwrap_err()
            .to_string()
            .contains("3 per worker"));
        assert!(shards(5, 0, 1).is_err());
    }
}
