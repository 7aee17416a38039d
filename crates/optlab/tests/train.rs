//! End-to-end training through the library: accuracy on digits, bit-exact resume, NaN handling.

use crate::common::{cfg, try_cfg, with};
use optlab::optim::load_state_file;
use optlab::tensor_io::read_safetensors;
use optlab::train::{
    read_metrics, Observer, Record, RunOptions, StepMetrics, TrainConfig, Trainer,
};
use optlab::Error;
use std::path::{Path, PathBuf};

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("optlab-train-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn tensors_bits(path: &Path) -> Vec<(String, Vec<u64>)> {
    let mut t: Vec<_> = read_safetensors(path)
        .unwrap()
        .into_iter()
        .map(|(k, v)| {
            let bits = v
                .flatten_all()
                .unwrap()
                .to_dtype(candle_core::DType::F64)
                .unwrap()
                .to_vec1::<f64>()
                .unwrap()
                .iter()
                .map(|x| x.to_bits())
                .collect();
            (k, bits)
        })
        .collect();
    t.sort();
    t
}

#[test]
fn digits_mlp_adamw_reaches_95_percent() {
    // The issue's check: MLP 64-128-10, AdamW lr 1e-3, 20 epochs, batch 64.
    let cfg = cfg(r#"model = "mlp:hidden=128,act=relu"
optimizer = "adamw:lr=1e-3"
epochs = 20
batch_size = 64"#);
    let s = Trainer::new(cfg).unwrap().run(None, &mut []).unwrap();
    eprintln!(
        "digits MLP AdamW: val accuracy {:?}, val loss {:?}",
        s.val_accuracy, s.val_loss
    );
    assert!(s.val_accuracy.unwrap() >= 0.95, "{s:?}");
    assert_eq!(s.steps, 460);
}

fn resume_case(optimizer: &str, dtype: &str, model: &str) {
    let cfg = cfg(&format!(
        r#"model = "{model}"
optimizer = "{optimizer}"
schedule = "cosine:warmup=5"
steps = 60
batch_size = 50
checkpoint_every = 7
eval_every = 13
clip_grad_norm = 2.0
dtype = "{dtype}""#
    ));
    let full = tmp(&format!("full-{dtype}-{}", &optimizer[..4]));
    let part = tmp(&format!("part-{dtype}-{}", &optimizer[..4]));
    Trainer::new(cfg.clone())
        .unwrap()
        .run(Some(&full), &mut [])
        .unwrap();

    // Stop at step 21 (a checkpoint), then add the log lines a killed run would have written for steps
    // 22..25 after that checkpoint: the resume must drop them and redo those steps.
    let opts = RunOptions {
        run_dir: Some(part.clone()),
        stop_at: Some(21),
    };
    Trainer::new(cfg).unwrap().run_with(&opts, &mut []).unwrap();
    assert!(!part.join("model.safetensors").exists());
    let log = part.join("metrics.jsonl");
    let mut text = std::fs::read_to_string(&log).unwrap();
    let last = text
        .lines()
        .rfind(|l| l.contains("\"train\""))
        .unwrap()
        .to_string();
    for k in 22..=25 {
        text.push_str(&last.replace("\"step\":21,", &format!("\"step\":{k},")));
        text.push('\n');
    }
    text.push_str("{\"kind\":\"tra"); // torn last line
    std::fs::write(&log, text).unwrap();
    let mut resumed = Trainer::resume(&part).unwrap();
    assert_eq!(resumed.step(), 21);
    resumed.run(Some(&part), &mut []).unwrap();

    assert_eq!(
        tensors_bits(&full.join("model.safetensors")),
        tensors_bits(&part.join("model.safetensors"))
    );
    assert_eq!(
        tensors_bits(&full.join("optimizer.safetensors")),
        tensors_bits(&part.join("optimizer.safetensors"))
    );
    // The metrics log has each step exactly once after the resume.
    let steps: Vec<u64> = read_metrics(&part.join("metrics.jsonl"))
        .unwrap()
        .iter()
        .filter_map(|r| match r {
            Record::Train(m) => Some(m.step),
            _ => None,
        })
        .collect();
    assert_eq!(steps, (1..=60).collect::<Vec<_>>());
    let model = Trainer::resume(&part).unwrap();
    let opt = load_state_file(
        &model.model().params(),
        &part.join("optimizer.safetensors"),
        &part.join("optimizer.json"),
    )
    .unwrap();
    assert_eq!(opt.state().step, 60);
    std::fs::remove_dir_all(&full).unwrap();
    std::fs::remove_dir_all(&part).unwrap();
}

#[test]
fn resume_is_bit_exact_adamw_f32() {
    resume_case(
        "adamw:lr=3e-3,weight_decay=0.01",
        "f32",
        "mlp:hidden=32,act=tanh",
    );
}

#[test]
fn resume_is_bit_exact_sgd_nesterov_f64_cnn() {
    resume_case(
        "sgd:lr=0.05,momentum=0.9,nesterov=true",
        "f64",
        "cnn:channels=4-8",
    );
}

#[test]
fn resume_is_bit_exact_with_normalization_layers() {
    // Running statistics are part of the checkpoint: BCN+WS (f32) and BatchNorm (f64).
    resume_case(
        "sgd:lr=0.05,momentum=0.9",
        "f32",
        "cnn:channels=4-8,norm=bcn+ws,groups=2",
    );
    resume_case("adamw:lr=3e-3", "f64", "cnn:channels=4-8,norm=bn");
    resume_case(
        "sgd:lr=0.05,momentum=0.9",
        "f32",
        "resnet:channels=4-8,norm=gn+ws,groups=2",
    );
}

#[derive(Default)]
struct Count {
    steps: Vec<StepMetrics>,
    evals: usize,
    checkpoints: usize,
    ended: bool,
}

impl Observer for Count {
    fn on_step(&mut self, m: &StepMetrics) {
        self.steps.push(m.clone());
    }
    fn on_eval(&mut self, _m: &optlab::train::EvalMetrics) {
        self.evals += 1;
    }
    fn on_checkpoint(&mut self, _step: u64, _dir: &Path) {
        self.checkpoints += 1;
    }
    fn on_end(&mut self, _s: &optlab::train::Summary) {
        self.ended = true;
    }
}

#[test]
fn observers_see_every_step_and_the_schedule() {
    let cfg = cfg(r#"data = "moons:n=200"
model = "mlp:hidden=16"
optimizer = "sgd:lr=0.5"
schedule = "linear:warmup=4"
steps = 20
batch_size = 32
eval_every = 5"#);
    let dir = tmp("observers");
    let mut c = Count::default();
    Trainer::new(cfg)
        .unwrap()
        .run(Some(&dir), &mut [&mut c])
        .unwrap();
    assert_eq!(c.steps.len(), 20);
    assert_eq!(c.evals, 4);
    assert_eq!(c.checkpoints, 4);
    assert!(c.ended);
    assert!((c.steps[0].lr - 0.125).abs() < 1e-12);
    assert!((c.steps[3].lr - 0.5).abs() < 1e-12);
    assert!(c.steps[19].lr.abs() < 1e-12);
    for f in [
        "config.toml",
        "metrics.jsonl",
        "summary.json",
        "model.safetensors",
        "optimizer.safetensors",
        "optimizer.json",
    ] {
        assert!(dir.join(f).exists(), "{f} missing");
    }
    // A finished directory is not silently overwritten.
    let again = Trainer::new(crate::common::cfg(
        r#"data = "moons:n=200"
steps = 2"#,
    ))
    .unwrap()
    .run(Some(&dir), &mut []);
    assert!(again
        .unwrap_err()
        .to_string()
        .contains("already holds a run"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn divergence_stops_with_a_clear_error_and_keeps_the_checkpoint() {
    // Linear least squares with a step far beyond 2/L: the iterates grow geometrically until they overflow.
    let cfg = cfg(r#"data = "linreg:n=200,dim=8"
model = "mlp:hidden=none"
optimizer = "sgd:lr=50"
steps = 2000
checkpoint_every = 1"#);
    let dir = tmp("nan");
    let e = Trainer::new(cfg)
        .unwrap()
        .run(Some(&dir), &mut [])
        .unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, Error::NonFinite(_)), "{msg}");
    assert!(
        msg.contains("became") && msg.contains("last good checkpoint"),
        "{msg}"
    );
    // The kept checkpoint loads and is finite.
    let t = Trainer::resume(&dir).unwrap();
    assert!(t.step() >= 1);
    for p in t.model().params() {
        let v: Vec<f32> = p.tensor().flatten_all().unwrap().to_vec1().unwrap();
        assert!(v.iter().all(|x| x.is_finite()));
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn invalid_configs_are_clear_errors() {
    let bad = |t: &str| {
        try_cfg(t)
            .and_then(Trainer::new)
            .map(|_| ())
            .unwrap_err()
            .to_string()
    };
    let e = bad(r#"optimizer = "adamx""#);
    assert!(
        e.contains("unknown optimizer 'adamx'") && e.contains("adamw"),
        "{e}"
    );
    let e = bad(r#"optimizer = "sgd:lr=-1""#);
    assert!(e.contains("lr=-1") && e.contains(">= 0"), "{e}");
    let e = bad(r#"optimizer = "adam:beta1=1.0""#);
    assert!(e.contains("beta1=1") && e.contains("[0, 1)"), "{e}");
    let e = bad(r#"optimizer = "sgd:nesterov=true""#);
    assert!(e.contains("nesterov"), "{e}");
    let e = bad(r#"loss = "mse""#);
    assert!(e.contains("mse"), "{e}");
    let e = bad(r#"data = "linreg"
loss = "cross_entropy""#);
    assert!(e.contains("class labels"), "{e}");
    let e = bad(r#"schedule = "cosine:warmup=100000""#);
    assert!(e.contains("warmup"), "{e}");
}

#[test]
fn regression_with_mse() {
    let cfg = cfg(r#"data = "linreg:n=400,dim=4,noise=0.01"
model = "mlp:hidden=none"
optimizer = "sgd:lr=0.1"
epochs = 30
batch_size = 32"#);
    let s = Trainer::new(cfg).unwrap().run(None, &mut []).unwrap();
    assert!(s.val_accuracy.is_none());
    assert!(s.val_loss.unwrap() < 1e-3, "{s:?}");
}

#[test]
fn gradient_accumulation_matches_the_full_batch() {
    // Micro-batches weighted by size give the full batch's mean gradient: same trajectory up to rounding.
    let run = |accumulate: usize| {
        let cfg = cfg(&format!(
            r#"data = "moons:n=300"
model = "mlp:hidden=16,act=tanh"
optimizer = "sgd:lr=0.3,momentum=0.9"
steps = 30
batch_size = 50
accumulate = {accumulate}
dtype = "f64""#
        ));
        let mut t = Trainer::new(cfg).unwrap();
        let s = t.run(None, &mut []).unwrap();
        let w: Vec<f64> = t.model().params()[0]
            .tensor()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        (s.final_train_loss, w)
    };
    let (l1, w1) = run(1);
    let (l4, w4) = run(4);
    assert!((l1 - l4).abs() < 1e-12, "{l1} vs {l4}");
    assert!(w1.iter().zip(&w4).all(|(a, b)| (a - b).abs() < 1e-12));
    let bad = cfg(r#"accumulate = 0"#);
    assert!(Trainer::new(bad)
        .map(|_| ())
        .unwrap_err()
        .to_string()
        .contains("accumulate"));
}

#[test]
fn clipping_options_train_and_validate() {
    for (v, agc) in [(Some(0.01), None), (None, Some(0.01))] {
        let mut cfg = cfg(r#"optimizer = "sgd:lr=0.1"
steps = 40"#);
        (cfg.options.clip_grad_value, cfg.options.agc) = (v, agc);
        let s = Trainer::new(cfg).unwrap().run(None, &mut []).unwrap();
        assert!(
            s.final_train_loss.is_finite() && s.final_train_loss < 2.31,
            "{s:?}"
        );
    }
    let bad = cfg(r#"agc = -1.0"#);
    assert!(Trainer::new(bad)
        .map(|_| ())
        .unwrap_err()
        .to_string()
        .contains("agc=-1"));
}

fn logged_batch_sizes(dir: &Path) -> Vec<usize> {
    read_metrics(&dir.join("metrics.jsonl"))
        .unwrap()
        .iter()
        .filter_map(|r| match r {
            Record::Train(m) => Some(m.batch_size),
            _ => None,
        })
        .collect()
}

#[test]
fn adaptive_batch_size_grows_and_resumes_exactly() {
    let cfg = cfg(r#"optimizer = "adagradnorm:lr=0.5"
batch_size = 8
batch_test = "norm:eta=0.3,interval=5,max_batch=256"
steps = 60
checkpoint_every = 7"#);
    let full = tmp("adabatch-full");
    let s = Trainer::new(cfg.clone())
        .unwrap()
        .run(Some(&full), &mut [])
        .unwrap();
    let sizes = logged_batch_sizes(&full);
    eprintln!("batch sizes: {sizes:?}");
    assert_eq!(sizes[0], 8);
    let grown = sizes.iter().filter(|&&b| b > 8).count();
    assert!(grown > 0, "the norm test never grew the batch: {sizes:?}");
    assert!(sizes.iter().all(|&b| b <= 256));
    // Non-decreasing except for the shorter last batch of an epoch.
    assert!(s.val_accuracy.unwrap() > 0.5, "{s:?}");

    let part = tmp("adabatch-part");
    let opts = RunOptions {
        run_dir: Some(part.clone()),
        stop_at: Some(33),
    };
    Trainer::new(cfg).unwrap().run_with(&opts, &mut []).unwrap();
    Trainer::resume(&part)
        .unwrap()
        .run(Some(&part), &mut [])
        .unwrap();
    assert_eq!(
        tensors_bits(&full.join("model.safetensors")),
        tensors_bits(&part.join("model.safetensors"))
    );
    assert_eq!(logged_batch_sizes(&part), sizes);
    let cnn = crate::common::cfg(
        r#"model = "cnn"
batch_test = "norm""#,
    );
    assert!(Trainer::new(cnn)
        .map(|_| ())
        .unwrap_err()
        .to_string()
        .contains("needs an MLP"));
    std::fs::remove_dir_all(&full).unwrap();
    std::fs::remove_dir_all(&part).unwrap();
}

fn final_weights(cfg: TrainConfig, dir: Option<&Path>) -> Vec<f64> {
    let mut t = Trainer::new(cfg).unwrap();
    t.run(dir, &mut []).unwrap();
    t.model()
        .params()
        .iter()
        .flat_map(|p| p.tensor().flatten_all().unwrap().to_vec1::<f64>().unwrap())
        .collect()
}

#[test]
fn hyperparameter_schedules() {
    let base = cfg(r#"data = "moons:n=200"
model = "mlp:hidden=8,act=tanh"
steps = 12
batch_size = 8
dtype = "f64""#);
    // A momentum scheduled at half its base equals the halved momentum; weight decay scheduled to 0 equals none.
    for (scheduled, hyper, plain) in [
        (
            "sgd:lr=0.1,momentum=0.8",
            "momentum=seq:constant*0.5",
            "sgd:lr=0.1,momentum=0.4",
        ),
        (
            "adamw:lr=0.01,weight_decay=0.1",
            "weight_decay=seq:constant*0",
            "adamw:lr=0.01,weight_decay=0",
        ),
    ] {
        let a = final_weights(
            with(
                &base,
                &format!("optimizer = \"{scheduled}\"\nhyper_schedules = [\"{hyper}\"]"),
            )
            .unwrap(),
            None,
        );
        let b = final_weights(
            with(&base, &format!("optimizer = \"{plain}\"")).unwrap(),
            None,
        );
        let c = final_weights(
            with(&base, &format!("optimizer = \"{scheduled}\"")).unwrap(),
            None,
        );
        assert_eq!(a, b, "{hyper}");
        assert_ne!(a, c, "{hyper} must change the run");
    }
    // The batch doubles every 5 steps (within one epoch of 800 training examples).
    let dir = tmp("batch-schedule");
    final_weights(
        with(
            &base,
            r#"data = "moons:n=1000"
hyper_schedules = ["batch_size=step:step_size=5,gamma=2"]"#,
        )
        .unwrap(),
        Some(&dir),
    );
    assert_eq!(
        logged_batch_sizes(&dir),
        [[8; 5].as_slice(), &[16; 5], &[32; 2]].concat()
    );
    std::fs::remove_dir_all(&dir).unwrap();
    for (hyper, optimizer, needle) in [
        ("momentum=cosine", "adam", "momentum"),
        ("lr=cosine", "sgd", "the lr schedule is `schedule`"),
        ("momentum", "sgd", "NAME=SPEC"),
        ("momentum=cosin", "sgd", "available: constant"),
        ("beta1=seq:constant*2", "adam", "scheduled beta1=1.8"),
    ] {
        let e = with(
            &base,
            &format!("optimizer = \"{optimizer}\"\nhyper_schedules = [\"{hyper}\"]"),
        )
        .and_then(Trainer::new)
        .map(|_| ())
        .unwrap_err()
        .to_string();
        assert!(e.contains(needle), "{hyper}: {e}");
    }
    let e = Trainer::new(
        with(
            &base,
            r#"hyper_schedules = ["batch_size=linear"]
batch_test = "norm:eta=0.5""#,
        )
        .unwrap(),
    )
    .map(|_| ())
    .unwrap_err()
    .to_string();
    assert!(e.contains("choose one"), "{e}");
}
