//! P07 against its reference implementations (fixtures from tools/reference/trex_fixtures.py): the base
//! counterfactuals equal ART's ElasticNet with the official IGD_L1 / IGD_L2 settings, the Stability measure and its
//! gradient equal PyTorch's on the same noise, and T-Rex replays the official loop step for step.

use candle_core::{DType, Tensor};
use optlab::explain::ead::{elastic_net, EadConfig};
use optlab::explain::stability::stability_and_gradient;
use optlab::explain::trex::{trex_with, TrexConfig};
use optlab::explain::{predict, probabilities, Bounds};
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
        let box01 = Bounds::uniform(30, 0.0, 1.0).unwrap();
        let ours = elastic_net(&net, &x, 6, &[0; 5], &cfg, &box01).unwrap();
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
    };
    let mut early = 0;
    for (i, run) in t["runs"].as_array().unwrap().iter().enumerate() {
        let steps = noise[&format!("run{i}")].clone();
        let res = trex_with(
            &net,
            &floats(&run["start"]),
            &cfg,
            &Bounds::uniform(6, 0.0, 1.0).unwrap(),
            &mut |s| Ok(steps.get(s)?),
        )
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

/// The encoded German Credit table and an untrained MLP 16 (seed 3) on its features.
fn german_and_a_random_mlp() -> (
    optlab::data::Dataset,
    optlab::data::tabular::Encoding,
    Sequential,
) {
    let (data, enc) = optlab::data::tabular::german_credit()
        .unwrap()
        .encode()
        .unwrap();
    let spec = ModelSpec::parse("mlp:hidden=16,act=relu").unwrap();
    let net = Sequential::new(&spec, &[enc.features], 2, 3, DType::F32).unwrap();
    (data, enc, net)
}

/// On German Credit rows, the search respects the schema: immutable columns keep their values, age does not
/// fall, every feature stays in the data's range, and rounding makes each one-hot group one-hot.
#[test]
fn searches_respect_the_tables_constraints() {
    use optlab::data::tabular::Value;
    use optlab::explain::trex::trex;
    let (data, enc, net) = german_and_a_random_mlp();
    let d = enc.features;
    let rows: Vec<usize> = (0..40)
        .filter(|&i| predict(&net, &data.x[i * d..(i + 1) * d], d).unwrap()[0] == 0)
        .take(4)
        .collect();
    assert!(!rows.is_empty());
    let x: Vec<f32> = rows
        .iter()
        .flat_map(|&i| data.x[i * d..(i + 1) * d].to_vec())
        .collect();
    let bounds: Vec<Bounds> = rows
        .iter()
        .map(|&i| Bounds::for_row(&enc, &data.x[i * d..(i + 1) * d]).unwrap())
        .collect();
    let all = Bounds::stack(&bounds);
    let cfg = EadConfig {
        initial_const: 10.0,
        ..EadConfig::l1()
    };
    let cf = elastic_net(&net, &x, d, &vec![0; rows.len()], &cfg, &all).unwrap();
    let mut moved = 0;
    for (r, b) in bounds.iter().enumerate() {
        let (orig, mut c) = (&x[r * d..(r + 1) * d], cf[r * d..(r + 1) * d].to_vec());
        let s = trex(
            &net,
            &c,
            &TrexConfig {
                k: 50,
                max_steps: 5,
                step: 0.1,
                ..TrexConfig::default()
            },
            b,
            &mut optlab::rng::rng_for(0, optlab::rng::Stream::Probe, r as u64),
        )
        .unwrap();
        c = s.counterfactual;
        for j in 0..d {
            assert!(
                c[j] >= b.lo[j] - 1e-6 && c[j] <= b.hi[j] + 1e-6,
                "feature {j} left its box"
            );
            if b.frozen[j] {
                assert_eq!(c[j], orig[j], "immutable feature {j} changed");
            }
        }
        moved += usize::from(max_diff(&c, orig) > 1e-3);
        enc.round_groups(&mut c);
        let (before, after) = (enc.decode_row(orig).unwrap(), enc.decode_row(&c).unwrap());
        // Age (column 12) may only grow; personal status (8) and foreign worker (19) are fixed.
        if let (Value::Number(a0), Value::Number(a1)) = (&before[12], &after[12]) {
            assert!(a1 >= &(a0 - 1e-3), "age fell from {a0} to {a1}");
        }
        assert_eq!(before[8], after[8]);
        assert_eq!(before[19], after[19]);
        for (j, col) in enc.columns.iter().enumerate() {
            if !col.levels.is_empty() {
                let g = &c[enc.offsets[j]..enc.offsets[j] + col.levels.len()];
                assert_eq!(g.iter().filter(|v| **v == 1.0).count(), 1);
                assert_eq!(g.iter().sum::<f32>(), 1.0);
            }
        }
    }
    assert!(
        moved >= 1,
        "no search moved a point; the checks above saw nothing"
    );
}

/// The closest training point of the other class: it has the other class, keeps the immutable columns and age
/// (which may only grow), and no row of the table that does so is nearer; a row the model cannot flip within its
/// constraints (here: every point of the same class) gives none.
#[test]
fn closest_point_is_the_nearest_allowed_row_of_the_other_class() {
    use optlab::data::tabular::Value;
    use optlab::explain::table::closest_point;
    let (data, enc, net) = german_and_a_random_mlp();
    let d = enc.features;
    let labels = predict(&net, &data.x, d).unwrap();
    let row = |i: usize| &data.x[i * d..(i + 1) * d];
    let mut checked = 0;
    for i in 0..20 {
        let x = row(i);
        let Some(c) = closest_point(&net, &enc, x, &data.x).unwrap() else {
            continue;
        };
        checked += 1;
        assert_ne!(predict(&net, &c, d).unwrap()[0], labels[i]);
        let (before, after) = (enc.decode_row(x).unwrap(), enc.decode_row(&c).unwrap());
        assert_eq!(before[8], after[8]);
        assert_eq!(before[19], after[19]);
        if let (Value::Number(a0), Value::Number(a1)) = (&before[12], &after[12]) {
            assert!(a1 >= a0, "age fell from {a0} to {a1}");
        }
        let dist = |p: &[f32]| -> f32 { p.iter().zip(x).map(|(a, b)| (a - b) * (a - b)).sum() };
        for k in 0..data.x.len() / d {
            let (bk, ak) = (&before, enc.decode_row(row(k)).unwrap());
            let allowed = bk[8] == ak[8]
                && bk[19] == ak[19]
                && match (&bk[12], &ak[12]) {
                    (Value::Number(a0), Value::Number(a1)) => a1 >= a0,
                    _ => true,
                };
            if labels[k] != labels[i] && allowed {
                assert!(
                    dist(&c) <= dist(row(k)),
                    "row {k} is nearer than the answer for row {i}"
                );
            }
        }
    }
    assert!(checked >= 5, "only {checked} rows had a closest point");
    // Only points of the row's own class: none qualifies.
    let same: Vec<f32> = (0..data.x.len() / d)
        .filter(|&k| labels[k] == labels[0])
        .flat_map(|k| row(k).to_vec())
        .collect();
    assert_eq!(closest_point(&net, &enc, row(0), &same).unwrap(), None);
    assert!(closest_point(&net, &enc, row(0), &data.x[..d + 1]).is_err());
}

/// A model that approves only applicants who are not foreign workers (an immutable column): for a foreign worker
/// neither search finds a counterfactual within the constraints, and freeing the immutable columns names that one;
/// where even free columns flip nothing, nothing is named.
#[test]
fn an_immutable_column_that_must_change_is_named() {
    use optlab::explain::table::{
        blocking_immutables, closest_within, counterfactual, counterfactual_within,
    };
    let (data, enc, _) = german_and_a_random_mlp();
    let d = enc.features;
    let j = enc
        .columns
        .iter()
        .position(|c| c.name == "foreign worker")
        .unwrap();
    let level =
        |l: &str| enc.offsets[j] + enc.columns[j].levels.iter().position(|v| v == l).unwrap();
    let (yes, no) = (level("A201"), level("A202"));
    // h = relu(±(x[no] − x[yes])); logits (h₁, h₀): class 1 exactly when the row's foreign worker level is "no".
    let net = Sequential::new(
        &ModelSpec::parse("mlp:hidden=2,act=relu").unwrap(),
        &[d],
        2,
        0,
        DType::F32,
    )
    .unwrap();
    let mut w1 = vec![0f32; 2 * d];
    (w1[no], w1[yes], w1[d + no], w1[d + yes]) = (1.0, -1.0, -1.0, 1.0);
    let cpu = &candle_core::Device::Cpu;
    let tensors: HashMap<String, Tensor> = [
        ("0.weight", Tensor::from_vec(w1, (2, d), cpu)),
        ("0.bias", Tensor::zeros(2, DType::F32, cpu)),
        ("2.weight", Tensor::new(&[[0f32, 1.0], [1.0, 0.0]], cpu)),
        ("2.bias", Tensor::zeros(2, DType::F32, cpu)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.unwrap()))
    .collect();
    net.load_state_dict(&tensors).unwrap();
    let row = |i: usize| &data.x[i * d..(i + 1) * d];
    let foreign = (0..data.x.len() / d).find(|&i| row(i)[no] == 0.0).unwrap();
    let x = row(foreign);
    assert_eq!(predict(&net, x, d).unwrap()[0], 0);
    let ead = EadConfig::l2();
    assert!(!counterfactual(&net, &enc, x, &ead, None).unwrap().found);
    let named = blocking_immutables(&enc, x, |free| {
        counterfactual_within(&net, &enc, x, &ead, None, free)
    })
    .unwrap();
    assert_eq!(named, ["foreign worker"]);
    let named =
        blocking_immutables(&enc, x, |free| closest_within(&net, &enc, x, &data.x, free)).unwrap();
    assert_eq!(named, ["foreign worker"]);
    // A constant model (class 0 everywhere): nothing flips it even with the columns free, so nothing is named.
    let flat = Sequential::new(
        &ModelSpec::parse("mlp:hidden=2,act=relu").unwrap(),
        &[d],
        2,
        0,
        DType::F32,
    )
    .unwrap();
    let mut zero = tensors.clone();
    zero.insert(
        "2.weight".into(),
        Tensor::zeros((2, 2), DType::F32, cpu).unwrap(),
    );
    zero.insert("2.bias".into(), Tensor::new(&[0.5f32, 0.0], cpu).unwrap());
    flat.load_state_dict(&zero).unwrap();
    let named = blocking_immutables(&enc, x, |free| {
        counterfactual_within(&flat, &enc, x, &ead, None, free)
    })
    .unwrap();
    assert!(named.is_empty(), "{named:?}");
}
