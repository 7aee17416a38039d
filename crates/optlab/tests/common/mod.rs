//! Helpers shared by the tests: fixture tensors from JSON and comparisons with them, and for the Lipschitz tests random PyTorch-style MLP
//! state dicts and finite-difference Jacobians.
#![allow(dead_code)]

use candle_core::{DType, Device, Tensor};
use optlab::lipschitz::network::Network;
use optlab::rng::{normal, rng_for, Stream};
use std::collections::HashMap;

/// Normal(0, 0.5²) values of `shape` from `seed`.
pub fn randn(shape: &[usize], seed: u64) -> Tensor {
    let mut rng = rng_for(seed, Stream::Init, 0);
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|_| (0.5 * normal(&mut rng)) as f32).collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

/// An nn.Sequential(Linear, ReLU, ...) state dict with layer sizes `sizes`.
pub fn mlp(sizes: &[usize], seed: u64) -> HashMap<String, Tensor> {
    let mut t = HashMap::new();
    for (k, w) in sizes.windows(2).enumerate() {
        t.insert(
            format!("{}.weight", 2 * k),
            randn(&[w[1], w[0]], seed + k as u64),
        );
        t.insert(
            format!("{}.bias", 2 * k),
            randn(&[w[1]], seed + 100 + k as u64),
        );
    }
    t
}

/// The Jacobian of `net` at `x` by central differences (exact inside a linear region of a ReLU network).
pub fn jacobian(net: &Network, x: &[f64]) -> Vec<Vec<f64>> {
    let h = 1e-7;
    let m = net.output_dim();
    let mut jac = vec![vec![0.0; x.len()]; m];
    for j in 0..x.len() {
        let (mut a, mut b) = (x.to_vec(), x.to_vec());
        a[j] += h;
        b[j] -= h;
        let (fa, fb) = (net.forward(&a).unwrap(), net.forward(&b).unwrap());
        for i in 0..m {
            jac[i][j] = (fa[i] - fb[i]) / (2.0 * h);
        }
    }
    jac
}

/// For y = w2 · relu(w1 x + b1) with every hyperplane through the centre (all 2^h activation patterns meet any
/// box): per output c, max over patterns s of ‖w1ᵀ diag(s) w2_c‖₁ (w1 [h, n], w2 [out, h], row-major).
pub fn pattern_max_l1(w1: &[f64], w2: &[f64], n: usize, h: usize, out: usize) -> Vec<f64> {
    let mut best = vec![0.0f64; out];
    for s in 0..(1u32 << h) {
        for (c, b) in best.iter_mut().enumerate() {
            let g: f64 = (0..n)
                .map(|i| {
                    (0..h)
                        .filter(|r| s >> r & 1 == 1)
                        .map(|r| w1[r * n + i] * w2[c * h + r])
                        .sum::<f64>()
                        .abs()
                })
                .sum();
            *b = b.max(g);
        }
    }
    best
}

/// A fixture tensor `{"shape": [...], "data": [...]}` (as written by tools/reference) in `dtype`.
pub fn fixture_tensor(v: &serde_json::Value, dtype: DType) -> Tensor {
    let shape: Vec<usize> = v["shape"]
        .as_array()
        .expect("shape")
        .iter()
        .map(|s| s.as_u64().expect("dimension") as usize)
        .collect();
    let data: Vec<f64> = v["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|s| s.as_f64().expect("number"))
        .collect();
    Tensor::from_vec(data, shape, &Device::Cpu)
        .and_then(|t| t.to_dtype(dtype))
        .expect("fixture tensor")
}

/// The JSON fixture at `tests/fixtures/<rel>`.
pub fn fixture_json(rel: &str) -> serde_json::Value {
    let path = format!("{}/tests/fixtures/{rel}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).expect("fixture file"))
        .expect("fixture JSON")
}

/// A JSON array of numbers as f64.
pub fn numbers(v: &serde_json::Value) -> Vec<f64> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().expect("number"))
        .collect()
}

/// A tensor's values in f64.
pub fn values(t: &Tensor) -> Vec<f64> {
    t.flatten_all()
        .and_then(|t| t.to_dtype(DType::F64))
        .and_then(|t| t.to_vec1())
        .expect("tensor values")
}

/// The largest |a − b| over all elements, in f64.
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    let (a, b) = (values(a), values(b));
    assert_eq!(a.len(), b.len(), "sizes differ");
    a.iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

/// Elementwise |a − b| ≤ tol (1 + |b|) against a fixture tensor `b`, with the largest scaled deviation in the
/// message (the golden tests' criterion: absolute near zero, relative for large values). Shapes must agree up to
/// size-1 dimensions.
pub fn assert_close(label: &str, a: &Tensor, b: &serde_json::Value, tol: f64) {
    let want = fixture_tensor(b, DType::F64);
    // The same shape up to size-1 dimensions (PyTorch keeps PowerNorm's buffers as (1, C, 1, 1)).
    let squeezed = |d: &[usize]| d.iter().copied().filter(|&n| n != 1).collect::<Vec<_>>();
    assert_eq!(
        squeezed(a.dims()),
        squeezed(want.dims()),
        "{label}: shape {:?} vs {:?}",
        a.dims(),
        want.dims()
    );
    let worst = values(a)
        .iter()
        .zip(&values(&want))
        .map(|(x, y)| (x - y).abs() / (1.0 + y.abs()))
        .fold(0.0, f64::max);
    assert!(worst <= tol, "{label}: largest scaled deviation {worst:e}");
}

/// A run config from TOML text (the task's defaults for every key not given), as a user's run.toml.
pub fn cfg(toml: &str) -> optlab::train::TrainConfig {
    try_cfg(toml).unwrap_or_else(|e| panic!("{toml}: {e}"))
}

/// [`cfg`], or the error a user would see.
pub fn try_cfg(toml: &str) -> optlab::Result<optlab::train::TrainConfig> {
    optlab::train::TrainConfig::from_toml(toml)
}

/// `base` with the keys of `toml` replaced.
pub fn with(
    base: &optlab::train::TrainConfig,
    toml: &str,
) -> optlab::Result<optlab::train::TrainConfig> {
    let mut text = base.to_toml()?;
    let over: toml::Table = toml::from_str(toml).expect("test TOML");
    let mut merged: toml::Table = toml::from_str(&text).expect("config TOML");
    merged.extend(over);
    text = toml::to_string(&merged).expect("TOML");
    optlab::train::TrainConfig::from_toml(&text)
}

/// Element-wise |got − want| ≤ tol·(1 + |want|), lengths equal.
pub fn close(label: &str, got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "{label}");
    for (a, b) in got.iter().zip(want) {
        assert!(
            (a - b).abs() <= tol * (1.0 + b.abs()),
            "{label}: {got:?} vs {want:?}"
        );
    }
}
