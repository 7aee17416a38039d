//! diffGrad (P15, "diffGrad: An Optimization Method for Convolutional Neural Networks"), following
//! shivram1987/diffGrad `diffGrad_v2.py`: Adam whose first moment is scaled per coordinate by the friction
//! coefficient dfc = sigmoid(|g_{t-1} - g_t|) ∈ [0.5, 1), with the previous gradient stored each step (v1 of the
//! reference code never copied it, making dfc a constant 0.5 under in-place gradient reuse).
//!
//! As in the reference code, weight decay is coupled (g ← g + λx, which also feeds dfc and the stored
//! gradient) and eps is added to sqrt(v) before the bias corrections:
//! x ← x - lr·sqrt(1-β2^t)/(1-β1^t) · m·dfc / (sqrt(v) + eps).

use super::hyper::hyperparams;
use super::kernel::{Kernel, Real};
use super::FusedStep;
use crate::nn::Param;

hyperparams! {
    /// diffGrad's hyperparameters and the reference code's defaults.
    pub struct DiffGradConfig {
        /// Learning rate.
        lr: f64 = 1e-3, NonNegative;
        /// Decay of the first moment.
        beta1: f64 = 0.9, Beta;
        /// Decay of the second moment.
        beta2: f64 = 0.999, Beta;
        /// Added to sqrt(v).
        eps: f64 = 1e-8, NonNegative;
        /// Coupled L2 weight decay.
        weight_decay: f64 = 0.0, NonNegative;
    }
}

fused_optimizer! {
    /// diffGrad (v2 semantics).
    pub struct DiffGrad("diffgrad", DiffGradConfig, defaults = DiffGradConfig::default());
}

pub(crate) struct DiffGradKernel {
    beta1: f64,
    beta2: f64,
    eps: f64,
    weight_decay: f64,
    step_size: f64,
}

impl Kernel for DiffGradKernel {
    #[inline(always)]
    fn run<T: Real>(&self, x: &mut [T], g: &[T], s: &mut [&mut [T]]) {
        let [m, v, prev] = s else {
            unreachable!("diffgrad has three buffers")
        };
        let n = x.len();
        let (g, m, v, prev) = (&g[..n], &mut m[..n], &mut v[..n], &mut prev[..n]);
        let (b1, w1, b2, w2) = (
            T::of(self.beta1),
            T::of(1.0 - self.beta1),
            T::of(self.beta2),
            T::of(1.0 - self.beta2),
        );
        let (eps, wd, step) = (
            T::of(self.eps),
            T::of(self.weight_decay),
            T::of(self.step_size),
        );
        for i in 0..n {
            let mut d = g[i];
            if self.weight_decay != 0.0 {
                d = d + wd * x[i];
            }
            m[i] = m[i] * b1 + w1 * d;
            v[i] = v[i] * b2 + w2 * d * d;
            let denom = v[i].sqrt() + eps;
            // sigmoid(|Δg|) with a vectorizable exp (f64 accuracy).
            let e = (-(prev[i] - d).abs()).exp_nonpos();
            // m·dfc/denom with dfc = 1/(1+e), as one division.
            prev[i] = d;
            x[i] = x[i] - step * (m[i] / ((T::one() + e) * denom));
        }
    }
}

impl FusedStep for DiffGrad {
    type Config = DiffGradConfig;
    type Kernel = DiffGradKernel;
    const BUFFERS: &'static [&'static str] = &["exp_avg", "exp_avg_sq", "previous_grad"];
    fn kernel(_: &Param, h: &DiffGradConfig, _: bool, t: u64) -> DiffGradKernel {
        let t = t as i32;
        DiffGradKernel {
            beta1: h.beta1,
            beta2: h.beta2,
            eps: h.eps,
            weight_decay: h.weight_decay,
            step_size: h.lr * (1.0 - h.beta2.powi(t)).sqrt() / (1.0 - h.beta1.powi(t)),
        }
    }
}
