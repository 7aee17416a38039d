//! `optlab online run|rate`: regret of online learners on SEA sequences (P32) and last-iterate rates of CSMD (P06).

use crate::common::{argv, fails_with, is_png, ok, tmp};

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap()
}

#[test]
fn online_run_writes_regret_curves() {
    let out = tmp("online-run");
    let s = json(&ok(&argv(&format!(
        "online run --learner ogd --learner oomd --sequence sea:sigma=0,Sigma=0,drift=zero,dim=5 --rounds 2000 --seeds 2 --out {} --json",
        out.display()
    ))));
    let curves = s["report"]["curves"].as_array().unwrap();
    assert_eq!(curves.len(), 2);
    for c in curves {
        let pts = c["points"].as_array().unwrap();
        assert_eq!(pts.last().unwrap()["t"], 2000);
        assert_eq!(pts.last().unwrap()["sigma2_sum"], 0.0);
        assert!(
            pts.last().unwrap()["median"].as_f64().unwrap() > -1e-9,
            "{c}"
        );
    }
    assert!(is_png(&out.join("regret.png")));
    assert!(out.join("regret.json").is_file());
    // The human summary names each learner.
    let text = ok(&argv(&format!(
        "online run --learner omd --learner ons:optimistic=true --sequence sea:loss=logloss,sigma=0.1,Sigma=0.2,drift=periodic,dim=4 --rounds 300 --seeds 1 --out {}",
        tmp("online-run-log").display()
    )));
    assert!(text.contains("omd") && text.contains("ons"), "{text}");
}

#[test]
fn online_rate_measures_last_iterate_slopes() {
    let out = tmp("online-rate");
    let s = json(&ok(&argv(&format!(
        "online rate --problem lad --horizons 100,1000,10000 --seeds 8 --out {} --json",
        out.display()
    ))));
    let r = &s["report"];
    let slope = r["last_slope"].as_f64().unwrap();
    assert!((-0.8..-0.3).contains(&slope), "{s}");
    assert_eq!(r["theory_slope"], -0.5);
    let f_star = r["f_star"].as_f64().unwrap();
    assert!(f_star > 2.0 && f_star < 2.5, "{f_star}");
    for p in r["points"].as_array().unwrap() {
        assert!(p["last"]["median"].as_f64().unwrap() > 0.0);
        assert!(p["last"]["q95"].as_f64().unwrap() >= p["last"]["median"].as_f64().unwrap());
    }
    assert!(is_png(&out.join("rate.png")));
    let s = json(&ok(&argv(&format!(
        "online rate --problem hinge --horizons 100,1000 --seeds 4 --noise student:dof=3,scale=0.1 --out {} --json",
        tmp("online-rate-hinge").display()
    ))));
    assert_eq!(s["report"]["theory_slope"], -1.0);
}

#[test]
fn online_refuses_bad_specs_with_one_line() {
    let out = tmp("online-bad");
    let o = out.display();
    for (line, want) in [
        (format!("online run --learner adam --out {o}"), "learner"),
        (format!("online run --learner ogd --sequence sea:sigma=-1 --out {o}"), "sigma"),
        (format!("online run --learner ogd --sequence sea:drift=sideways --out {o}"), "drift"),
        (format!("online run --learner ons --out {o}"), "logloss"),
        (format!("online run --learner ogd --rounds 0 --out {o}"), "rounds"),
        (format!("online run --learner omd --sequence sea:loss=logloss,dim=1000 --rounds 1000000 --out {o}"), "stores"),
        (format!("online rate --problem ridge --out {o}"), "problem"),
        (format!("online rate --horizons 1000,100 --out {o}"), "increasing"),
        (format!("online rate --horizons 0 --out {o}"), "horizons"),
        (format!("online rate --seeds 0 --out {o}"), "seeds"),
        (format!("online rate --method csmd:rule=strong --out {o}"), "mu"),
        (format!("online rate --method csmd:mirror=entropic,domain=ball --out {o}"), "simplex"),
        (format!("online rate --method csmd:rule=sqrt_T,colour=red --out {o}"), "colour"),
        (format!("online rate --noise student:dof=-1 --out {o}"), "dof"),
        (format!("online rate --horizons 100000000,1000000000 --seeds 100 --out {o}"), "allowed"),
    ] {
        fails_with(&argv(&line), want);
    }
}
