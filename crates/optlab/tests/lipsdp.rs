//! LipSDP (P14) against the published MaxMin numbers (weights from ppauli/QCs_MaxMin, converted by
//! tools/reference/lipsdp_maxmin_fixture.py), against cvxpy + Clarabel on a ReLU network, and for soundness: never
//! below sampled gradient norms, never above the product of spectral norms.

use optlab::lipschitz::lipsdp::{lipsdp_l2, Activation};
use optlab::lipschitz::naive::{naive_bound, Norm};
use optlab::lipschitz::network::{Network, NetworkSpec};
use std::path::PathBuf;

use crate::common::{jacobian, mlp};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/lipsdp")
        .join(name)
}

/// The largest l2 operator norm of sampled Jacobians (a lower bound of the true constant).
fn sampled(net: &Network, samples: usize) -> f64 {
    use faer::Mat;
    use optlab::rng::{normal, rng_for, Stream};
    let mut rng = rng_for(3, Stream::Data, 1);
    let n = net.input_dim();
    let mut best = 0.0f64;
    for _ in 0..samples {
        let x: Vec<f64> = (0..n).map(|_| 2.0 * normal(&mut rng)).collect();
        let j = jacobian(net, &x);
        let m = Mat::from_fn(j.len(), n, |a, b| j[a][b]);
        best = best.max(m.singular_values().unwrap()[0]);
    }
    best
}

#[test]
fn relu_and_maxmin_bounds_are_sound_on_random_networks() {
    for (sizes, spec) in [
        (vec![6, 10, 4], None),
        (vec![5, 8, 8, 3], None),
        (
            vec![6, 10, 10, 4],
            Some(r#"{"layers": ["linear", "maxmin", "linear", "maxmin", "linear"]}"#),
        ),
    ] {
        let spec: NetworkSpec = spec
            .map(|s| serde_json::from_str(s).unwrap())
            .unwrap_or_default();
        let net = Network::from_state_dict(&mlp(&sizes, 17), &spec).unwrap();
        let r = lipsdp_l2(&net).unwrap();
        let naive = naive_bound(&net, Norm::Two).unwrap().bound;
        let low = sampled(&net, 300);
        println!(
            "{sizes:?} {:?}: LipSDP {:.6} (solver {:.6}, {} in {} iterations, {:.3} s), naive {naive:.6}, sampled {low:.6}",
            r.activation, r.bound, r.solver_bound, r.status, r.iterations, r.seconds
        );
        assert!(
            r.bound >= low * (1.0 - 1e-9),
            "below a sampled gradient norm"
        );
        assert!(r.bound <= naive * (1.0 + 1e-6), "above naive");
        assert!(
            (r.bound - r.solver_bound).abs() <= 1e-5 * r.bound,
            "certificate far from the solver's value"
        );
        if spec.layers.is_some() {
            assert_eq!(r.activation, Activation::MaxMin);
        }
    }
}

/// The published MaxMin networks: LipSDP equals the paper's numbers to 1e-3 relative and cvxpy + Clarabel's
/// optimum to 1e-5; the ReLU network equals cvxpy + Clarabel's LipSDP-Neuron to 1e-5; all below naive.
#[test]
fn published_maxmin_networks_and_cvxpy_reference() {
    let text = std::fs::read_to_string(fixture("reference.json")).unwrap();
    let refs: serde_json::Value = serde_json::from_str(&text).unwrap();
    for (name, v) in refs.as_object().unwrap() {
        let net = Network::load(
            &fixture(&format!("{name}.safetensors")),
            Some(&fixture(&format!("{name}.json"))),
        )
        .unwrap();
        let r = lipsdp_l2(&net).unwrap();
        let cvx = v["lipsdp"].as_f64().unwrap();
        let naive = naive_bound(&net, Norm::Two).unwrap().bound;
        println!(
            "{name}: optlab {:.6} (solver {:.6}, {} iterations, {:.3} s, cones {:?}, reduced {}), cvxpy {cvx:.6}, published {}, naive {naive:.4}",
            r.bound, r.solver_bound, r.iterations, r.seconds, r.lmi_sizes, r.reduced, v["published"]
        );
        assert!(
            (r.bound - cvx).abs() <= 1e-5 * cvx,
            "{name}: {} vs cvxpy {cvx}",
            r.bound
        );
        if let Some(p) = v["published"]["lipsdp"].as_f64() {
            assert!(
                (r.bound - p).abs() <= 1e-3 * p,
                "{name}: {} vs published {p}",
                r.bound
            );
        }
        if let Some(e) = v["exact_l2"].as_f64() {
            assert!(r.bound >= e, "{name}: below the exact constant {e}");
        }
        assert!(r.bound <= naive * (1.0 + 1e-9));
    }
}
