//! Spectral normalization against PyTorch's `torch.nn.utils.spectral_norm` (fixture:
//! tools/reference/spectral_norm_fixtures.py): state-dict names and order, three training forwards (outputs and
//! the u, v buffers after each power iteration), the gradients through σ, the eval forward; the exact spectral
//! norm; folding into plain weights for the Lipschitz analysis; the per-layer projection.

use crate::common::{fixture_json, numbers};
use candle_core::{DType, Device, Tensor};
use optlab::nn::spectral::{fold_spectral_norm, project, spectral_norm_of};
use optlab::nn::{ModelSpec, Param, Sequential};
use std::collections::HashMap;

use crate::common::close;

fn flat(t: &Tensor) -> Vec<f64> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

fn model_from_fixture(fx: &serde_json::Value) -> (Sequential, HashMap<String, Tensor>) {
    let spec = ModelSpec::parse("mlp:hidden=7,act=tanh,sn=1").unwrap();
    let net = Sequential::new(&spec, &[5], 3, 0, DType::F64).unwrap();
    let mut tensors = HashMap::new();
    for e in fx["state"].as_array().unwrap() {
        let shape: Vec<usize> = e["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        let t = Tensor::from_vec(numbers(&e["values"]), shape, &Device::Cpu).unwrap();
        tensors.insert(e["name"].as_str().unwrap().to_string(), t);
    }
    net.load_state_dict(&tensors).unwrap();
    (net, tensors)
}

#[test]
fn spectral_norm_matches_pytorch() {
    let fx = fixture_json("spectral_norm.json");
    let (net, _) = model_from_fixture(&fx);
    let names: Vec<String> = net.state_dict().into_iter().map(|(k, _)| k).collect();
    let want: Vec<String> = fx["state"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, want);
    let x = Tensor::from_vec(numbers(&fx["x"]), (4, 5), &Device::Cpu).unwrap();
    let mut y = None;
    for (k, step) in fx["train"].as_array().unwrap().iter().enumerate() {
        let out = net.forward_mode(&x, true).unwrap();
        close(
            &format!("train output {k}"),
            &flat(&out),
            &numbers(&step["output"]),
            1e-10,
        );
        let state: HashMap<String, Tensor> = net.state_dict().into_iter().collect();
        for (name, values) in step["buffers"].as_object().unwrap() {
            close(
                &format!("{name} after forward {k}"),
                &flat(&state[name]),
                &numbers(values),
                1e-10,
            );
        }
        y = Some(out);
    }
    let grads = y
        .unwrap()
        .sqr()
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    for p in net.params() {
        let g = grads
            .get(p.tensor())
            .expect("every parameter has a gradient");
        close(
            &format!("grad {}", p.name),
            &flat(g),
            &numbers(&fx["grads"][&p.name]),
            1e-9,
        );
    }
    let eval = net.forward_mode(&x, false).unwrap();
    close(
        "eval output",
        &flat(&eval),
        &numbers(&fx["eval_output"]),
        1e-10,
    );
}

#[test]
fn exact_norm_folding_and_projection() {
    let fx = fixture_json("spectral_norm.json");
    let (_, tensors) = model_from_fixture(&fx);
    for (i, (name, rows, cols)) in [("0.weight_orig", 7, 5), ("2.weight_orig", 3, 7)]
        .into_iter()
        .enumerate()
    {
        let w = flat(&tensors[name]);
        let s = spectral_norm_of(&w, rows, cols);
        close(name, &[s], &[fx["exact_sigma"][i].as_f64().unwrap()], 1e-10);
    }
    // Folding: weight = weight_orig/(uᵀWv) with the stored vectors, as PyTorch's eval forward.
    let folded = fold_spectral_norm(&tensors).unwrap();
    let mut keys: Vec<&String> = folded.keys().collect();
    keys.sort();
    assert_eq!(keys, ["0.bias", "0.weight", "2.bias", "2.weight"]);
    let (w, u, v) = (
        flat(&tensors["0.weight_orig"]),
        flat(&tensors["0.weight_u"]),
        flat(&tensors["0.weight_v"]),
    );
    let sigma: f64 = (0..7)
        .map(|i| u[i] * (0..5).map(|j| w[i * 5 + j] * v[j]).sum::<f64>())
        .sum();
    let want: Vec<f64> = w.iter().map(|x| x / sigma).collect();
    close("folded weight", &flat(&folded["0.weight"]), &want, 1e-14);
    let mut broken = tensors.clone();
    broken.remove("2.weight_u");
    assert!(fold_spectral_norm(&broken)
        .unwrap_err()
        .to_string()
        .contains("weight_u"));
    // Projection: above the bound, scaled onto it; below, untouched.
    let big = Param {
        name: "a".into(),
        var: candle_core::Var::from_tensor(&tensors["0.weight_orig"]).unwrap(),
    };
    let small = Param {
        name: "b".into(),
        var: candle_core::Var::from_tensor(&(&tensors["2.weight_orig"] * 1e-3).unwrap()).unwrap(),
    };
    let before_small = flat(small.tensor());
    let norms = project(&[&big, &small], 0.5).unwrap();
    assert!(norms[0] > 0.5 && norms[1] < 0.5);
    close(
        "projected norm",
        &[spectral_norm_of(&flat(big.tensor()), 7, 5)],
        &[0.5],
        1e-10,
    );
    assert_eq!(flat(small.tensor()), before_small);
    assert!(project(&[&big], f64::NAN).is_err());
}
