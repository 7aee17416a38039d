//! Golden tests of the P01 normalization ops against the official PyTorch code (fixtures from
//! tools/reference/norm_fixtures.py): forward outputs, gradients and running statistics to 1e-5 (f32).

use candle_core::{Device, Tensor, Var};
use optlab::nn::norm::{
    batch_norm, bcn, group_norm, weight_standardize, BcnParams, ChannelStats, RunningStats,
    WsVariant,
};
use serde_json::Value;

fn tensor(v: &Value) -> Tensor {
    crate::common::fixture_tensor(v, candle_core::DType::F32)
}

fn golden() -> Value {
    let p = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/norm/golden.json"
    );
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn var(v: &Value) -> Var {
    Var::from_tensor(&tensor(v)).unwrap()
}

/// Elementwise |a − b| ≤ 1e-5 (1 + |b|), with the largest deviation in the message.
fn close(label: &str, a: &Tensor, b: &Value) {
    crate::common::assert_close(label, a, b, 1e-5)
}

fn loss(y: &Tensor, r: &Value) -> candle_core::backprop::GradStore {
    (y * tensor(r))
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap()
}

#[test]
fn weight_standardization_both_variants() {
    let g = golden();
    for (key, variant) in [
        ("var_eps", WsVariant::VarEps),
        ("std_eps", WsVariant::StdEps),
    ] {
        let c = &g["ws"][key];
        let (w, b, x) = (var(&c["weight"]), var(&c["bias"]), var(&c["x"]));
        let ws = weight_standardize(w.as_tensor(), variant).unwrap();
        close(
            &format!("{key} standardized"),
            &ws,
            &c["standardized_weight"],
        );
        let pad = c["conv"]["padding"].as_u64().unwrap_or(1) as usize;
        let y = x
            .as_tensor()
            .conv2d(&ws, pad, 1, 1, 1)
            .unwrap()
            .broadcast_add(&b.as_tensor().reshape((1, (), 1, 1)).unwrap())
            .unwrap();
        close(&format!("{key} y"), &y, &c["y"]);
        let gr = loss(&y, &c["R"]);
        close(
            &format!("{key} dx"),
            gr.get(x.as_tensor()).unwrap(),
            &c["grad_x"],
        );
        close(
            &format!("{key} dw"),
            gr.get(w.as_tensor()).unwrap(),
            &c["grad_weight"],
        );
        close(
            &format!("{key} db"),
            gr.get(b.as_tensor()).unwrap(),
            &c["grad_bias"],
        );
    }
}

#[test]
fn batch_norm_train_and_eval() {
    let g = golden();
    let c = &g["batchnorm2d"];
    for mode in ["train", "eval"] {
        let (w, b, x) = (var(&c["weight"]), var(&c["bias"]), var(&c["x"]));
        let mut stats = RunningStats::new(8, &Device::Cpu).unwrap();
        if mode == "eval" {
            stats.mean = tensor(&c["eval"]["running_mean"]);
            stats.var = tensor(&c["eval"]["running_var"]);
        }
        let y = batch_norm(
            x.as_tensor(),
            w.as_tensor(),
            b.as_tensor(),
            &mut stats,
            mode == "train",
        )
        .unwrap();
        let m = &c[mode];
        close(&format!("bn {mode} y"), &y, &m["y"]);
        let gr = loss(&y, &c["R"]);
        close(
            &format!("bn {mode} dx"),
            gr.get(x.as_tensor()).unwrap(),
            &m["grad_x"],
        );
        close(
            &format!("bn {mode} dw"),
            gr.get(w.as_tensor()).unwrap(),
            &m["grad_weight"],
        );
        close(
            &format!("bn {mode} db"),
            gr.get(b.as_tensor()).unwrap(),
            &m["grad_bias"],
        );
        if mode == "train" {
            close("bn running mean", &stats.mean, &m["running_mean"]);
            close("bn running var", &stats.var, &m["running_var"]);
        }
    }
}

#[test]
fn group_norm_matches() {
    let g = golden();
    let c = &g["groupnorm"];
    let groups = c["hparams"]["num_groups"].as_u64().unwrap() as usize;
    let (w, b, x) = (var(&c["weight"]), var(&c["bias"]), var(&c["x"]));
    let y = group_norm(x.as_tensor(), groups, w.as_tensor(), b.as_tensor()).unwrap();
    close("gn y", &y, &c["train"]["y"]);
    let gr = loss(&y, &c["R"]);
    close(
        "gn dx",
        gr.get(x.as_tensor()).unwrap(),
        &c["train"]["grad_x"],
    );
    close(
        "gn dw",
        gr.get(w.as_tensor()).unwrap(),
        &c["train"]["grad_weight"],
    );
    close(
        "gn db",
        gr.get(b.as_tensor()).unwrap(),
        &c["train"]["grad_bias"],
    );
    assert!(group_norm(x.as_tensor(), 3, w.as_tensor(), b.as_tensor()).is_err());
}

/// Runs BCN on `x` with the fixture's parameters and checks y and every gradient against `m`.
fn check_bcn(
    c: &Value,
    (x, r, m): (&Value, &Value, &Value),
    stats: &mut RunningStats,
    channel: ChannelStats,
    train: bool,
    label: &str,
) {
    let p = &c["params"];
    let (bw, bb, gw, gb, x) = (
        var(&p["bn.weight"]),
        var(&p["bn.bias"]),
        var(&p["weight"]),
        var(&p["bias"]),
        var(x),
    );
    let params = BcnParams {
        bn_weight: bw.as_tensor(),
        bn_bias: bb.as_tensor(),
        group_weight: gw.as_tensor(),
        group_bias: gb.as_tensor(),
        groups: c["hparams"]["num_groups"].as_u64().unwrap() as usize,
        channel,
    };
    let y = bcn(x.as_tensor(), &params, stats, train).unwrap();
    close(&format!("{label} y"), &y, &m["y"]);
    let gr = loss(&y, r);
    close(
        &format!("{label} dx"),
        gr.get(x.as_tensor()).unwrap(),
        &m["grad_x"],
    );
    close(
        &format!("{label} d bn.weight"),
        gr.get(bw.as_tensor()).unwrap(),
        &m["grad_bn.weight"],
    );
    close(
        &format!("{label} d bn.bias"),
        gr.get(bb.as_tensor()).unwrap(),
        &m["grad_bn.bias"],
    );
    close(
        &format!("{label} d weight"),
        gr.get(gw.as_tensor()).unwrap(),
        &m["grad_weight"],
    );
    close(
        &format!("{label} d bias"),
        gr.get(gb.as_tensor()).unwrap(),
        &m["grad_bias"],
    );
}

#[test]
fn batch_channel_normalization_train_eval_and_estimated() {
    let g = golden();
    let c = &g["bcn"];
    let mut stats = RunningStats::new(8, &Device::Cpu).unwrap();
    check_bcn(
        c,
        (&c["x"], &c["R"], &c["train"]),
        &mut stats,
        ChannelStats::Batch,
        true,
        "bcn train",
    );
    close(
        "bcn running mean",
        &stats.mean,
        &c["train"]["bn.running_mean"],
    );
    close("bcn running var", &stats.var, &c["train"]["bn.running_var"]);
    let mut stats = RunningStats::new(8, &Device::Cpu).unwrap();
    stats.mean = tensor(&c["eval"]["bn.running_mean"]);
    stats.var = tensor(&c["eval"]["bn.running_var"]);
    check_bcn(
        c,
        (&c["x"], &c["R"], &c["eval"]),
        &mut stats,
        ChannelStats::Batch,
        false,
        "bcn eval",
    );
    // Estimated statistics: three training steps, then eval with the final statistics.
    let e = &g["bcn_estimated"];
    let speed = e["hparams"]["estbn_moving_speed"].as_f64().unwrap();
    let mut stats = RunningStats::new(8, &Device::Cpu).unwrap();
    for (i, s) in e["steps"].as_array().unwrap().iter().enumerate() {
        check_bcn(
            e,
            (&s["x"], &s["R"], s),
            &mut stats,
            ChannelStats::Estimated { speed },
            true,
            &format!("estimated step {i}"),
        );
        close(
            &format!("estimated mean {i}"),
            &stats.mean,
            &s["bn.running_mean"],
        );
        close(
            &format!("estimated var {i}"),
            &stats.var,
            &s["bn.running_var"],
        );
    }
    let ev = &e["eval"];
    check_bcn(
        e,
        (&ev["x"], &ev["R"], ev),
        &mut stats,
        ChannelStats::Estimated { speed },
        false,
        "estimated eval",
    );
}

/// PowerNorm (P12) against the official MaskPowerNorm: four training calls crossing the warmup (batch ψ², then the
/// running φ), with one group and no mask and with two groups and padding; outputs, the approximate backward's
/// gradients, φ and Γ after every call; then eval.
#[test]
fn powernorm_forward_approximate_backward_and_state() {
    use candle_core::DType;
    use optlab::nn::powernorm::{PowerNorm, PowerNormConfig};
    use optlab::nn::Param;
    let g = golden();
    for key in ["g1_nomask", "g2_mask"] {
        let c = &g["powernorm"][key];
        let h = &c["hparams"];
        let cfg = PowerNormConfig {
            eps: h["eps"].as_f64().unwrap(),
            alpha_fwd: h["alpha_fwd"].as_f64().unwrap(),
            alpha_bkw: h["alpha_bkw"].as_f64().unwrap(),
            warmup: h["warmup_iters"].as_u64().unwrap(),
            groups: h["group_num"].as_u64().unwrap() as usize,
        };
        let mut pn = PowerNorm::new("", 8, cfg, DType::F32).unwrap();
        pn.weight = Param {
            name: "weight".into(),
            var: var(&c["weight"]),
        };
        pn.bias = Param {
            name: "bias".into(),
            var: var(&c["bias"]),
        };
        let mask: Option<Vec<Vec<bool>>> = c["pad_mask"].as_object().map(|_| {
            let m = tensor(&c["pad_mask"]);
            m.to_vec2::<f32>()
                .unwrap()
                .iter()
                .map(|r| r.iter().map(|v| *v != 0.0).collect())
                .collect()
        });
        for (i, call) in c["calls"].as_array().unwrap().iter().enumerate() {
            let label = format!("powernorm {key} call {}", i + 1);
            let x = var(&call["x"]);
            close(
                &format!("{label} group scaling"),
                &pn.group_scaling(x.as_tensor()).unwrap(),
                &call["group_scaled_x"],
            );
            let y = pn.forward(x.as_tensor(), mask.as_deref(), true).unwrap();
            assert_eq!(
                pn.state.lock().unwrap().iters,
                call["iter"].as_u64().unwrap()
            );
            close(&format!("{label} y"), &y, &call["y"]);
            let gr = loss(&y, &call["R"]);
            close(
                &format!("{label} dx"),
                gr.get(x.as_tensor()).unwrap(),
                &call["grad_x"],
            );
            close(
                &format!("{label} dw"),
                gr.get(pn.weight.tensor()).unwrap(),
                &call["grad_weight"],
            );
            close(
                &format!("{label} db"),
                gr.get(pn.bias.tensor()).unwrap(),
                &call["grad_bias"],
            );
            // The buffers, as saved in a state dict, with the official names and shapes.
            let buf = pn.buffers().unwrap();
            assert_eq!(buf[0].0, "running_phi");
            close(
                &format!("{label} running phi"),
                &buf[0].1,
                &call["running_phi"],
            );
            assert_eq!(buf[1].0, "ema_gz");
            close(&format!("{label} Gamma"), &buf[1].1, &call["ema_gz"]);
        }
        let ev = &c["eval"];
        let x = var(&ev["x"]);
        let iters = pn.state.lock().unwrap().iters;
        let y = pn.forward(x.as_tensor(), mask.as_deref(), false).unwrap();
        assert_eq!(
            pn.state.lock().unwrap().iters,
            iters,
            "eval leaves the state"
        );
        close(&format!("powernorm {key} eval y"), &y, &ev["y"]);
        let gr = loss(&y, &ev["R"]);
        close(
            &format!("powernorm {key} eval dx"),
            gr.get(x.as_tensor()).unwrap(),
            &ev["grad_x"],
        );
        close(
            &format!("powernorm {key} eval dw"),
            gr.get(pn.weight.tensor()).unwrap(),
            &ev["grad_weight"],
        );
    }
    let bad = PowerNormConfig {
        groups: 3,
        ..PowerNormConfig::default()
    };
    assert!(PowerNorm::new("", 8, bad, DType::F32).is_err());
}

/// The normalized CNNs: spec strings round-trip, state dicts carry PyTorch's names (buffers included), the
/// running statistics move only in training mode, and bad group counts are refused.
#[test]
fn normalized_cnn_specs_and_state_dicts() {
    use candle_core::DType;
    use optlab::nn::{ModelSpec, Sequential};
    for (spec, keys) in [
        (
            "cnn:channels=4-8,norm=bn",
            vec![
                "0.weight",
                "0.bias",
                "1.weight",
                "1.bias",
                "1.running_mean",
                "1.running_var",
                "1.num_batches_tracked",
            ],
        ),
        (
            "cnn:channels=4-8,norm=gn+ws,groups=2",
            vec!["0.weight", "0.bias", "1.weight", "1.bias", "4.weight"],
        ),
        (
            "resnet:channels=4-8,norm=bn+ws",
            vec![
                "0.conv1.weight",
                "0.n1.weight",
                "0.n1.running_mean",
                "0.n2.running_var",
                "0.shortcut.weight",
            ],
        ),
        (
            "cnn:channels=4-8,norm=bcn-est+ws,groups=2",
            vec!["1.weight", "1.bn.weight", "1.bn.running_var"],
        ),
        (
            "cnn:channels=4-8,norm=bcn+ws,groups=2",
            vec![
                "1.weight",
                "1.bias",
                "1.bn.weight",
                "1.bn.bias",
                "1.bn.running_mean",
                "1.bn.running_var",
            ],
        ),
    ] {
        let m = ModelSpec::parse(spec).unwrap();
        assert_eq!(m.to_spec(), spec);
        let model = Sequential::new(&m, &[1, 8, 8], 10, 0, DType::F32).unwrap();
        let sd: Vec<String> = model.state_dict().into_iter().map(|(k, _)| k).collect();
        for k in keys {
            assert!(sd.contains(&k.to_string()), "{spec}: no {k} in {sd:?}");
        }
        // Eval mode leaves the running statistics alone; training mode moves them.
        let x = Tensor::randn(0f32, 1.0, (3, 1, 8, 8), &Device::Cpu).unwrap();
        let before = model.state_dict();
        model.forward(&x).unwrap();
        let same = model.state_dict();
        model.forward_mode(&x, true).unwrap();
        let after = model.state_dict();
        let differs = |a: &[(String, Tensor)], b: &[(String, Tensor)]| {
            a.iter().zip(b).any(|((_, x), (_, y))| {
                x.to_dtype(DType::F64)
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f64>()
                    .unwrap()
                    != y.to_dtype(DType::F64)
                        .unwrap()
                        .flatten_all()
                        .unwrap()
                        .to_vec1::<f64>()
                        .unwrap()
            })
        };
        assert!(!differs(&before, &same), "{spec}: eval changed the state");
        assert_eq!(differs(&before, &after), !spec.contains("gn"), "{spec}");
        // A state dict loads back (buffers included); a missing buffer is refused.
        let mut map: std::collections::HashMap<String, Tensor> = after.into_iter().collect();
        model.load_state_dict(&map).unwrap();
        if spec.contains("bn") {
            map.retain(|k, _| !k.ends_with("running_var"));
            assert!(model
                .load_state_dict(&map)
                .unwrap_err()
                .to_string()
                .contains("running_var"));
        }
    }
    for bad in [
        "cnn:channels=4-8,norm=gn,groups=3",
        "cnn:channels=4-6,norm=bcn",
        "cnn:channels=4,norm=ln",
    ] {
        assert!(ModelSpec::parse(bad).is_err(), "{bad}");
    }
}

/// The whole `resnet:` model against a PyTorch module of the same structure (tools/reference/resnet_fixture.py):
/// the PyTorch state dict loads by name, and the eval-mode and train-mode outputs and the running statistics after
/// a train-mode forward agree.
#[test]
fn resnet_matches_pytorch() {
    use candle_core::DType;
    use optlab::nn::{ModelSpec, Sequential};
    for kind in ["bn_ws", "gn_ws"] {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/resnet");
        let want: Value =
            serde_json::from_str(&std::fs::read_to_string(format!("{dir}/{kind}.json")).unwrap())
                .unwrap();
        let spec = ModelSpec::parse(want["spec"].as_str().unwrap()).unwrap();
        let model = Sequential::new(&spec, &[1, 8, 8], 10, 0, DType::F32).unwrap();
        let names: Vec<String> = model.state_dict().into_iter().map(|(k, _)| k).collect();
        let torch_names: Vec<String> = want["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k.as_str().unwrap().to_string())
            .collect();
        assert_eq!(names, torch_names, "{kind}: state-dict names and order");
        model
            .load(std::path::Path::new(&format!("{dir}/{kind}.safetensors")))
            .unwrap();
        let x = tensor(&want["x"]);
        // A whole network in f32: rounding accumulates over the layers, so 1e-4 here (each layer is held to
        // 1e-5 above).
        let (eval, train) = (
            model.forward(&x).unwrap(),
            model.forward_mode(&x, true).unwrap(),
        );
        crate::common::assert_close(&format!("{kind} eval"), &eval, &want["y_eval"], 1e-4);
        crate::common::assert_close(&format!("{kind} train"), &train, &want["y_train"], 1e-4);
        let sd: std::collections::HashMap<String, Tensor> =
            model.state_dict().into_iter().collect();
        for (k, v) in want["running_after_train"].as_object().unwrap() {
            close(&format!("{kind} {k}"), &sd[k], v);
        }
    }
}
