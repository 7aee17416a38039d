//! muP (P42) against microsoft/mup itself (tools/reference/mup_fixture.py, PyPI mup 1.0.0): base shapes, the
//! per-tensor learning rates and weight decay of MuAdam, MuAdamW and MuSGD, and four training steps of each, in
//! float64. Then muP parameter groups with every optimizer of the suite (the transformer's base shapes are checked
//! in tests/transformer.rs).

use candle_core::{DType, Device, Tensor};
use optlab::mup::{apply_groups, infshapes, MupRule};
use optlab::nn::loss::cross_entropy;
use optlab::nn::{ModelSpec, Sequential};
use optlab::optim::{from_spec, optimizer_names};
use optlab::train::Trainer;
use serde_json::Value;

use crate::common::{fixture_tensor, max_abs_diff};

fn tensor(v: &Value) -> Tensor {
    fixture_tensor(v, DType::F64)
}

#[test]
fn mup_optimizers_match_microsoft_mup() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/mup");
    let want: Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{dir}/mlp.json")).unwrap()).unwrap();
    let spec = ModelSpec::parse(want["model"].as_str().unwrap()).unwrap();
    let model = Sequential::new(&spec, &[8], 3, 0, DType::F64).unwrap();
    let weights = std::path::Path::new(dir).join("mlp.safetensors");
    // Base shapes: the number of infinite dimensions and the multipliers of every tensor.
    for (name, s) in infshapes(&model).unwrap() {
        let w = &want["infshapes"][&name];
        assert_eq!(s.ninf() as u64, w["ninf"].as_u64().unwrap(), "{name} ninf");
        assert_eq!(s.width_mult(), w["width_mult"].as_f64().unwrap(), "{name}");
        if let Some(r) = w["fanin_fanout_mult_ratio"].as_f64() {
            assert_eq!(s.fanin_fanout_mult_ratio(), r, "{name} ratio");
        }
    }
    let batches: Vec<(Tensor, Tensor)> = want["batches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            let y: Vec<u32> = b["y"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as u32)
                .collect();
            (
                tensor(&b["x"]),
                Tensor::from_vec(y.clone(), y.len(), &Device::Cpu).unwrap(),
            )
        })
        .collect();
    for case in want["cases"].as_array().unwrap() {
        let key = case["key"].as_str().unwrap();
        model.load(&weights).unwrap();
        let mut opt = from_spec(case["spec"].as_str().unwrap()).unwrap();
        let rule = opt.mup_rule().unwrap();
        apply_groups(opt.as_mut(), &model, rule).unwrap();
        let params = model.params();
        for p in &params {
            let g = &case["groups"][&p.name];
            for k in ["lr", "weight_decay"] {
                let (ours, theirs) = (opt.hypers().get_for(p, k).unwrap(), g[k].as_f64().unwrap());
                assert!(
                    (ours - theirs).abs() <= 1e-15 * theirs.abs(),
                    "{key} {} {k}: {ours} vs {theirs}",
                    p.name
                );
            }
        }
        for (s, ((x, y), after)) in batches
            .iter()
            .zip(case["steps"].as_array().unwrap())
            .enumerate()
        {
            let loss = cross_entropy(&model.forward_mode(x, true).unwrap(), y).unwrap();
            let grads = loss.backward().unwrap();
            opt.step(&params, &grads).unwrap();
            for p in &params {
                let d = max_abs_diff(p.tensor(), &tensor(&after[&p.name]));
                assert!(d < 1e-12, "{key} step {} {}: {d:e}", s + 1, p.name);
            }
        }
    }
}

/// muP's groups with every optimizer of the suite (MuAdam's rule where no default exists): three training steps
/// run, and the hidden matrix gets the lr the rule asks for.
#[test]
fn mup_works_with_every_optimizer() {
    for name in optimizer_names() {
        let optimizer = match name {
            "chain" => "chain:scale_by_adam+scale_by_learning_rate:lr=1e-3".to_string(),
            "mfac" => "mfac:lr=1e-3,ngrads=4".to_string(),
            other => format!("{other}:lr=1e-3"),
        };
        let auto = from_spec(&optimizer).unwrap().mup_rule();
        let rule = if auto.is_ok() { "auto" } else { "adam" };
        let cfg = crate::common::cfg(&format!(
            r#"model = "mlp:hidden=32-32,param=mup,base=8"
optimizer = "{optimizer}"
mup_rule = "{rule}"
steps = 3
batch_size = 16"#
        ));
        let mut t = Trainer::new(cfg).unwrap_or_else(|e| panic!("{optimizer}: {e}"));
        let hidden = t.model().params()[2].clone();
        let lr = t.optimizer().hypers().get_for(&hidden, "lr").unwrap();
        let want = match auto.unwrap_or(MupRule::Adam) {
            MupRule::Adam => 1e-3 / 4.0,
            MupRule::Sgd => 1e-3,
        };
        let base = t.optimizer().hypers().base("lr").unwrap();
        assert!(
            (lr - want * base / 1e-3).abs() < 1e-15,
            "{optimizer}: hidden lr {lr} (base {base})"
        );
        let s = t
            .run(None, &mut [])
            .unwrap_or_else(|e| panic!("{optimizer}: {e}"));
        assert!(s.final_train_loss.is_finite(), "{optimizer}");
    }
}
