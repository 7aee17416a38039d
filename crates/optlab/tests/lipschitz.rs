//! Lipschitz analysis: network import from PyTorch-style state dicts and sound naive bounds (P02, P14).

use candle_core::Tensor;
use optlab::lipschitz::naive::{
    conv_power_iteration, conv_spectral_bound, naive_bound, spectral_norm, Norm,
};
use optlab::lipschitz::network::{conv2d, Layer, Network, NetworkSpec};
use optlab::rng::{normal, rng_for, Stream};
use std::collections::HashMap;

use crate::common::{jacobian, mlp, pattern_max_l1, randn};

#[test]
fn naive_bounds_are_never_below_the_local_gradient_norms() {
    for (sizes, spec) in [
        (vec![16, 16, 16, 10], None),
        (vec![8, 12, 6], Some(vec!["linear", "maxmin", "linear"])),
    ] {
        let spec = NetworkSpec {
            input_shape: None,
            layers: spec.map(|l| l.iter().map(|s| s.to_string()).collect()),
        };
        let net = Network::from_state_dict(&mlp(&sizes, 1), &spec).unwrap();
        let (inf, two) = (
            naive_bound(&net, Norm::Inf).unwrap(),
            naive_bound(&net, Norm::Two).unwrap(),
        );
        let mut rng = rng_for(5, Stream::Data, 0);
        let (mut worst_inf, mut worst_two): (f64, f64) = (0.0, 0.0);
        for _ in 0..200 {
            let x: Vec<f64> = (0..sizes[0]).map(|_| 2.0 * normal(&mut rng)).collect();
            let j = jacobian(&net, &x);
            // ||J||_{inf->inf} = max row l1 norm; ||J||_2 via SVD.
            worst_inf = worst_inf.max(
                j.iter()
                    .map(|r| r.iter().map(|v| v.abs()).sum::<f64>())
                    .fold(0.0, f64::max),
            );
            let flat: Vec<f64> = j.concat();
            worst_two = worst_two.max(spectral_norm(&flat, j.len(), sizes[0]).unwrap());
        }
        println!("{sizes:?}: naive inf {:.4} >= sampled {worst_inf:.4}; naive 2 {:.4} >= sampled {worst_two:.4}", inf.bound, two.bound);
        assert!(inf.bound >= worst_inf * (1.0 - 1e-6) && two.bound >= worst_two * (1.0 - 1e-6));
    }
}

#[test]
fn conv_bound_is_sound_and_power_iteration_finds_the_operator_norm() {
    let mut t = HashMap::new();
    t.insert("0.weight".to_string(), randn(&[3, 2, 3, 3], 7));
    t.insert("0.bias".to_string(), randn(&[3], 8));
    t.insert("3.weight".to_string(), randn(&[4, 3 * 5 * 5], 9));
    let spec = NetworkSpec {
        input_shape: Some(vec![2, 5, 5]),
        layers: None,
    };
    let net = Network::from_state_dict(&t, &spec).unwrap();
    assert_eq!(
        net.layers.len(),
        4,
        "{:?}",
        net.layers.iter().map(Layer::name).collect::<Vec<_>>()
    );
    let conv = &net.layers[0];
    // The exact operator norm from the dense matrix of the conv.
    let n = 2 * 5 * 5;
    let cols: Vec<Vec<f64>> = (0..n)
        .map(|j| {
            let mut e = vec![0.0; n];
            e[j] = 1.0;
            conv2d(conv, &e, false)
        })
        .collect();
    let m = cols[0].len();
    let dense: Vec<f64> = (0..m)
        .flat_map(|i| cols.iter().map(move |c| c[i]))
        .collect();
    let exact = spectral_norm(&dense, m, n).unwrap();
    let bound = conv_spectral_bound(conv).unwrap();
    let (est, its, change) = conv_power_iteration(conv, 2000, 1e-13);
    println!("conv: exact {exact:.6}, DFT bound {bound:.6}, power iteration {est:.6} ({its} iterations, change {change:.1e})");
    assert!(bound >= exact * (1.0 - 1e-12));
    assert!(est <= exact * (1.0 + 1e-9) && est >= exact * (1.0 - 1e-6));
    // The transpose really is the adjoint: <Ax, y> = <x, A^T y>.
    let x: Vec<f64> = (0..n).map(|i| (i as f64 * 0.37).sin()).collect();
    let y: Vec<f64> = (0..m).map(|i| (i as f64 * 0.91).cos()).collect();
    let ax = conv2d(conv, &x, false);
    let aty = conv2d(conv, &y, true);
    let (l, r): (f64, f64) = (
        ax.iter().zip(&y).map(|(a, b)| a * b).sum(),
        x.iter().zip(&aty).map(|(a, b)| a * b).sum(),
    );
    assert!((l - r).abs() < 1e-10 * l.abs().max(1.0));
    let nb = naive_bound(&net, Norm::Two).unwrap();
    assert_eq!(nb.layers[0].power_iterations.map(|i| i > 0), Some(true));
}

#[test]
fn imports_refuse_what_they_cannot_analyse() {
    let mut t = mlp(&[4, 3, 2], 0);
    t.insert("1.running_mean".into(), randn(&[3], 1));
    let e = Network::from_state_dict(&t, &NetworkSpec::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("running_mean") && e.contains("unsupported"),
        "{e}"
    );
    let mut t = mlp(&[4, 3, 2], 0);
    t.insert("2.bias".into(), randn(&[5], 1));
    let e = Network::from_state_dict(&t, &NetworkSpec::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("2.bias"), "{e}");
    let mut t = mlp(&[4, 3, 2], 0);
    t.insert("2.weight".into(), randn(&[2, 5], 1));
    let e = Network::from_state_dict(&t, &NetworkSpec::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("Linear with 5 inputs"), "{e}");
    let spec = NetworkSpec {
        input_shape: None,
        layers: Some(vec!["linear".into(), "softmax".into(), "linear".into()]),
    };
    let e = Network::from_state_dict(&mlp(&[4, 3, 2], 0), &spec)
        .unwrap_err()
        .to_string();
    assert!(e.contains("unsupported layer `softmax`"), "{e}");
    let spec = NetworkSpec {
        input_shape: None,
        layers: Some(vec!["linear".into(), "maxmin".into(), "linear".into()]),
    };
    let e = Network::from_state_dict(&mlp(&[4, 3, 2], 0), &spec)
        .unwrap_err()
        .to_string();
    assert!(e.contains("even number"), "{e}");
    let mut t = HashMap::new();
    t.insert("0.weight".to_string(), randn(&[3, 2, 3, 3], 7));
    let e = Network::from_state_dict(&t, &NetworkSpec::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("input_shape"), "{e}");
    // A truncated file.
    let dir = std::env::temp_dir().join(format!("optlab-lip-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("m.safetensors");
    let tensors: Vec<(String, Tensor)> = mlp(&[4, 3, 2], 0).into_iter().collect();
    optlab::tensor_io::write_safetensors(&p, &tensors, None).unwrap();
    assert!(Network::load(&p, None).is_ok());
    let bytes = std::fs::read(&p).unwrap();
    std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
    let e = Network::load(&p, None).unwrap_err().to_string();
    assert!(e.contains("m.safetensors"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Randomized smoothing of a linear classifier, whose smoothed radius is known exactly: |w·x + b| / ‖w‖. Over 1000
/// seeds the certified radius may exceed it only with probability alpha.
#[test]
fn smoothing_radius_exceeds_the_truth_at_most_alpha_often() {
    use optlab::lipschitz::smoothing::{certify, SmoothingConfig};
    let w = [0.6, -0.8, 0.0, 0.0];
    let b = 0.1;
    let classify =
        |x: &[f64]| (w.iter().zip(x).map(|(a, c)| a * c).sum::<f64>() + b > 0.0) as usize;
    let x = [0.2, -0.1, 0.5, 0.5];
    let truth = (w.iter().zip(&x).map(|(a, c)| a * c).sum::<f64>() + b).abs(); // ‖w‖ = 1
    let alpha = 0.01;
    let (mut over, mut certified) = (0, 0);
    for seed in 0..1000 {
        let cfg = SmoothingConfig {
            sigma: 0.25,
            n0: 100,
            n: 1000,
            alpha,
            seed,
        };
        let c = certify(&classify, &x, 2, &cfg, 0).unwrap();
        if c.class.is_some() {
            certified += 1;
            assert_eq!(c.class, Some(1));
            over += (c.radius > truth) as usize;
        }
    }
    let rate = over as f64 / 1000.0;
    let slack = 3.0 * (alpha * (1.0 - alpha) / 1000.0).sqrt();
    println!("smoothing: true radius {truth:.4}; {certified}/1000 certified, radius above the truth in {over} ({rate:.4}, bound {:.4})", alpha + slack);
    assert!(certified > 900);
    assert!(rate <= alpha + slack);
    let bad = SmoothingConfig {
        sigma: -1.0,
        ..SmoothingConfig::default()
    };
    assert!(certify(&classify, &x, 2, &bad, 0).is_err());
}

/// LVM-RS on a linear classifier with odd-symmetric logits (±k(wᵀx + b)): the smoothed scores' decision boundary is
/// the hyperplane, so the true radius is |wᵀx + b|/‖w‖. Over 1000 seeds the radius exceeds it at most α (plus
/// binomial slack) often, for the default configuration and for the Bonferroni-corrected search over 14.
#[test]
fn lvm_radius_exceeds_the_truth_at_most_alpha_often() {
    use optlab::lipschitz::lvm::{certify_lvm, default_grid, LvmConfig, Selection, SimplexMap};
    let w = [0.6, -0.8, 0.0, 0.0];
    let b = 0.1;
    let logits = |x: &[f64]| {
        let s = 3.0 * (w.iter().zip(x).map(|(a, c)| a * c).sum::<f64>() + b);
        vec![-s, s]
    };
    let x = [0.2, -0.1, 0.5, 0.5];
    let truth = (w.iter().zip(&x).map(|(a, c)| a * c).sum::<f64>() + b).abs();
    let alpha: f64 = 0.01;
    let slack = 3.0 * (alpha * (1.0 - alpha) / 1000.0).sqrt();
    for (label, configs, selection) in [
        (
            "softmax t=1",
            vec![(SimplexMap::Softmax, 1.0)],
            Selection::Bonferroni,
        ),
        ("Bonferroni search", default_grid(), Selection::Bonferroni),
        (
            "replication (uncorrected)",
            default_grid(),
            Selection::Replication,
        ),
    ] {
        let (mut over, mut certified, mut total) = (0, 0, 0.0);
        for seed in 0..1000 {
            let cfg = LvmConfig {
                sigma: 0.25,
                n: 1000,
                alpha,
                seed,
                configs: configs.clone(),
                selection,
            };
            let c = certify_lvm(&logits, &x, 2, &cfg, 0).unwrap();
            if c.class.is_some() {
                certified += 1;
                assert_eq!(c.class, Some(1));
                over += usize::from(c.radius > truth);
                total += c.radius;
            }
        }
        let rate = over as f64 / 1000.0;
        println!(
            "LVM-RS {label}: true radius {truth:.4}; {certified}/1000 certified, mean radius {:.4}, above the truth in {over} ({rate:.4}, bound {:.4})",
            total / certified.max(1) as f64,
            alpha + slack
        );
        assert!(certified > 900);
        if selection == Selection::Bonferroni {
            assert!(rate <= alpha + slack);
        }
    }
    let bad = LvmConfig {
        configs: vec![(SimplexMap::Sparsemax, 0.0)],
        ..LvmConfig::default()
    };
    assert!(certify_lvm(&logits, &x, 2, &bad, 0).is_err());
    assert!(certify_lvm(&logits, &x, 1, &LvmConfig::default(), 0).is_err());
}

/// The fuzz target's body (fuzz/fuzz_targets/import_safetensors.rs) run over 20 000 deterministic mutations of
/// valid files on stable Rust: every input is imported and bounded or refused, never a panic.
#[test]
fn import_survives_mutated_files() {
    use optlab::lipschitz::network::Network;
    use rand::Rng as _;
    let mut seeds: Vec<Vec<u8>> = Vec::new();
    let dir = std::env::temp_dir().join(format!("optlab-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("m.safetensors");
    for tensors in [mlp(&[4, 3, 2], 0), {
        let mut t = HashMap::new();
        t.insert("0.weight".to_string(), randn(&[2, 1, 3, 3], 1));
        t.insert("3.weight".to_string(), randn(&[2, 2 * 4 * 4], 2));
        t
    }] {
        let v: Vec<(String, Tensor)> = tensors.into_iter().collect();
        optlab::tensor_io::write_safetensors(&p, &v, None).unwrap();
        seeds.push(std::fs::read(&p).unwrap());
    }
    std::fs::remove_dir_all(&dir).unwrap();
    let spec = NetworkSpec {
        input_shape: Some(vec![1, 4, 4]),
        layers: None,
    };
    let mut rng = rng_for(0, Stream::Data, 9);
    let mut outcomes = [0usize; 2];
    for i in 0..20_000 {
        let mut b = seeds[i % seeds.len()].clone();
        match rng.gen_range(0..4) {
            0 => {
                let n = rng.gen_range(0..b.len());
                b.truncate(n);
            }
            1 => {
                for _ in 0..rng.gen_range(1..8) {
                    let k = rng.gen_range(0..b.len());
                    b[k] ^= 1 << rng.gen_range(0..8);
                }
            }
            2 => {
                // Header bytes (shapes, offsets, dtypes) are the interesting part.
                let hdr =
                    8 + (u64::from_le_bytes(b[..8].try_into().unwrap()) as usize).min(b.len() - 8);
                let k = rng.gen_range(8..hdr);
                b[k] = b"0123456789[],:\"{}-eE"[rng.gen_range(0..20)];
            }
            _ => {
                let k = rng.gen_range(0..b.len());
                b.splice(k..k, (0..rng.gen_range(1..16)).map(|_| rng.gen::<u8>()));
            }
        }
        let s = if i % 2 == 0 {
            NetworkSpec::default()
        } else {
            spec.clone()
        };
        let r = std::panic::catch_unwind(|| {
            Network::from_bytes(&b, &s).and_then(|net| naive_bound(&net, Norm::Two).map(|_| ()))
        });
        match r {
            Ok(res) => outcomes[res.is_ok() as usize] += 1,
            Err(_) => panic!("mutation {i} panicked"),
        }
    }
    println!(
        "mutated imports: {} refused, {} accepted",
        outcomes[0], outcomes[1]
    );
    assert!(outcomes[0] > 1000);
}

/// One hidden layer whose hyperplanes all pass through x0 (b1 = −W1 x0, h ≤ n, so every pattern is a region that
/// meets any box): the exact constant is max over the 2^h patterns s of ‖W1ᵀ diag(s) w2_c‖₁.
#[test]
fn exact_mode_on_hyperplanes_through_the_centre() {
    use optlab::lipschitz::exact::exact_local;
    let (n, h, out) = (6, 5, 2);
    let w1: Vec<f64> = randn(&[h, n], 21)
        .flatten_all()
        .unwrap()
        .to_dtype(candle_core::DType::F64)
        .unwrap()
        .to_vec1()
        .unwrap();
    let w2: Vec<f64> = randn(&[out, h], 22)
        .flatten_all()
        .unwrap()
        .to_dtype(candle_core::DType::F64)
        .unwrap()
        .to_vec1()
        .unwrap();
    let x0: Vec<f64> = (0..n).map(|i| 0.3 * i as f64 - 0.5).collect();
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
                b: vec![0.0; out],
                out,
                inp: h,
            },
        ],
        input_shape: vec![n],
    };
    let want = pattern_max_l1(&w1, &w2, n, h, out);
    for eps in [0.0, 0.01, 0.5] {
        let e = exact_local(&net, &x0, eps, Norm::Inf, 100_000).unwrap();
        println!(
            "through-centre, eps {eps}: exact {:?} ({} regions, {} LPs), enumeration {want:?}",
            e.per_class, e.regions, e.lps
        );
        assert_eq!(e.regions, 32);
        for (a, b) in e.per_class.iter().zip(&want) {
            assert!((a - b).abs() <= 1e-9 * b.max(1.0), "{a} vs {b}");
        }
        assert!(e.bound <= naive_bound(&net, Norm::Inf).unwrap().bound * (1.0 + 1e-12));
    }
}

/// On a 4-8-8-3 network: the exact constant over a box is above every sampled gradient norm in the box, below the
/// naive bound, grows with the box, and at eps = 0 equals the gradient norm at x0.
#[test]
fn exact_mode_bounds_sampled_gradients() {
    use optlab::lipschitz::exact::exact_local;
    use rand::Rng as _;
    let net = Network::from_state_dict(&mlp(&[4, 8, 8, 3], 3), &NetworkSpec::default()).unwrap();
    let x0 = [0.1, -0.2, 0.3, 0.05];
    let mut prev = 0.0;
    for eps in [0.0, 0.05, 0.2, 1.0] {
        let e = exact_local(&net, &x0, eps, Norm::Inf, 100_000).unwrap();
        let mut rng = rng_for(1, Stream::Data, 3);
        let mut sampled = 0.0f64;
        for _ in 0..300 {
            let x: Vec<f64> = x0
                .iter()
                .map(|v| v + eps * (2.0 * rng.gen::<f64>() - 1.0))
                .collect();
            let j = jacobian(&net, &x);
            sampled = sampled.max(
                j.iter()
                    .map(|r| r.iter().map(|v| v.abs()).sum::<f64>())
                    .fold(0.0, f64::max),
            );
        }
        println!(
            "eps {eps}: exact {:.5} ({} regions, {} LPs), sampled {sampled:.5}",
            e.bound, e.regions, e.lps
        );
        assert!(e.bound >= sampled * (1.0 - 1e-6) && e.bound >= prev - 1e-12);
        assert!(e.bound <= naive_bound(&net, Norm::Inf).unwrap().bound);
        if eps == 0.0 {
            assert!(
                (e.bound - sampled).abs() <= 1e-6 * sampled,
                "{} vs {sampled}",
                e.bound
            );
        }
        prev = e.bound;
    }
    assert!(exact_local(&net, &x0, -1.0, Norm::Inf, 10).is_err());
    assert!(exact_local(&net, &[0.0; 3], 0.1, Norm::Inf, 10).is_err());
}
