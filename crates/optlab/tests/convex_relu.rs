//! P28: ADMM on the convex two-layer ReLU program reaches the conic solver's optimum (cvxpy + Clarabel fixtures from
//! tools/reference/convex_relu_fixture.py), and the recovered network reproduces the objective as its training loss.

use optlab::solvers::convex_relu::{solve_admm, AdmmConfig, ConvexReluProblem, TwoLayerRelu};
use serde_json::Value;

fn load(name: &str) -> (ConvexReluProblem, f64, f64) {
    let path = format!(
        "{}/tests/fixtures/convex_relu/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let v: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mat = |v: &Value| -> Vec<Vec<f64>> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|r| {
                r.as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_f64().unwrap())
                    .collect()
            })
            .collect()
    };
    let x = mat(&v["X"]);
    let p = x[0].len();
    let y: Vec<f64> = v["y"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    let masks: Vec<Vec<u8>> = mat(&v["masks"])
        .into_iter()
        .map(|m| m.into_iter().map(|b| b as u8).collect())
        .collect();
    let prob = ConvexReluProblem::new(x.concat(), y, p, masks).unwrap();
    (
        prob,
        v["beta"].as_f64().unwrap(),
        v["objective"].as_f64().unwrap(),
    )
}

#[test]
fn admm_matches_the_conic_optimum() {
    for name in ["reg_small", "reg_mid", "reg_large", "cls_pm1"] {
        let (prob, beta, optimum) = load(name);
        let t = std::time::Instant::now();
        let cfg = AdmmConfig {
            rho: std::env::var("RHO").ok().map(|v| v.parse().unwrap()),
            ..AdmmConfig::default()
        };
        let sol = solve_admm(&prob, beta, &cfg).unwrap();
        let rel = (sol.objective - optimum) / optimum;
        let net = TwoLayerRelu::from_solution(&sol);
        let loss = net.loss(&prob.x, &prob.y, prob.p, beta);
        println!(
            "{name}: ADMM {:.10} vs Clarabel {optimum:.10} (rel {rel:.2e}), {} iterations, {:.2} s, violation {:.1e}, network loss {loss:.10}, {} neurons",
            sol.objective,
            sol.iterations,
            t.elapsed().as_secs_f64(),
            sol.max_violation,
            net.alpha.len()
        );
        assert!(rel.abs() < 1e-4, "{name}: {rel}");
        assert!(
            ((loss - optimum) / optimum).abs() < 1e-4,
            "{name}: network loss {loss}"
        );
    }
}

/// The recovered network saved as a state dict loads into optlab's `mlp:hidden=H,act=relu` and predicts the same.
#[test]
fn recovered_network_loads_into_the_mlp() {
    use candle_core::{DType, Device, Tensor};
    use optlab::nn::{ModelSpec, Sequential};
    let (prob, beta, _) = load("reg_small");
    let cfg = AdmmConfig {
        max_iters: 3000,
        ..AdmmConfig::default()
    };
    let net = TwoLayerRelu::from_solution(&solve_admm(&prob, beta, &cfg).unwrap());
    let dir = std::env::temp_dir().join(format!("optlab-convex-relu-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("model.safetensors");
    optlab::tensor_io::write_safetensors(&path, &net.state_dict().unwrap(), None).unwrap();
    let d = prob.p - 1;
    let spec = ModelSpec::parse(&format!("mlp:hidden={},act=relu", net.alpha.len())).unwrap();
    let model = Sequential::new(&spec, &[d], 1, 0, DType::F32).unwrap();
    model.load(&path).unwrap();
    let feats: Vec<f32> = prob
        .x
        .chunks_exact(prob.p)
        .flat_map(|r| r[..d].iter().map(|v| *v as f32))
        .collect();
    let out: Vec<f32> = model
        .forward(&Tensor::from_vec(feats, (prob.n, d), &Device::Cpu).unwrap())
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let want = net.predict(&prob.x, prob.p);
    for (a, b) in out.iter().zip(&want) {
        assert!((*a as f64 - b).abs() < 1e-4 * (1.0 + b.abs()), "{a} vs {b}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
