//! Bilevel solvers (P05) on problems with known answers.

use candle_core::{DType, Device, Tensor};
use optlab::bilevel::borep::{
    second_order_products, solve, z_update, Algorithm, Batch, BoRepConfig, StocBioConfig,
    StochasticBilevel,
};
use optlab::Result;

/// g(x, y) = ½ yᵀAy − yᵀx (so y*(x) = A⁻¹x), f(x, y) = ½‖y − t‖² + (ρ/2)‖x‖²: the optimum solves
/// (A⁻² + ρI) x = A⁻¹t. A is diagonal here, so everything is closed form.
struct Quadratic {
    a: Tensor,
    t: Tensor,
    rho: f64,
}

impl Quadratic {
    fn new() -> Self {
        Quadratic {
            a: Tensor::new(&[1.0f64, 2.0, 1.5, 0.8], &Device::Cpu).unwrap(),
            t: Tensor::new(&[1.0f64, -1.0, 2.0, 0.5], &Device::Cpu).unwrap(),
            rho: 0.1,
        }
    }
    fn x_star(&self) -> Vec<f64> {
        let a: Vec<f64> = self.a.to_vec1().unwrap();
        let t: Vec<f64> = self.t.to_vec1().unwrap();
        a.iter()
            .zip(&t)
            .map(|(a, t)| (t / a) / (1.0 / (a * a) + self.rho))
            .collect()
    }
}

impl StochasticBilevel for Quadratic {
    fn init(&self) -> Result<(Tensor, Tensor)> {
        Ok((
            Tensor::zeros(4, DType::F64, &Device::Cpu)?,
            Tensor::zeros(4, DType::F64, &Device::Cpu)?,
        ))
    }
    fn upper(&self, x: &Tensor, y: &Tensor, _: Batch) -> Result<Tensor> {
        let fit = y.sub(&self.t)?.sqr()?.sum_all()?.affine(0.5, 0.0)?;
        Ok(fit.add(&x.sqr()?.sum_all()?.affine(0.5 * self.rho, 0.0)?)?)
    }
    fn lower(&self, x: &Tensor, y: &Tensor, _: Batch) -> Result<Tensor> {
        let quad = y.sqr()?.mul(&self.a)?.sum_all()?.affine(0.5, 0.0)?;
        Ok(quad.sub(&y.mul(x)?.sum_all()?)?)
    }
}

fn values(t: &Tensor) -> Vec<f64> {
    t.to_vec1().unwrap()
}

#[test]
fn z_converges_to_the_inverse_hessian_times_the_upper_gradient() {
    let p = Quadratic::new();
    let x = Tensor::new(&[0.3f64, -0.2, 0.1, 0.4], &Device::Cpu).unwrap();
    let y = Tensor::new(&[0.5f64, 0.1, -0.3, 0.2], &Device::Cpu).unwrap();
    // ∇ᵧf = y − t; ∇²ᵧᵧg = A, so z → A⁻¹(y − t). ∇²ₓᵧg = −I.
    let fy = y.sub(&p.t).unwrap();
    let want: Vec<f64> = values(&fy)
        .iter()
        .zip(values(&p.a))
        .map(|(f, a)| f / a)
        .collect();
    let mut z = Tensor::zeros(4, DType::F64, &Device::Cpu).unwrap();
    for _ in 0..2000 {
        let (hyy_z, hxy_z) =
            second_order_products(|x, y| p.lower(x, y, Batch::Full), &x, &y, &z).unwrap();
        let neg: Vec<f64> = values(&z).iter().map(|v| -v).collect();
        assert!(values(&hxy_z)
            .iter()
            .zip(&neg)
            .all(|(a, b)| (a - b).abs() < 1e-12));
        z = z_update(&hyy_z, &fy, &z, 0.2).unwrap();
    }
    let err = values(&z)
        .iter()
        .zip(&want)
        .fold(0.0f64, |m, (a, b)| m.max((a - b).abs()));
    assert!(err < 1e-6, "z is {err:e} from A⁻¹∇ᵧf");
}

#[test]
fn bo_rep_its_unnormalized_variant_and_stocbio_reach_the_optimum_of_a_quadratic_bilevel_problem() {
    let p = Quadratic::new();
    let want = p.x_star();
    let base = BoRepConfig {
        lr: 0.002,
        inner_lr: 0.4,
        nu: 0.4,
        ..BoRepConfig::default()
    };
    for (name, alg, tol, steps) in [
        // Normalized steps of length 0.002 never shrink: with y and z lagging a few steps behind, x circles the
        // optimum within about ten steps of it.
        ("bo-rep", Algorithm::BoRep(base.clone()), 0.02, 3000),
        (
            "unnormalized",
            Algorithm::BoRep(BoRepConfig {
                normalized: false,
                lr: 0.03,
                ..base.clone()
            }),
            1e-3,
            2000,
        ),
        (
            "stocbio",
            Algorithm::StocBio(StocBioConfig {
                lr: 0.2,
                inner_lr: 0.4,
                inner_steps: 5,
                neumann_terms: 60,
                neumann_lr: 0.4,
            }),
            1e-3,
            1000,
        ),
    ] {
        let run = solve(&p, &alg, steps, None).unwrap();
        let x = values(&run.x);
        let err = x
            .iter()
            .zip(&want)
            .fold(0.0f64, |m, (a, b)| m.max((a - b).abs()));
        assert!(err < tol, "{name}: x = {x:?}, x* = {want:?}");
        assert!(run.curve.last().unwrap().upper < run.curve[0].upper);
    }
}

#[test]
fn a_diverging_run_is_an_error_naming_the_step() {
    let p = Quadratic::new();
    let alg = Algorithm::StocBio(StocBioConfig {
        lr: 50.0,
        ..StocBioConfig::default()
    });
    let e = solve(&p, &alg, 200, None).unwrap_err().to_string();
    assert!(e.contains("diverged"), "{e}");
    let bad = Algorithm::BoRep(BoRepConfig {
        beta: 1.0,
        ..BoRepConfig::default()
    });
    assert!(solve(&p, &bad, 1, None).is_err());
}
