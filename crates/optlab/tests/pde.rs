//! P08's PDEs: finite-difference reference solutions.

use optlab::pde::fd::{Boundary, ReactionDiffusion, Side};
use optlab::pde::{diffusion_sorption, fisher_kpp, fisher_wave};

/// Max error against the exact travelling wave on [0, 10] × [0, 1] with its Dirichlet data.
fn wave_error(nx: usize, nt: usize) -> f64 {
    let (nu, rho) = (1.0, 1.0);
    let eq = fisher_kpp(
        nu,
        rho,
        10.0,
        Boundary::Sides(
            Side::Dirichlet(Box::new(move |t| fisher_wave(nu, rho, 0.0, t))),
            Side::Dirichlet(Box::new(move |t| fisher_wave(nu, rho, 10.0, t))),
        ),
    );
    let f = eq
        .solve(|x| fisher_wave(nu, rho, x, 0.0), nx, nt, 1.0)
        .unwrap();
    let last = f.u.last().unwrap();
    f.x.iter()
        .zip(last)
        .map(|(&x, &u)| (u - fisher_wave(nu, rho, x, 1.0)).abs())
        .fold(0.0, f64::max)
}

#[test]
fn fisher_kpp_converges_at_second_order_to_the_exact_wave() {
    let errors: Vec<f64> = [(41, 10), (81, 20), (161, 40)]
        .iter()
        .map(|&(nx, nt)| wave_error(nx, nt))
        .collect();
    for w in errors.windows(2) {
        let order = (w[0] / w[1]).log2();
        assert!(
            (1.8..2.3).contains(&order),
            "observed order {order} from {errors:?}"
        );
    }
    assert!(errors[2] < 1e-4, "{errors:?}");
}

#[test]
fn periodic_diffusion_conserves_mass_and_decays_like_the_exact_mode() {
    // u_t = ν u_xx on the circle: Σu is conserved, and sin(2πx) decays as exp(−4π²νt) (to second order).
    let nu = 0.1;
    let eq = ReactionDiffusion {
        length: 1.0,
        diffusion: Box::new(move |_| (nu, 0.0)),
        reaction: Box::new(|_| (0.0, 0.0)),
        boundary: Boundary::Periodic,
    };
    let u0 = |x: f64| 1.0 + (std::f64::consts::TAU * x).sin();
    let f = eq.solve(u0, 128, 200, 0.5).unwrap();
    let mass = |u: &[f64]| u.iter().sum::<f64>();
    assert!((mass(&f.u[0]) - mass(f.u.last().unwrap())).abs() < 1e-10);
    let decay = (-4.0 * std::f64::consts::PI.powi(2) * nu * 0.5).exp();
    let err =
        f.x.iter()
            .zip(f.u.last().unwrap())
            .map(|(&x, &u)| (u - (1.0 + decay * (std::f64::consts::TAU * x).sin())).abs())
            .fold(0.0, f64::max);
    assert!(err < 1e-3, "{err}");
    // Interpolation between nodes and steps.
    assert!((f.at(f.x[3], f.t[7]) - f.u[7][3]).abs() < 1e-15);
}

#[test]
fn diffusion_sorption_self_converges_and_keeps_its_boundary() {
    let eq = diffusion_sorption();
    let run = |nx: usize, nt: usize| eq.solve(|_| 0.1, nx, nt, 500.0).unwrap();
    let (c, m, f) = (run(51, 100), run(101, 200), run(201, 400));
    let probe = |fl: &optlab::pde::fd::Field| -> Vec<f64> {
        (1..10).map(|k| fl.at(k as f64 / 10.0, 500.0)).collect()
    };
    let (pc, pm, pf) = (probe(&c), probe(&m), probe(&f));
    let d1 = pc
        .iter()
        .zip(&pm)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    let d2 = pm
        .iter()
        .zip(&pf)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    // The initial data jump at x = 0 (u = 1 against 0.1) costs Crank–Nicolson its second order (measured ratio
    // 2.8, order 1.5); convergence is what is asserted here, the order on smooth data in the Fisher test.
    assert!(
        d1 / d2 > 2.0 && d2 < 1e-4,
        "refinement differences {d1} then {d2}: not converging"
    );
    let last = f.u.last().unwrap();
    assert_eq!(last[0], 1.0);
    let n = last.len();
    assert!(
        last[..n - 1].iter().all(|v| (0.0..=1.0 + 1e-9).contains(v)),
        "the concentration left [0, 1] inside the domain"
    );
    // The right end satisfies u = D u_x (one-sided) to the Newton tolerance.
    let h = f.x[1] - f.x[0];
    let bc = last[n - 1] - optlab::pde::SORPTION_D * (last[n - 1] - last[n - 2]) / h;
    assert!(bc.abs() < 1e-12, "{bc}");
    // Bad sizes are refused.
    assert!(eq.solve(|_| 0.0, 2, 10, 1.0).is_err());
    assert!(eq.solve(|_| 0.0, 10, 0, 1.0).is_err());
    assert!(eq.solve(|_| 0.0, 10, 10, f64::NAN).is_err());
}

#[test]
fn a_robin_end_by_ghost_node_converges_at_second_order() {
    // u_t = u_xx, u(0) = 0, u_x(1) + u(1) = 0: u = e^{−k²t} sin(kx) with tan k = −k.
    let mut k: f64 = 2.0;
    for _ in 0..50 {
        k -= (k.tan() + k) / (1.0 / k.cos().powi(2) + 1.0);
    }
    assert!((k.tan() + k).abs() < 1e-12);
    let eq = ReactionDiffusion {
        length: 1.0,
        diffusion: Box::new(|_| (1.0, 0.0)),
        reaction: Box::new(|_| (0.0, 0.0)),
        boundary: Boundary::Sides(
            Side::Dirichlet(Box::new(|_| 0.0)),
            Side::Robin {
                alpha: 1.0,
                beta: 1.0,
                gamma: 0.0,
            },
        ),
    };
    let err = |nx: usize, nt: usize| {
        let f = eq.solve(|x| (k * x).sin(), nx, nt, 0.2).unwrap();
        f.x.iter()
            .zip(f.u.last().unwrap())
            .map(|(&x, &u)| (u - (-k * k * 0.2).exp() * (k * x).sin()).abs())
            .fold(0.0, f64::max)
    };
    let (e1, e2) = (err(21, 20), err(41, 40));
    let order = (e1 / e2).log2();
    assert!((1.8..2.3).contains(&order), "order {order} ({e1}, {e2})");
}
