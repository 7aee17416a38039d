//! Implicit differentiation (P10) against closed forms, central finite differences and jaxopt
//! (`fixtures/implicit/golden.json`, made by `tools/reference/implicit_fixtures.py`).

use crate::common::values;
use candle_core::{DType, Device, Tensor, D};
use optlab::implicit::linear::{SolveOptions, Solver};
use optlab::implicit::optimality::{box_clamp, lasso, simplex, Kkt};
use optlab::implicit::Optimality;
use optlab::Result;

fn golden() -> serde_json::Value {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/implicit/golden.json"
    ))
    .expect("fixture");
    serde_json::from_str(&text).expect("json")
}

/// A nested JSON list as an f64 tensor.
fn tensor(v: &serde_json::Value) -> Tensor {
    fn walk(v: &serde_json::Value, depth: usize, dims: &mut Vec<usize>, out: &mut Vec<f64>) {
        match v {
            serde_json::Value::Array(items) => {
                if dims.len() == depth {
                    dims.push(items.len());
                }
                items.iter().for_each(|i| walk(i, depth + 1, dims, out));
            }
            other => out.push(other.as_f64().expect("number")),
        }
    }
    let (mut dims, mut out) = (vec![], vec![]);
    walk(v, 0, &mut dims, &mut out);
    Tensor::from_vec(out, dims, &Device::Cpu).unwrap()
}

fn labels(v: &serde_json::Value) -> Tensor {
    let l: Vec<u32> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as u32)
        .collect();
    Tensor::new(l, &Device::Cpu).unwrap()
}

fn rel(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-300);
    a.iter()
        .zip(b)
        .fold(0.0f64, |m, (x, y)| m.max((x - y).abs()))
        / scale
}

/// ½ mean((X w − y)²).
fn half_mse(w: &Tensor, x: &Tensor, y: &Tensor) -> Result<Tensor> {
    let r = x.matmul(&w.unsqueeze(1)?)?.squeeze(1)?.sub(y)?;
    Ok(r.sqr()?.mean_all()?.affine(0.5, 0.0)?)
}

/// mean cross-entropy of softmax(X W) against labels.
fn cross_entropy(w: &Tensor, x: &Tensor, y: &Tensor) -> Result<Tensor> {
    let logp = candle_nn::ops::log_softmax(&x.matmul(w)?, D::Minus1)?;
    Ok(logp.gather(&y.unsqueeze(1)?, 1)?.mean_all()?.neg()?)
}

struct Ridge {
    x: Tensor,
    y: Tensor,
    xv: Tensor,
    yv: Tensor,
}

impl Ridge {
    fn from(g: &serde_json::Value) -> Self {
        Ridge {
            x: tensor(&g["x"]),
            y: tensor(&g["y"]),
            xv: tensor(&g["xv"]),
            yv: tensor(&g["yv"]),
        }
    }
    fn inner(&self) -> Optimality<'_> {
        Optimality::stationary(move |w, th| {
            let l2 = th
                .exp()?
                .broadcast_mul(&w.sqr()?.sum_all()?)?
                .affine(0.5, 0.0)?;
            Ok(half_mse(w, &self.x, &self.y)?.add(&l2.sum_all()?)?)
        })
    }
    fn outer_grad(&self, w: &Tensor) -> Tensor {
        let wv = candle_core::Var::from_tensor(w).unwrap();
        let loss = half_mse(wv.as_tensor(), &self.xv, &self.yv).unwrap();
        loss.backward()
            .unwrap()
            .get(wv.as_tensor())
            .unwrap()
            .detach()
    }
    fn outer(&self, w: &Tensor) -> f64 {
        half_mse(w, &self.xv, &self.yv)
            .unwrap()
            .to_scalar()
            .unwrap()
    }
}

fn newton(f: &Optimality<'_>, x0: &Tensor, th: &Tensor) -> Tensor {
    f.newton(x0, th, &SolveOptions::default(), 50, 1e-13)
        .unwrap()
}

fn theta(v: &[f64]) -> Tensor {
    Tensor::new(v, &Device::Cpu).unwrap()
}

#[test]
fn ridge_hypergradient_matches_the_closed_form_finite_differences_and_jaxopt() {
    let g = &golden()["ridge"];
    let p = Ridge::from(g);
    let f = p.inner();
    let th = theta(&[g["theta"][0].as_f64().unwrap()]);
    let lam = th.exp().unwrap().to_vec1::<f64>().unwrap()[0];
    let w = newton(
        &f,
        &Tensor::zeros(6, DType::F64, &Device::Cpu).unwrap(),
        &th,
    );
    assert!(rel(&values(&w), &values(&tensor(&g["w"]))) < 1e-9);
    let v = p.outer_grad(&w);

    // Closed form: w* = (XᵀX/n + λI)⁻¹ Xᵀy/n, dw*/dθ = −(XᵀX/n + λI)⁻¹ λ w*.
    let n = p.x.dim(0).unwrap() as f64;
    let gram =
        p.x.t()
            .unwrap()
            .matmul(&p.x)
            .unwrap()
            .affine(1.0 / n, 0.0)
            .unwrap();
    let a = gram
        .add(
            &Tensor::eye(6, DType::F64, &Device::Cpu)
                .unwrap()
                .affine(lam, 0.0)
                .unwrap(),
        )
        .unwrap();
    let a = optlab::implicit::linear::DenseMatrix::new(6, values(&a)).unwrap();
    let lu = SolveOptions {
        solver: Solver::Lu,
        ..Default::default()
    };
    let rhs: Vec<f64> = values(&w).iter().map(|wi| -lam * wi).collect();
    let dw = optlab::implicit::linear::solve(&a, &rhs, &lu).unwrap().x;
    let closed: f64 = values(&v).iter().zip(&dw).map(|(a, b)| a * b).sum();

    let h = 1e-5;
    let at = |t: f64| p.outer(&newton(&f, &w, &theta(&[t])));
    let t0 = g["theta"][0].as_f64().unwrap();
    let fd = (at(t0 + h) - at(t0 - h)) / (2.0 * h);
    let jaxopt = g["hypergradient"][0].as_f64().unwrap();

    for solver in [
        Solver::NormalCg,
        Solver::Cg,
        Solver::Gmres { restart: 30 },
        Solver::Bicgstab,
        Solver::Lu,
        Solver::Cholesky,
    ] {
        let opts = SolveOptions {
            solver,
            ..Default::default()
        };
        let hyper = f.vjp(&w, &th, &v, &opts).unwrap().to_vec1::<f64>().unwrap()[0];
        assert!(
            rel(&[hyper], &[closed]) < 1e-8,
            "{solver}: {hyper} vs closed form {closed}"
        );
        // Unverified, Bᵀu comes from the θ side alone (for normal CG, through the graph of its products).
        let unverified = SolveOptions {
            verify: false,
            ..opts
        };
        let bare = f
            .vjp(&w, &th, &v, &unverified)
            .unwrap()
            .to_vec1::<f64>()
            .unwrap()[0];
        assert!(
            rel(&[bare], &[hyper]) < 1e-12,
            "{solver}: unverified {bare} vs verified {hyper}"
        );
        assert!(
            rel(&[hyper], &[fd]) < 1e-5,
            "{solver}: {hyper} vs finite differences {fd}"
        );
        assert!(
            rel(&[hyper], &[jaxopt]) < 1e-8,
            "{solver}: {hyper} vs jaxopt {jaxopt}"
        );
    }

    // The same condition written out as a root (∂ₓF not declared symmetric, so normal CG builds the graph of its
    // products), with one strength and with one per feature all equal to it, whose derivatives sum to the one's.
    let root = Optimality::root(|w: &Tensor, th: &Tensor| {
        let r = p.x.matmul(&w.unsqueeze(1)?)?.squeeze(1)?.sub(&p.y)?;
        let g = p.x.t()?.matmul(&r.unsqueeze(1)?)?.squeeze(1)?;
        Ok(g.affine(1.0 / n, 0.0)?.add(&w.broadcast_mul(&th.exp()?)?)?)
    });
    let t0 = g["theta"][0].as_f64().unwrap();
    for verify in [true, false] {
        let opts = SolveOptions {
            verify,
            ..Default::default()
        };
        let one = values(&root.vjp(&w, &th, &v, &opts).unwrap());
        let per_feature = values(&root.vjp(&w, &theta(&[t0; 6]), &v, &opts).unwrap());
        assert!(rel(&one, &[closed]) < 1e-8, "verify {verify}: {one:?}");
        let sum: f64 = per_feature.iter().sum();
        assert!(
            rel(&[sum], &[closed]) < 1e-8,
            "verify {verify}: {per_feature:?}"
        );
    }

    // f32: the same engine in single precision.
    let p32 = Ridge {
        x: p.x.to_dtype(DType::F32).unwrap(),
        y: p.y.to_dtype(DType::F32).unwrap(),
        xv: p.xv.to_dtype(DType::F32).unwrap(),
        yv: p.yv.to_dtype(DType::F32).unwrap(),
    };
    let opts32 = SolveOptions {
        tol: 1e-6,
        ..Default::default()
    };
    let hyper32 = p32
        .inner()
        .vjp(
            &w.to_dtype(DType::F32).unwrap(),
            &th.to_dtype(DType::F32).unwrap(),
            &v.to_dtype(DType::F32).unwrap(),
            &opts32,
        )
        .unwrap();
    assert_eq!(hyper32.dtype(), DType::F32);
    assert!(rel(&values(&hyper32), &[closed]) < 1e-4);
}

#[test]
fn lasso_through_the_proximal_fixed_point_matches_the_active_set_closed_form_and_jaxopt() {
    let g = &golden()["lasso"];
    let p = Ridge::from(g);
    let th = theta(&[g["theta"][0].as_f64().unwrap()]);
    let lam = th.exp().unwrap().to_vec1::<f64>().unwrap()[0];
    let f = Optimality::proximal_gradient(
        |w, _| half_mse(w, &p.x, &p.y),
        |v, th, step| lasso(v, &th.exp()?, step),
        1.0,
    )
    .unwrap();
    let w = tensor(&g["w"]);
    let residual = values(&f.residual(&w, &th).unwrap());
    assert!(residual.iter().all(|r| r.abs() < 1e-9), "{residual:?}");
    let v = p.outer_grad(&w);
    let hyper = f
        .vjp(&w, &th, &v, &SolveOptions::default())
        .unwrap()
        .to_vec1::<f64>()
        .unwrap()[0];

    // On the active set S: (X_SᵀX_S/n) w_S = X_Sᵀy/n − λ sign(w_S), so dw_S/dθ = −(X_SᵀX_S/n)⁻¹ λ sign(w_S).
    let wv = values(&w);
    let active: Vec<usize> = (0..wv.len()).filter(|&i| wv[i] != 0.0).collect();
    assert!(
        active.len() > 1 && active.len() < wv.len(),
        "a mixed active set"
    );
    let idx = Tensor::new(
        active.iter().map(|&i| i as u32).collect::<Vec<_>>(),
        &Device::Cpu,
    )
    .unwrap();
    let xs = p.x.index_select(&idx, 1).unwrap();
    let n = p.x.dim(0).unwrap() as f64;
    let k = active.len();
    let gram = xs
        .t()
        .unwrap()
        .matmul(&xs)
        .unwrap()
        .affine(1.0 / n, 0.0)
        .unwrap();
    let a = optlab::implicit::linear::DenseMatrix::new(k, values(&gram)).unwrap();
    let rhs: Vec<f64> = active.iter().map(|&i| -lam * wv[i].signum()).collect();
    let lu = SolveOptions {
        solver: Solver::Lu,
        ..Default::default()
    };
    let dw = optlab::implicit::linear::solve(&a, &rhs, &lu).unwrap().x;
    let vv = values(&v);
    let closed: f64 = active.iter().zip(&dw).map(|(&i, d)| vv[i] * d).sum();
    assert!(
        rel(&[hyper], &[closed]) < 1e-8,
        "{hyper} vs closed form {closed}"
    );
    let jaxopt = g["hypergradient"][0].as_f64().unwrap();
    assert!(
        rel(&[hyper], &[jaxopt]) < 1e-8,
        "{hyper} vs jaxopt {jaxopt}"
    );
    let fd = g["finite_differences"][0].as_f64().unwrap();
    assert!(
        rel(&[hyper], &[fd]) < 1e-5,
        "{hyper} vs finite differences {fd}"
    );
}

struct Logreg {
    x: Tensor,
    y: Tensor,
    xv: Tensor,
    yv: Tensor,
}

impl Logreg {
    /// Stationarity of mean CE(X W) + ½ Σ_j exp(θ_j) ‖W_j‖² (one L2 strength per feature row of W).
    fn inner(&self) -> Optimality<'_> {
        Optimality::stationary(move |w, th| {
            let l2 = th
                .exp()?
                .unsqueeze(1)?
                .broadcast_mul(&w.sqr()?)?
                .sum_all()?;
            Ok(cross_entropy(w, &self.x, &self.y)?.add(&l2.affine(0.5, 0.0)?)?)
        })
    }
    fn outer(&self, w: &Tensor) -> f64 {
        cross_entropy(w, &self.xv, &self.yv)
            .unwrap()
            .to_scalar()
            .unwrap()
    }
    fn outer_grad(&self, w: &Tensor) -> Tensor {
        let wv = candle_core::Var::from_tensor(w).unwrap();
        let loss = cross_entropy(wv.as_tensor(), &self.xv, &self.yv).unwrap();
        loss.backward()
            .unwrap()
            .get(wv.as_tensor())
            .unwrap()
            .detach()
    }
}

fn logreg() -> (Logreg, Tensor, serde_json::Value) {
    let g = golden()["logreg"].clone();
    let p = Logreg {
        x: tensor(&g["x"]),
        y: labels(&g["y"]),
        xv: tensor(&g["xv"]),
        yv: labels(&g["yv"]),
    };
    (p, tensor(&g["theta"]), g)
}

#[test]
fn per_feature_l2_logistic_regression_matches_central_differences_and_jaxopt() {
    let (p, th, g) = logreg();
    let f = p.inner();
    let w = newton(
        &f,
        &Tensor::zeros((5, 3), DType::F64, &Device::Cpu).unwrap(),
        &th,
    );
    assert!(rel(&values(&w), &values(&tensor(&g["w"]))) < 1e-7);
    // Inexact Newton (loose linear solves far from the solution) ends at the same point.
    let w_inexact = f
        .inexact_newton(
            &Tensor::zeros((5, 3), DType::F64, &Device::Cpu).unwrap(),
            &th,
            &SolveOptions::default(),
            50,
            1e-13,
        )
        .unwrap();
    assert!(rel(&values(&w_inexact), &values(&w)) < 1e-10);
    let hyper = values(
        &f.vjp(&w, &th, &p.outer_grad(&w), &SolveOptions::default())
            .unwrap(),
    );

    let t0 = values(&th);
    let h = 1e-5;
    let fd: Vec<f64> = (0..t0.len())
        .map(|j| {
            let at = |s: f64| {
                let mut t = t0.clone();
                t[j] += s;
                p.outer(&newton(&f, &w, &theta(&t)))
            };
            (at(h) - at(-h)) / (2.0 * h)
        })
        .collect();
    assert!(
        rel(&hyper, &fd) < 1e-5,
        "{hyper:?} vs finite differences {fd:?}"
    );
    let jaxopt = values(&tensor(&g["hypergradient"]));
    assert!(
        rel(&hyper, &jaxopt) < 1e-7,
        "{hyper:?} vs jaxopt {jaxopt:?}"
    );
    // Unverified, Bᵀu comes from a graph of F in θ alone (θ has several entries here).
    let unverified = SolveOptions {
        verify: false,
        ..SolveOptions::default()
    };
    let bare = values(&f.vjp(&w, &th, &p.outer_grad(&w), &unverified).unwrap());
    assert!(rel(&bare, &hyper) < 1e-12, "{bare:?} vs {hyper:?}");

    // The library's fused cross-entropy (its Hessian-vector products through the fused second-order kernels) gives
    // the same solution and hypergradient as the composed log-softmax above.
    let fused = Optimality::stationary(|w: &Tensor, th: &Tensor| {
        let l2 = th
            .exp()?
            .unsqueeze(1)?
            .broadcast_mul(&w.sqr()?)?
            .sum_all()?;
        let ce = optlab::nn::loss::cross_entropy(&p.x.matmul(w)?, &p.y)?;
        Ok(ce.add(&l2.affine(0.5, 0.0)?)?)
    });
    let w_fused = newton(&fused, &w, &th);
    assert!(rel(&values(&w_fused), &values(&w)) < 1e-12);
    let opts = SolveOptions::default();
    let (hyper_fused, u) = fused
        .vjp_from(&w_fused, &th, &p.outer_grad(&w_fused), None, &opts)
        .unwrap();
    assert!(rel(&values(&hyper_fused), &hyper) < 1e-10);
    // Warm-started from the adjoint itself, or from a perturbed one, the solve ends at the same hypergradient.
    for u0 in [u.clone(), u.affine(1.01, 1e-3).unwrap()] {
        let (again, u_again) = fused
            .vjp_from(&w_fused, &th, &p.outer_grad(&w_fused), Some(&u0), &opts)
            .unwrap();
        assert!(rel(&values(&again), &hyper) < 1e-9);
        assert!(rel(&values(&u_again), &values(&u)) < 1e-9);
    }
    let err = fused
        .vjp_from(&w_fused, &th, &p.outer_grad(&w_fused), Some(&th), &opts)
        .unwrap_err()
        .to_string();
    assert!(err.contains("the warm start has shape"), "{err}");
}

#[test]
fn jvp_and_vjp_are_adjoint() {
    let (p, th, _) = logreg();
    let f = p.inner();
    let w = newton(
        &f,
        &Tensor::zeros((5, 3), DType::F64, &Device::Cpu).unwrap(),
        &th,
    );
    let u = crate::common::randn(&[5, 3], 1)
        .to_dtype(DType::F64)
        .unwrap();
    let v = crate::common::randn(&[5], 2).to_dtype(DType::F64).unwrap();
    let opts = SolveOptions::default();
    let jv = f.jvp(&w, &th, &v, &opts).unwrap();
    let jtu = f.vjp(&w, &th, &u, &opts).unwrap();
    assert_eq!(jv.dims(), &[5, 3]);
    assert_eq!(jtu.dims(), &[5]);
    let dot = |a: &Tensor, b: &Tensor| -> f64 {
        values(a).iter().zip(values(b)).map(|(x, y)| x * y).sum()
    };
    let (l, r) = (dot(&u, &jv), dot(&jtu, &v));
    assert!(
        (l - r).abs() <= 1e-10 * l.abs().max(r.abs()),
        "⟨u, Jv⟩ = {l}, ⟨Jᵀu, v⟩ = {r}"
    );
    // Stationarity declares ∂ₓF symmetric (products by one backward pass); the same gradient as a plain root takes
    // the double-VJP route, and both give the same JVP.
    let plain = Optimality::root(|w: &Tensor, th: &Tensor| {
        let l2 = th
            .exp()?
            .unsqueeze(1)?
            .broadcast_mul(&w.sqr()?)?
            .sum_all()?;
        let obj = cross_entropy(w, &p.x, &p.y)?.add(&l2.affine(0.5, 0.0)?)?;
        optlab::implicit::optimality::grad(&obj, w)
    });
    let jv_plain = plain.jvp(&w, &th, &v, &opts).unwrap();
    assert!(rel(&values(&jv), &values(&jv_plain)) < 1e-9);
    // The double-VJP route's adjoint solve (normal-equation CG, its A-products' graph built at the solve's start)
    // gives the same VJP cold, warm-started at the adjoint, and warm-started off it.
    let (jtu_plain, adjoint) = plain.vjp_from(&w, &th, &u, None, &opts).unwrap();
    assert!(rel(&values(&jtu_plain), &values(&jtu)) < 1e-9);
    for u0 in [adjoint.clone(), adjoint.affine(1.01, 1e-3).unwrap()] {
        let (again, _) = plain.vjp_from(&w, &th, &u, Some(&u0), &opts).unwrap();
        assert!(rel(&values(&again), &values(&jtu)) < 1e-9);
    }
}

/// The Jacobian of the simplex projection z*(θ) three ways: KKT conditions of min ½‖z − θ‖² s.t. Σz = 1, z ≥ 0; the
/// projected-gradient fixed point; and the closed form (I − 11ᵀ/|S|) on the support S, zero off it.
#[test]
fn kkt_and_projection_fixed_points_give_the_simplex_jacobian() {
    let th = theta(&[0.9, -0.2, 0.4, 0.05, 0.7, -1.0]);
    let z = simplex(&th).unwrap();
    let zv = values(&z);
    assert!((zv.iter().sum::<f64>() - 1.0).abs() < 1e-12 && zv.iter().all(|&v| v >= 0.0));
    let support: Vec<bool> = zv.iter().map(|&v| v > 0.0).collect();
    let s = support.iter().filter(|&&b| b).count();
    assert!(s > 1 && s < 6, "a mixed support: {zv:?}");
    // Multipliers: ν = τ, μᵢ = max(τ − θᵢ, 0), with z = max(θ − τ, 0).
    let tv = values(&th);
    let i = support.iter().position(|&b| b).unwrap();
    let tau = tv[i] - zv[i];
    let mu: Vec<f64> = tv.iter().map(|t| (tau - t).max(0.0)).collect();
    let kkt = Kkt::new(|z, th| Ok(z.sub(th)?.sqr()?.sum_all()?.affine(0.5, 0.0)?))
        .eq(1, |z, _| Ok(z.sum_all()?.affine(1.0, -1.0)?.reshape(1)?))
        .ineq(6, |z, _| Ok(z.neg()?));
    let x = Kkt::pack(&z, Some(&theta(&[tau])), Some(&theta(&mu))).unwrap();
    let f_kkt = kkt.optimality();
    assert!(values(&f_kkt.residual(&x, &th).unwrap())
        .iter()
        .all(|r| r.abs() < 1e-12));
    let f_proj = Optimality::proximal_gradient(
        |z, th| Ok(z.sub(th)?.sqr()?.sum_all()?.affine(0.5, 0.0)?),
        |v, _, _| simplex(v),
        0.5,
    )
    .unwrap();
    let opts = SolveOptions {
        solver: Solver::Gmres { restart: 30 },
        ..Default::default()
    };
    for j in 0..6 {
        let mut e = vec![0.0; 6];
        e[j] = 1.0;
        let want: Vec<f64> = (0..6)
            .map(|k| {
                if support[j] && support[k] {
                    f64::from(u8::from(j == k)) - 1.0 / s as f64
                } else {
                    0.0
                }
            })
            .collect();
        let col = values(&f_kkt.jvp(&x, &th, &theta(&e), &opts).unwrap());
        assert!(
            rel(&col[..6], &want) < 1e-10
                || want.iter().all(|w| *w == 0.0) && col[..6].iter().all(|c| c.abs() < 1e-10),
            "KKT column {j}: {:?} vs {want:?}",
            &col[..6]
        );
        let col = values(&f_proj.jvp(&z, &th, &theta(&e), &opts).unwrap());
        assert!(
            col.iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-10),
            "projection column {j}: {col:?} vs {want:?}"
        );
    }
}

/// A box-constrained quadratic min ½ zᵀQz − θᵀz over [0, 1]ⁿ: on the free coordinates F, dz_F/dθ = Q_FF⁻¹ (and zero on
/// the bound ones).
#[test]
fn box_constrained_quadratic_matches_the_free_set_closed_form() {
    let q = [[2.0, 0.5, 0.0], [0.5, 1.5, 0.2], [0.0, 0.2, 1.0]];
    let qt = Tensor::new(&q, &Device::Cpu).unwrap();
    let th = theta(&[0.6, 3.0, 0.4]);
    let obj = |z: &Tensor, th: &Tensor| -> Result<Tensor> {
        let qz = qt.matmul(&z.unsqueeze(1)?)?.squeeze(1)?;
        Ok(z.mul(&qz)?
            .sum_all()?
            .affine(0.5, 0.0)?
            .sub(&z.mul(th)?.sum_all()?)?)
    };
    let f = Optimality::proximal_gradient(obj, |v, _, _| box_clamp(v, 0.0, 1.0), 0.4).unwrap();
    // Projected gradient iterations to the solution (z₁ sits at its upper bound).
    let mut z = Tensor::zeros(3, DType::F64, &Device::Cpu).unwrap();
    for _ in 0..2000 {
        z = f.residual(&z, &th).unwrap().add(&z).unwrap();
    }
    let zv = values(&z);
    assert!(
        (zv[1] - 1.0).abs() < 1e-14 && zv[0] > 0.0 && zv[0] < 1.0 && zv[2] > 0.0 && zv[2] < 1.0,
        "{zv:?}"
    );
    // Free set {0, 2}: Q_FF = [[2, 0], [0, 1]], so dz₀/dθ₀ = 1/2, dz₂/dθ₂ = 1, and z₁ does not move.
    let jac = |j: usize| {
        let mut e = vec![0.0; 3];
        e[j] = 1.0;
        values(
            &f.jvp(&z, &th, &theta(&e), &SolveOptions::default())
                .unwrap(),
        )
    };
    let want = [[0.5, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 1.0]];
    for (j, col) in want.iter().enumerate() {
        let got = jac(j);
        assert!(
            got.iter().zip(col).all(|(a, b)| (a - b).abs() < 1e-10),
            "column {j}: {got:?}"
        );
    }
}

#[test]
fn bad_input_is_a_clear_error() {
    let (p, th, _) = logreg();
    let f = p.inner();
    let w = Tensor::zeros((5, 3), DType::F64, &Device::Cpu).unwrap();
    let few = SolveOptions {
        max_iter: 1,
        ..Default::default()
    };
    let e = f
        .vjp(&w, &th, &w.ones_like().unwrap(), &few)
        .unwrap_err()
        .to_string();
    assert!(e.contains("did not converge"), "{e}");
    let e = f
        .vjp(&w, &th, &th, &SolveOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("must match"), "{e}");
    let wrong = Optimality::root(|x: &Tensor, _: &Tensor| Ok(x.sum_all()?));
    let e = wrong
        .vjp(&th, &th, &th, &SolveOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("one residual per entry"), "{e}");
    let half = th.to_dtype(DType::F16).unwrap();
    let id = Optimality::root(|x: &Tensor, t: &Tensor| Ok(x.sub(t)?));
    assert!(id
        .vjp(&half, &half, &half, &SolveOptions::default())
        .is_err());
    assert!(
        Optimality::proximal_gradient(|x, _| Ok(x.sum_all()?), |v, _, _| Ok(v.clone()), 0.0)
            .is_err()
    );
    // A gradient with respect to a slice of x (candle keeps only variables' gradients) is refused, not zero.
    let sliced = Optimality::root(|x: &Tensor, _: &Tensor| {
        let head = x.narrow(0, 0, 1)?;
        optlab::implicit::optimality::grad(&head.sqr()?.sum_all()?, &head)
    });
    let e = sliced.residual(&th, &th).unwrap_err().to_string();
    assert!(e.contains("not a variable"), "{e}");
}

/// Hypergradient descent on the ridge fixture's one strength ends at the minimum of the validation loss over λ:
/// no value of a fine grid does better, and the hypergradient there is small.
#[test]
fn hypergradient_descent_reaches_the_best_single_ridge_strength() {
    use optlab::bilevel::hypergrad::{hypergradient_descent, ImplicitConfig, ImplicitProblem};
    let g = &golden()["ridge"];
    let p = Ridge::from(g);
    let problem = ImplicitProblem {
        optimality: p.inner(),
        upper: Box::new(|w| half_mse(w, &p.xv, &p.yv)),
        inner: None,
    };
    let cfg = ImplicitConfig {
        steps: 300,
        outer: "adam:lr=0.05".parse().unwrap(),
        ..ImplicitConfig::default()
    };
    let w0 = Tensor::zeros(6, DType::F64, &Device::Cpu).unwrap();
    let run = hypergradient_descent(&problem, &theta(&[0.0]), &w0, &cfg, None).unwrap();
    let best = run.curve.last().unwrap().upper;
    assert!(best < run.curve[0].upper);
    let f = p.inner();
    let mut w = w0.clone();
    for i in 0..200 {
        let t = -8.0 + 12.0 * i as f64 / 199.0;
        w = newton(&f, &w, &theta(&[t]));
        assert!(
            p.outer(&w) >= best - 1e-9,
            "λ = e^{t} beats the descent: {} < {best}",
            p.outer(&w)
        );
    }
    let v = p.outer_grad(&run.w);
    let hyper = f
        .vjp(&run.w, &run.theta, &v, &SolveOptions::default())
        .unwrap();
    // Adam hovers within about its step of the optimum: the hypergradient is a small fraction of the first one.
    let first = g["hypergradient"][0].as_f64().unwrap().abs();
    assert!(
        values(&hyper)[0].abs() < 0.05 * first,
        "hypergradient {:?}",
        values(&hyper)
    );
}
