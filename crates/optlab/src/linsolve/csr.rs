//! Sparse matrices in compressed sparse row form (f64): the storage every solver of [`super`] reads.

use crate::{Error, Result};
use rayon::prelude::*;

/// Rows below this many non-zeros are multiplied on one thread (rayon's dispatch costs more than the arithmetic).
const PARALLEL_NNZ: usize = 1 << 16;

/// A square sparse matrix in CSR form: row `i` holds `values[row_ptr[i]..row_ptr[i + 1]]` at the columns
/// `col_idx[..]` (sorted and unique within a row).
#[derive(Debug, Clone, PartialEq)]
pub struct Csr {
    pub n: usize,
    pub row_ptr: Vec<usize>,
    pub col_idx: Vec<usize>,
    pub values: Vec<f64>,
}

impl Csr {
    /// Checks the structure: `n + 1` row pointers from 0 rising to the number of values, columns in range,
    /// sorted and unique in each row, finite values.
    pub fn new(
        n: usize,
        row_ptr: Vec<usize>,
        col_idx: Vec<usize>,
        values: Vec<f64>,
    ) -> Result<Self> {
        let bad = |m: String| Err(Error::Shape(format!("sparse matrix: {m}")));
        if row_ptr.len() != n + 1 || row_ptr[0] != 0 || row_ptr[n] != values.len() {
            return bad(format!(
                "{} row pointers for {n} rows ending at {} for {} values (need n + 1, from 0 to the value count)",
                row_ptr.len(),
                row_ptr.last().copied().unwrap_or(0),
                values.len()
            ));
        }
        if col_idx.len() != values.len() {
            return bad(format!(
                "{} column indices for {} values",
                col_idx.len(),
                values.len()
            ));
        }
        for i in 0..n {
            if row_ptr[i] > row_ptr[i + 1] {
                return bad(format!("row pointers fall at row {i}"));
            }
            let cols = &col_idx[row_ptr[i]..row_ptr[i + 1]];
            if cols.iter().any(|&c| c >= n) {
                return bad(format!("row {i} has a column outside 0..{n}"));
            }
            if cols.windows(2).any(|w| w[0] >= w[1]) {
                return bad(format!("the columns of row {i} are not sorted and unique"));
            }
        }
        if let Some(v) = values.iter().find(|v| !v.is_finite()) {
            return Err(Error::NonFinite(format!("sparse matrix: a value is {v}")));
        }
        Ok(Csr {
            n,
            row_ptr,
            col_idx,
            values,
        })
    }

    /// From `(row, column, value)` triplets; duplicates are summed.
    pub fn from_triplets(n: usize, mut t: Vec<(usize, usize, f64)>) -> Result<Self> {
        if let Some(&(i, j, _)) = t.iter().find(|(i, j, _)| *i >= n || *j >= n) {
            return Err(Error::Shape(format!(
                "sparse matrix: entry ({i}, {j}) outside a {n}x{n} matrix"
            )));
        }
        t.sort_by_key(|&(i, j, _)| (i, j));
        let mut row_ptr = vec![0; n + 1];
        let (mut col_idx, mut values) = (Vec::with_capacity(t.len()), Vec::with_capacity(t.len()));
        let mut last = None;
        for (i, j, v) in t {
            if last == Some((i, j)) {
                *values.last_mut().expect("a previous entry") += v;
                continue;
            }
            last = Some((i, j));
            row_ptr[i + 1] += 1;
            col_idx.push(j);
            values.push(v);
        }
        for i in 0..n {
            row_ptr[i + 1] += row_ptr[i];
        }
        Csr::new(n, row_ptr, col_idx, values)
    }

    pub fn nnz(&self) -> usize {
        self.values.len()
    }

    /// The entries of row `i` as (column, value).
    pub fn row(&self, i: usize) -> impl Iterator<Item = (usize, f64)> + '_ {
        let r = self.row_ptr[i]..self.row_ptr[i + 1];
        self.col_idx[r.clone()]
            .iter()
            .copied()
            .zip(self.values[r].iter().copied())
    }

    /// Entry (i, j), zero where none is stored.
    pub fn get(&self, i: usize, j: usize) -> f64 {
        let r = self.row_ptr[i]..self.row_ptr[i + 1];
        match self.col_idx[r.clone()].binary_search(&j) {
            Ok(k) => self.values[r.start + k],
            Err(_) => 0.0,
        }
    }

    /// The diagonal.
    pub fn diagonal(&self) -> Vec<f64> {
        (0..self.n).map(|i| self.get(i, i)).collect()
    }

    /// Whether A = Aᵀ exactly.
    pub fn is_symmetric(&self) -> bool {
        (0..self.n).all(|i| self.row(i).all(|(j, v)| self.get(j, i) == v))
    }

    /// y = A x (threaded over rows on large matrices).
    pub fn matvec_into(&self, x: &[f64], y: &mut [f64]) {
        assert_eq!(x.len(), self.n, "matvec: x has the wrong length");
        assert_eq!(y.len(), self.n, "matvec: y has the wrong length");
        let row = |i: usize| -> f64 {
            let r = self.row_ptr[i]..self.row_ptr[i + 1];
            let mut s = 0.0;
            for (&v, &j) in self.values[r.clone()].iter().zip(&self.col_idx[r]) {
                // SAFETY: `Csr::new` checked every column index against n, and x.len() == n above.
                s += v * unsafe { *x.get_unchecked(j) };
            }
            s
        };
        if self.nnz() < PARALLEL_NNZ {
            y.iter_mut().enumerate().for_each(|(i, yi)| *yi = row(i));
        } else {
            y.par_chunks_mut(4096).enumerate().for_each(|(c, ys)| {
                for (k, yi) in ys.iter_mut().enumerate() {
                    *yi = row(c * 4096 + k);
                }
            });
        }
    }

    /// A x.
    pub fn matvec(&self, x: &[f64]) -> Vec<f64> {
        let mut y = vec![0.0; self.n];
        self.matvec_into(x, &mut y);
        y
    }

    /// The dense matrix, row-major (for tests and small systems).
    pub fn to_dense(&self) -> Vec<f64> {
        let mut d = vec![0.0; self.n * self.n];
        for i in 0..self.n {
            for (j, v) in self.row(i) {
                d[i * self.n + j] = v;
            }
        }
        d
    }

    /// Bytes the matrix occupies (values, columns, row pointers).
    pub fn bytes(&self) -> usize {
        self.nnz() * (8 + std::mem::size_of::<usize>())
            + (self.n + 1) * std::mem::size_of::<usize>()
    }
}

/// Vectors at least this long are reduced and updated on rayon's threads, in fixed chunks (so a dot product sums
/// in the same order on any number of threads).
const PARALLEL_LEN: usize = 1 << 16;
const CHUNK: usize = 1 << 13;

fn serial_dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

pub(crate) fn dot(a: &[f64], b: &[f64]) -> f64 {
    if a.len() < PARALLEL_LEN {
        return serial_dot(a, b);
    }
    let parts: Vec<f64> = a
        .par_chunks(CHUNK)
        .zip(b.par_chunks(CHUNK))
        .map(|(a, b)| serial_dot(a, b))
        .collect();
    parts.iter().sum()
}

pub(crate) fn norm(a: &[f64]) -> f64 {
    dot(a, a).sqrt()
}

/// y ← a·x + b·y.
pub(crate) fn axpby(a: f64, x: &[f64], b: f64, y: &mut [f64]) {
    let f = |y: &mut [f64], x: &[f64]| y.iter_mut().zip(x).for_each(|(y, x)| *y = a * x + b * *y);
    if y.len() < PARALLEL_LEN {
        f(y, x);
    } else {
        y.par_chunks_mut(CHUNK)
            .zip(x.par_chunks(CHUNK))
            .for_each(|(y, x)| f(y, x));
    }
}

/// y += a x.
pub(crate) fn axpy(a: f64, x: &[f64], y: &mut [f64]) {
    axpby(a, x, 1.0, y);
}
