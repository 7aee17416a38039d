//! Graph-free kernels over matching rows of several tensors, writing several outputs in one pass: the fused steps
//! of Pearlmutter's R-operator (`curvature::rop`), whose values carry no graph, so one pass over memory replaces
//! the handful of candle ops (each a pass and an allocation) that each formula would otherwise cost.

use crate::{Error, Result};
use candle_core::{DType, Device, Storage, Tensor, WithDType};
use num_traits::Float;
use rayon::prelude::*;

/// Elements per parallel task (smaller inputs run on the calling thread).
const TASK_ELEMS: usize = 1 << 14;

/// A kernel over one row of each of K inputs (each with its own width), with S inputs read whole (per-column
/// constants such as a LayerNorm's γ), writing one row of each of M outputs.
pub(crate) trait RowsKernel<const K: usize, const S: usize, const M: usize>: Sync {
    /// The outputs' row widths (each at least 1) from the inputs'.
    fn widths(&self, inputs: [usize; K]) -> [usize; M];

    /// One row: `row` is its index among all rows (for position-dependent kernels such as a causal mask).
    fn row<T: Float>(&self, row: usize, x: [&[T]; K], shared: [&[T]; S], out: [&mut [T]; M]);
}

/// The width of a tensor's rows (its last dimension; 1 for a scalar).
fn width(t: &Tensor) -> usize {
    t.dims().last().copied().unwrap_or(1)
}

/// Runs `k` over the rows of `x` (the same number of rows each, f32 or f64 alike, on the CPU), with each of
/// `shared` (one value per column of `x[0]`) read whole; output m has `x[0]`'s leading dimensions and its own row
/// width.
pub(crate) fn apply<const K: usize, const S: usize, const M: usize>(
    k: &impl RowsKernel<K, S, M>,
    what: &str,
    x: [&Tensor; K],
    shared: [&Tensor; S],
) -> Result<[Tensor; M]> {
    let all: Vec<&Tensor> = x.iter().chain(shared.iter()).copied().collect();
    let dtype = x[0].dtype();
    if all
        .iter()
        .any(|t| !t.device().is_cpu() || t.dtype() != dtype)
        || !matches!(dtype, DType::F32 | DType::F64)
    {
        return Err(Error::invalid(format!(
            "{what}: the inputs must all be f32 or all f64, on the CPU"
        )));
    }
    let win = x.map(width);
    let rows = x[0].elem_count().checked_div(win[0]).unwrap_or(0);
    if let Some(i) = (0..K).find(|&i| x[i].elem_count() != rows * win[i]) {
        return Err(Error::Shape(format!(
            "{what}: input {i} {:?} does not have the {rows} rows of {:?}",
            x[i].dims(),
            x[0].dims()
        )));
    }
    if let Some(t) = shared.iter().find(|t| t.elem_count() != win[0]) {
        return Err(Error::Shape(format!(
            "{what}: a per-column input of {:?} for rows of {}",
            t.dims(),
            win[0]
        )));
    }
    let wout = k.widths(win);
    let all = all
        .iter()
        .map(|t| t.contiguous())
        .collect::<candle_core::Result<Vec<_>>>()?;
    let outs = match dtype {
        DType::F32 => run::<f32, K, S, M>(k, &all, rows, win, wout)?,
        _ => run::<f64, K, S, M>(k, &all, rows, win, wout)?,
    };
    let lead = &x[0].dims()[..x[0].rank().saturating_sub(1)];
    let shaped = outs
        .into_iter()
        .zip(wout)
        .map(|(o, w)| {
            let dims: Vec<usize> = lead.iter().copied().chain([w]).collect();
            Ok(o.reshape(dims)?)
        })
        .collect::<Result<Vec<_>>>()?;
    shaped
        .try_into()
        .map_err(|_| Error::invalid(format!("{what}: the kernel's outputs")))
}

fn run<T: Float + WithDType, const K: usize, const S: usize, const M: usize>(
    k: &impl RowsKernel<K, S, M>,
    all: &[Tensor],
    rows: usize,
    win: [usize; K],
    wout: [usize; M],
) -> Result<Vec<Tensor>> {
    let guards: Vec<_> = all.iter().map(|t| t.storage_and_layout()).collect();
    let data = cpu_values::<T, _>(&guards, "rows")?;
    let (xs, shared) = data.split_at(K);
    let shared: [&[T]; S] = std::array::from_fn(|i| shared[i]);
    let mut outs: Vec<Vec<T>> = wout.iter().map(|w| vec![T::zero(); rows * w]).collect();
    let per_task = (TASK_ELEMS / win.iter().chain(&wout).sum::<usize>().max(1)).max(1);
    let tasks = rows.div_ceil(per_task);
    let mut chunks: Vec<_> = outs
        .iter_mut()
        .zip(wout)
        .map(|(o, w)| o.chunks_mut(per_task * w.max(1)))
        .collect();
    let work: Vec<(usize, [&mut [T]; M])> = (0..tasks)
        .map(|t| {
            (
                t,
                std::array::from_fn(|m| chunks[m].next().unwrap_or(&mut [])),
            )
        })
        .collect();
    let task = |(t, outs): (usize, [&mut [T]; M])| {
        crate::simd::simd_body(Task {
            k,
            xs,
            shared,
            outs,
            rows: t * per_task..((t + 1) * per_task).min(rows),
            win,
            wout,
        })
    };
    if tasks > 1 {
        work.into_par_iter().for_each(task);
    } else {
        work.into_iter().for_each(task);
    }
    drop(guards);
    outs.into_iter()
        .zip(wout)
        .map(|(o, w)| Ok(Tensor::from_vec(o, (rows, w), &Device::Cpu)?))
        .collect()
}

/// The values of contiguous CPU tensors of one float type, from their storage guards (`what` names the caller in
/// errors).
pub(crate) fn cpu_values<'a, T: WithDType, G: std::ops::Deref<Target = Storage>>(
    guards: &'a [(G, &candle_core::Layout)],
    what: &str,
) -> Result<Vec<&'a [T]>> {
    guards
        .iter()
        .map(|(s, l)| {
            let Storage::Cpu(s) = &**s else {
                return Err(Error::invalid(format!(
                    "{what}: the inputs must be on the CPU"
                )));
            };
            let (a, b) = l
                .contiguous_offsets()
                .ok_or_else(|| Error::invalid(format!("{what}: an input is not contiguous")))?;
            Ok(&T::cpu_storage_as_slice(s)?[a..b])
        })
        .collect()
}

/// One task's rows, compiled into the widest vector unit's entry point whole (the kernel's `row` is inlined).
struct Task<'a, 'k, T, R, const K: usize, const S: usize, const M: usize> {
    k: &'k R,
    xs: &'a [&'a [T]],
    shared: [&'a [T]; S],
    outs: [&'a mut [T]; M],
    rows: std::ops::Range<usize>,
    win: [usize; K],
    wout: [usize; M],
}

impl<T: Float, R: RowsKernel<K, S, M>, const K: usize, const S: usize, const M: usize>
    crate::simd::SimdBody for Task<'_, '_, T, R, K, S, M>
{
    type Out = ();

    #[inline(always)]
    fn run(self) {
        let mut outs: Vec<_> = self
            .outs
            .into_iter()
            .zip(self.wout)
            .map(|(o, w)| o.chunks_mut(w.max(1)))
            .collect();
        for r in self.rows {
            let x: [&[T]; K] =
                std::array::from_fn(|i| &self.xs[i][r * self.win[i]..(r + 1) * self.win[i]]);
            let o: [&mut [T]; M] = std::array::from_fn(|m| outs[m].next().unwrap_or(&mut []));
            self.k.row(r, x, self.shared, o);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Row r of x (width n) with a shared column offset c: out₀ = x + c (width n), out₁ = [Σ x, r] (width 2).
    struct Probe;

    impl RowsKernel<1, 1, 2> for Probe {
        fn widths(&self, [n]: [usize; 1]) -> [usize; 2] {
            [n, 2]
        }

        #[inline(always)]
        fn row<T: Float>(&self, row: usize, [x]: [&[T]; 1], [c]: [&[T]; 1], [y, s]: [&mut [T]; 2]) {
            for ((y, &x), &c) in y.iter_mut().zip(x).zip(c) {
                *y = x + c;
            }
            s[0] = x.iter().fold(T::zero(), |a, &b| a + b);
            s[1] = T::from(row).unwrap_or_else(T::nan);
        }
    }

    /// Outputs, shapes and row indices on a parallel (5000 rows) and a one-task input, both dtypes; bad inputs
    /// are errors.
    #[test]
    fn rows_reach_the_kernel_in_order() {
        let dev = Device::Cpu;
        for (lead, dtype) in [((2500, 2), DType::F64), ((3, 1), DType::F32)] {
            let x = Tensor::arange(0u32, (lead.0 * lead.1 * 3) as u32, &dev)
                .unwrap()
                .to_dtype(dtype)
                .unwrap()
                .reshape((lead.0, lead.1, 3))
                .unwrap();
            let c = Tensor::new(&[10.0f64, 20.0, 30.0], &dev)
                .unwrap()
                .to_dtype(dtype)
                .unwrap();
            let [y, s] = apply(&Probe, "probe", [&x], [&c]).unwrap();
            assert_eq!(y.dims(), [lead.0, lead.1, 3]);
            assert_eq!(s.dims(), [lead.0, lead.1, 2]);
            let want = x.broadcast_add(&c).unwrap();
            let diff = (y - want).unwrap().abs().unwrap().sum_all().unwrap();
            assert_eq!(
                diff.to_dtype(DType::F64)
                    .unwrap()
                    .to_scalar::<f64>()
                    .unwrap(),
                0.0
            );
            let s: Vec<Vec<f64>> = s
                .to_dtype(DType::F64)
                .unwrap()
                .reshape(((), 2))
                .unwrap()
                .to_vec2()
                .unwrap();
            for (r, s) in s.iter().enumerate() {
                let first = (3 * r) as f64;
                assert_eq!(s, &[3.0 * first + 3.0, r as f64]);
            }
        }
        let x = Tensor::zeros((4, 3), DType::F32, &dev).unwrap();
        let c = Tensor::zeros(3, DType::F32, &dev).unwrap();
        assert!(apply(&Probe, "probe", [&x], [&c.to_dtype(DType::F64).unwrap()]).is_err());
        assert!(apply(&Probe, "probe", [&x], [&c.narrow(0, 0, 2).unwrap()]).is_err());
        let ints = Tensor::zeros((4, 3), DType::U32, &dev).unwrap();
        assert!(apply(&Probe, "probe", [&ints], [&ints.get(0).unwrap()]).is_err());
    }
}
