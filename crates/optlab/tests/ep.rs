//! P31: the exact gradient (recurrent backpropagation) against finite differences of the loss at the fixed point;
//! the EP estimates against it as N, β and the weight asymmetry vary; the homeostasis estimator against its
//! expectation, and its descent restoring the estimate's accuracy.

use optlab::ep::grad::{agreement, neuron_estimate, rbp, weight_gradient, Agreement, Estimator};
use optlab::ep::homeostasis;
use optlab::ep::net::{act, dact, EpNet, Planar, Shape};
use optlab::rng::{rng_for, Stream};

fn shape() -> Shape {
    Shape {
        input: 5,
        layers: vec![6, 4],
        classes: 3,
    }
}

fn batch() -> (Planar, Vec<usize>) {
    let x: Vec<f64> = (0..15)
        .map(|i| ((i * 37 % 11) as f64 / 11.0) - 0.3)
        .collect();
    (Planar::real(3, 5, &x), vec![0, 2, 1])
}

fn compare(net: &EpNet, est: Estimator, beta: f64) -> Agreement {
    let (x, y) = batch();
    let u = net.relax(&x, &y, 400).unwrap();
    let g = neuron_estimate(net, &x, &y, &u, est, beta, 400).unwrap();
    let d = rbp(net, &y, &u).unwrap();
    agreement(
        &weight_gradient(net, &x, &y, &u, &g).unwrap(),
        &weight_gradient(net, &x, &y, &u, &d).unwrap(),
        &g,
        &d,
        3,
    )
}

#[test]
fn activation_is_holomorphic_with_its_derivative() {
    let z = num_complex::Complex64::new(0.3, -0.2);
    let h = 1e-6;
    let fd = (act(z + h) - act(z - h)) / (2.0 * h);
    let fdi = (act(z + num_complex::Complex64::new(0.0, h))
        - act(z - num_complex::Complex64::new(0.0, h)))
        / (2.0 * h);
    assert!((fd - dact(z)).norm() < 1e-8);
    // Cauchy–Riemann: the derivative along i is i times the derivative along 1.
    assert!((fdi - num_complex::Complex64::new(0.0, 1.0) * dact(z)).norm() < 1e-8);
    assert!((act(num_complex::Complex64::new(0.5, 0.0)).re - 0.5).abs() < 1e-15);
}

#[test]
fn recurrent_backprop_is_the_gradient_at_the_fixed_point() {
    let (x, y) = batch();
    let net = EpNet::new(shape(), 90.0, 3).unwrap();
    let loss = |n: &EpNet| {
        let u = n.relax(&x, &y, 600).unwrap();
        n.loss(&u[1].map(act), &y).unwrap()
    };
    let u = net.relax(&x, &y, 600).unwrap();
    let d = rbp(&net, &y, &u).unwrap();
    let g = weight_gradient(&net, &x, &y, &u, &d).unwrap();
    let h = 1e-6;
    let mut worst: f64 = 0.0;
    for (a, grad) in g.iter().enumerate() {
        for i in (0..grad.len()).step_by(3) {
            let mut p = net.clone();
            p.arrays_mut()[a][i] += h;
            let mut m = net.clone();
            m.arrays_mut()[a][i] -= h;
            let fd = (loss(&p) - loss(&m)) / (2.0 * h);
            worst = worst.max((fd - grad[i]).abs() / (1e-4 + fd.abs()));
        }
    }
    assert!(worst < 1e-5, "RBP vs finite differences: {worst:e}");
}

#[test]
fn ep_estimates_converge_with_n_and_symmetry() {
    let sym = EpNet::new(shape(), 0.0, 1).unwrap();
    // Symmetric weights: the exact derivative is the gradient; the Fourier estimate's error falls with N.
    let exact = compare(&sym, Estimator::Exact, 0.0);
    assert!(
        exact.cosine > 1.0 - 1e-10 && (exact.norm_ratio - 1.0).abs() < 1e-8,
        "{exact:?}"
    );
    let errs: Vec<f64> = [
        Estimator::OneSided,
        Estimator::Fourier(2),
        Estimator::Fourier(4),
    ]
    .iter()
    .map(|&e| {
        let a = compare(&sym, e, 0.5);
        (1.0 - a.cosine) + (a.norm_ratio - 1.0).abs()
    })
    .collect();
    assert!(
        errs[0] > errs[1] && errs[1] > errs[2] && errs[2] < 0.02,
        "{errs:?}"
    );
    // The holomorphic estimate's error shrinks as β^N: at β = 0.05 four nudges are exact to 1e-5.
    let small = compare(&sym, Estimator::Fourier(4), 0.05);
    assert!(
        1.0 - small.cosine < 1e-5 && (small.norm_ratio - 1.0).abs() < 1e-5,
        "{small:?}"
    );
    // Independent feedback weights: even the exact derivative is biased.
    let asym = EpNet::new(shape(), 90.0, 1).unwrap();
    let a = compare(&asym, Estimator::Exact, 0.0);
    assert!(a.cosine < 0.999, "{a:?}");
}

#[test]
fn homeostasis_estimator_is_unbiased_and_its_descent_restores_the_estimate() {
    let mut net = EpNet::new(shape(), 90.0, 2).unwrap();
    let exact = homeostasis::exact(&net);
    let mut rng = rng_for(0, Stream::Probe, 31);
    let (v, g) = homeostasis::estimate(&net, 40_000, &mut rng).unwrap();
    assert!((v - exact).abs() < 0.03 * exact, "{v} vs {exact}");
    // Its expected gradient in K_1 is 2(K_1 − B_0ᵀ)/D.
    let (rows, cols, d) = (4, 6, net.state_size() as f64);
    let mut err: f64 = 0.0;
    for p in 0..rows {
        for q in 0..cols {
            let want = 2.0 * (net.forward[1][q * rows + p] - net.feedback[0][p * cols + q]) / d;
            err = err.max((g[2][q * rows + p] - want).abs());
        }
    }
    assert!(err < 0.05 * 2.0 / d.sqrt(), "gradient error {err}");
    let before = compare(&net, Estimator::Exact, 0.0).cosine;
    for _ in 0..200 {
        let (_, g) = homeostasis::estimate(&net, 20, &mut rng).unwrap();
        for (a, g) in net.arrays_mut().into_iter().zip(&g) {
            a.iter_mut().zip(g).for_each(|(a, g)| *a -= 0.25 * g);
        }
    }
    let after = compare(&net, Estimator::Exact, 0.0).cosine;
    let left = homeostasis::exact(&net);
    assert!(
        left < 0.2 * exact && after > 0.99 && after > before,
        "asymmetry {exact} -> {left}, cosine {before} -> {after}"
    );
}
