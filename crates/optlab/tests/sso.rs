//! SSO (P34) against the official code: `sso::outer` + `sso::inner` (the line search) on a linear model with the
//! squared error, three outer steps, equal to the official SGD_FMDOpt/LSOpt in float64 to 1e-10 (1e-6 with the sqrt
//! schedule, which the official code computes in float32)
//! (fixtures: tools/reference/sso_fixtures.py); and through the trainer, the surrogate steps lower the loss.

use candle_core::{DType, Device, Tensor};
use optlab::nn::loss::mse;
use optlab::nn::{ModelSpec, Sequential};
use optlab::train::sso::{self, EtaSchedule, SsoSpec};

fn fixture() -> serde_json::Value {
    crate::common::fixture_json("sso/linear_mse.json")
}

use crate::common::numbers as vec;

#[test]
fn sso_steps_equal_the_official_code() {
    let f = fixture();
    let x = Tensor::from_vec(vec(&f["x"]), (12, 3), &Device::Cpu).unwrap();
    let y = Tensor::from_vec(vec(&f["y"]), (12, 1), &Device::Cpu).unwrap();
    for case in f["cases"].as_array().unwrap() {
        let model = Sequential::new(
            &ModelSpec::parse("mlp:hidden=").unwrap(),
            &[3],
            1,
            0,
            DType::F64,
        )
        .unwrap();
        let params = model.params();
        params[0]
            .var
            .set(&Tensor::from_vec(vec(&f["weight"]), (1, 3), &Device::Cpu).unwrap())
            .unwrap();
        params[1]
            .var
            .set(&Tensor::from_vec(vec(&f["bias"]), 1, &Device::Cpu).unwrap())
            .unwrap();
        let spec: SsoSpec = format!(
            "inner={},eta={},schedule={}",
            case["m"],
            case["eta"],
            if case["schedule"] == "stochastic" {
                "sqrt"
            } else {
                "constant"
            }
        )
        .parse()
        .unwrap();
        assert_eq!(
            spec.schedule == EtaSchedule::Sqrt,
            case["schedule"] == "stochastic"
        );
        let share = 1.0 / case["batches"].as_f64().unwrap();
        let mut unused = optlab::optim::from_spec("sgd:lr=0.1").unwrap();
        for (t, want) in case["steps"].as_array().unwrap().iter().enumerate() {
            let (_, _, target) = sso::outer(&model, x.clone(), &y, 12, mse).unwrap();
            sso::inner(
                &spec,
                &model,
                &params,
                &target,
                t as u64 + 1,
                share,
                unused.as_mut(),
            )
            .unwrap();
            let w: Vec<f64> = params[0].tensor().flatten_all().unwrap().to_vec1().unwrap();
            let b: Vec<f64> = params[1].tensor().to_vec1().unwrap();
            // The official code computes the sqrt schedule's sqrt(t) in float32 (torch's default float tensor):
            // a relative 2e-8 in eta from step 2 on.
            let rel = if spec.schedule == EtaSchedule::Sqrt {
                1e-6
            } else {
                1e-10
            };
            for (got, want) in w
                .iter()
                .chain(&b)
                .zip(vec(&want["weight"]).iter().chain(&vec(&want["bias"])))
            {
                let tol = rel * (1.0 + want.abs());
                assert!(
                    (got - want).abs() <= tol,
                    "{case}: step {}: {got} vs {want}",
                    t + 1
                );
            }
        }
    }
}

/// The outer step's parameter gradient is the loss gradient, and the surrogate's first gradient is it scaled.
#[test]
fn outer_gradient_is_the_loss_gradient() {
    let f = fixture();
    let x = Tensor::from_vec(vec(&f["x"]), (12, 3), &Device::Cpu).unwrap();
    let y = Tensor::from_vec(vec(&f["y"]), (12, 1), &Device::Cpu).unwrap();
    let model = Sequential::new(
        &ModelSpec::parse("mlp:hidden=").unwrap(),
        &[3],
        1,
        7,
        DType::F64,
    )
    .unwrap();
    let params = model.params();
    let (loss, grads, _) = sso::outer(&model, x.clone(), &y, 12, mse).unwrap();
    let direct = mse(&model.forward(&x).unwrap(), &y).unwrap();
    assert!((loss - direct.to_scalar::<f64>().unwrap()).abs() < 1e-14);
    let g2 = direct.backward().unwrap();
    for p in &params {
        let a: Vec<f64> = grads
            .get(p.tensor())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let b: Vec<f64> = g2
            .get(p.tensor())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        for (u, v) in a.iter().zip(&b) {
            assert!((u - v).abs() < 1e-13, "{} {u} {v}", p.name);
        }
    }
}

/// Through the trainer: full-batch SSO on the binary digits lowers the training loss at every outer step (with
/// eta >= 1/4 the surrogate majorizes the softmax cross-entropy, whose Hessian in the logits is at most I/2), and
/// ten inner steps lower it further than one after 10 outer steps.
#[test]
fn trainer_sso_decreases_the_loss() {
    let mut end = Vec::new();
    for m in [1, 10] {
        let mut cfg = optlab::train::TrainConfig {
            data: "digits-binary".parse().unwrap(),
            model: ModelSpec::parse("mlp:hidden=").unwrap(),
            optimizer: "sgd:lr=0.1".parse().unwrap(),
            ..Default::default()
        };
        cfg.options.batch_size = 2000;
        cfg.options.steps = Some(10);
        cfg.options.sso = Some(format!("inner={m},eta=0.3").parse().unwrap());
        let mut rec = Losses::default();
        optlab::train::Trainer::new(cfg)
            .unwrap()
            .run(None, &mut [&mut rec])
            .unwrap();
        for w in rec.0.windows(2) {
            assert!(w[1] < w[0], "m={m}: {:?}", rec.0);
        }
        end.push(*rec.0.last().unwrap());
    }
    assert!(end[1] < end[0], "{end:?}");
}

#[derive(Default)]
struct Losses(Vec<f64>);

impl optlab::train::Observer for Losses {
    fn on_step(&mut self, m: &optlab::train::StepMetrics) {
        self.0.push(m.loss);
    }
}

#[test]
fn sso_refuses_what_it_cannot_honour() {
    for (extra, want) in [
        ("privacy = \"noise=1,clip=1,delta=1e-5\"", "privacy"),
        ("accumulate = 2", "accumulate"),
        ("clip_grad_norm = 1.0", "clipping"),
    ] {
        let toml = format!("sso = \"inner=2,eta=1\"\n{extra}\n");
        let cfg: optlab::train::TrainConfig = toml::from_str(&toml).unwrap();
        let Err(e) = optlab::train::Trainer::new(cfg) else {
            panic!("{extra} was accepted with sso")
        };
        assert!(e.to_string().contains(want), "{e}");
    }
}
