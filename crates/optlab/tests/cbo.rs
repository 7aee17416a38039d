//! P23: CBO on the reference benchmark (CBXpy's success evaluation) and consensus hopping.

use optlab::functions::TestFunction;
use optlab::solvers::cbo::{
    cbo_runs, consensus_hopping, is_success, CboConfig, HoppingConfig, Noise,
};

fn rastrigin(x: &[f64]) -> f64 {
    TestFunction::Rastrigin.eval_plain(x).unwrap()
}

#[test]
fn rastrigin_20d_reference_settings_succeed() {
    // N=40, anisotropic, sigma=10.1, alpha=30, dt=0.01, 5000 iterations, x0 ~ U[-3,3]^20; CBXpy reports 100/100.
    let cfg = CboConfig {
        particles: 40,
        dt: 0.01,
        sigma: 10.1,
        alpha: 30.0,
        noise: Noise::Anisotropic,
        max_iters: 5000,
        init: (-3.0, 3.0),
        ..CboConfig::default()
    };
    let runs = cbo_runs(&rastrigin, 20, &cfg, 0, 100).unwrap();
    let ok = runs
        .iter()
        .filter(|r| is_success(&r.x, &[0.0; 20], 0.25))
        .count();
    println!("Rastrigin d=20: {ok}/100 runs within 0.25 of the minimiser");
    assert!(ok >= 95, "{ok}/100");
    assert!(runs.iter().all(|r| r.evaluations == 40 * 5000 + 1));
    // Same seed, same result.
    assert_eq!(
        cbo_runs(&rastrigin, 20, &cfg, 0, 3).unwrap(),
        runs[..3].to_vec()
    );
}

#[test]
fn consensus_hopping_finds_the_global_minimum() {
    // A spread that shrinks to ~5e-3 over the run: early hops cross the barriers, late ones settle.
    // A small alpha makes each hop a gradient step on a Gaussian-smoothed Rastrigin (the paper's point: the cosine
    // ripples average out), while the shrinking spread (to ~0.02) lets the iterate settle in the global basin.
    let cfg = HoppingConfig {
        samples: 200,
        sigma: 1.0,
        alpha: 0.05,
        shrink: 0.98,
        shrink_every: 10,
        max_iters: 2000,
    };
    let mut ok = 0;
    for run in 0..20 {
        let r = consensus_hopping(&rastrigin, &[2.5; 5], &cfg, 1, run).unwrap();
        ok += is_success(&r.x, &[0.0; 5], 0.25) as usize;
    }
    println!("consensus hopping, Rastrigin d=5 from (2.5, ...): {ok}/20");
    assert!(ok >= 17, "{ok}/20");
}
