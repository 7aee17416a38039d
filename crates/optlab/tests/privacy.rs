//! optlab::privacy against opacus 1.6.0 (`fixtures/privacy/`, made by `tools/reference/privacy_fixtures.py`).

use optlab::privacy::rdp::{noise_multiplier, RdpAccountant};
use serde_json::Value;

fn fixture(name: &str) -> Value {
    let path = format!(
        "{}/tests/fixtures/privacy/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("json")
}

/// Every (q, σ, steps, δ) case: ε to 1e-9 relative and the same best order.
#[test]
fn accountant_matches_opacus() {
    let doc = fixture("accountant.json");
    let cases = doc["epsilon"].as_array().unwrap();
    assert!(cases.len() >= 21);
    for c in cases {
        let f = |k: &str| c[k].as_f64().unwrap();
        let mut acc = RdpAccountant::new();
        acc.compose(f("sigma"), f("q"), c["steps"].as_u64().unwrap())
            .unwrap();
        let s = acc.epsilon(f("delta")).unwrap();
        let rel = (s.epsilon - f("epsilon")).abs() / f("epsilon").abs();
        assert!(rel < 1e-9, "{c}: optlab {} (rel {rel:e})", s.epsilon);
        assert_eq!(s.order, f("order"), "{c}");
    }
}

/// Noise calibration from a target ε: the same bisection gives the same σ, to the last bit.
#[test]
fn noise_calibration_matches_opacus() {
    let doc = fixture("accountant.json");
    for c in doc["noise"].as_array().unwrap() {
        let f = |k: &str| c[k].as_f64().unwrap();
        let s = noise_multiplier(
            f("epsilon"),
            f("delta"),
            f("q"),
            c["steps"].as_u64().unwrap(),
            0.01,
        )
        .unwrap();
        assert_eq!(s, f("sigma"), "{c}");
    }
}

use candle_core::{DType, Device, Tensor};
use optlab::nn::loss::{cross_entropy, mse};
use optlab::nn::{ModelSpec, Sequential};
use optlab::privacy::per_sample;

/// The summed cross-entropy (PyTorch's `reduction="sum"`, padding ignored) of a batch.
/// max |a − b| over all elements, in f64.
fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_dtype(candle_core::DType::F64)
        .unwrap()
        .to_scalar::<f64>()
        .unwrap()
}

fn summed_ce(out: &Tensor, y: &Tensor) -> Tensor {
    let kept = y
        .flatten_all()
        .unwrap()
        .to_vec1::<u32>()
        .unwrap()
        .iter()
        .filter(|&&l| l != optlab::data::IGNORE)
        .count();
    (cross_entropy(out, y).unwrap() * kept as f64).unwrap()
}

/// Per-sample gradients of an MLP, a CNN with GroupNorm and a LayerNorm transformer on padded windows equal
/// torch.func's `vmap(grad(...))` to 1e-5 (f32).
#[test]
fn per_sample_gradients_match_torch_func() {
    for case in ["mlp", "cnn", "transformer"] {
        let dir = format!("{}/tests/fixtures/privacy", env!("CARGO_MANIFEST_DIR"));
        let meta: Value = serde_json::from_str(
            &std::fs::read_to_string(format!("{dir}/persample_{case}.json")).unwrap(),
        )
        .unwrap();
        let t = optlab::tensor_io::read_safetensors(std::path::Path::new(&format!(
            "{dir}/persample_{case}.safetensors"
        )))
        .unwrap();
        let shape: Vec<usize> = meta["input_shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        let spec = ModelSpec::parse(meta["spec"].as_str().unwrap()).unwrap();
        let outputs = meta["outputs"].as_u64().unwrap() as usize;
        let model = Sequential::new(&spec, &shape, outputs, 0, DType::F32).unwrap();
        let state: std::collections::HashMap<String, Tensor> = t
            .iter()
            .filter(|(k, _)| k != &"x" && k != &"y" && !k.starts_with("ps."))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        model.load_state_dict(&state).unwrap();
        let x = t["x"].clone();
        // PyTorch's ignore_index −100 marks padding; optlab's is IGNORE.
        let y: Vec<u32> = t["y"]
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
            .iter()
            .map(|&v| {
                if v < 0.0 {
                    optlab::data::IGNORE
                } else {
                    v as u32
                }
            })
            .collect();
        let y = Tensor::from_vec(y, t["y"].dims(), &Device::Cpu).unwrap();
        let (out, tape) = per_sample::forward(&model, &x).unwrap();
        // The recorded forward pass is the plain one, to the bit.
        let plain = model.forward_mode(&x, true).unwrap();
        assert_eq!(
            out.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            plain.flatten_all().unwrap().to_vec1::<f32>().unwrap()
        );
        let grads = summed_ce(&out, &y).backward().unwrap();
        let params = model.params();
        let ps = tape.gradients(&grads, &params).unwrap();
        let norms = tape.squared_norms(&grads, &params).unwrap();
        for ((name, g), (_, n)) in ps.iter().zip(&norms) {
            let want = &t[&format!("ps.{name}")];
            assert_eq!(g.dims(), want.dims(), "{case} {name}");
            let scale = want
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
                .max(1.0);
            let err = (g - want)
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(err <= 1e-5 * scale, "{case} {name}: max error {err:e}");
            // The (ghost) squared norms are those of the materialized gradients.
            let direct: Vec<f32> = g
                .sqr()
                .unwrap()
                .flatten_from(1)
                .unwrap()
                .sum(1)
                .unwrap()
                .to_vec1()
                .unwrap();
            for (a, b) in direct.iter().zip(n.to_vec1::<f32>().unwrap()) {
                assert!(
                    (a - b).abs() <= 1e-4 * a.abs().max(1.0),
                    "{case} {name}: norm {a} vs {b}"
                );
            }
        }
    }
}

/// For every architecture with per-sample gradients (also the residual CNN, which has no torch fixture), the
/// tape's gradients equal a backward pass of each example alone (f64).
#[test]
fn per_sample_gradients_equal_one_example_at_a_time() {
    let dev = Device::Cpu;
    for (spec, shape, outputs) in [
        ("mlp:hidden=8-8,act=gelu", vec![5], 3),
        ("cnn:channels=2,norm=gn,groups=1", vec![1, 4, 4], 2),
        ("resnet:channels=4,norm=gn,groups=2", vec![1, 4, 4], 2),
        (
            "transformer:layers=1,dim=8,heads=2,mlp=2,norm=ln",
            vec![4],
            6,
        ),
    ] {
        let model = Sequential::new(
            &ModelSpec::parse(spec).unwrap(),
            &shape,
            outputs,
            1,
            DType::F64,
        )
        .unwrap();
        let b = 3;
        let (x, y) = if spec.starts_with("transformer") {
            let ids: Vec<f64> = (0..b * 4).map(|i| ((i * 7 + 3) % 6) as f64).collect();
            let lab: Vec<u32> = (0..b * 4).map(|i| ((i * 5 + 1) % 6) as u32).collect();
            (
                Tensor::from_vec(ids, (b, 4), &dev).unwrap(),
                Tensor::from_vec(lab, (b, 4), &dev).unwrap(),
            )
        } else {
            let mut dims = vec![b];
            dims.extend(&shape);
            (
                Tensor::randn(0f64, 1.0, dims, &dev).unwrap(),
                Tensor::from_vec((0..b as u32).map(|i| i % outputs as u32).collect(), b, &dev)
                    .unwrap(),
            )
        };
        let (out, tape) = per_sample::forward(&model, &x).unwrap();
        let grads = summed_ce(&out, &y).backward().unwrap();
        let params = model.params();
        let ps = tape.gradients(&grads, &params).unwrap();
        // Per-parameter weighted sums over the batch (per-layer clipping) equal Σ_b w_b G_b.
        let weights: Vec<Tensor> = (0..params.len())
            .map(|k| {
                Tensor::from_vec(
                    (0..b)
                        .map(|i| 0.3 + 0.2 * i as f64 + 0.05 * k as f64)
                        .collect::<Vec<f64>>(),
                    b,
                    &dev,
                )
                .unwrap()
            })
            .collect();
        let sums = tape.weighted_sums(&grads, &params, &weights).unwrap();
        for (((name, g), (_, got)), w) in ps.iter().zip(&sums).zip(&weights) {
            let mut shape = vec![b];
            shape.extend(std::iter::repeat_n(1, g.rank() - 1));
            let want = g
                .broadcast_mul(&w.reshape(shape).unwrap())
                .unwrap()
                .sum(0)
                .unwrap();
            let err = max_abs_diff(got, &want);
            assert!(err < 1e-10, "{spec} {name} weighted sum: {err:e}");
        }
        for i in 0..b {
            let xi = x.narrow(0, i, 1).unwrap();
            let yi = y.narrow(0, i, 1).unwrap();
            let gi = summed_ce(&model.forward_mode(&xi, true).unwrap(), &yi)
                .backward()
                .unwrap();
            for ((name, g), p) in ps.iter().zip(&params) {
                let want = gi.get(p.tensor()).unwrap();
                let got = g.get(i).unwrap();
                let err = max_abs_diff(&got, want);
                assert!(err < 1e-10, "{spec} {name} example {i}: {err:e}");
            }
        }
    }
}

/// Layers that mix samples are refused with a message naming GroupNorm.
#[test]
fn batch_norm_is_refused() {
    for spec in [
        "cnn:channels=2,norm=bn",
        "transformer:layers=1,dim=8,heads=2,norm=bn",
    ] {
        let shape = if spec.starts_with("cnn") {
            vec![1, 4, 4]
        } else {
            vec![4]
        };
        let model =
            Sequential::new(&ModelSpec::parse(spec).unwrap(), &shape, 3, 0, DType::F32).unwrap();
        let e = per_sample::check_model(&model).unwrap_err().to_string();
        assert!(
            e.contains("mixes the samples") && e.contains("GroupNorm"),
            "{e}"
        );
    }
}

use optlab::privacy::dp_sgd::{private_gradient, Clipping, DpSgdStep, ExampleLoss, PrivacySpec};
use optlab::train::{RunOptions, TrainConfig, Trainer};

fn digits_config(optimizer: &str, privacy: Option<&str>) -> TrainConfig {
    let mut c = TrainConfig {
        model: ModelSpec::parse("mlp:hidden=16").unwrap(),
        optimizer: optimizer.parse().unwrap(),
        ..Default::default()
    };
    c.options.steps = Some(12);
    c.options.epochs = None;
    c.options.batch_size = 32;
    c.options.privacy = privacy.map(|p| p.parse().unwrap());
    c
}

fn weights(t: &Trainer) -> Vec<Vec<u32>> {
    t.model()
        .params()
        .iter()
        .map(|p| {
            p.tensor()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
                .iter()
                .map(|v| v.to_bits())
                .collect()
        })
        .collect()
}

/// Without noise and without clipping, DP-SGD on the trainer's own batches is plain training, to the bit, for
/// plain SGD and for an adaptive optimizer.
#[test]
fn dp_sgd_without_noise_or_clipping_is_plain_training() {
    for opt in ["sgd:lr=0.3,momentum=0.9", "adamw:lr=1e-2"] {
        let mut plain = Trainer::new(digits_config(opt, None)).unwrap();
        plain.run(None, &mut []).unwrap();
        let mut private = Trainer::new(digits_config(
            opt,
            Some("noise=0,clip=inf,delta=1e-5,sampling=shuffle"),
        ))
        .unwrap();
        let s = private.run(None, &mut []).unwrap();
        assert_eq!(weights(&plain), weights(&private), "{opt}");
        assert_eq!(s.privacy.unwrap().epsilon, f64::INFINITY);
    }
}

/// With noise 0, the flat- and per-layer-clipped gradients equal a reference computed one example at a time
/// (each example's gradient by its own backward pass, clipped, averaged over the expected batch size), for a
/// cross-entropy and a mean-squared-error loss (whose example terms are a mean over the outputs), with every
/// example clipped and with only some.
#[test]
fn clipped_mean_equals_sample_by_sample_reference() {
    let dev = Device::Cpu;
    let model = Sequential::new(
        &ModelSpec::parse("cnn:channels=2,norm=gn,groups=1").unwrap(),
        &[1, 4, 4],
        3,
        2,
        DType::F64,
    )
    .unwrap();
    let b = 5;
    let x = Tensor::randn(0f64, 1.0, (b, 1, 4, 4), &dev).unwrap();
    let labels = Tensor::new(&[0u32, 1, 2, 0, 1], &dev).unwrap();
    let targets = Tensor::randn(0f64, 1.0, (b, 3), &dev).unwrap();
    let params = model.params();
    let sq = |t: &Tensor| {
        t.sqr()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f64>()
            .unwrap()
    };
    let expected_batch = 4.0;
    for kind in [ExampleLoss::CrossEntropy, ExampleLoss::Mse] {
        let y = match kind {
            ExampleLoss::CrossEntropy => &labels,
            ExampleLoss::Mse => &targets,
        };
        let per_example: Vec<Vec<Tensor>> = (0..b)
            .map(|i| {
                let out = model
                    .forward_mode(&x.narrow(0, i, 1).unwrap(), true)
                    .unwrap();
                let yi = y.narrow(0, i, 1).unwrap();
                let loss = match kind {
                    ExampleLoss::CrossEntropy => cross_entropy(&out, &yi),
                    ExampleLoss::Mse => mse(&out, &yi),
                };
                let g = loss.unwrap().backward().unwrap();
                params
                    .iter()
                    .map(|p| g.get(p.tensor()).unwrap().clone())
                    .collect()
            })
            .collect();
        let norms: Vec<f64> = per_example
            .iter()
            .map(|g| g.iter().map(sq).sum::<f64>().sqrt())
            .collect();
        let mut sorted = norms.clone();
        sorted.sort_by(f64::total_cmp);
        // Every example clipped, then a clip between the norms (some clipped, some not).
        for clip in [0.05 * sorted[0], 0.5 * (sorted[1] + sorted[2])] {
            for clipping in [Clipping::Flat, Clipping::PerLayer] {
                let per_layer = clip / (params.len() as f64).sqrt();
                let mut want: Vec<Tensor> = params
                    .iter()
                    .map(|p| p.tensor().zeros_like().unwrap())
                    .collect();
                let mut clipped = 0;
                for (g, total) in per_example.iter().zip(&norms) {
                    let mut any = false;
                    for (k, gk) in g.iter().enumerate() {
                        let f = match clipping {
                            Clipping::Flat => (clip / (total + 1e-6)).min(1.0),
                            Clipping::PerLayer => (per_layer / (sq(gk).sqrt() + 1e-6)).min(1.0),
                        };
                        any |= f < 1.0;
                        want[k] = (&want[k] + (gk * f).unwrap()).unwrap();
                    }
                    clipped += usize::from(any);
                }
                let step = DpSgdStep {
                    clip,
                    clipping,
                    noise_multiplier: 0.0,
                    expected_batch,
                };
                let mut rng = optlab::rng::rng_for(0, optlab::rng::Stream::PrivacyNoise, 0);
                let got = private_gradient(&model, &x, y, kind, &step, &mut rng).unwrap();
                assert_eq!(
                    got.clipped_fraction,
                    clipped as f64 / b as f64,
                    "{kind:?} {clipping:?} C = {clip}"
                );
                for (p, w) in params.iter().zip(&want) {
                    let w = (w / expected_batch).unwrap();
                    let g = got.grads.get(p.tensor()).unwrap();
                    let err = max_abs_diff(g, &w);
                    assert!(
                        err < 1e-12,
                        "{kind:?} {clipping:?} C = {clip} {}: {err:e}",
                        p.name
                    );
                }
            }
        }
    }
}

/// In f32, an example whose gradient is a million times the clip contributes no more than C: the clipped sum is
/// formed from the clip weights themselves, not as the plain sum minus the excess (whose rounding alone would
/// exceed C).
#[test]
fn a_huge_example_is_clipped_in_f32() {
    let dev = Device::Cpu;
    let model = Sequential::new(
        &ModelSpec::parse("mlp:hidden=8").unwrap(),
        &[4],
        3,
        5,
        DType::F32,
    )
    .unwrap();
    let mut rows: Vec<f32> = (0..16).map(|i| ((i * 5 % 7) as f32 - 3.0) / 3.0).collect();
    rows[..4].iter_mut().for_each(|v| *v *= 1e6);
    let x = Tensor::from_vec(rows, (4, 4), &dev).unwrap();
    // Example 0's label is its least likely class, so that its gradient does not vanish.
    let least = model
        .forward_mode(&x.narrow(0, 0, 1).unwrap(), true)
        .unwrap()
        .flatten_all()
        .unwrap()
        .argmin(0)
        .unwrap()
        .to_scalar::<u32>()
        .unwrap();
    let y = Tensor::new(&[least, 1, 2, 1], &dev).unwrap();
    let params = model.params();
    let (clip, expected_batch) = (1.0, 4.0);
    let mut want: Vec<Vec<f64>> = params
        .iter()
        .map(|p| vec![0.0; p.tensor().elem_count()])
        .collect();
    let mut norms = Vec::new();
    for i in 0..4 {
        let out = model
            .forward_mode(&x.narrow(0, i, 1).unwrap(), true)
            .unwrap();
        let g = cross_entropy(&out, &y.narrow(0, i, 1).unwrap())
            .unwrap()
            .backward()
            .unwrap();
        let gs: Vec<Vec<f64>> = params
            .iter()
            .map(|p| {
                g.get(p.tensor())
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_dtype(DType::F64)
                    .unwrap()
                    .to_vec1()
                    .unwrap()
            })
            .collect();
        let norm = gs.iter().flatten().map(|v| v * v).sum::<f64>().sqrt();
        let f = (clip / (norm + 1e-6)).min(1.0);
        for (w, gk) in want.iter_mut().zip(&gs) {
            w.iter_mut()
                .zip(gk)
                .for_each(|(w, g)| *w += f * g / expected_batch);
        }
        norms.push(norm);
    }
    assert!(
        norms[0] > 1e5 * clip,
        "example 0's gradient norm {}",
        norms[0]
    );
    let step = DpSgdStep {
        clip,
        clipping: Clipping::Flat,
        noise_multiplier: 0.0,
        expected_batch,
    };
    let mut rng = optlab::rng::rng_for(0, optlab::rng::Stream::PrivacyNoise, 0);
    let got = private_gradient(&model, &x, &y, ExampleLoss::CrossEntropy, &step, &mut rng).unwrap();
    for (p, w) in params.iter().zip(&want) {
        let g: Vec<f64> = got
            .grads
            .get(p.tensor())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_dtype(DType::F64)
            .unwrap()
            .to_vec1()
            .unwrap();
        let err = g
            .iter()
            .zip(w)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        assert!(err < 1e-5, "{}: {err:e}", p.name);
    }
}

/// The noise added to a gradient has standard deviation σC/E (every example clipped to a tiny norm, so the
/// gradient is almost all noise).
#[test]
fn noise_has_the_calibrated_scale() {
    let dev = Device::Cpu;
    let model = Sequential::new(
        &ModelSpec::parse("mlp:hidden=64").unwrap(),
        &[32],
        4,
        0,
        DType::F64,
    )
    .unwrap();
    let x = Tensor::randn(0f64, 1.0, (8, 32), &dev).unwrap();
    let y = Tensor::new(&[0u32, 1, 2, 3, 0, 1, 2, 3], &dev).unwrap();
    let step = DpSgdStep {
        clip: 1e-9,
        clipping: Clipping::Flat,
        noise_multiplier: 2.0,
        expected_batch: 10.0,
    };
    let mut rng = optlab::rng::rng_for(0, optlab::rng::Stream::PrivacyNoise, 0);
    let g = private_gradient(&model, &x, &y, ExampleLoss::CrossEntropy, &step, &mut rng).unwrap();
    let all: Vec<f64> = model
        .params()
        .iter()
        .flat_map(|p| {
            g.grads
                .get(p.tensor())
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f64>()
                .unwrap()
        })
        .collect();
    let n = all.len() as f64;
    let mean = all.iter().sum::<f64>() / n;
    let std = (all.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n).sqrt();
    let want = 2.0 * 1e-9 / 10.0;
    assert!(all.len() > 2000);
    assert!((std / want - 1.0).abs() < 0.05, "std {std:e} vs {want:e}");
    assert!(mean.abs() < 0.1 * want);
}

/// A private run killed after a checkpoint resumes to the same weights, the same batches and the same ε, and
/// its accountant is saved with the checkpoint.
#[test]
fn private_run_resumes_exactly() {
    let dir = std::env::temp_dir().join(format!("optlab-dp-resume-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut cfg = digits_config("sgd:lr=0.5", Some("epsilon=2,delta=1e-5,clip=1.0"));
    cfg.options.checkpoint_every = 5;
    let mut whole = Trainer::new(cfg.clone()).unwrap();
    let full = whole.run(None, &mut []).unwrap();
    let mut first = Trainer::new(cfg).unwrap();
    let opts = RunOptions {
        run_dir: Some(dir.clone()),
        stop_at: Some(7),
    };
    first.run_with(&opts, &mut []).unwrap();
    drop(first);
    let latest = std::fs::read_to_string(dir.join("checkpoints/latest.json")).unwrap();
    assert!(latest.contains("accountant"), "{latest}");
    let mut resumed = Trainer::resume(&dir).unwrap();
    assert_eq!(resumed.step(), 7);
    let s = resumed
        .run_with(
            &RunOptions {
                run_dir: Some(dir.clone()),
                stop_at: None,
            },
            &mut [],
        )
        .unwrap();
    assert_eq!(weights(&whole), weights(&resumed));
    let (a, b) = (full.privacy.unwrap(), s.privacy.unwrap());
    assert_eq!(a.epsilon, b.epsilon);
    assert!(a.epsilon <= 2.0 && a.epsilon > 1.9, "{}", a.epsilon);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Bad privacy settings are refused with one sentence each.
#[test]
fn bad_privacy_settings() {
    for (spec, want) in [
        ("epsilon=0,delta=1e-5", "epsilon must be finite and > 0"),
        ("epsilon=-1,delta=1e-5", "epsilon must be finite and > 0"),
        ("epsilon=3,delta=1", "delta must lie in (0, 1)"),
        ("epsilon=3,delta=0", "delta must lie in (0, 1)"),
        ("epsilon=3", "delta is required"),
        ("epsilon=3,noise=1,delta=1e-5", "exactly one of"),
        ("noise=1,delta=1e-5,clip=0", "clip must be > 0"),
        ("noise=1,delta=1e-5,clip=-2", "clip must be > 0"),
        ("noise=-1,delta=1e-5", "noise must be finite"),
        ("noise=1,delta=1e-5,clipping=ghost", "not flat or per_layer"),
        ("noise=1,delta=1e-5,budget=3", "unknown key"),
    ] {
        let e = spec.parse::<PrivacySpec>().unwrap_err().to_string();
        assert!(e.contains(want), "{spec}: {e}");
    }
    let p: PrivacySpec = "noise=1.1,clip=0.5,delta=1e-5,clipping=per_layer"
        .parse()
        .unwrap();
    assert_eq!(p.to_string().parse::<PrivacySpec>().unwrap(), p);
    let mut c = digits_config("sgd:lr=0.1", Some("epsilon=3,delta=1e-5"));
    c.model = ModelSpec::parse("cnn:channels=4,norm=bn").unwrap();
    let e = Trainer::new(c).err().unwrap().to_string();
    assert!(e.contains("GroupNorm"), "{e}");
    let c = digits_config("sgd:lr=0.1", Some("noise=1,delta=1e-5,clip=inf"));
    let e = Trainer::new(c).err().unwrap().to_string();
    assert!(e.contains("finite clip"), "{e}");
}
