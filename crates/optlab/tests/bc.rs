//! P11's behaviour cloning and closed-loop evaluation: the demonstrations follow the LQR expert, the projected
//! policy's Lipschitz bound holds, the tensor closed loop equals a scalar simulation, the attack finds at least
//! what random perturbations find, and the linearized spectral radius equals ρ(A − BK) for the expert.

use candle_core::{Device, Tensor};
use optlab::rl::bc::{self, BcConfig, Feedback, LinearFeedback};
use optlab::rl::lqr::Lqr;
use optlab::rng::{rng_for, Stream};

fn system() -> Lqr {
    Lqr::double_integrator(20).unwrap()
}

#[test]
fn demonstrations_follow_the_expert() {
    let lqr = system();
    let k = lqr.optimal().unwrap().0;
    let mut rng = rng_for(0, Stream::Data, 0);
    let d = bc::lqr_demonstrations(&lqr, 3, 0.0, &mut rng).unwrap();
    assert_eq!(d.len(), 60);
    for i in 0..d.len() {
        let u = -(k[0] * d.states[2 * i] + k[1] * d.states[2 * i + 1]);
        assert!((d.controls[i] - u).abs() < 1e-12);
    }
}

#[test]
fn projected_policies_keep_their_bound_and_free_ones_fit() {
    let lqr = system();
    let mut rng = rng_for(1, Stream::Data, 0);
    let demos = bc::lqr_demonstrations(&lqr, 10, 0.05, &mut rng).unwrap();
    let cfg = BcConfig {
        hidden: vec![16, 16],
        steps: 1500,
        lr: 3e-3,
        ..BcConfig::default()
    };
    for l in [0.5, 2.0] {
        let run = bc::fit(
            &demos,
            &BcConfig {
                lipschitz: Some(l),
                ..cfg.clone()
            },
        )
        .unwrap();
        let per_layer = l.powf(1.0 / 3.0);
        assert!(
            run.layer_norms
                .iter()
                .all(|s| *s <= per_layer * (1.0 + 1e-9)),
            "{:?}",
            run.layer_norms
        );
        assert!(run.product_bound() <= l * (1.0 + 1e-8));
    }
    // Unconstrained, the fit reaches the demonstrations' noise floor (0.05² = 0.0025) within a few times.
    let free = bc::fit(&demos, &cfg).unwrap();
    assert!(free.train_mse < 0.02, "mse {}", free.train_mse);
    assert!(
        free.product_bound() > 2.0,
        "the expert's gain has norm above 4"
    );
}

#[test]
fn closed_loop_cost_equals_a_scalar_simulation() {
    let lqr = system();
    let k = lqr.optimal().unwrap().0;
    let expert = LinearFeedback::new(&k, 2, 1).unwrap();
    let x0 = bc::initial_states(&lqr, 3, 5).unwrap();
    let rows: Vec<Vec<f64>> = x0.to_vec2().unwrap();
    let mut want = 0.0;
    for x in &rows {
        let mut x = x.clone();
        for _ in 0..lqr.horizon {
            let u = -(k[0] * x[0] + k[1] * x[1]);
            want += x[0] * x[0] + x[1] * x[1] + 0.1 * u * u;
            x = vec![x[0] + 0.1 * x[1] + 0.005 * u, x[1] + 0.1 * u];
        }
    }
    want /= 3.0;
    let got = bc::closed_loop_cost(&lqr, &expert, &x0, None)
        .unwrap()
        .0
        .to_scalar::<f64>()
        .unwrap();
    assert!((got - want).abs() < 1e-10 * want, "{got} vs {want}");
    // The attack finds at least the worst of 20 random perturbation sequences.
    let eps = 0.3;
    let worst = bc::worst_case_cost(&lqr, &expert, &x0, eps, 20, 0).unwrap();
    for s in 0..20 {
        let r = bc::random_perturbation_cost(&lqr, &expert, &x0, eps, 1, s).unwrap();
        assert!(worst >= r, "attack {worst} below random {r}");
    }
    assert!(worst > got);
}

#[test]
fn linearized_radius_is_that_of_a_minus_bk() {
    let lqr = system();
    let k = lqr.optimal().unwrap().0;
    let expert = LinearFeedback::new(&k, 2, 1).unwrap();
    let rho = bc::linearized_spectral_radius(&lqr, &expert).unwrap();
    // A − BK = [[1 − 0.005 k0, 0.1 − 0.005 k1], [−0.1 k0, 1 − 0.1 k1]]: eigenvalues from the trace and determinant.
    let (a, b, c, d) = (
        1.0 - 0.005 * k[0],
        0.1 - 0.005 * k[1],
        -0.1 * k[0],
        1.0 - 0.1 * k[1],
    );
    let (tr, det) = (a + d, a * d - b * c);
    let disc = tr * tr / 4.0 - det;
    let want = if disc < 0.0 {
        det.sqrt()
    } else {
        (tr / 2.0).abs() + disc.sqrt()
    };
    assert!((rho - want).abs() < 1e-9, "{rho} vs {want}");
    assert!(rho < 1.0);
    // A zero policy leaves the marginally stable open loop: radius 1.
    struct Zero;
    impl Feedback for Zero {
        fn control(&self, x: &Tensor) -> optlab::Result<Tensor> {
            Ok(x.narrow(1, 0, 1)?
                .zeros_like()?
                .broadcast_mul(&Tensor::new(1.0f64, &Device::Cpu)?)?)
        }
    }
    let open = bc::linearized_spectral_radius(&lqr, &Zero).unwrap();
    assert!((open - 1.0).abs() < 1e-6, "{open}");
}
