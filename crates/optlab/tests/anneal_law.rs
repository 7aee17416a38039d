//! P38: the annealing scaling law recovers known parameters from noisy synthetic curves and predicts a held-out
//! schedule.

use optlab::anneal_law::{fit, schedule_lrs, AnnealLaw, FitOptions, LossCurve};
use optlab::rng::{normal, rng_for, Stream};

const STEPS: u64 = 10_000;
const PEAK: f64 = 1e-3;

fn truth() -> AnnealLaw {
    AnnealLaw {
        l0: 2.0,
        a: 0.5,
        alpha: 0.5,
        c: 0.2,
        lambda: 0.999,
    }
}

/// The law's curve under `spec`, observed every 10 steps with 1% multiplicative Gaussian noise.
fn noisy_curve(spec: &str, seed: u64) -> LossCurve {
    let lrs = schedule_lrs(spec, STEPS, PEAK).unwrap();
    let clean = truth().curve(&lrs);
    let mut rng = rng_for(seed, Stream::Data, 0);
    let losses = (10..=STEPS as usize)
        .step_by(10)
        .map(|k| (k, clean[k - 1] * (1.0 + 0.01 * normal(&mut rng))))
        .collect();
    LossCurve {
        name: spec.into(),
        lrs,
        losses,
    }
}

#[test]
fn recovers_parameters_and_predicts_a_held_out_schedule() {
    let specs = [
        "constant:warmup=100",
        "cosine:warmup=100",
        "wsd:warmup=100,decay_frac=0.2",
        "step:warmup=100,step_size=3000,gamma=0.3",
    ];
    let mut points = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        points.extend(noisy_curve(spec, i as u64).points(0.999, 500).unwrap());
    }
    let report = fit(&points, &FitOptions::default()).unwrap();
    let (t, f) = (truth(), report.law);
    for (name, want, got) in [
        ("L0", t.l0, f.l0),
        ("A", t.a, f.a),
        ("alpha", t.alpha, f.alpha),
        ("C", t.c, f.c),
    ] {
        let rel = (got - want).abs() / want;
        println!("{name}: true {want}, fitted {got:.5} ({:.3}%)", 100.0 * rel);
        assert!(rel < 0.02, "{name}: fitted {got}, true {want}");
    }
    assert!(report.converged_starts > report.starts / 2);
    // Held out: linear decay to 0 with a 100-step warmup.
    let lrs = schedule_lrs("linear:warmup=100", STEPS, PEAK).unwrap();
    let (want, got) = (
        *truth().curve(&lrs).last().unwrap(),
        *f.curve(&lrs).last().unwrap(),
    );
    println!("held-out final loss: true {want:.5}, predicted {got:.5}");
    assert!((got - want).abs() / want < 0.005);
}

/// The official script's loss values and procedure (tools/reference/anneal_law_fixture.py, scipy L-BFGS-B): our
/// areas equal its S1/S2 and our fit reaches its objective with the same parameters.
#[test]
fn matches_the_reference_fit() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/anneal_law/reference_fit.json"
    );
    let fx: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let num = |v: &serde_json::Value| v.as_f64().unwrap();
    let (max_lr, total, warmup) = (
        num(&fx["max_lr"]),
        num(&fx["total"]) as usize,
        num(&fx["warmup"]) as usize,
    );
    // The reference's schedules: the warmup counted as max lr, then cosine to 0 at step `total`.
    let lrs_of = |method: &str| -> Vec<f64> {
        (0..=total)
            .map(|s| {
                if method == "constant" || s <= warmup {
                    max_lr
                } else {
                    let r = (s - warmup) as f64 / (total - warmup) as f64;
                    max_lr * 0.5 * ((std::f64::consts::PI * r).cos() + 1.0)
                }
            })
            .collect()
    };
    let mut points = Vec::new();
    for p in fx["points"].as_array().unwrap() {
        let ar = optlab::anneal_law::areas(&lrs_of(p["schedule"].as_str().unwrap()), 0.999);
        // The reference's S1[step] sums the lrs of steps 0..=step: ours after step + 1 updates.
        let k = num(&p["step"]) as usize + 1;
        for (ours, theirs) in [(ar.s1[k], num(&p["s1"])), (ar.s2[k], num(&p["s2"]))] {
            assert!(
                (ours - theirs).abs() <= 1e-12 * theirs.abs().max(1e-12),
                "{ours} vs {theirs}"
            );
        }
        points.push(optlab::anneal_law::LawPoint {
            s1: ar.s1[k],
            s2: ar.s2[k],
            loss: num(&p["loss"]),
        });
    }
    let report = fit(&points, &FitOptions::default()).unwrap();
    let r = &fx["fit"];
    println!(
        "ours {:?} objective {:.6e}; reference {r}",
        report.law, report.objective
    );
    assert!(report.objective <= num(&r["objective"]) * (1.0 + 1e-3));
    let f = report.law;
    for (got, want) in [
        (f.l0, &r["l0"]),
        (f.a, &r["a"]),
        (f.alpha, &r["alpha"]),
        (f.c, &r["c"]),
    ] {
        assert!(
            (got - num(want)).abs() / num(want) < 1e-4,
            "{got} vs {want}"
        );
    }
    assert!(report.r2 > 0.99);
}
