//! LV-HBA (P13) against the official toy script (`fixtures/lvhba/toy.json`, made by
//! `tools/reference/lvhba_fixtures.py`), and its pieces on problems with known answers.

use crate::common::numbers;
use optlab::bilevel::lvhba::{solve, ConstrainedBilevel, LvHbaConfig};
use optlab::bilevel::toy::Toy;

fn fixture() -> serde_json::Value {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/lvhba/toy.json"
    ))
    .expect("fixture");
    serde_json::from_str(&text).expect("json")
}

/// The official defaults on the official toy, iteration by iteration: the same trajectory as the reference script
/// (which does not converge: the relative error of x ends near 118).
#[test]
fn the_official_toy_run_is_reproduced_step_by_step() {
    let f = fixture();
    let want = numbers(&f["log_rel_error"]);
    let cfg = LvHbaConfig {
        z0: -1.0,
        ..LvHbaConfig::default()
    };
    let mut got = Vec::new();
    let mut observe = |_: usize, x: &candle_core::Tensor, _: &candle_core::Tensor| {
        got.push(Toy::relative_error(x)?.ln());
        Ok(())
    };
    let run = solve(&Toy, &cfg, want.len(), Some(&mut observe), None).unwrap();
    assert_eq!(got.len(), want.len());
    for (k, (a, b)) in got.iter().zip(&want).enumerate() {
        assert!(
            (a - b).abs() <= 1e-7 * (1.0 + b.abs()),
            "iteration {}: log error {a} vs the official {b}",
            k + 1
        );
    }
    let lambda: Vec<f64> = run.lambda.to_vec1().unwrap();
    let z: Vec<f64> = run.z.to_vec1().unwrap();
    assert!((lambda[0] - f["lambda"].as_f64().unwrap()).abs() < 1e-6 * (1.0 + lambda[0].abs()));
    assert!((z[0] - f["z"].as_f64().unwrap()).abs() < 1e-6 * (1.0 + z[0].abs()));
    let x: Vec<f64> = run.x.to_vec1().unwrap();
    let xw = numbers(&f["x"]);
    let scale = xw.iter().fold(1.0f64, |m, v| m.max(v.abs()));
    assert!(x.iter().zip(&xw).all(|(a, b)| (a - b).abs() < 1e-6 * scale));
    // The projection keeps (x, y) on the constraint 1ᵀx + 1ᵀy = 0.
    let s = run.x.sum_all().unwrap().to_scalar::<f64>().unwrap()
        + run.y.sum_all().unwrap().to_scalar::<f64>().unwrap();
    assert!(s.abs() < 1e-8, "{s}");
    let _ = Toy.kind();
}

#[test]
fn bad_settings_are_refused() {
    for cfg in [
        LvHbaConfig {
            alpha: 0.0,
            ..LvHbaConfig::default()
        },
        LvHbaConfig {
            gamma1: f64::NAN,
            ..LvHbaConfig::default()
        },
        LvHbaConfig {
            c_power: -1.0,
            ..LvHbaConfig::default()
        },
    ] {
        assert!(solve(&Toy, &cfg, 1, None, None).is_err());
    }
}
