//! Fused, threaded, in-place update kernels.
//!
//! An optimizer step is one pass over memory: [`fused_update`] hands a [`Kernel`] the parameter's own candle
//! storage (mutably, through candle's in-place custom-op hook), its gradient and the optimizer's state buffers
//! as plain slices, split into chunks that run on rayon's threads. No temporary tensors are made.

use crate::nn::Param;
use crate::{Error, Result};
use candle_core::{CpuStorage, DType, InplaceOp2, Layout, Tensor};
use num_traits::Float;
use rayon::prelude::*;
use std::cell::RefCell;

/// Elements per work item: large enough to amortise scheduling, small enough to balance two to many cores.
const CHUNK: usize = 1 << 15;

/// The float types the kernels run on.
pub trait Real: Float + Send + Sync + std::fmt::Debug + 'static {
    /// Converts a hyperparameter (always f64) to this type.
    fn of(x: f64) -> Self;
    /// Widens to f64 (exact).
    fn to64(self) -> f64;
    /// e^x for x ≤ 0, vectorizable, to about one ulp of this type (see [`exp_nonpositive`]).
    fn exp_nonpos(self) -> Self;
}
impl Real for f32 {
    #[inline(always)]
    fn of(x: f64) -> f32 {
        x as f32
    }
    #[inline(always)]
    fn to64(self) -> f64 {
        self as f64
    }
    #[inline(always)]
    fn exp_nonpos(self) -> f32 {
        exp_nonpositive_f32(self)
    }
}
impl Real for f64 {
    #[inline(always)]
    fn of(x: f64) -> f64 {
        x
    }
    #[inline(always)]
    fn to64(self) -> f64 {
        self
    }
    #[inline(always)]
    fn exp_nonpos(self) -> f64 {
        exp_nonpositive(self)
    }
}

/// One state buffer of one parameter, in the parameter's dtype.
#[derive(Debug, Clone, PartialEq)]
pub enum Buf {
    F32(Vec<f32>),
    F64(Vec<f64>),
}

impl Buf {
    /// A zero buffer of `n` values of `dtype`.
    pub fn zeros(dtype: DType, n: usize) -> Result<Buf> {
        match dtype {
            DType::F32 => Ok(Buf::F32(vec![0.0; n])),
            DType::F64 => Ok(Buf::F64(vec![0.0; n])),
            other => Err(Error::invalid(format!(
                "optimizers update f32 or f64 parameters, not {other:?}"
            ))),
        }
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        match self {
            Buf::F32(v) => v.len(),
            Buf::F64(v) => v.len(),
        }
    }

    /// Whether the buffer is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The buffer's dtype.
    pub fn dtype(&self) -> DType {
        match self {
            Buf::F32(_) => DType::F32,
            Buf::F64(_) => DType::F64,
        }
    }

    /// The buffer as a tensor of `shape` (copied).
    pub fn to_tensor(&self, shape: &[usize]) -> Result<Tensor> {
        let dev = &candle_core::Device::Cpu;
        Ok(match self {
            Buf::F32(v) => Tensor::from_slice(v, shape, dev)?,
            Buf::F64(v) => Tensor::from_slice(v, shape, dev)?,
        })
    }

    /// A buffer from a tensor's values in `dtype`.
    pub fn from_tensor(t: &Tensor, dtype: DType) -> Result<Buf> {
        let flat = t.flatten_all()?.to_dtype(dtype)?;
        match dtype {
            DType::F32 => Ok(Buf::F32(flat.to_vec1()?)),
            DType::F64 => Ok(Buf::F64(flat.to_vec1()?)),
            other => Err(Error::invalid(format!(
                "optimizer state must be f32 or f64, not {other:?}"
            ))),
        }
    }
}

/// Typed access to a buffer's slice.
pub trait BufSlice: Real {
    fn slice_mut(b: &mut Buf) -> &mut [Self];
    fn storage(s: &CpuStorage) -> Option<&[Self]>;
    fn storage_mut(s: &mut CpuStorage) -> Option<&mut [Self]>;
}

impl BufSlice for f32 {
    fn slice_mut(b: &mut Buf) -> &mut [f32] {
        match b {
            Buf::F32(v) => v,
            Buf::F64(_) => panic!("buffer dtype checked before the kernel runs"),
        }
    }
    fn storage(s: &CpuStorage) -> Option<&[f32]> {
        match s {
            CpuStorage::F32(v) => Some(v),
            _ => None,
        }
    }
    fn storage_mut(s: &mut CpuStorage) -> Option<&mut [f32]> {
        match s {
            CpuStorage::F32(v) => Some(v),
            _ => None,
        }
    }
}

impl BufSlice for f64 {
    fn slice_mut(b: &mut Buf) -> &mut [f64] {
        match b {
            Buf::F64(v) => v,
            Buf::F32(_) => panic!("buffer dtype checked before the kernel runs"),
        }
    }
    fn storage(s: &CpuStorage) -> Option<&[f64]> {
        match s {
            CpuStorage::F64(v) => Some(v),
            _ => None,
        }
    }
    fn storage_mut(s: &mut CpuStorage) -> Option<&mut [f64]> {
        match s {
            CpuStorage::F64(v) => Some(v),
            _ => None,
        }
    }
}

/// An element-wise update rule: given contiguous chunks of the parameter, its gradient and the state buffers
/// (in the optimizer's buffer order), update them in place. Per-step scalars live in the implementing struct.
pub trait Kernel: Sync {
    /// The update of one chunk. Implementations should be `#[inline(always)]` so the AVX2 build of
    /// [`run_chunked`] compiles them with wide vectors.
    fn run<T: Real>(&self, p: &mut [T], g: &[T], state: &mut [&mut [T]]);

    /// Whether the rule needs the whole tensor at once (norms, row projections) instead of independent chunks;
    /// such kernels parallelise internally.
    fn whole(&self) -> bool {
        false
    }
}

impl<K: Kernel> Kernel for &K {
    #[inline(always)]
    fn run<T: Real>(&self, p: &mut [T], g: &[T], state: &mut [&mut [T]]) {
        (*self).run(p, g, state)
    }
    fn whole(&self) -> bool {
        (*self).whole()
    }
}

/// Runs the kernel on one chunk, compiled for AVX2+FMA when the CPU has them (the loops vectorize; results
/// are bit-identical to the baseline build because Rust never contracts a*b+c into an FMA on its own).
fn run_one<T: Real, K: Kernel>(kernel: &K, p: &mut [T], g: &[T], state: &mut [&mut [T]]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the features were detected at run time.
            unsafe { run_avx2(kernel, p, g, state) };
            return;
        }
    }
    kernel.run(p, g, state)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn run_avx2<T: Real, K: Kernel>(kernel: &K, p: &mut [T], g: &[T], state: &mut [&mut [T]]) {
    kernel.run(p, g, state)
}

/// Runs `kernel` over `p`, `g` and `state` in chunks on rayon's pool.
pub fn run_chunked<T: Real, K: Kernel>(kernel: &K, p: &mut [T], g: &[T], state: Vec<&mut [T]>) {
    let n = p.len();
    if n <= CHUNK || kernel.whole() {
        let mut state = state;
        run_one(kernel, p, g, &mut state);
        return;
    }
    let mut items = Vec::with_capacity(n.div_ceil(CHUNK));
    let (mut p, mut g, mut state) = (p, g, state);
    while !p.is_empty() {
        let k = CHUNK.min(p.len());
        let (ph, pt) = std::mem::take(&mut p).split_at_mut(k);
        let (gh, gt) = g.split_at(k);
        let mut heads = Vec::with_capacity(state.len());
        let mut tails = Vec::with_capacity(state.len());
        for s in state {
            let (sh, st) = s.split_at_mut(k);
            heads.push(sh);
            tails.push(st);
        }
        items.push((ph, gh, heads));
        (p, g, state) = (pt, gt, tails);
    }
    items
        .into_par_iter()
        .for_each(|(p, g, mut s)| run_one(kernel, p, g, &mut s));
}

struct Fused<'a, K> {
    kernel: &'a K,
    state: RefCell<&'a mut [Buf]>,
}

impl<K: Kernel> Fused<'_, K> {
    fn go<T: BufSlice>(
        &self,
        dst: &mut CpuStorage,
        dst_l: &Layout,
        src: &CpuStorage,
        src_l: &Layout,
    ) -> candle_core::Result<()> {
        let (a, b) = dst_l.contiguous_offsets().ok_or_else(|| {
            candle_core::Error::Msg("optimizer: parameter is not contiguous".into())
        })?;
        let (ga, gb) = src_l.contiguous_offsets().ok_or_else(|| {
            candle_core::Error::Msg("optimizer: gradient is not contiguous".into())
        })?;
        let p = &mut T::storage_mut(dst).expect("dtype checked")[a..b];
        let g = &T::storage(src).expect("dtype checked")[ga..gb];
        let mut bufs = self.state.borrow_mut();
        let state: Vec<&mut [T]> = bufs.iter_mut().map(T::slice_mut).collect();
        run_chunked(self.kernel, p, g, state);
        Ok(())
    }
}

impl<K: Kernel> InplaceOp2 for Fused<'_, K> {
    fn name(&self) -> &'static str {
        "optlab-fused-optimizer-step"
    }

    fn cpu_fwd(
        &self,
        dst: &mut CpuStorage,
        dst_l: &Layout,
        src: &CpuStorage,
        src_l: &Layout,
    ) -> candle_core::Result<()> {
        match dst {
            CpuStorage::F32(_) => self.go::<f32>(dst, dst_l, src, src_l),
            CpuStorage::F64(_) => self.go::<f64>(dst, dst_l, src, src_l),
            _ => Err(candle_core::Error::Msg(
                "optimizer: parameters must be f32 or f64".into(),
            )),
        }
    }
}

/// Applies `kernel` to `param` in place with gradient `grad` and the parameter's `state` buffers (which must
/// have the parameter's dtype and size).
pub fn fused_update<K: Kernel>(
    param: &Param,
    grad: &Tensor,
    state: &mut [Buf],
    kernel: &K,
) -> Result<()> {
    let t = param.tensor();
    let n = t.elem_count();
    if grad.dims() != t.dims() {
        return Err(Error::Shape(format!(
            "gradient of '{}' has shape {:?}, the parameter {:?}",
            param.name,
            grad.dims(),
            t.dims()
        )));
    }
    if grad.dtype() != t.dtype() || !matches!(t.dtype(), DType::F32 | DType::F64) {
        return Err(Error::invalid(format!(
            "'{}': parameter {:?} and gradient {:?} must share one dtype, f32 or f64",
            param.name,
            t.dtype(),
            grad.dtype()
        )));
    }
    if !t.device().is_cpu() {
        return Err(Error::invalid(
            "optlab's fused optimizer kernels run on the CPU device",
        ));
    }
    if let Some(b) = state
        .iter()
        .find(|b| b.len() != n || b.dtype() != t.dtype())
    {
        return Err(Error::Shape(format!(
            "optimizer state for '{}' has {} {:?} values, the parameter {n} {:?}",
            param.name,
            b.len(),
            b.dtype(),
            t.dtype()
        )));
    }
    let grad = grad.contiguous()?;
    let op = Fused {
        kernel,
        state: RefCell::new(state),
    };
    t.inplace_op2(&grad, &op)?;
    Ok(())
}

/// Reads a tensor's values as a contiguous f32/f64 slice without copying, if it is on the CPU.
pub fn with_slice<R>(t: &Tensor, f: impl FnOnce(SliceRef<'_>) -> R) -> Result<R> {
    let t = t.contiguous()?;
    let (guard, layout) = t.storage_and_layout();
    let (a, b) = layout.contiguous_offsets().expect("made contiguous");
    match &*guard {
        candle_core::Storage::Cpu(CpuStorage::F32(v)) => Ok(f(SliceRef::F32(&v[a..b]))),
        candle_core::Storage::Cpu(CpuStorage::F64(v)) => Ok(f(SliceRef::F64(&v[a..b]))),
        _ => Err(Error::invalid("expected an f32 or f64 tensor on the CPU")),
    }
}

/// A borrowed f32 or f64 slice.
pub enum SliceRef<'a> {
    F32(&'a [f32]),
    F64(&'a [f64]),
}

/// sign with sign(0) = 0 (torch.sign), branch-free enough to vectorize.
#[inline(always)]
pub fn sign<T: Real>(x: T) -> T {
    if x > T::zero() {
        T::one()
    } else if x < T::zero() {
        -T::one()
    } else {
        T::zero()
    }
}

/// e^x for x ≤ 0 (larger x are clamped to 0) to about one ulp in f64, written without libm calls or
/// branches so that loops over it vectorize: x = n·ln2 + r with |r| ≤ ln2/2, e^r by its degree-13 Taylor
/// polynomial (truncation < 1e-17), times 2^n built from the exponent bits. Below -708 the result is
/// e^-708 ≈ 3e-308 instead of a smaller subnormal.
#[inline(always)]
pub fn exp_nonpositive(x: f64) -> f64 {
    const LN2_HI: f64 = 6.931_471_803_691_238e-1;
    const LN2_LO: f64 = 1.908_214_929_270_587_7e-10;
    // Adding 1.5·2^52 rounds x/ln2 to the nearest integer n and leaves n in the low mantissa bits, so 2^n
    // comes from integer adds and shifts (no float-to-int conversion, which AVX2 lacks for 64-bit lanes).
    const SHIFT: f64 = 6_755_399_441_055_744.0;
    let x = x.clamp(-708.0, 0.0);
    let t = x * std::f64::consts::LOG2_E + SHIFT;
    let n = t - SHIFT;
    let r = (x - n * LN2_HI) - n * LN2_LO;
    // Horner over 1/k!, k = 13 down to 0.
    let mut p = INV_FACT[13];
    for k in (0..13).rev() {
        p = p * r + INV_FACT[k];
    }
    p * f64::from_bits(t.to_bits().wrapping_sub(SHIFT.to_bits()).wrapping_add(1023) << 52)
}

/// [`exp_nonpositive`] in f32: degree-7 polynomial (truncation < 6e-9, below f32's half ulp) by fused
/// multiply-adds (one rounding each, the same bits with or without hardware FMA), 8 lanes per AVX2 vector.
/// Below -87 the result is e^-87 instead of a subnormal.
#[inline(always)]
pub fn exp_nonpositive_f32(x: f32) -> f32 {
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    const SHIFT: f32 = 12_582_912.0; // 1.5 · 2^23
    let x = x.clamp(-87.0, 0.0);
    let t = x * std::f32::consts::LOG2_E + SHIFT;
    let n = t - SHIFT;
    let r = (x - n * LN2_HI) - n * LN2_LO;
    let mut p = INV_FACT[7] as f32;
    for k in (0..7).rev() {
        p = p.mul_add(r, INV_FACT[k] as f32);
    }
    p * f32::from_bits(t.to_bits().wrapping_sub(SHIFT.to_bits()).wrapping_add(127) << 23)
}

/// 1/k! for k = 0..=13.
const INV_FACT: [f64; 14] = [
    1.0,
    1.0,
    1.0 / 2.0,
    1.0 / 6.0,
    1.0 / 24.0,
    1.0 / 120.0,
    1.0 / 720.0,
    1.0 / 5040.0,
    1.0 / 40320.0,
    1.0 / 362_880.0,
    1.0 / 3_628_800.0,
    1.0 / 39_916_800.0,
    1.0 / 479_001_600.0,
    1.0 / 6_227_020_800.0,
];

/// Sum of squares in f64, threaded, in a fixed order: per-chunk partial sums are added sequentially, so the
/// result does not depend on how rayon schedules the chunks (same seed, same bits).
pub fn sum_sq<T: Real>(v: &[T]) -> f64 {
    let partial: Vec<f64> = v
        .par_chunks(CHUNK)
        .map(|c| {
            // Four independent accumulators let the loop vectorize (one running sum cannot be reordered).
            let mut acc = [0.0f64; 4];
            let mut quads = c.chunks_exact(4);
            for q in &mut quads {
                for k in 0..4 {
                    let v = q[k].to64();
                    acc[k] += v * v;
                }
            }
            let tail: f64 = quads.remainder().iter().map(|&x| x.to64() * x.to64()).sum();
            (acc[0] + acc[1]) + (acc[2] + acc[3]) + tail
        })
        .collect();
    partial.iter().sum()
}

/// [`sum_sq`] of an f32 or f64 slice.
pub fn sum_squares(s: SliceRef<'_>) -> f64 {
    match s {
        SliceRef::F32(v) => sum_sq(v),
        SliceRef::F64(v) => sum_sq(v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    struct AddScaled(f64);
    impl Kernel for AddScaled {
        fn run<T: Real>(&self, p: &mut [T], g: &[T], s: &mut [&mut [T]]) {
            for i in 0..p.len() {
                s[0][i] = s[0][i] + g[i];
                p[i] = p[i] + T::of(self.0) * s[0][i];
            }
        }
    }

    #[test]
    fn exp_matches_libm() {
        let mut worst: f64 = 0.0;
        for i in 0..=20000 {
            let x = -(i as f64) * 0.0354; // 0 .. -708
            let (a, b) = (exp_nonpositive(x), x.exp());
            worst = worst.max(((a - b) / b).abs());
        }
        assert!(worst < 4.0 * f64::EPSILON, "worst relative error {worst:e}");
        assert_eq!(exp_nonpositive(0.0), 1.0);
        assert!(exp_nonpositive(-1e9) > 0.0 && exp_nonpositive(-1e9) < 1e-300);
        let mut worst32: f64 = 0.0;
        for i in 0..=20000 {
            let x = -(i as f32) * 0.00435; // 0 .. -87
            let (a, b) = (exp_nonpositive_f32(x) as f64, (x as f64).exp());
            worst32 = worst32.max(((a - b) / b).abs());
        }
        assert!(
            worst32 < 4.0 * f32::EPSILON as f64,
            "f32 worst relative error {worst32:e}"
        );
    }

    #[test]
    fn updates_storage_in_place_across_chunks() {
        let n = 3 * CHUNK + 17;
        let v: Vec<f32> = (0..n).map(|i| i as f32).collect();
        let var = Var::from_vec(v.clone(), n, &Device::Cpu).unwrap();
        let alias = var.as_tensor().clone();
        let p = Param {
            name: "w".into(),
            var,
        };
        let g = Tensor::ones(n, DType::F32, &Device::Cpu).unwrap();
        let mut state = vec![Buf::zeros(DType::F32, n).unwrap()];
        fused_update(&p, &g, &mut state, &AddScaled(2.0)).unwrap();
        fused_update(&p, &g, &mut state, &AddScaled(2.0)).unwrap();
        let got: Vec<f32> = alias.to_vec1().unwrap();
        assert!(got.iter().enumerate().all(|(i, &x)| x == i as f32 + 6.0));
        assert_eq!(state[0], Buf::F32(vec![2.0; n]));
        let bad = Tensor::ones(n, DType::F64, &Device::Cpu).unwrap();
        assert!(fused_update(&p, &bad, &mut state, &AddScaled(1.0)).is_err());
        let mut short = vec![Buf::zeros(DType::F32, 3).unwrap()];
        assert!(fused_update(&p, &g, &mut short, &AddScaled(1.0)).is_err());
    }
}
