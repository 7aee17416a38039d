//! Curvature estimators against exact answers (P27, P35, P36): Hessian-vector products on quadratics and on an
//! MLP (against central differences of the gradient), Hutchinson within 3 standard errors, power iteration and
//! Lanczos against a dense eigen-decomposition, and SLQ moments against the dense spectrum of an MLP's Hessian.

use candle_core::{DType, Device};
use optlab::curvature::{
    hutchinson_diagonal, hutchinson_trace, jacobi_eigen, lanczos, power_iteration, slq_density,
    DenseHessian, FiniteDifferenceHessian, FunctionHessian, HessianOperator, ModelHessian, Probe,
};
use optlab::functions::TestFunction;
use optlab::nn::{ModelSpec, Sequential};

/// A dense SPD-ish symmetric matrix with a known spectrum: Q diag(d) Qᵀ, Q from Jacobi of a random matrix.
fn dense(n: usize, seed: u64) -> (DenseHessian, Vec<f64>) {
    use rand::{Rng, SeedableRng};
    let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut s = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..=i {
            let v: f64 = r.gen_range(-1.0..1.0);
            s[i * n + j] = v;
            s[j * n + i] = v;
        }
    }
    let q = jacobi_eigen(&s, n).vectors;
    let d: Vec<f64> = (0..n)
        .map(|i| -2.0 + 0.5 * i as f64 + if i == n - 1 { 20.0 } else { 0.0 })
        .collect();
    let mut a = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..n {
            a[i * n + j] = (0..n).map(|k| q[i * n + k] * d[k] * q[j * n + k]).sum();
        }
    }
    (DenseHessian { n, a }, d)
}

#[test]
fn hvp_of_a_quadratic_is_exact() {
    let h = FunctionHessian::new(TestFunction::Quadratic, &[0.3, -1.0, 2.0, 0.5]).unwrap();
    let v = [1.0, 2.0, -1.0, 0.5];
    let hv = h.hvp(&v).unwrap();
    let c = [1.0, 4.0, 7.0, 10.0];
    for i in 0..4 {
        assert!((hv[i] - c[i] * v[i]).abs() < 1e-10, "{hv:?}");
    }
    // Rosenbrock at (1, 1): H = [[802, -400], [-400, 200]].
    let h = FunctionHessian::new(TestFunction::Rosenbrock, &[1.0, 1.0]).unwrap();
    let d = DenseHessian::from_operator(&h).unwrap();
    for (a, b) in d.a.iter().zip([802.0, -400.0, -400.0, 200.0]) {
        assert!((a - b).abs() < 1e-10, "{:?}", d.a);
    }
    assert!(h.hvp(&[1.0]).is_err());
}

#[test]
fn estimators_match_the_dense_spectrum() {
    let (h, d) = dense(30, 5);
    let trace: f64 = d.iter().sum();
    let est = hutchinson_trace(&h, 400, Probe::Rademacher, 1).unwrap();
    assert!(
        (est.mean - trace).abs() <= 3.0 * est.stderr,
        "{est:?} vs {trace}"
    );
    let g = hutchinson_trace(&h, 400, Probe::Gaussian, 2).unwrap();
    assert!((g.mean - trace).abs() <= 3.0 * g.stderr, "{g:?} vs {trace}");
    assert!((hutchinson_trace(&h, 1, Probe::Basis, 0).unwrap().mean - trace).abs() < 1e-10);
    let diag = hutchinson_diagonal(&h, 1, Probe::Basis, 0).unwrap();
    assert!(diag
        .iter()
        .enumerate()
        .all(|(i, x)| (x - h.a[i * 30 + i]).abs() < 1e-12));

    let top = d[29];
    let (lam, iters, converged) = power_iteration(&h, 1000, 1e-14, 3).unwrap();
    assert!(
        converged && (lam - top).abs() < 1e-8 * top,
        "{lam} vs {top} after {iters}"
    );
    let l = lanczos(&h, 30, 4).unwrap();
    for (a, b) in l.ritz_values.iter().zip(&d) {
        assert!((a - b).abs() < 1e-8, "{:?}", l.ritz_values);
    }
    // A few Lanczos steps already find the extreme eigenvalue.
    let short = lanczos(&h, 12, 4).unwrap();
    assert!((short.ritz_values.last().unwrap() - top).abs() < 1e-8);
}

fn small_mlp() -> (Sequential, candle_core::Tensor, candle_core::Tensor) {
    let data = optlab::data::two_spirals(16, 2, 0.3, 2).unwrap();
    let idx: Vec<usize> = (0..16).collect();
    let (x, y) = data.batch(&idx, DType::F64, &Device::Cpu).unwrap();
    let model = Sequential::new(
        &ModelSpec::parse("mlp:hidden=5,act=tanh").unwrap(),
        &[2],
        2,
        7,
        DType::F64,
    )
    .unwrap();
    (model, x, y)
}

/// (max |a − b|, max |b|): the largest error of `a` against the reference `b`, and the reference's scale.
fn max_error(a: &[f64], b: &[f64]) -> (f64, f64) {
    let err = a
        .iter()
        .zip(b)
        .map(|(p, q)| (p - q).abs())
        .fold(0.0, f64::max);
    (err, b.iter().map(|v| v.abs()).fold(0.0, f64::max))
}

#[test]
fn mlp_hvp_matches_central_differences() {
    let (model, x, y) = small_mlp();
    let h = ModelHessian::new(&model, x, y, true).unwrap();
    let fd = FiniteDifferenceHessian::new(&h, 1e-5).unwrap();
    let v: Vec<f64> = (0..h.dim())
        .map(|i| ((i * 7 % 11) as f64 - 5.0) / 5.0)
        .collect();
    let (exact, approx) = (h.hvp(&v).unwrap(), fd.hvp(&v).unwrap());
    let (err, scale) = max_error(&approx, &exact);
    eprintln!("MLP HVP vs central differences: max abs error {err:.2e} (scale {scale:.2e})");
    assert!(err < 1e-6 * scale.max(1.0), "{err}");
    // The parameters are restored after the finite differences.
    let again = h.hvp(&v).unwrap();
    assert_eq!(again, exact);
}

#[test]
fn slq_moments_match_the_dense_mlp_hessian() {
    let (model, x, y) = small_mlp();
    let h = ModelHessian::new(&model, x, y, true).unwrap();
    let dense = DenseHessian::from_operator(&h).unwrap();
    let n = dense.n;
    // Symmetrise the column-built matrix (it is symmetric to rounding).
    let sym: Vec<f64> = (0..n * n)
        .map(|k| 0.5 * (dense.a[k] + dense.a[(k % n) * n + k / n]))
        .collect();
    let eig = jacobi_eigen(&sym, n).values;
    let slq = slq_density(&h, n, 1, Probe::Basis, 0).unwrap();
    for p in 1..=4 {
        let exact = eig.iter().map(|l| l.powi(p)).sum::<f64>() / n as f64;
        let est = slq.moment(p);
        assert!(
            (est - exact).abs() < 1e-6 * exact.abs().max(1e-3),
            "moment {p}: {est} vs {exact}"
        );
    }
    assert!((slq.weights.iter().sum::<f64>() - 1.0).abs() < 1e-9);
    let curve = slq.smoothed(100, 0.05);
    assert_eq!(curve.len(), 100);
}

/// The R-operator's H v against double backward's on `h`, with a direction of the model's parameter shapes.
fn check_against_double_backward(
    h: &ModelHessian,
    model: &Sequential,
    dtype: DType,
    tol: f64,
    what: &str,
) {
    use candle_core::Tensor;
    let v: Vec<Tensor> = model
        .params()
        .iter()
        .enumerate()
        .map(|(i, p)| {
            Tensor::randn(0f64, 1.0, p.var.dims(), &Device::Cpu)
                .unwrap()
                .affine(1.0, 0.1 * i as f64)
                .unwrap()
                .to_dtype(dtype)
                .unwrap()
        })
        .collect();
    let (rop, db) = (
        h.hvp_tensors(&v).unwrap(),
        h.hvp_double_backward(&v).unwrap(),
    );
    assert_eq!(rop.len(), db.len());
    let flat = |ts: &[Tensor]| -> Vec<f64> {
        ts.iter()
            .flat_map(|t| {
                t.flatten_all()
                    .unwrap()
                    .to_dtype(DType::F64)
                    .unwrap()
                    .to_vec1::<f64>()
                    .unwrap()
            })
            .collect()
    };
    let (err, scale) = max_error(&flat(&rop), &flat(&db));
    assert!(
        scale > 0.0 && err <= tol * scale,
        "{what}: error {err:e}, scale {scale:e}"
    );
}

/// The R-operator's products against double backward's, in f64 to 1e-10: MLPs with ReLU, GELU and tanh layers,
/// muP's readout, the cross-entropy with a padded row left out and the MSE (f32 to 1e-4); CNNs of "same"
/// convolutions, ReLU and max pooling; transformer language models (embeddings, LayerNorm or none, causal
/// attention, the GELU MLP, muP's readout and attention scale; one in f32 to 1e-4). A normalized CNN and a PowerNorm transformer keep
/// double backward.
#[test]
fn r_operator_hvp_matches_double_backward() {
    use candle_core::Tensor;
    let x = optlab::data::two_spirals(12, 2, 0.3, 3).unwrap();
    let idx: Vec<usize> = (0..12).collect();
    let (x, labels) = x.batch(&idx, DType::F64, &Device::Cpu).unwrap();
    let mut ids: Vec<u32> = labels.to_vec1().unwrap();
    ids[5] = optlab::data::IGNORE;
    let labels = Tensor::new(ids, &Device::Cpu).unwrap();
    let values = x.affine(0.5, 0.1).unwrap().sin().unwrap();
    let cases = [
        ("mlp:hidden=6-5,act=relu-gelu", true, DType::F64, 1e-10),
        ("mlp:hidden=6,act=tanh", false, DType::F64, 1e-10),
        (
            "mlp:hidden=6-6,act=gelu,param=mup,base=3",
            true,
            DType::F64,
            1e-10,
        ),
        ("mlp:hidden=8-8,act=gelu", true, DType::F32, 1e-4),
    ];
    for (spec, classification, dtype, tol) in cases {
        // Two outputs: two classes, or the two columns of the regression targets.
        let model = Sequential::new(&ModelSpec::parse(spec).unwrap(), &[2], 2, 11, dtype).unwrap();
        let y = if classification {
            labels.clone()
        } else {
            values.to_dtype(dtype).unwrap()
        };
        let h = ModelHessian::new(&model, x.to_dtype(dtype).unwrap(), y, classification).unwrap();
        assert_eq!(h.method(), "r-operator", "{spec}");
        check_against_double_backward(&h, &model, dtype, tol, spec);
    }
    let images = Tensor::randn(0f64, 1.0, (3, 1, 4, 4), &Device::Cpu).unwrap();
    let image_labels = Tensor::new(&[0u32, 1, 0], &Device::Cpu).unwrap();
    for (spec, method) in [
        ("cnn:channels=2-3", "r-operator"),
        ("cnn:channels=2", "r-operator"),
        ("cnn:channels=2,norm=gn,groups=1", "double-backward"),
    ] {
        let cnn = Sequential::new(
            &ModelSpec::parse(spec).unwrap(),
            &[1, 4, 4],
            2,
            0,
            DType::F64,
        )
        .unwrap();
        let h = ModelHessian::new(&cnn, images.clone(), image_labels.clone(), true).unwrap();
        assert_eq!(h.method(), method, "{spec}");
        check_against_double_backward(&h, &cnn, DType::F64, 1e-10, spec);
    }
    // Language models: 3 sequences of 5 tokens over 7 characters, context 6, one label left out.
    let ids = Tensor::from_vec(
        (0..15)
            .map(|i| ((i * 5 + 2) % 7) as f64)
            .collect::<Vec<_>>(),
        (3, 5),
        &Device::Cpu,
    )
    .unwrap();
    let mut next: Vec<u32> = (0..15).map(|i| (i * 3 % 7) as u32).collect();
    next[4] = optlab::data::IGNORE;
    let next = Tensor::from_vec(next, (3, 5), &Device::Cpu).unwrap();
    for (spec, method) in [
        (
            "transformer:layers=2,dim=8,heads=2,mlp=2,norm=ln",
            "r-operator",
        ),
        (
            "transformer:layers=1,dim=6,heads=3,mlp=2,norm=none",
            "r-operator",
        ),
        (
            "transformer:layers=1,dim=8,heads=2,mlp=2,norm=ln,param=mup,base=4",
            "r-operator",
        ),
        (
            "transformer:layers=1,dim=8,heads=2,mlp=2,norm=pn",
            "double-backward",
        ),
    ] {
        let lm = Sequential::new(&ModelSpec::parse(spec).unwrap(), &[6], 7, 5, DType::F64).unwrap();
        let h = ModelHessian::new(&lm, ids.clone(), next.clone(), true).unwrap();
        assert_eq!(h.method(), method, "{spec}");
        check_against_double_backward(&h, &lm, DType::F64, 1e-10, spec);
    }
    // The f32 kernels (the fast exponential and erf) against f32 double backward.
    let spec = "transformer:layers=2,dim=8,heads=2,mlp=2,norm=ln";
    let lm = Sequential::new(&ModelSpec::parse(spec).unwrap(), &[6], 7, 5, DType::F32).unwrap();
    let h = ModelHessian::new(&lm, ids.to_dtype(DType::F32).unwrap(), next.clone(), true).unwrap();
    assert_eq!(h.method(), "r-operator");
    check_against_double_backward(&h, &lm, DType::F32, 1e-4, "f32 transformer");
    // A padded batch (id 7 = padding at the end of the first sequence) keeps double backward, and says so.
    let spec = "transformer:layers=1,dim=8,heads=2,mlp=2,norm=ln";
    let lm = Sequential::new(&ModelSpec::parse(spec).unwrap(), &[6], 7, 5, DType::F64).unwrap();
    let padded = ids
        .slice_assign(
            &[0..1, 4..5],
            &Tensor::new(&[[7.0f64]], &Device::Cpu).unwrap(),
        )
        .unwrap();
    let h = ModelHessian::new(&lm, padded, next.clone(), true).unwrap();
    assert_eq!(h.method(), "double-backward");
    check_against_double_backward(&h, &lm, DType::F64, 1e-10, "padded");
}
