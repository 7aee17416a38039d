//! P40: CoLiDE-EV, CoLiDE-NV and DAGMA on the covariances of the official simulator's data
//! (tools/reference/colide_fixtures.py ran the official code on the same covariances): structure metrics within the
//! seed spread of the official results.

use optlab::solvers::dag::colide::{fit, official_postprocess, DagOptions, Score};
use optlab::solvers::dag::{accuracy, Accuracy};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::Read;

fn cases() -> Vec<Value> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/colide/cases.json.gz"
    );
    let mut text = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap())
        .read_to_string(&mut text)
        .unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    v["cases"].as_array().unwrap().clone()
}

fn matrix(v: &Value) -> Vec<Vec<f64>> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect()
        })
        .collect()
}

fn edges(v: &Value, d: usize) -> Vec<Vec<f64>> {
    let mut w = vec![vec![0.0; d]; d];
    for e in v.as_array().unwrap() {
        let e = e.as_array().unwrap();
        w[e[0].as_u64().unwrap() as usize][e[1].as_u64().unwrap() as usize] =
            e[2].as_f64().unwrap();
    }
    w
}

/// Our estimate, post-processed as the official code does: CoLiDE's to_dag(0.3); DAGMA zeroes |w| < 0.3.
pub fn estimate(cov: &[Vec<f64>], score: Score) -> Vec<Vec<f64>> {
    let opts = DagOptions::for_score(score);
    official_postprocess(&fit(cov, score, &opts).unwrap().w, score, 0.3)
}

fn mean_std(x: &[f64]) -> (f64, f64) {
    let m = x.iter().sum::<f64>() / x.len() as f64;
    let v = x.iter().map(|a| (a - m).powi(2)).sum::<f64>() / (x.len() - 1).max(1) as f64;
    (m, v.sqrt())
}

/// (graph, d, noise, method) and per seed (ours, official SHD, official TPR).
type Groups = BTreeMap<(String, u64, String, &'static str), Vec<(Accuracy, f64, f64)>>;

fn compare(filter: impl Fn(&Value) -> bool) {
    let methods = [
        ("colide_ev", Score::ColideEv),
        ("colide_nv", Score::ColideNv),
        ("dagma", Score::Dagma),
    ];
    let mut groups = Groups::new();
    let (mut same, mut total) = (0, 0);
    for c in cases().iter().filter(|c| filter(c)) {
        let d = c["d"].as_u64().unwrap();
        let cov = matrix(&c["cov"]);
        let truth = edges(&c["b_true"], d as usize);
        for (key, score) in methods {
            let ours = accuracy(&truth, &estimate(&cov, score));
            let off = &c["official"][key];
            let (shd, tpr) = (off["shd"].as_f64().unwrap(), off["tpr"].as_f64().unwrap());
            same += (ours.shd as f64 == shd) as usize;
            total += 1;
            groups
                .entry((
                    c["graph"].as_str().unwrap().into(),
                    d,
                    c["noise"].as_str().unwrap().into(),
                    key,
                ))
                .or_default()
                .push((ours, shd, tpr));
        }
    }
    println!("| graph | d | noise | method | SHD ours | SHD official | TPR ours | TPR official |");
    for ((g, d, noise, m), rows) in &groups {
        let ours_shd: Vec<f64> = rows.iter().map(|r| r.0.shd as f64).collect();
        let off_shd: Vec<f64> = rows.iter().map(|r| r.1).collect();
        let ours_tpr: Vec<f64> = rows.iter().map(|r| r.0.tpr).collect();
        let off_tpr: Vec<f64> = rows.iter().map(|r| r.2).collect();
        let (a, b, e, f) = (
            mean_std(&ours_shd),
            mean_std(&off_shd),
            mean_std(&ours_tpr),
            mean_std(&off_tpr),
        );
        println!(
            "| {g} | {d} | {noise} | {m} | {:.1}±{:.1} | {:.1}±{:.1} | {:.3}±{:.3} | {:.3}±{:.3} |",
            a.0, a.1, b.0, b.1, e.0, e.1, f.0, f.1
        );
        // Within the official seed spread (at least one edge / 0.02 TPR of slack for spreads of zero).
        assert!(
            (a.0 - b.0).abs() <= b.1.max(1.0),
            "{g} d={d} {noise} {m}: SHD {a:?} vs {b:?}"
        );
        assert!(
            (e.0 - f.0).abs() <= f.1.max(0.02),
            "{g} d={d} {noise} {m}: TPR {e:?} vs {f:?}"
        );
    }
    println!("identical SHD in {same} of {total} fits");
    assert!(same * 10 >= total * 7, "{same}/{total}");
}

#[test]
fn d10_all_graphs_and_noises() {
    compare(|c| c["d"] == 10);
}

#[test]
fn d20_non_equal_variances() {
    compare(|c| c["d"] == 20 && c["noise"] == "nv");
}

/// d = 50 (10 cases x 3 methods, a few minutes): run by hand with `cargo test --release --test colide -- --ignored`.
#[test]
#[ignore = "several minutes; the d = 10 and 20 cases run in CI"]
fn d50_non_equal_variances() {
    compare(|c| c["d"] == 50);
}
