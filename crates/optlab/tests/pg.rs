//! P16's estimators on the LQR system, where J(θ) of a linear Gaussian policy is exact
//! (`Lqr::linear_policy_return`): the GPOMDP gradient and HARPG's Hessian-vector estimate are unbiased (their
//! Monte-Carlo means within 4 standard errors of finite differences of the exact J), J* bounds every policy,
//! and each method improves the policy.

use optlab::rl::lqr::Lqr;
use optlab::rl::pg::{self, PgConfig, PgMethod, Trajectory};
use optlab::rl::policy::{Policy, PolicyKind};
use optlab::rng::{rng_for, Stream};

const DISCOUNT: f64 = 0.95;

fn linear_policy(x: &[f64]) -> Policy {
    let p = Policy::new(PolicyKind::Gaussian { dim: 1 }, 2, &[], "tanh", 0, 0.0).unwrap();
    pg::set_flat_params(&p, x).unwrap();
    p
}

/// Exact J at parameters [W₀, W₁, c, log_std].
fn exact(env: &Lqr, x: &[f64]) -> f64 {
    env.linear_policy_return(&x[..2], &x[2..3], &[x[3].exp()], DISCOUNT)
        .unwrap()
}

fn fd_gradient(env: &Lqr, x: &[f64], h: f64) -> Vec<f64> {
    (0..x.len())
        .map(|i| {
            let (mut a, mut b) = (x.to_vec(), x.to_vec());
            a[i] += h;
            b[i] -= h;
            (exact(env, &a) - exact(env, &b)) / (2.0 * h)
        })
        .collect()
}

/// Means and standard errors of per-chunk estimates.
fn mean_se(chunks: &[Vec<f64>]) -> (Vec<f64>, Vec<f64>) {
    let k = chunks.len() as f64;
    let d = chunks[0].len();
    let mean: Vec<f64> = (0..d)
        .map(|i| chunks.iter().map(|c| c[i]).sum::<f64>() / k)
        .collect();
    let se = (0..d)
        .map(|i| {
            let var = chunks.iter().map(|c| (c[i] - mean[i]).powi(2)).sum::<f64>() / (k - 1.0);
            (var / k).sqrt()
        })
        .collect();
    (mean, se)
}

fn sample(env: &mut Lqr, policy: &Policy, n: usize, seed: u64) -> Vec<Trajectory> {
    let mut rng = rng_for(seed, Stream::Rollout, 0);
    (0..n)
        .map(|_| pg::rollout(env, policy, &mut rng).unwrap())
        .collect()
}

#[test]
fn gpomdp_and_hessian_estimates_are_unbiased() {
    let mut env = Lqr::damped_double_integrator(4).unwrap();
    let x = [-0.4, -0.8, 0.2, -0.7];
    let policy = linear_policy(&x);
    let grad = fd_gradient(&env, &x, 1e-5);
    let dir = [0.3, -0.2, 0.5, 0.4];
    let eps = 1e-3;
    let plus: Vec<f64> = x.iter().zip(&dir).map(|(a, v)| a + eps * v).collect();
    let minus: Vec<f64> = x.iter().zip(&dir).map(|(a, v)| a - eps * v).collect();
    let hv: Vec<f64> = fd_gradient(&env, &plus, 1e-5)
        .iter()
        .zip(fd_gradient(&env, &minus, 1e-5))
        .map(|(a, b)| (a - b) / (2.0 * eps))
        .collect();
    // A baseline fitted on other trajectories keeps both estimates unbiased and cuts their variance.
    let mut baseline = pg::LinearBaseline::default();
    baseline
        .fit(&sample(&mut env, &policy, 500, 8), 2, DISCOUNT)
        .unwrap();
    let trs = sample(&mut env, &policy, 20_000, 11);
    let (mut g_chunks, mut h_chunks) = (Vec::new(), Vec::new());
    for chunk in trs.chunks(500) {
        g_chunks.push(pg::gradient_estimate(&policy, chunk, Some(&baseline), DISCOUNT).unwrap());
        h_chunks.push(
            pg::hessian_vector_estimate(&policy, chunk, Some(&baseline), DISCOUNT, &dir).unwrap(),
        );
    }
    // The Hessian estimate (a product of two sums over the trajectory) is far noisier than the gradient.
    for (label, chunks, want, power) in [
        ("gradient", &g_chunks, &grad, 0.3),
        ("Hessian-vector", &h_chunks, &hv, 0.3),
    ] {
        let (mean, se) = mean_se(chunks);
        for i in 0..want.len() {
            assert!(
                (mean[i] - want[i]).abs() <= 4.0 * se[i],
                "{label}[{i}]: estimate {} ± {} vs exact {}",
                mean[i],
                se[i],
                want[i]
            );
            // The check has power: the standard error is small against the value.
            assert!(
                se[i] < power * want[i].abs().max(1.0),
                "{label}[{i}]: se {}",
                se[i]
            );
        }
    }
}

#[test]
fn the_optimum_bounds_every_linear_policy() {
    let env = Lqr::damped_double_integrator(50).unwrap();
    let opt = env.optimal_return(0.99).unwrap();
    let k = env.discounted_gain(0.99).unwrap();
    let best = exact_with(&env, &[-k[0], -k[1], 0.0], 0.0);
    assert!(
        best <= opt + 1e-9 && opt - best < 0.05 * opt.abs(),
        "{best} vs {opt}"
    );
    let mut rng = rng_for(1, Stream::Data, 0);
    for _ in 0..50 {
        use rand::Rng as _;
        let w: Vec<f64> = (0..3).map(|_| rng.gen_range(-3.0..3.0)).collect();
        assert!(exact_with(&env, &w, rng.gen_range(0.0..1.0)) <= opt + 1e-9);
    }
}

fn exact_with(env: &Lqr, wc: &[f64], std: f64) -> f64 {
    env.linear_policy_return(&wc[..2], &wc[2..], &[std], 0.99)
        .unwrap()
}

#[test]
fn each_method_improves_the_lqr_policy() {
    for (method, step) in [
        (PgMethod::Vanilla, 1e-4),
        (PgMethod::NPgIgt, 0.3),
        (PgMethod::Harpg, 0.3),
    ] {
        let mut env = Lqr::damped_double_integrator(50).unwrap();
        let policy = linear_policy(&[0.0, 0.0, 0.0, -0.5]);
        let start = exact_with(&env, &[0.0, 0.0, 0.0], (-0.5f64).exp());
        let cfg = PgConfig {
            iterations: 150,
            batch: 2,
            step,
            seed: 3,
            ..PgConfig::new(method)
        };
        let points = pg::train(&mut env, &policy, &cfg, |_, _| Ok(true)).unwrap();
        assert_eq!(points.len(), 150);
        let x = pg::flat_params(&policy).unwrap();
        let end = exact_with(&env, &x[..3], x[3].exp());
        assert!(
            end > start + 5.0,
            "{method:?}: J went from {start} to {end}"
        );
    }
}
