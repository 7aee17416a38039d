//! PyTorch interoperability: state dicts saved by PyTorch (`tools/reference/state_dict_fixture.py`, torch
//! 2.15) load into optlab models and give PyTorch's outputs; optlab's saved files carry the same names, shapes
//! and values (and load back in PyTorch with `state_dict_fixture.py --check`).

use candle_core::DType;
use optlab::nn::{ModelSpec, Sequential};
use optlab::tensor_io::read_safetensors;
use std::path::Path;

fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn max_abs_diff(a: &candle_core::Tensor, b: &candle_core::Tensor) -> f32 {
    a.sub(b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

fn round_trip(file: &str, spec: &str, input: &[usize], outputs: usize) {
    let path = fixture(file);
    let model = Sequential::new(
        &ModelSpec::parse(spec).unwrap(),
        input,
        outputs,
        99,
        DType::F32,
    )
    .unwrap();
    model.load(&path).unwrap();
    let t = read_safetensors(&path).unwrap();
    let out = model.forward(&t["__input"]).unwrap();
    let d = max_abs_diff(&out, &t["__output"]);
    assert!(d < 1e-5, "{file}: forward differs from PyTorch by {d}");

    // Save, reload into a fresh model, compare every tensor bit for bit.
    let dir = std::env::temp_dir().join(format!("optlab-rt-{}-{file}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let saved = dir.join("model.safetensors");
    model.save(&saved).unwrap();
    let back = read_safetensors(&saved).unwrap();
    for (name, _) in model.state_dict() {
        assert_eq!(back[&name].dims(), t[&name].dims(), "{name}");
        assert_eq!(max_abs_diff(&back[&name], &t[&name]), 0.0, "{name}");
        assert_eq!(back[&name].dtype(), DType::F32);
    }
    assert_eq!(
        back.len(),
        model.state_dict().len(),
        "only state-dict keys are saved"
    );
    let fresh = Sequential::new(
        &ModelSpec::parse(spec).unwrap(),
        input,
        outputs,
        1,
        DType::F32,
    )
    .unwrap();
    fresh.load(&saved).unwrap();
    assert_eq!(
        max_abs_diff(&fresh.forward(&t["__input"]).unwrap(), &out),
        0.0
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn mlp_state_dict_round_trip() {
    round_trip(
        "torch_mlp.safetensors",
        "mlp:hidden=32-16,act=relu-tanh",
        &[64],
        10,
    );
}

#[test]
fn cnn_state_dict_round_trip() {
    round_trip("torch_cnn.safetensors", "cnn:channels=8-16", &[1, 8, 8], 10);
}

#[test]
fn f64_model_loads_f32_weights() {
    let model = Sequential::new(
        &ModelSpec::parse("mlp:hidden=32-16,act=relu-tanh").unwrap(),
        &[64],
        10,
        0,
        DType::F64,
    )
    .unwrap();
    model.load(&fixture("torch_mlp.safetensors")).unwrap();
    let t = read_safetensors(&fixture("torch_mlp.safetensors")).unwrap();
    let out = model
        .forward(&t["__input"].to_dtype(DType::F64).unwrap())
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap();
    assert!(max_abs_diff(&out, &t["__output"]) < 1e-5);
}

#[test]
fn mismatched_state_dicts_are_clear_errors() {
    let wrong_width = Sequential::new(
        &ModelSpec::parse("mlp:hidden=33-16").unwrap(),
        &[64],
        10,
        0,
        DType::F32,
    )
    .unwrap();
    let e = wrong_width
        .load(&fixture("torch_mlp.safetensors"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("torch_mlp.safetensors")
            && e.contains("'0.weight' has shape [32, 64] in the file but [33, 64]"),
        "{e}"
    );
    let wrong_depth = Sequential::new(
        &ModelSpec::parse("mlp:hidden=32").unwrap(),
        &[64],
        10,
        0,
        DType::F32,
    )
    .unwrap();
    let e = wrong_depth
        .load(&fixture("torch_mlp.safetensors"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("unexpected keys"), "{e}");
    let cnn = Sequential::new(&ModelSpec::parse("cnn").unwrap(), &[64], 10, 0, DType::F32).unwrap();
    assert!(cnn.load(&fixture("torch_mlp.safetensors")).is_err());
}
