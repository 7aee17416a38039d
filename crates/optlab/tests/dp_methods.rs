//! DP-GD, DP-SGD, DIFF2 (P09) and private SpiderBoost (P21) over in-process workers: noiseless unclipped runs
//! are gradient descent, clipped messages equal a one-example-at-a-time reference, workers split the work
//! without changing the result, the noise has the calibrated scale and the calibrated run spends its budget.

use optlab::data::{digits, Dataset};
use optlab::privacy::dp_methods::{
    calibrate, run_local, shard, Algo, DpBudget, DpConfig, DpOutcome,
};
use optlab::privacy::finite_sum::{FiniteSum, LogisticNonconvex, ModelSum};

fn data(n: usize) -> Dataset {
    let d = digits().unwrap();
    let idx: Vec<usize> = (0..n).collect();
    d.subset(&idx)
}

fn logreg(lambda: f64) -> impl Fn(Dataset) -> optlab::Result<Box<dyn FiniteSum>> + Sync {
    move |s| Ok(Box::new(LogisticNonconvex::new(&s, lambda)?) as Box<dyn FiniteSum>)
}

fn cfg(algo: Algo) -> DpConfig {
    let mut c = DpConfig::new(algo);
    c.rounds = 12;
    c.period = 4;
    c.eval_every = 4;
    c
}

fn go(data: &Dataset, workers: usize, c: &DpConfig) -> DpOutcome {
    run_local(data, workers, c, logreg(0.01), |_| {}).unwrap()
}

/// Plain gradient descent on the whole set, in the shard order of one worker.
fn gd(data: &Dataset, c: &DpConfig) -> Vec<f64> {
    let f = LogisticNonconvex::new(&shard(data, 1, 0, c.seed).unwrap(), 0.01).unwrap();
    let idx: Vec<usize> = (0..f.len()).collect();
    let mut x = f.initial_point().unwrap();
    for _ in 0..c.rounds {
        let (_, rows) = f.example_gradients(&x, &idx).unwrap();
        let (_, r) = f.regularizer(&x);
        let mut g = vec![0.0; f.dim()];
        for row in rows.chunks_exact(f.dim()) {
            for (a, v) in g.iter_mut().zip(row) {
                *a += v;
            }
        }
        for ((xi, gi), ri) in x.iter_mut().zip(&g).zip(&r) {
            *xi -= c.lr * (gi / f.len() as f64 + ri);
        }
    }
    x
}

fn max_diff(a: &[f64], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(u, v)| (u - v).abs())
        .fold(0.0, f64::max)
}

#[test]
fn noiseless_unclipped_methods_are_gradient_descent() {
    let d = data(300);
    for algo in [Algo::DpGd, Algo::Diff2, Algo::Spider, Algo::DpSgd] {
        let mut c = cfg(algo);
        c.budget = DpBudget::Noise(0.0);
        c.clip = f64::INFINITY;
        c.diff_clip = f64::INFINITY;
        // Every example in every round: SpiderBoost's and DP-SGD's sampling rate is 1.
        c.batch = 300;
        let want = gd(&d, &c);
        for workers in [1, 3] {
            let got = go(&d, workers, &c);
            // DIFF2 and SpiderBoost telescope: v_r = ∇F(x_r) up to rounding.
            assert!(
                max_diff(&got.last, &want) < 1e-12,
                "{algo} x{workers}: {}",
                max_diff(&got.last, &want)
            );
            assert_eq!(got.epsilon, f64::INFINITY);
        }
    }
}

#[test]
fn clipped_difference_round_matches_a_reference() {
    let d = data(200);
    let mut c = cfg(Algo::Diff2);
    c.budget = DpBudget::Noise(0.0);
    c.rounds = 2;
    c.clip = 0.05;
    c.diff_clip = 0.3;
    c.lr = 2.0;
    let got = go(&d, 1, &c);
    let f = LogisticNonconvex::new(&shard(&d, 1, 0, c.seed).unwrap(), 0.01).unwrap();
    let n = f.len() as f64;
    let clip = |g: &[f64], r: f64| -> Vec<f64> {
        let norm = g.iter().map(|v| v * v).sum::<f64>().sqrt();
        let k = (r / (norm + 1e-6)).min(1.0);
        g.iter().map(|v| v * k).collect()
    };
    let x0 = f.initial_point().unwrap();
    let mut v = vec![0.0; f.dim()];
    let mut clipped = 0;
    for i in 0..f.len() {
        let g = f.example_gradients(&x0, &[i]).unwrap().1;
        clipped += usize::from(g.iter().map(|a| a * a).sum::<f64>().sqrt() > 0.05);
        for (a, b) in v.iter_mut().zip(clip(&g, 0.05)) {
            *a += b / n;
        }
    }
    assert!(
        clipped > 100,
        "the test should clip most gradients, clipped {clipped}"
    );
    let step = |x: &[f64], v: &[f64]| -> Vec<f64> {
        let (_, r) = f.regularizer(x);
        x.iter()
            .zip(v)
            .zip(&r)
            .map(|((a, b), c)| a - 2.0 * (b + c))
            .collect()
    };
    let x1 = step(&x0, &v);
    let radius = 0.3
        * x1.iter()
            .zip(&x0)
            .map(|(a, b)| (a - b).powi(2))
            .sum::<f64>()
            .sqrt();
    for i in 0..f.len() {
        let g1 = f.example_gradients(&x1, &[i]).unwrap().1;
        let g0 = f.example_gradients(&x0, &[i]).unwrap().1;
        let diff: Vec<f64> = g1.iter().zip(&g0).map(|(a, b)| a - b).collect();
        for (a, b) in v.iter_mut().zip(clip(&diff, radius)) {
            *a += b / n;
        }
    }
    let x2 = step(&x1, &v);
    assert!(
        max_diff(&got.last, &x2) < 1e-13,
        "{}",
        max_diff(&got.last, &x2)
    );
    assert!(got.clipped_fraction > 0.3);
}

#[test]
fn workers_share_the_work_without_changing_the_result() {
    let d = data(240);
    for algo in [Algo::Diff2, Algo::DpGd] {
        let mut c = cfg(algo);
        c.budget = DpBudget::Noise(0.0);
        c.clip = 0.1;
        let one = go(&d, 1, &c);
        for workers in [2, 4] {
            let many = go(&d, workers, &c);
            assert!(max_diff(&one.last, &many.last) < 1e-12, "{algo} x{workers}");
            // One d-vector per round and worker.
            assert_eq!(many.bytes_per_round, 8.0 * 65.0);
        }
    }
    // Too many workers for the data: one line naming the sizes.
    let err = run_local(&data(20), 4, &cfg(Algo::Diff2), logreg(0.0), |_| {}).unwrap_err();
    assert!(err.to_string().contains("5 per worker"), "{err}");
}

#[test]
fn noise_has_the_calibrated_scale() {
    // One DP-GD round: x1 = x0 − η(mean of clipped + noise/n + ∇r(x0)); the noise per coordinate is σC/n
    // whatever the number of workers (each adds σC/√P).
    let d = data(100);
    for workers in [1, 4] {
        let mut samples = Vec::new();
        let mut c = cfg(Algo::DpGd);
        c.rounds = 1;
        c.eval_every = 1;
        c.clip = 0.5;
        c.budget = DpBudget::Noise(2.0);
        let noiseless = {
            let mut c = c.clone();
            c.budget = DpBudget::Noise(0.0);
            go(&d, workers, &c).last
        };
        for seed in 0..40 {
            c.seed = 100 + seed;
            let mut c0 = c.clone();
            c0.budget = DpBudget::Noise(0.0);
            // The shard order changes with the seed; the noiseless step does not depend on it beyond rounding.
            let base = go(&d, workers, &c0).last;
            assert!(max_diff(&base, &noiseless) < 1e-12);
            let x = go(&d, workers, &c).last;
            samples.extend(x.iter().zip(&base).map(|(a, b)| (b - a) / c.lr));
        }
        let std = (samples.iter().map(|v| v * v).sum::<f64>() / samples.len() as f64).sqrt();
        let want = 2.0 * 0.5 / 100.0;
        assert!(
            (std / want - 1.0).abs() < 0.05,
            "x{workers}: {std} vs {want}"
        );
    }
}

#[test]
fn calibrated_runs_spend_their_budget() {
    for algo in [Algo::DpGd, Algo::DpSgd, Algo::Diff2, Algo::Spider] {
        let mut c = DpConfig::new(algo);
        c.rounds = 100;
        c.budget = DpBudget::Epsilon(2.0);
        let cal = calibrate(&c, 1000).unwrap();
        let eps = cal.accountant().unwrap().epsilon(1e-5).unwrap().epsilon;
        assert!(eps <= 2.0 && eps > 1.98, "{algo}: {eps}");
        if algo == Algo::Diff2 {
            // Full-batch rounds: the anchors hold 80% of the Rényi budget at every order.
            let ra =
                optlab::privacy::rdp::rdp_step(1.0, cal.sigma_anchor, 5.0) * cal.anchors as f64;
            let rd = optlab::privacy::rdp::rdp_step(1.0, cal.sigma_difference, 5.0)
                * cal.differences as f64;
            assert!((ra / (ra + rd) - 0.8).abs() < 1e-12);
            assert_eq!((cal.anchors, cal.differences), (10, 90));
        }
    }
    // A run spends what its calibration says.
    let d = data(200);
    let mut c = cfg(Algo::Spider);
    c.budget = DpBudget::Epsilon(4.0);
    c.batch = 50;
    let out = go(&d, 2, &c);
    let want = out
        .calibration
        .accountant()
        .unwrap()
        .epsilon(1e-5)
        .unwrap()
        .epsilon;
    assert_eq!(out.epsilon, want);
    assert!(out.epsilon <= 4.0);
    assert_eq!(out.records.last().unwrap().epsilon, out.epsilon);
    assert!((1..=12).contains(&out.output_round));
    assert_eq!(out.output_record.round, out.output_round);
}

#[test]
fn model_objectives_train_privately() {
    // A small tanh MLP on 300 digits: DIFF2 at ε = 8 lowers the loss from its start.
    let d = data(300);
    let spec = optlab::nn::ModelSpec::parse("mlp:hidden=8,act=tanh").unwrap();
    let mut c = cfg(Algo::Diff2);
    c.rounds = 30;
    c.eval_every = 30;
    c.budget = DpBudget::Epsilon(8.0);
    c.lr = 1.0;
    let out = run_local(
        &d,
        2,
        &c,
        |s| Ok(Box::new(ModelSum::new(&spec, s, 0)?) as Box<dyn FiniteSum>),
        |_| {},
    )
    .unwrap();
    let (first, last) = (out.records[0], *out.records.last().unwrap());
    assert!(
        last.loss < 0.8 * first.loss,
        "{} -> {}",
        first.loss,
        last.loss
    );
    assert!(out.epsilon <= 8.0);
}

#[test]
fn bad_settings_are_refused() {
    let mut c = DpConfig::new(Algo::Diff2);
    for (set, want) in [
        (
            Box::new(|c: &mut DpConfig| c.lr = 0.0) as Box<dyn Fn(&mut DpConfig)>,
            "lr",
        ),
        (Box::new(|c: &mut DpConfig| c.delta = 1.0), "delta"),
        (
            Box::new(|c: &mut DpConfig| c.budget = DpBudget::Epsilon(-1.0)),
            "epsilon",
        ),
        (Box::new(|c: &mut DpConfig| c.clip = 0.0), "clip"),
        (
            Box::new(|c: &mut DpConfig| c.clip = f64::INFINITY),
            "finite clip",
        ),
        (Box::new(|c: &mut DpConfig| c.period = 0), "period"),
        (
            Box::new(|c: &mut DpConfig| c.anchor_share = 1.0),
            "anchor-share",
        ),
    ] {
        let mut bad = c.clone();
        set(&mut bad);
        let err = bad.validate().unwrap_err().to_string();
        assert!(err.contains(want), "{err}");
    }
    c.budget = DpBudget::Epsilon(1e-6);
    assert!(calibrate(&c, 100)
        .unwrap_err()
        .to_string()
        .contains("out of reach"));
    assert!("sgd"
        .parse::<Algo>()
        .unwrap_err()
        .to_string()
        .contains("dp-gd, dp-sgd, diff2, spider"));
}
