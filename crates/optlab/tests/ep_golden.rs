//! P31 golden test against the official code (Laborieux-Axel/generalized-holo-ep@30592f5, run in 64-bit by
//! tools/reference/holo_ep_fixtures.py): the free phase, the estimates of da/dβ for N = 0 (forward mode), 1, 2, 4
//! and 5 (complex nudges) and their weight gradients (`hep_vf`), recurrent backpropagation (`rbp`, run to
//! convergence), the backpropagation baseline (`bp_grad`) and the homeostatic loss with its gradient (`homeo_loss`) for fixed probes.

use optlab::ep::grad::{bptt, neuron_estimate, rbp, weight_gradient, Estimator};
use optlab::ep::homeostasis::estimate_with;
use optlab::ep::net::{EpNet, Planar, Shape};
use serde_json::Value;

fn fixture() -> Value {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ep/holo_ep.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn lists(v: &Value) -> Vec<Vec<f64>> {
    v.as_array().unwrap().iter().map(floats).collect()
}

fn close(what: &str, got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want.iter().fold(1.0f64, |m, v| m.max(v.abs()));
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol * scale,
            "{what}[{i}]: {g} vs the official {w}"
        );
    }
}

/// The fixture's network, batch and free fixed point.
fn setup(f: &Value) -> (EpNet, Planar, Vec<usize>, Vec<Planar>) {
    let layers: Vec<usize> = f["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    let input = f["input"].as_u64().unwrap() as usize;
    let p = |name: &str| floats(&f["params"][name]);
    let net = EpNet {
        shape: Shape {
            input,
            layers: layers.clone(),
            classes: f["classes"].as_u64().unwrap() as usize,
        },
        forward: (0..layers.len())
            .map(|i| p(&format!("forward{i}.weight")))
            .collect(),
        bias: (0..layers.len())
            .map(|i| p(&format!("forward{i}.bias")))
            .collect(),
        feedback: (0..layers.len() - 1)
            .map(|i| p(&format!("feedback{i}.weight")))
            .collect(),
        readout: p("readout.weight"),
        readout_bias: p("readout.bias"),
    };
    let labels: Vec<usize> = f["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    let x = Planar::real(labels.len(), input, &floats(&f["x"]));
    let u = net
        .relax(&x, &labels, f["t1"].as_u64().unwrap() as usize)
        .unwrap();
    (net, x, labels, u)
}

#[test]
fn the_free_phase_matches_the_official_code() {
    let f = fixture();
    let (_, _, _, u) = setup(&f);
    for (l, want) in lists(&f["u_star"]).iter().enumerate() {
        close(&format!("u* layer {l}"), u[l].re(), want, 1e-12);
    }
}

#[test]
fn ep_estimates_and_their_gradients_match_the_official_code() {
    let f = fixture();
    let (net, x, labels, u) = setup(&f);
    let (beta, t2) = (
        f["beta"].as_f64().unwrap(),
        f["t2"].as_u64().unwrap() as usize,
    );
    for e in f["estimates"].as_array().unwrap() {
        let n = e["n"].as_u64().unwrap() as usize;
        let g = neuron_estimate(&net, &x, &labels, &u, Estimator::from_n(n), beta, t2).unwrap();
        for (l, want) in lists(&e["du_dbeta"]).iter().enumerate() {
            close(&format!("N = {n}: da/dbeta layer {l}"), &g[l], want, 1e-10);
        }
        let w = weight_gradient(&net, &x, &labels, &u, &g).unwrap();
        for (i, want) in lists(&e["gradient"]).iter().enumerate() {
            close(
                &format!("N = {n}: gradient {}", net.names()[i]),
                &w[i],
                want,
                1e-10,
            );
        }
    }
}

#[test]
fn recurrent_backprop_matches_the_official_code_run_to_convergence() {
    let f = fixture();
    let (net, x, labels, u) = setup(&f);
    let d = rbp(&net, &labels, &u).unwrap();
    for (l, want) in lists(&f["rbp_delta"]).iter().enumerate() {
        close(&format!("RBP delta layer {l}"), &d[l], want, 1e-8);
    }
    let w = weight_gradient(&net, &x, &labels, &u, &d).unwrap();
    for (i, want) in lists(&f["rbp_gradient"]).iter().enumerate() {
        close(
            &format!("RBP gradient {}", net.names()[i]),
            &w[i],
            want,
            1e-8,
        );
    }
}

/// The paper's backpropagation baseline: `delta_rbp` truncated at T2 to 1e-10, and `bp_grad` (backpropagation
/// through T2 steps from the free state, which is a fixed point to about 1e-10 after T1 steps) to 1e-8.
#[test]
fn the_backpropagation_baseline_matches_the_official_code() {
    let f = fixture();
    let (net, x, labels, u) = setup(&f);
    let d = bptt(&net, &labels, &u, f["t2"].as_u64().unwrap() as usize).unwrap();
    for (l, want) in lists(&f["bp_delta"]).iter().enumerate() {
        close(&format!("BP delta layer {l}"), &d[l], want, 1e-10);
    }
    let w = weight_gradient(&net, &x, &labels, &u, &d).unwrap();
    for (i, want) in lists(&f["bp_gradient"]).iter().enumerate() {
        close(
            &format!("BP gradient {}", net.names()[i]),
            &w[i],
            want,
            1e-8,
        );
    }
}

#[test]
fn the_homeostatic_loss_and_its_gradient_match_the_official_code() {
    let f = fixture();
    let (net, _, labels, _) = setup(&f);
    let h = &f["homeostasis"];
    let probes: Vec<Planar> = lists(&h["probes"])
        .iter()
        .zip(&net.shape.layers)
        .map(|(p, &n)| Planar::real(labels.len(), n, p))
        .collect();
    let (value, grads) = estimate_with(&net, &probes).unwrap();
    close(
        "homeostatic loss",
        &[value],
        &[h["value"].as_f64().unwrap()],
        1e-12,
    );
    for (i, want) in lists(&h["gradient"]).iter().enumerate() {
        close(
            &format!("homeostasis gradient {}", net.names()[i]),
            &grads[i],
            want,
            1e-12,
        );
    }
}
