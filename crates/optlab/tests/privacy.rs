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
use optlab::nn::loss::cross_entropy;
use optlab::nn::{ModelSpec, Sequential};
use optlab::privacy::per_sample;

/// The summed cross-entropy (PyTorch's `reduction="sum"`, padding ignored) of a batch.
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
        for i in 0..b {
            let xi = x.narrow(0, i, 1).unwrap();
            let yi = y.narrow(0, i, 1).unwrap();
            let gi = summed_ce(&model.forward_mode(&xi, true).unwrap(), &yi)
                .backward()
                .unwrap();
            for ((name, g), p) in ps.iter().zip(&params) {
                let want = gi.get(p.tensor()).unwrap();
                let got = g.get(i).unwrap();
                let err = (got - want)
                    .unwrap()
                    .abs()
                    .unwrap()
                    .max_all()
                    .unwrap()
                    .to_scalar::<f64>()
                    .unwrap();
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
