//! AdaGrad-Norm with one step size per output unit (P29, "AdAdaGrad: Adaptive Batch Size Schemes for Adaptive
//! Gradient Methods"), following timlautk/AdAdaGrad `adagradnorm.py`: for a matrix or conv kernel each output
//! row r keeps b_r² ← b_r² + ‖g_r‖² and steps x_r ← x_r - lr · g_r / (b_r + 1e-10); vectors (biases) keep
//! AdaGrad's per-coordinate sums. Optional momentum m ← μ·m + (1-μ)·g replaces g in the step.
//!
//! Deviations from the reference code, both bugs there: (1) its bias accumulator also adds the row norms of
//! whichever matrix preceded it in parameter order (a leftover variable); here a bias only sees its own
//! gradient; (2) its "weight decay" subtracts lr·λ·g (a gradient step, not decay); here weight_decay is the
//! usual coupled L2 term g ← g + λx.

use super::hyper::hyperparams;
use super::kernel::{Kernel, Real};
use super::FusedStep;
use crate::nn::Param;

hyperparams! {
    /// Row-wise AdaGrad-Norm's hyperparameters and the reference code's defaults.
    pub struct AdaGradNormConfig {
        /// Learning rate.
        lr: f64 = 1.0, NonNegative;
        /// Momentum on the gradient (0: none).
        momentum: f64 = 0.0, Beta;
        /// Learning-rate decay: lr / (1 + (t-1)·lr_decay).
        lr_decay: f64 = 0.0, NonNegative;
        /// Coupled L2 weight decay.
        weight_decay: f64 = 0.0, NonNegative;
        /// Starting value of each accumulator.
        initial_accumulator_value: f64 = 1e-2, NonNegative;
    }
}

fused_optimizer! {
    /// Row-wise AdaGrad-Norm.
    pub struct AdaGradNorm("adagradnorm", AdaGradNormConfig, defaults = AdaGradNormConfig::default());
}

pub(crate) struct AdaGradNormKernel {
    clr: f64,
    momentum: f64,
    weight_decay: f64,
    init: f64,
    first: bool,
    /// Output rows for rank ≥ 2 (one accumulator per row), 0 for per-coordinate sums.
    rows: usize,
}

impl Kernel for AdaGradNormKernel {
    fn whole(&self) -> bool {
        self.rows > 0
    }

    #[inline(always)]
    fn run<T: Real>(&self, x: &mut [T], g: &[T], s: &mut [&mut [T]]) {
        let n = x.len();
        let [sum, buf] = s else {
            unreachable!("adagradnorm has two buffers")
        };
        let (g, sum, buf) = (&g[..n], &mut sum[..n], &mut buf[..n]);
        let (wd, mu, w) = (
            T::of(self.weight_decay),
            T::of(self.momentum),
            T::of(1.0 - self.momentum),
        );
        let (clr, init, tiny) = (T::of(self.clr), T::of(self.init), T::of(1e-10));
        let decays = self.weight_decay != 0.0;
        let d = |xi: T, gi: T| if decays { gi + wd * xi } else { gi };
        let rows = self.rows.max(1);
        let len = n / rows;
        for r in 0..rows {
            let range = r * len..(r + 1) * len;
            // Row-wise: every entry of the row holds the same sum (as the reference stores it).
            let row_sq = if self.rows > 0 {
                range
                    .clone()
                    .map(|i| d(x[i], g[i]))
                    .fold(T::zero(), |a, v| a + v * v)
            } else {
                T::zero()
            };
            for i in range {
                let di = d(x[i], g[i]);
                let prev = if self.first { init } else { sum[i] };
                sum[i] = prev + if self.rows > 0 { row_sq } else { di * di };
                let step = if self.momentum > 0.0 {
                    buf[i] = buf[i] * mu + w * di;
                    buf[i]
                } else {
                    di
                };
                x[i] = x[i] - clr * (step / (sum[i].sqrt() + tiny));
            }
        }
    }
}

impl FusedStep for AdaGradNorm {
    type Config = AdaGradNormConfig;
    type Kernel = AdaGradNormKernel;
    const BUFFERS: &'static [&'static str] = &["sum", "momentum_buffer"];
    fn kernel(p: &Param, h: &AdaGradNormConfig, first: bool, t: u64) -> AdaGradNormKernel {
        AdaGradNormKernel {
            clr: h.lr / (1.0 + (t - 1) as f64 * h.lr_decay),
            momentum: h.momentum,
            weight_decay: h.weight_decay,
            init: h.initial_accumulator_value,
            first,
            rows: if p.var.rank() > 1 { p.var.dims()[0] } else { 0 },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor, Var};

    #[test]
    fn one_step_size_per_output_row() {
        let w = Var::new(&[[1.0f64, 2.0], [3.0, 4.0]], &Device::Cpu).unwrap();
        let b = Var::new(&[0.5f64, -0.5], &Device::Cpu).unwrap();
        let gw = Tensor::new(&[[3.0f64, 4.0], [0.0, 1.0]], &Device::Cpu).unwrap();
        let gb = Tensor::new(&[2.0f64, 0.0], &Device::Cpu).unwrap();
        let loss = w
            .mul(&gw)
            .unwrap()
            .sum_all()
            .unwrap()
            .add(&b.mul(&gb).unwrap().sum_all().unwrap())
            .unwrap();
        let grads = loss.backward().unwrap();
        let params = [
            Param {
                name: "0.weight".into(),
                var: w.clone(),
            },
            Param {
                name: "0.bias".into(),
                var: b.clone(),
            },
        ];
        let mut opt =
            crate::optim::from_spec("adagradnorm:lr=0.1,initial_accumulator_value=0").unwrap();
        opt.step(&params, &grads).unwrap();
        let wv: Vec<Vec<f64>> = w.to_vec2().unwrap();
        // Row 0: ‖g‖ = 5, step 0.1·g/5; row 1: ‖g‖ = 1, step 0.1·g/1.
        assert!(
            (wv[0][0] - (1.0 - 0.1 * 3.0 / 5.0)).abs() < 1e-9
                && (wv[0][1] - (2.0 - 0.1 * 4.0 / 5.0)).abs() < 1e-9
        );
        assert!((wv[1][0] - 3.0).abs() < 1e-12 && (wv[1][1] - (4.0 - 0.1)).abs() < 1e-9);
        let bv: Vec<f64> = b.to_vec1().unwrap();
        assert!((bv[0] - (0.5 - 0.1)).abs() < 1e-9 && (bv[1] + 0.5).abs() < 1e-12);
    }
}
