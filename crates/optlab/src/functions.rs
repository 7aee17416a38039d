//! Analytic test functions for optimizers (the pictures of pytorch_optimizer's README, CBO's benchmarks,
//! curvature checks). Each is written with candle ops, so gradients and Hessian-vector products come from
//! autodiff, in f32 or f64.

use crate::rng::{normal, rng_for, Stream};
use crate::simd::sum_wide;
use crate::spec::unknown_name;
use crate::{Error, Result};
use candle_core::{Device, Tensor};

/// sin(2πb) = Σₖ SIN_2PI[k]·b²ᵏ⁺¹ on |b| ≤ 1/4: the Taylor coefficients (−1)ᵏ(2π)²ᵏ⁺¹/(2k+1)!, correctly rounded
/// (the first omitted term is below 1.2e-18 there), except k = 1 and 2, moved by one ulp each (+, −) so that
/// sin(±π/2) comes out exactly ±1 in [`cos_2pi`]'s evaluation order (f is then exactly 0 at Rastrigin's minimum).
const SIN_2PI: [f64; 11] = [
    std::f64::consts::TAU,
    -41.341702240399755,
    81.60524927607504,
    -76.70585975306139,
    42.058693944897655,
    -15.09464257682299,
    3.819952584848282,
    -0.7181223017785006,
    0.10422916220813984,
    -0.012031585942120627,
    0.0011309237482517963,
];

/// cos(2πx), branch-free so that it vectorizes (Rastrigin's and Ackley's ripples; CBO evaluates them hundreds of
/// millions of times, P23). The argument is reduced in turns, exactly: t = x − round(x), and cos(2πt) =
/// sin(2π(¼ − |t|)) by the polynomial [`SIN_2PI`] in Estrin's form (a dependency chain of 7 operations instead
/// of Horner's 21). Within 3 ulp of the exact value (the mpmath fixture `functions/cos_2pi.json`), exactly 0 at
/// the zeros and ±1 at the extrema, where libm's `(2π·x).cos()` is off by up to 6e5 ulp near the zeros since 2π·x
/// is rounded before the cosine sees it. NaN and ±∞ give NaN; |x| ≥ 2⁵² (integers) gives 1.
#[inline(always)]
pub fn cos_2pi(x: f64) -> f64 {
    let c = &SIN_2PI;
    let b = 0.25 - (x - x.round_ties_even()).abs();
    let s = b * b;
    let s2 = s * s;
    let s4 = s2 * s2;
    let lo = (c[0] + c[1] * s) + (c[2] + c[3] * s) * s2;
    let mid = (c[4] + c[5] * s) + (c[6] + c[7] * s) * s2;
    let hi = (c[8] + c[9] * s) + c[10] * s2;
    b * ((lo + mid * s4) + hi * (s4 * s4))
}

/// The functions [`TestFunction::parse`] knows.
pub const FUNCTION_NAMES: &[&str] = &[
    "rosenbrock",
    "rastrigin",
    "ackley",
    "beale",
    "quadratic",
    "logistic",
];

/// A test function of a vector x.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestFunction {
    /// Σ 100 (x_{i+1} - x_i²)² + (1 - x_i)²; minimum 0 at (1, ..., 1); d ≥ 2.
    Rosenbrock,
    /// 10 d + Σ x_i² - 10 cos(2π x_i); minimum 0 at 0; many local minima.
    Rastrigin,
    /// -20 exp(-0.2 sqrt(mean x²)) - exp(mean cos 2πx) + 20 + e; minimum 0 at 0.
    Ackley,
    /// (1.5 - x + xy)² + (2.25 - x + xy²)² + (2.625 - x + xy³)²; minimum 0 at (3, 0.5); d = 2.
    Beale,
    /// ½ Σ c_i x_i² with c_i evenly spaced in [1, 10] (condition number 10); minimum 0 at 0.
    Quadratic,
    /// Mean logistic loss log(1 + exp(-y a·x)) + 1e-3/2 ‖x‖² on 200 fixed Gaussian examples of dimension d
    /// (labels from a fixed teacher); strongly convex.
    Logistic,
}

impl TestFunction {
    /// Parses a name from [`FUNCTION_NAMES`].
    pub fn parse(name: &str) -> Result<Self> {
        Ok(match name {
            "rosenbrock" => TestFunction::Rosenbrock,
            "rastrigin" => TestFunction::Rastrigin,
            "ackley" => TestFunction::Ackley,
            "beale" => TestFunction::Beale,
            "quadratic" => TestFunction::Quadratic,
            "logistic" => TestFunction::Logistic,
            other => return Err(unknown_name("function", other, FUNCTION_NAMES)),
        })
    }

    /// The name.
    pub fn name(self) -> &'static str {
        FUNCTION_NAMES[self as usize]
    }

    /// Checks that the function is defined in `dim` dimensions.
    pub fn check_dim(self, dim: usize) -> Result<()> {
        let ok = match self {
            TestFunction::Rosenbrock => dim >= 2,
            TestFunction::Beale => dim == 2,
            _ => dim >= 1,
        };
        if ok {
            Ok(())
        } else {
            Err(Error::Shape(format!(
                "{} is not defined in {dim} dimension{} ({})",
                self.name(),
                if dim == 1 { "" } else { "s" },
                if self == TestFunction::Beale {
                    "it takes exactly 2"
                } else {
                    "it takes at least 2"
                }
            )))
        }
    }

    /// The global minimiser in `dim` dimensions, when known in closed form.
    pub fn minimiser(self, dim: usize) -> Option<Vec<f64>> {
        match self {
            TestFunction::Rosenbrock => Some(vec![1.0; dim]),
            TestFunction::Rastrigin | TestFunction::Ackley | TestFunction::Quadratic => {
                Some(vec![0.0; dim])
            }
            TestFunction::Beale => Some(vec![3.0, 0.5]),
            TestFunction::Logistic => None,
        }
    }

    /// f(x) for a vector `x` of shape `[d]`, as a scalar tensor in x's dtype.
    pub fn value(self, x: &Tensor) -> Result<Tensor> {
        let d = x.dims1().map_err(|_| {
            Error::Shape(format!("test functions take a vector, got {:?}", x.dims()))
        })?;
        self.check_dim(d)?;
        let (dev, dt) = (x.device(), x.dtype());
        let c = |v: f64| Tensor::new(v, dev).and_then(|t| t.to_dtype(dt));
        Ok(match self {
            TestFunction::Rosenbrock => {
                let head = x.narrow(0, 0, d - 1)?;
                let tail = x.narrow(0, 1, d - 1)?;
                let a = tail.sub(&head.sqr()?)?.sqr()?.affine(100.0, 0.0)?;
                let b = head.affine(-1.0, 1.0)?.sqr()?;
                a.add(&b)?.sum_all()?
            }
            TestFunction::Rastrigin => {
                let cos = x
                    .affine(2.0 * std::f64::consts::PI, 0.0)?
                    .cos()?
                    .affine(-10.0, 0.0)?;
                x.sqr()?
                    .add(&cos)?
                    .sum_all()?
                    .broadcast_add(&c(10.0 * d as f64)?)?
            }
            TestFunction::Ackley => {
                let r = x
                    .sqr()?
                    .mean_all()?
                    .sqrt()?
                    .affine(-0.2, 0.0)?
                    .exp()?
                    .affine(-20.0, 0.0)?;
                let cs = x
                    .affine(2.0 * std::f64::consts::PI, 0.0)?
                    .cos()?
                    .mean_all()?
                    .exp()?;
                r.sub(&cs)?.broadcast_add(&c(20.0 + std::f64::consts::E)?)?
            }
            TestFunction::Beale => {
                let (u, v) = (x.narrow(0, 0, 1)?, x.narrow(0, 1, 1)?);
                let mut total = c(0.0)?;
                for (k, coef) in [(1, 1.5), (2, 2.25), (3, 2.625)] {
                    let term = u
                        .mul(&v.powf(k as f64)?)?
                        .sub(&u)?
                        .affine(1.0, coef)?
                        .sqr()?
                        .sum_all()?;
                    total = total.add(&term)?;
                }
                total
            }
            TestFunction::Quadratic => {
                let cs: Vec<f64> = (0..d)
                    .map(|i| {
                        if d == 1 {
                            1.0
                        } else {
                            1.0 + 9.0 * i as f64 / (d - 1) as f64
                        }
                    })
                    .collect();
                let cs = Tensor::from_vec(cs, d, dev)?.to_dtype(dt)?;
                x.sqr()?.mul(&cs)?.sum_all()?.affine(0.5, 0.0)?
            }
            TestFunction::Logistic => {
                let (a, y) = logistic_data(d, dev)?;
                let (a, y) = (a.to_dtype(dt)?, y.to_dtype(dt)?);
                let margin = a.matmul(&x.unsqueeze(1)?)?.squeeze(1)?.mul(&y)?;
                // log(1 + exp(-m)) = softplus(-m), computed stably as relu(-m) + log(1 + exp(-|m|)).
                let neg = margin.neg()?;
                let sp = neg
                    .relu()?
                    .add(&margin.abs()?.neg()?.exp()?.affine(1.0, 1.0)?.log()?)?;
                sp.mean_all()?
                    .add(&x.sqr()?.sum_all()?.affine(0.5e-3, 0.0)?)?
            }
        })
    }

    /// f(x) in plain f64 arithmetic, without tensors (for derivative-free solvers that evaluate millions of
    /// points); the same values as [`TestFunction::value`]. `x.len()` must pass [`TestFunction::check_dim`].
    pub fn eval_plain(self, x: &[f64]) -> Result<f64> {
        use std::f64::consts::E;
        self.check_dim(x.len())?;
        let d = x.len() as f64;
        Ok(match self {
            TestFunction::Rosenbrock => x
                .windows(2)
                .map(|w| 100.0 * (w[1] - w[0] * w[0]).powi(2) + (1.0 - w[0]).powi(2))
                .sum(),
            TestFunction::Rastrigin => 10.0 * d + sum_wide(x, |v| v * v - 10.0 * cos_2pi(v)),
            TestFunction::Ackley => {
                let r = (sum_wide(x, |v| v * v) / d).sqrt();
                let cs = sum_wide(x, cos_2pi) / d;
                -20.0 * (-0.2 * r).exp() - cs.exp() + 20.0 + E
            }
            TestFunction::Beale => {
                let (u, v) = (x[0], x[1]);
                [(1, 1.5), (2, 2.25), (3, 2.625)]
                    .iter()
                    .map(|&(k, c)| (c - u + u * v.powi(k)).powi(2))
                    .sum()
            }
            TestFunction::Quadratic => x
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    let c = if x.len() == 1 {
                        1.0
                    } else {
                        1.0 + 9.0 * i as f64 / (d - 1.0)
                    };
                    0.5 * c * v * v
                })
                .sum(),
            TestFunction::Logistic => self.eval(x)?,
        })
    }

    /// f(x) in f64 for a plain vector.
    pub fn eval(self, x: &[f64]) -> Result<f64> {
        let t = Tensor::from_slice(x, x.len(), &Device::Cpu)?;
        Ok(self.value(&t)?.to_scalar::<f64>()?)
    }

    /// A box that shows the function's interesting region in 2-D plots: (x range, y range).
    pub fn plot_window(self) -> ((f64, f64), (f64, f64)) {
        match self {
            TestFunction::Rosenbrock => ((-2.0, 2.0), (-1.0, 3.0)),
            TestFunction::Rastrigin => ((-4.5, 4.5), (-4.5, 4.5)),
            TestFunction::Ackley => ((-4.0, 4.0), (-4.0, 4.0)),
            TestFunction::Beale => ((-4.5, 4.5), (-4.5, 4.5)),
            TestFunction::Quadratic => ((-3.0, 3.0), (-3.0, 3.0)),
            TestFunction::Logistic => ((-4.0, 4.0), (-4.0, 4.0)),
        }
    }
}

/// The iterates of an optimizer on a test function.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Trajectory {
    /// The optimizer's canonical spec.
    pub optimizer: String,
    /// x_0 (the initial point), x_1, ..., x_steps.
    pub trajectory: Vec<Vec<f64>>,
    /// f at each row of the trajectory.
    pub values: Vec<f64>,
}

/// Runs the optimizer `spec` for `steps` steps on `f` from `init`, in `dtype` (f32 or f64). A NaN or infinite
/// value stops the run with an error naming the step.
pub fn optimize(
    f: TestFunction,
    init: &[f64],
    spec: &str,
    steps: usize,
    dtype: candle_core::DType,
) -> Result<Trajectory> {
    f.check_dim(init.len())?;
    let mut opt = crate::optim::from_spec(spec)?;
    let x0 = Tensor::from_slice(init, init.len(), &Device::Cpu)?.to_dtype(dtype)?;
    let var = candle_core::Var::from_tensor(&x0)?;
    let params = [crate::nn::Param {
        name: "x".into(),
        var: var.clone(),
    }];
    let read = |v: &candle_core::Var| -> Result<Vec<f64>> {
        Ok(v.as_tensor().to_dtype(candle_core::DType::F64)?.to_vec1()?)
    };
    let mut trajectory = vec![read(&var)?];
    let mut values = Vec::with_capacity(steps + 1);
    for t in 0..=steps {
        let fx = f.value(var.as_tensor())?;
        let v = fx.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()?;
        if !v.is_finite() {
            return Err(Error::NonFinite(format!(
                "{spec} diverged on {}: f = {v} at step {t}; lower the learning rate",
                f.name()
            )));
        }
        values.push(v);
        if t == steps {
            break;
        }
        let grads = fx.backward()?;
        opt.step(&params, &grads)?;
        trajectory.push(read(&var)?);
    }
    Ok(Trajectory {
        optimizer: opt.spec(),
        trajectory,
        values,
    })
}

fn logistic_data(d: usize, dev: &Device) -> Result<(Tensor, Tensor)> {
    let n = 200;
    let mut r = rng_for(0x1061_571C, Stream::Data, d as u64);
    let teacher: Vec<f64> = (0..d).map(|_| normal(&mut r)).collect();
    let a: Vec<f64> = (0..n * d).map(|_| normal(&mut r)).collect();
    let y: Vec<f64> = (0..n)
        .map(|i| {
            let z: f64 =
                (0..d).map(|j| a[i * d + j] * teacher[j]).sum::<f64>() + 0.5 * normal(&mut r);
            if z >= 0.0 {
                1.0
            } else {
                -1.0
            }
        })
        .collect();
    Ok((
        Tensor::from_vec(a, (n, d), dev)?,
        Tensor::from_vec(y, n, dev)?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_evaluation_equals_the_tensor_one() {
        for name in FUNCTION_NAMES {
            let f = TestFunction::parse(name).unwrap();
            let d = if f == TestFunction::Beale { 2 } else { 5 };
            let x: Vec<f64> = (0..d).map(|i| 0.3 * i as f64 - 0.7).collect();
            let (a, b) = (f.eval_plain(&x).unwrap(), f.eval(&x).unwrap());
            assert!(
                (a - b).abs() <= 1e-12 * b.abs().max(1.0),
                "{name}: {a} vs {b}"
            );
        }
        assert!(TestFunction::Beale.eval_plain(&[1.0]).is_err());
    }

    /// The distance to the next f64 away from zero.
    fn ulp(v: f64) -> f64 {
        f64::from_bits(v.abs().to_bits() + 1) - v.abs()
    }

    #[test]
    fn cos_2pi_within_3_ulp_of_the_exact_value() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/functions/cos_2pi.json"
        );
        let fx: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let xs = fx["x"].as_array().unwrap();
        let mut worst = 0.0f64;
        for (x, exact) in xs.iter().zip(fx["cos_2pi"].as_array().unwrap()) {
            let (x, exact) = (x.as_f64().unwrap(), exact.as_f64().unwrap());
            let got = cos_2pi(x);
            if exact == 0.0 {
                assert_eq!(got, 0.0, "x = {x}");
            } else {
                worst = worst.max((got - exact).abs() / ulp(exact));
            }
        }
        assert!(worst <= 3.0, "{worst} ulp");
        assert!(xs.len() == 4000);
        // Against libm on the exactly reduced argument |t| ≤ ½, where 2πt's rounding costs libm at most ~2e-16.
        let mut rng = rng_for(0, Stream::Probe, 0);
        for _ in 0..100_000 {
            let x = 100.0 * (normal(&mut rng) * 0.5);
            let t = x - x.round_ties_even();
            let libm = (2.0 * std::f64::consts::PI * t).cos();
            assert!((cos_2pi(x) - libm).abs() <= 1e-15, "x = {x}");
        }
        for (x, want) in [
            (0.0, 1.0),
            (3.0, 1.0),
            (-7.0, 1.0),
            (0.5, -1.0),
            (-2.5, -1.0),
            (0.25, 0.0),
            (-1.75, 0.0),
            (1e300, 1.0),
        ] {
            assert_eq!(cos_2pi(x), want, "x = {x}");
        }
        for x in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            assert!(cos_2pi(x).is_nan());
        }
    }

    #[test]
    fn known_minima_and_values() {
        assert_eq!(TestFunction::Rastrigin.eval_plain(&[0.0; 20]).unwrap(), 0.0);
        for f in [
            TestFunction::Rosenbrock,
            TestFunction::Rastrigin,
            TestFunction::Ackley,
            TestFunction::Beale,
            TestFunction::Quadratic,
        ] {
            let x = f.minimiser(2).unwrap();
            assert!(f.eval(&x).unwrap().abs() < 1e-12, "{}", f.name());
        }
        assert!(
            (TestFunction::Rosenbrock.eval(&[-1.5, 2.0]).unwrap() - (6.25 + 100.0 * 0.0625)).abs()
                < 1e-12
        );
        assert!(
            (TestFunction::Beale.eval(&[0.0, 0.0]).unwrap()
                - (1.5f64.powi(2) + 2.25f64.powi(2) + 2.625f64.powi(2)))
            .abs()
                < 1e-12
        );
        assert!((TestFunction::Rastrigin.eval(&[1.0, 0.0]).unwrap() - 1.0).abs() < 1e-12);
        assert!((TestFunction::Quadratic.eval(&[1.0, 1.0]).unwrap() - 5.5).abs() < 1e-12);
        let l0 = TestFunction::Logistic.eval(&[0.0, 0.0, 0.0]).unwrap();
        assert!((l0 - 2f64.ln()).abs() < 1e-12);
        assert!(TestFunction::Logistic
            .eval(&[1.0, -1.0, 0.5])
            .unwrap()
            .is_finite());
    }

    #[test]
    fn optimize_records_every_iterate() {
        let t = optimize(
            TestFunction::Quadratic,
            &[1.0, -2.0],
            "sgd:lr=0.1",
            50,
            candle_core::DType::F64,
        )
        .unwrap();
        assert_eq!((t.trajectory.len(), t.values.len()), (51, 51));
        assert_eq!(t.trajectory[0], vec![1.0, -2.0]);
        // Plain GD on ½ c x²: x_t = (1 - 0.1 c)^t x_0.
        assert!((t.trajectory[50][0] - 0.9f64.powi(50)).abs() < 1e-14);
        assert!((t.trajectory[50][1] + 2.0 * 0.0f64.powi(50)).abs() < 1e-14);
        let e = optimize(
            TestFunction::Quadratic,
            &[1.0, 1.0],
            "sgd:lr=1",
            400,
            candle_core::DType::F64,
        )
        .unwrap_err();
        assert!(e.to_string().contains("diverged"), "{e}");
    }

    #[test]
    fn bad_dimensions_and_names() {
        assert!(TestFunction::Beale
            .eval(&[1.0, 2.0, 3.0])
            .unwrap_err()
            .to_string()
            .contains("exactly 2"));
        assert!(TestFunction::Rosenbrock.eval(&[1.0]).is_err());
        assert!(TestFunction::parse("himmelblau")
            .unwrap_err()
            .to_string()
            .contains("rosenbrock"));
    }
}
