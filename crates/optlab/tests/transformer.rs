//! The `transformer:` language model against a PyTorch module of the same structure
//! (tools/reference/transformer_fixture.py) with LayerNorm, the naive BatchNorm and the official PowerNorm, in the
//! standard and the muP parametrization: state-dict names and order, two training steps (logits, loss, every
//! gradient, every buffer after the step, then plain SGD) and an eval-mode forward, also on right-padded
//! sequences (padding out of the loss and of the BatchNorm/PowerNorm statistics); for muP also microsoft/mup's
//! base shapes and MuAdam learning rates of every tensor. Also: spec errors, the
//! muP initialisation, and bit-exact resume of a PowerNorm run.

use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor};
use optlab::nn::loss::cross_entropy;
use optlab::nn::{Layer, ModelSpec, Param, Sequential};
use serde_json::Value;
use std::collections::HashMap;

/// |a − b| ≤ tol (1 + |b|) elementwise (an f32 network: rounding accumulates over the layers).
use crate::common::assert_close as close;

fn tensor(v: &Value) -> Tensor {
    crate::common::fixture_tensor(v, DType::F32)
}

fn fixture(name: &str) -> (Value, String) {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/transformer");
    let want: Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{dir}/{name}.json")).unwrap())
            .unwrap();
    (want, format!("{dir}/{name}.safetensors"))
}

/// A fixture case and optlab's model of its spec with the fixture's initial state dict loaded.
fn load_case(case: &str) -> (Value, Sequential) {
    let (want, weights) = fixture(case);
    let spec = ModelSpec::parse(want["spec"].as_str().unwrap()).unwrap();
    assert_eq!(spec.to_spec(), want["spec"].as_str().unwrap(), "{case}");
    let (vocab, ctx) = (
        want["vocab"].as_u64().unwrap() as usize,
        want["context"].as_u64().unwrap() as usize,
    );
    let model = Sequential::new(&spec, &[ctx], vocab, 0, DType::F32).unwrap();
    model.load(std::path::Path::new(&weights)).unwrap();
    (want, model)
}

/// Every parameter's gradient against `want[name]`; `want` names exactly these parameters.
fn check_grads(label: &str, params: &[&Param], grads: &GradStore, want: &Value, tol: f64) {
    assert_eq!(params.len(), want.as_object().unwrap().len(), "{label}");
    for p in params {
        close(
            &format!("{label} grad {}", p.name),
            grads.get(p.tensor()).unwrap(),
            &want[&p.name],
            tol,
        );
    }
}

/// The model's buffers named in `want` against it, to 1e-5.
fn check_buffers(label: &str, model: &Sequential, want: &Value) {
    let sd: HashMap<String, Tensor> = model.state_dict().into_iter().collect();
    for (k, v) in want.as_object().unwrap() {
        close(&format!("{label} buffer {k}"), &sd[k], v, 1e-5);
    }
}

#[test]
fn transformer_matches_pytorch() {
    for case in ["ln", "bn", "pn", "pn_mup", "ln_mup", "bn_pad", "pn_pad"] {
        let (want, model) = load_case(case);
        let names: Vec<String> = model.state_dict().into_iter().map(|(k, _)| k).collect();
        let torch_names: Vec<&str> = want["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k.as_str().unwrap())
            .collect();
        assert_eq!(names, torch_names, "{case}: state-dict names and order");
        if let Some(groups) = want["mup_adam_groups"].as_object() {
            // microsoft/mup's base shapes and MuAdam(lr=0.01, weight_decay=0.1) for every tensor.
            let shapes: HashMap<String, optlab::mup::InfShape> = optlab::mup::infshapes(&model)
                .unwrap()
                .into_iter()
                .collect();
            let mut opt = optlab::optim::from_spec("adam:lr=0.01,weight_decay=0.1").unwrap();
            optlab::mup::apply_groups(opt.as_mut(), &model, optlab::mup::MupRule::Adam).unwrap();
            for p in model.params() {
                let g = &groups[&p.name];
                let s = &shapes[&p.name];
                assert_eq!(
                    s.ninf() as u64,
                    g["ninf"].as_u64().unwrap(),
                    "{case} {}",
                    p.name
                );
                assert_eq!(
                    s.width_mult(),
                    g["width_mult"].as_f64().unwrap(),
                    "{}",
                    p.name
                );
                for k in ["lr", "weight_decay"] {
                    let (a, b) = (opt.hypers().get_for(&p, k).unwrap(), g[k].as_f64().unwrap());
                    assert!((a - b).abs() <= 1e-15, "{case} {} {k}: {a} vs {b}", p.name);
                }
            }
        }
        let lr = want["lr"].as_f64().unwrap();
        let params = model.params();
        for (s, step) in want["steps"].as_array().unwrap().iter().enumerate() {
            let label = format!("{case} step {}", s + 1);
            let ids = tensor(&step["ids"]);
            // PyTorch's ignore_index −100 marks padding; optlab's is IGNORE.
            let y: Vec<u32> = step["targets"]["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| match v.as_f64().unwrap() {
                    t if t < 0.0 => optlab::data::IGNORE,
                    t => t as u32,
                })
                .collect();
            let y = Tensor::from_vec(y, ids.dims(), &Device::Cpu).unwrap();
            let logits = model.forward_mode(&ids, true).unwrap();
            close(&format!("{label} logits"), &logits, &step["logits"], 1e-4);
            let loss = cross_entropy(&logits, &y).unwrap();
            let lv = loss.to_scalar::<f32>().unwrap() as f64;
            assert!(
                (lv - step["loss"].as_f64().unwrap()).abs() < 1e-5,
                "{label} loss {lv}"
            );
            let grads = loss.backward().unwrap();
            let refs: Vec<&Param> = params.iter().collect();
            check_grads(&label, &refs, &grads, &step["grads"], 1e-4);
            check_buffers(&label, &model, &step["buffers"]);
            for p in &params {
                let g = grads.get(p.tensor()).unwrap();
                p.var
                    .set(&(p.tensor() - (g * lr).unwrap()).unwrap())
                    .unwrap();
            }
        }
        let ev = &want["eval"];
        let out = model.forward(&tensor(&ev["ids"])).unwrap();
        close(&format!("{case} eval logits"), &out, &ev["logits"], 1e-4);
    }
}

/// Each layer alone (embedding, every block, the final norm, the head), in training mode from the initial state,
/// on the input PyTorch's model gives it: output, the gradients of a fixed random projection of it (input and
/// every parameter) and the buffers after that forward, to 1e-5.
#[test]
fn each_layer_matches_pytorch() {
    for case in ["ln", "bn", "pn", "pn_mup", "ln_mup", "bn_pad", "pn_pad"] {
        let (want, model) = load_case(case);
        let layers = want["layers"].as_array().unwrap();
        assert_eq!(layers.len(), model.layers().len(), "{case}");
        let keep = match &model.layers()[0] {
            Layer::Embed(e) => e.keep(&tensor(&layers[0]["x"])).unwrap(),
            _ => panic!("{case}: the first layer is the embedding"),
        };
        for (i, (layer, w)) in model.layers().iter().zip(layers).enumerate() {
            let label = format!("{case} layer {i} ({})", layer.kind());
            let x = tensor(&w["x"]);
            // The token ids take no gradient; every later input does.
            let xv = (i > 0).then(|| candle_core::Var::from_tensor(&x).unwrap());
            let input = xv.as_ref().map_or(x, |v| v.as_tensor().clone());
            let y = layer.forward_pass(&input, true, keep.as_deref()).unwrap();
            close(&format!("{label} output"), &y, &w["y"], 1e-5);
            let grads = (y * tensor(&w["r"]))
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            if let Some(v) = &xv {
                close(
                    &format!("{label} input grad"),
                    grads.get(v.as_tensor()).unwrap(),
                    &w["x_grad"],
                    1e-5,
                );
            }
            check_grads(&label, &layer.params(), &grads, &w["grads"], 1e-5);
            check_buffers(&label, &model, &w["buffers"]);
        }
    }
}

#[test]
fn spec_errors_and_task_checks() {
    for (bad, says) in [
        ("transformer:dim=30,heads=4", "heads=4 must divide dim=30"),
        ("transformer:layers=0", "positive"),
        ("transformer:norm=rms", "available: ln"),
        ("transformer:param=mup,base=6,heads=4", "base width 6"),
        ("transformer:param=mu", "param=mu"),
        ("cnn:param=mup", "param"),
    ] {
        let e = ModelSpec::parse(bad).unwrap_err().to_string();
        assert!(e.contains(says), "{bad}: {e}");
    }
    let m = Sequential::new(
        &ModelSpec::parse("transformer:dim=8,heads=2").unwrap(),
        &[4],
        5,
        0,
        DType::F32,
    )
    .unwrap();
    // Token ids out of the vocabulary or not integers, and sequences longer than the context.
    for (ids, says) in [
        (vec![0.0f32, 1.0, 6.0, 2.0], "token id 6"),
        (vec![0.0, 1.5, 2.0, 3.0], "token id 1.5"),
        (vec![0.0, 5.0, 2.0, 5.0], "padding"),
    ] {
        let x = Tensor::from_vec(ids, (1, 4), &Device::Cpu).unwrap();
        let e = m.forward(&x).unwrap_err().to_string();
        assert!(e.contains(says), "{e}");
    }
    let long = Tensor::zeros((1, 5), DType::F32, &Device::Cpu).unwrap();
    assert!(m.forward(&long).is_err());
    // A state dict of another width, or with a norm the model does not have: the offending tensor by name.
    let (_, ln) = fixture("ln");
    let wide = Sequential::new(
        &ModelSpec::parse("transformer:layers=2,dim=32,heads=2,mlp=2,norm=ln").unwrap(),
        &[6],
        11,
        0,
        DType::F32,
    )
    .unwrap();
    let e = wide
        .load(std::path::Path::new(&ln))
        .unwrap_err()
        .to_string();
    assert!(e.contains("'0.tok.weight' has shape [11, 16]"), "{e}");
    let (_, pn) = fixture("pn");
    let lnm = Sequential::new(
        &ModelSpec::parse("transformer:layers=2,dim=16,heads=2,mlp=2,norm=ln").unwrap(),
        &[6],
        11,
        0,
        DType::F32,
    )
    .unwrap();
    let e = lnm.load(std::path::Path::new(&pn)).unwrap_err().to_string();
    assert!(
        e.contains("unexpected keys") && e.contains("running_phi"),
        "{e}"
    );
    // A transformer needs token sequences and the charlm task; token data needs the charlm task.
    use optlab::train::{TrainConfig, Trainer};
    let lm = TrainConfig::for_task(optlab::train::Task::Charlm);
    for (cfg, says) in [
        (r#"data = "digits""#, "transformer"),
        (r#"task = "supervised""#, "--task charlm"),
        (r#"model = "mlp""#, "task=charlm"),
        (r#"task = "lm""#, "unknown task 'lm'"),
    ] {
        let e = crate::common::with(&lm, cfg)
            .and_then(Trainer::new)
            .err()
            .expect("refused")
            .to_string();
        assert!(e.contains(says), "{e}");
    }
}

/// muP's initialisation: zero readout and queries, readout multiplier 1/width_mult, biases drawn at the base
/// width's scale, attention scaled by √d_head,base/d_head; at the base width muP's attention scale is SP's.
#[test]
fn mup_initialisation() {
    let build = |spec: &str| {
        Sequential::new(&ModelSpec::parse(spec).unwrap(), &[8], 7, 3, DType::F64).unwrap()
    };
    let m = build("transformer:dim=32,heads=2,param=mup,base=8");
    let sd: HashMap<String, Tensor> = m.state_dict().into_iter().collect();
    let abs_max = |t: &Tensor| {
        t.abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f64>()
            .unwrap()
    };
    let qkv = &sd["1.attn.qkv.weight"];
    assert_eq!(abs_max(&qkv.narrow(0, 0, 32).unwrap()), 0.0, "zero queries");
    assert!(abs_max(&qkv.narrow(0, 32, 64).unwrap()) > 0.0);
    assert_eq!(abs_max(&sd["4.weight"]), 0.0, "zero readout");
    // Biases of Linear(32, ·) drawn in ±1/√8 (the base fan-in) rather than ±1/√32.
    let b = abs_max(&sd["1.attn.proj.bias"]);
    assert!(b > 1.0 / 32f64.sqrt() && b <= 1.0 / 8f64.sqrt(), "{b}");
    let mut readout = None;
    let mut scale = None;
    for l in m.layers() {
        match l {
            Layer::Readout { mult, .. } => readout = Some(*mult),
            Layer::Block(b) => scale = Some(b.attn.scale),
            _ => {}
        }
    }
    assert_eq!(readout, Some(0.25));
    assert!((scale.unwrap() - 2.0 / 16.0).abs() < 1e-15);
    let base = build("transformer:dim=8,heads=2,param=mup,base=8");
    let sp = build("transformer:dim=8,heads=2");
    let scale_of = |m: &Sequential| {
        m.layers()
            .iter()
            .find_map(|l| match l {
                Layer::Block(b) => Some(b.attn.scale),
                _ => None,
            })
            .unwrap()
    };
    assert!((scale_of(&base) - scale_of(&sp)).abs() < 1e-15);
    // An MLP under muP: the hidden layer's bias at the base scale, a zero MuReadout with multiplier 1/4.
    let mlp = Sequential::new(
        &ModelSpec::parse("mlp:hidden=64-64,param=mup,base=16").unwrap(),
        &[10],
        3,
        0,
        DType::F64,
    )
    .unwrap();
    let names: Vec<String> = mlp.params().iter().map(|p| p.name.clone()).collect();
    assert_eq!(
        names,
        ["0.weight", "0.bias", "2.weight", "2.bias", "4.weight", "4.bias"]
    );
    let sd: HashMap<String, Tensor> = mlp.state_dict().into_iter().collect();
    assert_eq!(abs_max(&sd["4.weight"]), 0.0);
    let b = abs_max(&sd["2.bias"]);
    assert!(b > 1.0 / 8.0 && b <= 0.25, "{b}");
    assert!(matches!(mlp.layers()[4], Layer::Readout { mult, .. } if mult == 0.25));
}

/// A charlm run with PowerNorm killed half-way and resumed equals the uninterrupted run bit for bit (PowerNorm's
/// φ, Γ and counter are checkpointed as buffers).
#[test]
fn charlm_powernorm_resume_is_bit_exact() {
    use optlab::train::{RunOptions, Trainer};
    let cfg = crate::common::cfg(
        r#"task = "charlm"
model = "transformer:layers=1,dim=16,heads=2,mlp=2,norm=pn,pn_warmup=3"
data = "text:context=16"
schedule = "constant"
steps = 8
batch_size = 4
eval_every = 4
val_frac = 0.002"#,
    );
    let tmp = std::env::temp_dir().join(format!("optlab-lm-resume-{}", std::process::id()));
    let (a, b) = (tmp.join("a"), tmp.join("b"));
    let _ = std::fs::remove_dir_all(&tmp);
    let full = Trainer::new(cfg.clone())
        .unwrap()
        .run(Some(&a), &mut [])
        .unwrap();
    Trainer::new(cfg)
        .unwrap()
        .run_with(
            &RunOptions {
                run_dir: Some(b.clone()),
                stop_at: Some(4),
            },
            &mut [],
        )
        .unwrap();
    let resumed = Trainer::resume(&b).unwrap().run(Some(&b), &mut []).unwrap();
    assert_eq!(full.final_train_loss, resumed.final_train_loss);
    assert!(full.val_accuracy.is_some());
    let read = |d: &std::path::Path| std::fs::read(d.join("model.safetensors")).unwrap();
    assert_eq!(read(&a), read(&b), "final weights and PowerNorm buffers");
    let _ = std::fs::remove_dir_all(&tmp);
}
