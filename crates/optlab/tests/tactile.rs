//! P20's differentiable tactile core: reverse-mode gradients through time against central finite differences.

use optlab::sim::contact::Indenter;
use optlab::sim::fem::{Material, Pad};
use optlab::sim::gradient::{value, value_and_gradient, ReadingMatch};
use optlab::sim::mesh::Mesh;
use optlab::sim::tactile::{ramp, simulate};

const DT: f64 = 4e-3;

/// J as a function of one parameter.
type Loss<'a> = &'a dyn Fn(f64) -> f64;

fn pad(kind: &str, e: f64, nu: f64, damping: f64) -> Pad {
    Pad::new(
        Mesh::rectangle(1.2, 0.4, 6, 2).unwrap(),
        Material::new(kind, e, nu).unwrap(),
        1.0,
    )
    .unwrap()
    .with_damping(damping)
    .unwrap()
}

/// Press `depth` below first touch, then slide right: contact, friction and sliding are all active.
fn press_and_slide(depth: f64, slide: f64) -> Vec<[f64; 2]> {
    let top = 0.71;
    let mut p = ramp([0.55, top], [0.55, top - depth], 25, 5);
    p.extend(ramp(
        [0.55, top - depth],
        [0.55 + slide, top - depth],
        30,
        0,
    ));
    p
}

fn close(what: &str, fd: f64, an: f64) {
    assert!(
        (fd - an).abs() <= 1e-5 * fd.abs().max(an.abs()) + 1e-11,
        "{what}: finite differences {fd:e}, reverse mode {an:e}"
    );
}

#[test]
fn the_reverse_mode_gradient_equals_central_finite_differences() {
    for kind in ["linear", "neo-hookean"] {
        let (e, nu, alpha, k, mu) = (1.0, 0.3, 3.0, 60.0, 0.4);
        let p0 = pad(kind, e, nu, alpha);
        let ind0 = Indenter::new(0.3, k, mu, 0.5)
            .unwrap()
            .with_dissipation(5.0)
            .unwrap();
        let target = simulate(&p0, &ind0, &press_and_slide(0.07, 0.08), DT).unwrap();
        let obj = ReadingMatch::new(target, 1.0, 0.3);
        // Away from the target's parameters, so every partial derivative is non-trivial.
        let (e, nu, alpha, k, mu) = (1.3, 0.27, 2.5, 50.0, 0.5);
        let path = press_and_slide(0.08, 0.1);
        let j_at = |e: f64, nu: f64, alpha: f64, k: f64, mu: f64, path: &[[f64; 2]]| {
            value(
                &pad(kind, e, nu, alpha),
                &Indenter::new(0.3, k, mu, 0.5)
                    .unwrap()
                    .with_dissipation(5.0)
                    .unwrap(),
                path,
                DT,
                &obj,
            )
            .unwrap()
        };
        let (j, g) = value_and_gradient(
            &pad(kind, e, nu, alpha),
            &Indenter::new(0.3, k, mu, 0.5)
                .unwrap()
                .with_dissipation(5.0)
                .unwrap(),
            &path,
            DT,
            &obj,
            7,
        )
        .unwrap();
        assert_eq!(j, j_at(e, nu, alpha, k, mu, &path));
        assert!(j > 0.0);
        let c = |v: f64| 1e-6 * v.abs().max(1e-3);
        let d = |f: &dyn Fn(f64) -> f64, x: f64| (f(x + c(x)) - f(x - c(x))) / (2.0 * c(x));
        let params: [(&str, Loss, f64, f64); 5] = [
            ("E", &|v| j_at(v, nu, alpha, k, mu, &path), e, g.young),
            ("nu", &|v| j_at(e, v, alpha, k, mu, &path), nu, g.poisson),
            ("alpha", &|v| j_at(e, nu, v, k, mu, &path), alpha, g.damping),
            ("k", &|v| j_at(e, nu, alpha, v, mu, &path), k, g.stiffness),
            ("mu", &|v| j_at(e, nu, alpha, k, v, &path), mu, g.friction),
        ];
        for (name, f, at, reverse) in params {
            close(&format!("{kind} dJ/d{name}"), d(f, at), reverse);
        }
        // Controls: centres while pressing, holding and sliding, both coordinates.
        let mut nonzero = 0;
        for t in [6, 12, 24, 27, 31, 45, 59] {
            for q in 0..2 {
                let f = |v: f64| {
                    let mut p = path.clone();
                    p[t][q] = v;
                    j_at(e, nu, alpha, k, mu, &p)
                };
                let fd = (f(path[t][q] + 1e-7) - f(path[t][q] - 1e-7)) / 2e-7;
                close(&format!("{kind} dJ/dc[{t}][{q}]"), fd, g.path[t][q]);
                nonzero += usize::from(g.path[t][q] != 0.0);
            }
        }
        // The centres in contact matter (the pad loses touch between some of them).
        assert!(
            nonzero >= 8,
            "{kind}: the controls in contact matter ({nonzero} of 14)"
        );
        assert!(g.friction != 0.0 && g.stiffness != 0.0);
    }
}

#[test]
fn the_force_indentation_curve_follows_hertz_line_contact() {
    use optlab::sim::statics::{hertz_curve, HertzSetup};
    // A coarser mesh than the experiment's (spacing 0.02 instead of 0.01), so looser tolerances.
    let setup = HertzSetup {
        spacing: 0.02,
        depths: vec![0.006, 0.01],
        ..HertzSetup::default()
    };
    let curve = hertz_curve(&setup).unwrap();
    for p in &curve {
        let rel = |a: f64, b: f64| (a - b).abs() / b;
        assert!(rel(p.delta, p.delta_hertz) < 0.02, "{p:?}");
        assert!(rel(p.half_width, p.half_width_hertz) < 0.06, "{p:?}");
    }
    // The load grows faster than linearly in the indentation only through the logarithm: P/δ rises.
    assert!(curve[1].force / curve[1].delta > curve[0].force / curve[0].delta);
    assert!(hertz_curve(&HertzSetup {
        depths: vec![0.6],
        ..HertzSetup::default()
    })
    .is_err());
}
