//! Local Lipschitz bounds by bound propagation and branch and bound (P02), checked against the exact constant from
//! activation-region enumeration: never below it, never above the naive bound, RecurJac never tighter than the
//! linear relaxation, branch and bound never increasing, and exact at eps = 0.

use optlab::lipschitz::bab::{local_lipschitz, BabOptions, LocalResult};
use optlab::lipschitz::exact::exact_local;
use optlab::lipschitz::local::{local_bound, LocalOptions, Relaxation, SlopeOpt};
use optlab::lipschitz::naive::{naive_bound, Norm};
use optlab::lipschitz::network::{Layer, Network, NetworkSpec};
use std::time::Duration;

use crate::common::{jacobian, mlp, pattern_max_l1, randn};

fn values(shape: &[usize], seed: u64) -> Vec<f64> {
    randn(shape, seed)
        .flatten_all()
        .unwrap()
        .to_dtype(candle_core::DType::F64)
        .unwrap()
        .to_vec1()
        .unwrap()
}

fn bab(seconds: u64) -> Option<BabOptions> {
    Some(BabOptions {
        timeout: Duration::from_secs(seconds),
        ..BabOptions::default()
    })
}

/// The checks every result must pass against the exact constant and the naive bound.
fn check(r: &LocalResult, exact: &[f64], naive: f64, label: &str) {
    for (c, (b, e)) in r.per_class.iter().zip(exact).enumerate() {
        assert!(
            *b >= e * (1.0 - 1e-9),
            "{label}: class {c}: bound {b} below the exact {e}"
        );
    }
    assert!(
        r.bound <= naive * (1.0 + 1e-9),
        "{label}: {} above naive {naive}",
        r.bound
    );
    for w in r.phases.windows(2) {
        assert!(w[1].bound <= w[0].bound, "{label}: phases {:?}", r.phases);
    }
    for w in r.history.windows(2) {
        assert!(
            w[1].1 <= w[0].1,
            "{label}: branch and bound increased: {:?}",
            r.history
        );
    }
}

/// One hidden layer with every hyperplane through x0: all 2^h patterns meet any box, so the exact constant is the
/// closed form max_s ‖W1ᵀ diag(s) w2_c‖₁, and branch and bound, splitting all h neurons, reaches it.
#[test]
fn through_the_centre_bounds_are_sound_and_branching_reaches_the_exact_value() {
    let (n, h, out) = (6, 5, 2);
    let (w1, w2) = (values(&[h, n], 31), values(&[out, h], 32));
    let x0: Vec<f64> = (0..n).map(|i| 0.25 * i as f64 - 0.4).collect();
    let b1: Vec<f64> = (0..h)
        .map(|r| -(0..n).map(|c| w1[r * n + c] * x0[c]).sum::<f64>())
        .collect();
    let net = Network {
        layers: vec![
            Layer::Linear {
                w: w1.clone(),
                b: b1,
                out: h,
                inp: n,
            },
            Layer::Relu,
            Layer::Linear {
                w: w2.clone(),
                b: vec![0.1, -0.2],
                out,
                inp: h,
            },
        ],
        input_shape: vec![n],
    };
    let exact = pattern_max_l1(&w1, &w2, n, h, out);
    let naive = naive_bound(&net, Norm::Inf).unwrap().bound;
    for eps in [0.0, 0.01, 0.5] {
        let r = local_lipschitz(&net, &x0, &LocalOptions::new(eps), bab(20)).unwrap();
        let rj = local_lipschitz(
            &net,
            &x0,
            &LocalOptions {
                relax: Relaxation::RecurJac,
                ..LocalOptions::new(eps)
            },
            None,
        )
        .unwrap();
        println!(
            "through-centre eps {eps}: exact {exact:?}; phases {:?}; recurjac {:?}; naive {naive}",
            r.phases
                .iter()
                .map(|p| (p.phase.as_str(), p.bound))
                .collect::<Vec<_>>(),
            rj.per_class
        );
        check(&r, &exact, naive, "through-centre");
        assert_eq!(r.unstable, h);
        assert!(r.exhausted);
        let top = exact.iter().copied().fold(0.0, f64::max);
        assert!((r.bound - top).abs() <= 1e-9 * top, "{} vs {top}", r.bound);
        assert!(rj.bound >= r.phases[1].bound * (1.0 - 1e-12));
    }
}

/// Random 16-16-16-10 networks and small boxes: relaxation, optimised slopes and branch and bound against the exact
/// constant; RecurJac is never tighter; l2 above the exact l2 constant; at eps = 0 the bound is ‖∇f(x0)‖₁.
#[test]
fn random_mlps_small_boxes() {
    let sizes = [16, 16, 16, 10];
    let mut worst_gap = 0.0f64;
    for seed in 0..4u64 {
        let net = Network::from_state_dict(&mlp(&sizes, 40 + 10 * seed), &NetworkSpec::default())
            .unwrap();
        let x0 = values(&[16], 90 + seed);
        let naive = naive_bound(&net, Norm::Inf).unwrap().bound;
        let naive2 = naive_bound(&net, Norm::Two).unwrap().bound;
        // eps = 0: the gradient norm at x0, per class.
        let jac = jacobian(&net, &x0);
        let r0 = local_lipschitz(&net, &x0, &LocalOptions::new(0.0), None).unwrap();
        for (c, row) in jac.iter().enumerate() {
            let g: f64 = row.iter().map(|v| v.abs()).sum();
            assert!(
                (r0.per_class[c] - g).abs() <= 1e-6 * g.max(1e-3),
                "{} vs {g}",
                r0.per_class[c]
            );
        }
        let e0 = exact_local(&net, &x0, 0.0, Norm::Inf, 10).unwrap();
        for (a, b) in r0.per_class.iter().zip(&e0.per_class) {
            assert!(
                (a - b).abs() <= 1e-9 * b.max(1.0),
                "eps 0: {a} vs exact {b}"
            );
        }
        for eps in [0.002, 0.01, 0.03] {
            let exact = exact_local(&net, &x0, eps, Norm::Inf, 200_000).unwrap();
            let opts = LocalOptions::new(eps);
            let r = local_lipschitz(&net, &x0, &opts, bab(5)).unwrap();
            check(
                &r,
                &exact.per_class,
                naive,
                &format!("seed {seed} eps {eps}"),
            );
            let linear = local_bound(
                &net,
                &x0,
                &LocalOptions {
                    slopes: SlopeOpt {
                        steps: 0,
                        ..SlopeOpt::default()
                    },
                    ..opts
                },
            )
            .unwrap();
            let rj = local_bound(
                &net,
                &x0,
                &LocalOptions {
                    relax: Relaxation::RecurJac,
                    slopes: SlopeOpt {
                        steps: 0,
                        ..SlopeOpt::default()
                    },
                    ..opts
                },
            )
            .unwrap();
            for (a, b) in rj.iter().zip(&linear) {
                assert!(
                    *a >= b * (1.0 - 1e-12),
                    "recurjac {a} below the linear relaxation {b}"
                );
            }
            let exact2 = exact_local(&net, &x0, eps, Norm::Two, 200_000).unwrap();
            let l2 = local_bound(
                &net,
                &x0,
                &LocalOptions {
                    norm: Norm::Two,
                    ..opts
                },
            )
            .unwrap();
            for (a, b) in l2.iter().zip(&exact2.per_class) {
                assert!(*a >= b * (1.0 - 1e-9), "l2 {a} below exact {b}");
            }
            let l2max = l2.iter().copied().fold(0.0, f64::max);
            assert!(l2max <= naive2 * (1.0 + 1e-9));
            let gap = r.bound / exact.bound - 1.0;
            worst_gap = worst_gap.max(gap);
            println!(
                "seed {seed} eps {eps}: exact {:.5} ({} regions), unstable {}, recurjac {:.5}, relaxation {:.5}, slopes {:.5}, bab {:.5} ({} domains, {:?}), l2 {l2max:.5} vs exact {:.5}, naive {naive:.1}",
                exact.bound,
                exact.regions,
                r.unstable,
                rj.iter().copied().fold(0.0, f64::max),
                r.phases[0].bound,
                r.phases[1].bound,
                r.bound,
                r.domains,
                r.exhausted,
                exact2.bound,
            );
        }
    }
    println!("largest relative gap of branch and bound to the exact constant: {worst_gap:.2e}");
}

/// A small convolutional network (densified): the bound stays above sampled gradient norms in the box and below
/// the naive bound.
#[test]
fn conv_network_local_bound() {
    use std::collections::HashMap;
    let mut t = HashMap::new();
    t.insert("0.weight".to_string(), randn(&[2, 1, 3, 3], 51));
    t.insert("0.bias".to_string(), randn(&[2], 52));
    t.insert("3.weight".to_string(), randn(&[3, 2 * 3 * 3], 53));
    t.insert("3.bias".to_string(), randn(&[3], 54));
    let spec: NetworkSpec = serde_json::from_str(
        r#"{"input_shape": [1, 5, 5], "layers": ["conv2d:stride=1,padding=0", "relu", "flatten", "linear"]}"#,
    )
    .unwrap();
    let net = Network::from_state_dict(&t, &spec).unwrap();
    let x0 = values(&[25], 55);
    let eps = 0.05;
    let r = local_lipschitz(&net, &x0, &LocalOptions::new(eps), bab(5)).unwrap();
    let exact = exact_local(&net, &x0, eps, Norm::Inf, 200_000).unwrap();
    check(
        &r,
        &exact.per_class,
        naive_bound(&net, Norm::Inf).unwrap().bound,
        "conv",
    );
    println!("conv: exact {:.5}, local {:?}", exact.bound, r.phases);
}

#[test]
fn bad_input_is_refused() {
    let net = Network::from_state_dict(&mlp(&[4, 3, 2], 0), &NetworkSpec::default()).unwrap();
    let opts = LocalOptions::new(0.1);
    assert!(local_lipschitz(&net, &[0.0; 3], &opts, None).is_err());
    assert!(local_lipschitz(&net, &[f64::NAN; 4], &opts, None).is_err());
    assert!(local_lipschitz(&net, &[0.0; 4], &LocalOptions::new(-1.0), None).is_err());
    assert!(local_lipschitz(&net, &[0.0; 4], &LocalOptions::new(f64::INFINITY), None).is_err());
    let maxmin = Network {
        layers: vec![
            Layer::Linear {
                w: vec![1.0; 8],
                b: vec![0.0; 2],
                out: 2,
                inp: 4,
            },
            Layer::MaxMin,
            Layer::Linear {
                w: vec![1.0; 2],
                b: vec![0.0],
                out: 1,
                inp: 2,
            },
        ],
        input_shape: vec![4],
    };
    let err = local_lipschitz(&maxmin, &[0.0; 4], &opts, None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("MaxMin"), "{err}");
}

/// Large boxes on a 4-8-8-3 net (hundreds of activation regions): a capped branch and bound stays above the exact
/// constant and never increases; with room it closes most of the gap.
#[test]
fn large_boxes_capped_branching() {
    let net = Network::from_state_dict(&mlp(&[4, 8, 8, 3], 3), &NetworkSpec::default()).unwrap();
    let x0 = [0.1, -0.2, 0.3, 0.05];
    let naive = naive_bound(&net, Norm::Inf).unwrap().bound;
    for eps in [0.2, 1.0] {
        let exact = exact_local(&net, &x0, eps, Norm::Inf, 100_000).unwrap();
        for cap in [30, 300, 200_000] {
            let b = BabOptions {
                timeout: Duration::from_secs(20),
                max_domains: cap,
                batch: 4,
            };
            let r = local_lipschitz(&net, &x0, &LocalOptions::new(eps), Some(b)).unwrap();
            check(&r, &exact.per_class, naive, &format!("eps {eps} cap {cap}"));
            println!(
                "eps {eps} cap {cap}: exact {:.5} ({} regions), bound {:.5} after {} domains (root {:.5}, exhausted {})",
                exact.bound, exact.regions, r.bound, r.domains, r.phases[0].bound, r.exhausted
            );
            if cap == 200_000 {
                assert!(r.exhausted);
                assert!((r.bound - exact.bound).abs() <= 1e-9 * exact.bound);
            }
        }
    }
}
