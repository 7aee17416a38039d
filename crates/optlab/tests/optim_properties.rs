//! Properties of the optimizers that hold exactly, whatever the reference code: Lion's step size and its
//! box constraint (P41), Lion-κ's l2 ball, bit-exact state save/load for every method, and clear errors.

use candle_core::{DType, Device, Tensor, Var};
use optlab::nn::loss::cross_entropy;
use optlab::nn::{ModelSpec, Param, Sequential};
use optlab::optim::{from_spec, load_state_file, optimizer_names, save_state_file};

fn quadratic_grads(x: &Var, a: &Tensor) -> candle_core::backprop::GradStore {
    // f(x) = ½‖x - a‖²
    x.as_tensor()
        .sub(a)
        .unwrap()
        .sqr()
        .unwrap()
        .sum_all()
        .unwrap()
        .affine(0.5, 0.0)
        .unwrap()
        .backward()
        .unwrap()
}

#[test]
fn lion_moves_every_coordinate_by_exactly_lr() {
    let x = Var::new(&[0.3f64, -1.7, 2.5, 0.0], &Device::Cpu).unwrap();
    let a = Tensor::new(&[1.0f64, -2.0, 2.0, 0.5], &Device::Cpu).unwrap();
    let params = [Param {
        name: "x".into(),
        var: x.clone(),
    }];
    let mut opt = from_spec("lion:lr=0.01").unwrap();
    for _ in 0..50 {
        let before: Vec<f64> = x.to_vec1().unwrap();
        opt.step(&params, &quadratic_grads(&x, &a)).unwrap();
        let after: Vec<f64> = x.to_vec1().unwrap();
        for (b, c) in before.iter().zip(&after) {
            let step = (c - b).abs();
            // The step is lr, or 0 where the interpolation is exactly 0; up to the rounding of x ± lr.
            assert!(
                (step - 0.01).abs() <= 4.0 * f64::EPSILON * b.abs().max(1.0) || step == 0.0,
                "{b} -> {c}"
            );
        }
    }
    // With decoupled decay λ the step is lr·(λx + sign c).
    let x = Var::new(&[0.3f64, -1.7], &Device::Cpu).unwrap();
    let a = Tensor::new(&[1.0f64, -2.0], &Device::Cpu).unwrap();
    let params = [Param {
        name: "x".into(),
        var: x.clone(),
    }];
    let mut opt = from_spec("lion:lr=0.01,weight_decay=0.5").unwrap();
    opt.step(&params, &quadratic_grads(&x, &a)).unwrap();
    let after: Vec<f64> = x.to_vec1().unwrap();
    assert!((after[0] - (0.3 * (1.0 - 0.005) + 0.01)).abs() < 1e-15);
    assert!((after[1] - (-1.7 * (1.0 - 0.005) - 0.01)).abs() < 1e-15);
}

#[test]
fn lion_with_weight_decay_enters_and_stays_in_the_box() {
    // min ½‖x - a‖² with the optimum a outside the box ‖x‖∞ ≤ 1/λ = 2. P41: Lion with decoupled decay λ solves
    // the box-constrained problem; once inside, the iterates never leave (|x'| ≤ (1-lrλ)/λ + lr = 1/λ).
    let lambda = 0.5;
    let bound = 1.0 / lambda;
    let a = Tensor::new(&[5.0f64, -8.0, 1.0, -0.5], &Device::Cpu).unwrap();
    let x = Var::new(&[10.0f64, 0.0, -10.0, 3.0], &Device::Cpu).unwrap();
    let params = [Param {
        name: "x".into(),
        var: x.clone(),
    }];
    let mut opt = from_spec(&format!("lion:lr=0.01,weight_decay={lambda}")).unwrap();
    // Distance to the box d = max(0, ‖x‖∞ - 1/λ) contracts by (1 - lr·λ) every step: |x'| ≤ (1-lrλ)|x| + lr.
    // A coordinate inside the box never leaves it.
    let contraction = 1.0 - 0.01 * lambda;
    let dist = |v: &[f64]| {
        v.iter()
            .fold(0.0f64, |m, z| m.max(z.abs() - bound))
            .max(0.0)
    };
    let mut prev: Vec<f64> = x.to_vec1().unwrap();
    for t in 0..4000 {
        opt.step(&params, &quadratic_grads(&x, &a)).unwrap();
        let v: Vec<f64> = x.to_vec1().unwrap();
        assert!(
            dist(&v) <= contraction * dist(&prev) + 1e-12,
            "step {t}: {prev:?} -> {v:?}"
        );
        for (p, z) in prev.iter().zip(&v) {
            assert!(
                p.abs() > bound || z.abs() <= bound + 1e-12,
                "step {t}: left the box {p} -> {z}"
            );
        }
        prev = v;
    }
    assert!(dist(&prev) < 1e-6, "{prev:?}");
    // The iterates end near the projection of a onto the box (within the sign-oscillation of size lr).
    let v: Vec<f64> = x.to_vec1().unwrap();
    let want = [2.0, -2.0, 1.0, -0.5];
    for (z, w) in v.iter().zip(want) {
        assert!((z - w).abs() < 0.05, "{v:?} vs {want:?}");
    }
}

#[test]
fn lion_kappa_l2_solves_the_l2_ball_constraint() {
    // K = ‖·‖₂: the constraint is ‖λx‖₂ ≤ 1; the solution is a/‖a‖ · (1/λ) for a outside the ball.
    let a = Tensor::new(&[3.0f64, 4.0], &Device::Cpu).unwrap(); // ‖a‖ = 5
    let x = Var::new(&[0.0f64, 0.0], &Device::Cpu).unwrap();
    let params = [Param {
        name: "x".into(),
        var: x.clone(),
    }];
    let mut opt = from_spec("lion:lr=0.01,weight_decay=0.5,mode=l2").unwrap();
    for _ in 0..5000 {
        opt.step(&params, &quadratic_grads(&x, &a)).unwrap();
    }
    let v: Vec<f64> = x.to_vec1().unwrap();
    assert!(
        (v[0] - 1.2).abs() < 0.02 && (v[1] - 1.6).abs() < 0.02,
        "{v:?}"
    );
    let smooth = from_spec("lion:mode=smooth,sharpness=5").unwrap();
    assert!(smooth.spec().contains("mode=smooth"));
    assert!(from_spec("lion:mode=cubic")
        .unwrap_err()
        .to_string()
        .contains("hard, smooth, refined, l2 or lp"));
}

fn spec_for(name: &str) -> String {
    match name {
        "sgd" => "sgd:lr=0.05,momentum=0.9".into(),
        "lion" => "lion:lr=1e-3,weight_decay=0.1".into(),
        "mfac" => "mfac:lr=1e-3,momentum=0.5,ngrads=4,damp=0.1".into(),
        "chain" => "chain:clip_by_global_norm:max_norm=1+scale_by_adam+add_decayed_weights:weight_decay=0.01+scale_by_learning_rate:lr=0.01".into(),
        other => format!("{other}:lr=0.01"),
    }
}

#[test]
fn state_save_load_mid_run_gives_identical_trajectories() {
    let dir = std::env::temp_dir().join(format!("optlab-state-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let x = Tensor::randn(0f32, 1.0, (16, 6), &Device::Cpu).unwrap();
    let y = Tensor::new(
        &[0u32, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2, 0],
        &Device::Cpu,
    )
    .unwrap();
    let spec = ModelSpec::parse("mlp:hidden=8,act=tanh").unwrap();
    for name in optimizer_names() {
        let model = Sequential::new(&spec, &[6], 3, 1, DType::F32).unwrap();
        let params = model.params();
        let mut opt = from_spec(&spec_for(name)).unwrap();
        opt.add_group("rank<=1:lr=0.001".parse().unwrap()).unwrap();
        let steps = |opt: &mut Box<dyn optlab::optim::Optimizer>,
                     params: &[Param],
                     model: &Sequential,
                     n: usize| {
            for _ in 0..n {
                let g = cross_entropy(&model.forward(&x).unwrap(), &y)
                    .unwrap()
                    .backward()
                    .unwrap();
                opt.step(params, &g).unwrap();
            }
        };
        steps(&mut opt, &params, &model, 7);
        let (tp, mp) = (
            dir.join(format!("{name}.safetensors")),
            dir.join(format!("{name}.json")),
        );
        save_state_file(opt.as_ref(), &params, &tp, &mp).unwrap();
        let copy = Sequential::new(&spec, &[6], 3, 99, DType::F32).unwrap();
        copy.load_state_dict(&model.state_dict().into_iter().collect())
            .unwrap();
        let mut restored = load_state_file(&copy.params(), &tp, &mp).unwrap();
        assert_eq!(restored.spec(), opt.spec(), "{name}");
        let groups: Vec<String> = restored
            .hypers()
            .groups()
            .iter()
            .map(|g| g.to_string())
            .collect();
        assert_eq!(groups, vec!["rank<=1:lr=0.001"]);
        steps(&mut opt, &params, &model, 7);
        steps(&mut restored, &copy.params(), &copy, 7);
        for (a, b) in model.params().iter().zip(copy.params()) {
            let (va, vb): (Vec<f32>, Vec<f32>) = (
                a.tensor().flatten_all().unwrap().to_vec1().unwrap(),
                b.tensor().flatten_all().unwrap().to_vec1().unwrap(),
            );
            assert!(
                va.iter().zip(&vb).all(|(p, q)| p.to_bits() == q.to_bits()),
                "{name}: {} differs",
                a.name
            );
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_hyperparameters_are_clear_errors() {
    let err = |s: &str| from_spec(s).unwrap_err().to_string();
    assert!(err("adamq").contains(
        "available: sgd, adam, adamw, adagrad, rmsprop, lion, diffgrad, adamp, sgdp, nsgd"
    ));
    assert!(err("adamp:beta1=1.2").contains("beta1=1.2 is invalid; it must be in [0, 1)"));
    assert!(err("lion:lr=-1").contains("lr=-1 is invalid"));
    assert!(err("diffgrad:eps=-1e-8").contains("eps"));
    assert!(err("sgdp:delta=x").contains("delta=x is not a finite number"));
    assert!(err("lion:mode=lp,p=1").contains("p > 1"));
    let mut opt = from_spec("sgd:lr=0.1").unwrap();
    assert!(opt
        .add_group("rank<=1:nesterov=true".parse().unwrap())
        .unwrap_err()
        .to_string()
        .contains("nesterov=true needs momentum"));
    assert!(opt
        .set_hyperparam("betas", 0.1)
        .unwrap_err()
        .to_string()
        .contains("it has: lr, momentum"));
    // A group that selects nothing is refused by the trainer.
    let cfg = crate::common::cfg(r#"groups = ["*.gamma:weight_decay=0"]"#);
    let e = optlab::train::Trainer::new(cfg)
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("selects no parameter") && e.contains("0.weight (rank 2)"),
        "{e}"
    );
}
