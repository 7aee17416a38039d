//! P07 against its reference implementations (fixtures from tools/reference/trex_fixtures.py): the base
//! counterfactuals equal ART's ElasticNet with the official IGD_L1 / IGD_L2 settings, the Stability measure and its
//! gradient equal PyTorch's on the same noise, and T-Rex replays the official loop step for step.

use candle_core::{DType, Tensor};
use optlab::explain::ead::{elastic_net, EadConfig};
use optlab::explain::stability::stability_and_gradient;
use optlab::explain::trex::{trex_with, TrexConfig};
use optlab::explain::{predict, probabilities};
use optlab::nn::{ModelSpec, Sequential};
use std::collections::HashMap;

fn dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/explain")
}

fn fixture() -> (serde_json::Value, Sequential, HashMap<String, Tensor>) {
    let fx: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir().join("trex.json")).unwrap()).unwrap();
    let spec = ModelSpec::parse("mlp:hidden=16-16,act=relu").unwrap();
    let net = Sequential::new(&spec, &[6], 2, 0, DType::F32).unwrap();
    net.load(&dir().join("mlp.safetensors")).unwrap();
    let noise = optlab::tensor_io::read_safetensors(&dir().join("noise.safetensors")).unwrap();
    (fx, net, noise)
}

fn floats(v: &serde_json::Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn base_counterfactuals_equal_arts_elastic_net() {
    let (fx, net, _) = fixture();
    let x = floats(&fx["x"]);
    assert_eq!(predict(&net, &x, 6).unwrap(), vec![0; 5]);
    for (rule, cfg) in [("L1", EadConfig::l1()), ("L2", EadConfig::l2())] {
        let ours = elastic_net(&net, &x, 6, &[0; 5], &cfg).unwrap();
        let art = floats(&fx["ead"][rule]);
        assert!(
            max_diff(&ours, &art) < 1e-4,
            "{rule}: {ours:?}\nvs ART {art:?}"
        );
        // Every point flipped, so the test covers the search and not only the fallback.
        assert_eq!(predict(&net, &ours, 6).unwrap(), vec![1; 5], "{rule}");
    }
}

#[test]
fn stability_and_its_gradient_equal_pytorchs() {
    let (fx, net, noise) = fixture();
    let s = &fx["stability"];
    let x = floats(&s["x"]);
    let (r, g) = stability_and_gradient(&net, &x, &noise["stability"], 1).unwrap();
    assert!((r - s["value"].as_f64().unwrap()).abs() < 1e-5, "R {r}");
    assert!(max_diff(&g, &floats(&s["grad"])) < 1e-5, "grad {g:?}");
    // R <= mean m(x_i) <= 1, and the class-1 probability at x is the model's.
    let p: Vec<Vec<f32>> = probabilities(
        &net,
        &Tensor::from_slice(&x, (1, 6), &candle_core::Device::Cpu).unwrap(),
    )
    .unwrap()
    .to_vec2()
    .unwrap();
    assert!(r <= 1.0 && p[0][1] > 0.5);
}

#[test]
fn trex_replays_the_official_loop() {
    let (fx, net, noise) = fixture();
    let t = &fx["trex"];
    let cfg = TrexConfig {
        tau: t["tau"].as_f64().unwrap(),
        sigma: t["sigma"].as_f64().unwrap(),
        k: t["k"].as_u64().unwrap() as usize,
        max_steps: t["steps"].as_u64().unwrap() as usize,
        step: t["step_size"].as_f64().unwrap() as f32,
        radius: t["radius"].as_f64().unwrap() as f32,
        ..TrexConfig::default()
    };
    let mut early = 0;
    for (i, run) in t["runs"].as_array().unwrap().iter().enumerate() {
        let steps = noise[&format!("run{i}")].clone();
        let res = trex_with(&net, &floats(&run["start"]), &cfg, &mut |s| {
            Ok(steps.get(s)?)
        })
        .unwrap();
        let want: Vec<f64> = run["stability"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert_eq!(res.stability.len(), want.len(), "run {i}: steps");
        for (a, b) in res.stability.iter().zip(&want) {
            assert!((a - b).abs() < 1e-5, "run {i}: R {a} vs {b}");
        }
        assert_eq!(res.class, run["class"].as_u64().unwrap() as usize);
        let cf = floats(&run["counterfactual"]);
        assert!(max_diff(&res.counterfactual, &cf) < 1e-4, "run {i}");
        early += usize::from(res.reached && want.len() < cfg.max_steps);
    }
    assert!(
        early >= 1,
        "no run stopped at tau; the fixture covers one exit only"
    );
}
