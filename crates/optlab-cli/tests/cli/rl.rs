//! `optlab rl train`: TD3 on Pendulum-v1 and the P16 policy-gradient methods at tiny sizes, and one error line for
//! what is not built or invalid.

use crate::common::{argv, fails_with, is_png, ok, tmp};

#[test]
fn rl_train_writes_episodes_and_a_summary() {
    let out = tmp("rl-td3");
    let s: serde_json::Value = serde_json::from_str(&ok(&argv(&format!(
        "rl train --env pendulum --algo td3 --steps 450 --learning-starts 200 --hidden 8-8 --seed 3 --out {} --json",
        out.display()
    ))))
    .unwrap();
    assert_eq!(s["episodes"], 2);
    let ret = s["mean_return_last_10"].as_f64().unwrap();
    assert!(ret < 0.0 && ret > -3000.0, "{s}");
    let lines = std::fs::read_to_string(out.join("episodes.jsonl")).unwrap();
    assert_eq!(lines.lines().count(), 2);
    assert!(is_png(&out.join("returns.png")));
    let o = out.display();
    for (line, want) in [
        (
            format!("rl train --env cartpole --out {o}"),
            "available: pendulum",
        ),
        (
            format!("rl train --algo ppo --out {o}"),
            "reinforce, n-pg-igt, harpg, td3",
        ),
        (format!("rl train --hidden 8-x --out {o}"), "hidden"),
        (format!("rl train --hidden 0 --out {o}"), "hidden"),
        (format!("rl train --steps 0 --out {o}"), "total_steps"),
    ] {
        fails_with(&argv(&line), want);
    }
}

#[test]
fn rl_train_runs_the_policy_gradient_methods() {
    for algo in ["reinforce", "n-pg-igt", "harpg"] {
        let out = tmp(&format!("rl-pg-{algo}"));
        let s: serde_json::Value = serde_json::from_str(&ok(&argv(&format!(
            "rl train --env lqr --algo {algo} --steps 1000 --batch 2 --lr 0.001 --seed 1 --out {} --json",
            out.display()
        ))))
        .unwrap();
        assert_eq!(s["algo"], algo);
        assert_eq!(s["steps"], 1000, "{s}");
        // J* bounds every policy: the gap is positive and finite.
        let gap = s["final_gap"].as_f64().unwrap();
        assert!(gap > 0.0 && gap.is_finite(), "{s}");
        let rows: Vec<serde_json::Value> = std::fs::read_to_string(out.join("iterations.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(rows.len() as u64, s["iterations"].as_u64().unwrap());
        assert!(rows.iter().all(|r| r["gap"].as_f64().unwrap() > 0.0));
        assert!(is_png(&out.join("returns.png")));
        let policy = optlab::tensor_io::read_safetensors(&out.join("policy.safetensors")).unwrap();
        let mut names: Vec<&String> = policy.keys().collect();
        names.sort();
        assert_eq!(names, ["0.bias", "0.weight", "log_std"]);
    }
    let out = tmp("rl-pg-cartpole");
    let s: serde_json::Value = serde_json::from_str(&ok(&argv(&format!(
        "rl train --env cartpole --algo n-pg-igt --steps 300 --hidden 8 --out {} --json",
        out.display()
    ))))
    .unwrap();
    assert_eq!(s["env"], "CartPole-v1");
    assert!(
        s["mean_return_last_10_iterations"].as_f64().unwrap() >= 8.0,
        "{s}"
    );
    let o = out.display();
    for (line, want) in [
        (
            format!("rl train --env mars --algo harpg --out {o}"),
            "available: cartpole",
        ),
        (
            format!("rl train --env lqr --algo harpg --momentum 0 --out {o}"),
            "eta0",
        ),
        (
            format!("rl train --env lqr --algo reinforce --batch 0 --out {o}"),
            "batch",
        ),
        (
            format!("rl train --env lqr --algo reinforce --lr 100 --out {o}"),
            "diverged",
        ),
    ] {
        fails_with(&argv(&line), want);
    }
}

#[test]
fn rl_bc_sweeps_lipschitz_bounds() {
    let out = tmp("rl-bc");
    let s: serde_json::Value = serde_json::from_str(&ok(&argv(&format!(
        "rl bc --lipschitz 1,none --demos 2 --steps 60 --hidden 8 --eval-states 3 --attack-steps 2 --out {} --json",
        out.display()
    ))))
    .unwrap();
    let rows = s["policies"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    let bounded = &rows[0];
    assert_eq!(bounded["lipschitz"], 1.0);
    assert!(
        bounded["certified_bound"].as_f64().unwrap() <= 1.0 + 1e-6,
        "{bounded}"
    );
    assert!(
        bounded["product_bound"].as_f64().unwrap() <= 1.0 + 1e-8,
        "{bounded}"
    );
    for r in rows {
        assert!(r["nominal_ratio"].as_f64().unwrap() > 0.0);
        assert!(r["worst_cost"].as_f64().unwrap() >= r["nominal_cost"].as_f64().unwrap() * 0.5);
    }
    assert!(s["expert"]["spectral_radius"].as_f64().unwrap() < 1.0);
    assert!(is_png(&out.join("tradeoff.png")) || rows.len() < 3);
    let o = out.display();
    for (line, want) in [
        (format!("rl bc --lipschitz 0 --out {o}"), "positive bounds"),
        (
            format!("rl bc --lipschitz abc --out {o}"),
            "positive bounds",
        ),
        (
            format!("rl bc --system mars --out {o}"),
            "double-integrator, damped",
        ),
        (format!("rl bc --expert gail --out {o}"), "available: lqr"),
        (format!("rl bc --eps nan --out {o}"), "--eps"),
    ] {
        fails_with(&argv(&line), want);
    }
}

#[test]
fn rl_train_gail_imitates_a_td3_expert() {
    let expert = tmp("rl-gail-expert");
    ok(&argv(&format!(
        "rl train --env pendulum --algo td3 --steps 450 --learning-starts 200 --hidden 8-8 --out {} --json",
        expert.display()
    )));
    for reg in ["gp", "spectral"] {
        let out = tmp(&format!("rl-gail-{reg}"));
        let s: serde_json::Value = serde_json::from_str(&ok(&argv(&format!(
            "rl train --env pendulum --algo gail --reg {reg} --expert {} --demos 2 --steps 450 --learning-starts 200 --hidden 8-8 --out {} --json",
            expert.display(),
            out.display()
        ))))
        .unwrap();
        assert_eq!(s["episodes"], 2);
        assert!(s["expert_return"].as_f64().unwrap() < 0.0);
        let lip = &s["reward_local_lipschitz"];
        assert!(
            lip["median"].as_f64().unwrap() > 0.0
                && lip["max"].as_f64().unwrap() >= lip["median"].as_f64().unwrap()
        );
        let d =
            optlab::tensor_io::read_safetensors(&out.join("discriminator.safetensors")).unwrap();
        assert_eq!(d.contains_key("0.weight_orig"), reg == "spectral");
    }
    let (e, o) = (expert.display(), tmp("rl-gail-bad"));
    let o = o.display();
    for (line, want) in [
        (format!("rl train --algo gail --out {o}"), "--expert"),
        (
            format!("rl train --algo gail --expert {e} --reg lasso --out {o}"),
            "gp, spectral",
        ),
        (
            format!("rl train --algo gail --expert {o} --out {o}"),
            "actor.safetensors",
        ),
        (
            format!("rl train --algo gail --env cartpole --expert {e} --out {o}"),
            "available: pendulum",
        ),
        (
            format!("rl train --algo gail --expert {e} --demos 0 --out {o}"),
            "--demos",
        ),
    ] {
        fails_with(&argv(&line), want);
    }
}

#[test]
fn rl_train_mbpo_reports_the_bellman_gap() {
    for (models, reg) in [(1, "spectral"), (2, "adv")] {
        let out = tmp(&format!("rl-mbpo-{models}"));
        let s: serde_json::Value = serde_json::from_str(&ok(&argv(&format!(
            "rl train --env pendulum --algo mbpo --models {models} --reg {reg} --steps 260 --learning-starts 200 --hidden 8-8 --updates-per-step 2 --out {} --json",
            out.display()
        ))))
        .unwrap();
        assert_eq!(s["models"], models);
        assert_eq!(s["model_transitions"], 64 * 60, "{s}");
        let gap = s["bellman_gap"].as_f64().unwrap();
        assert!(gap.is_finite() && gap >= 0.0, "{s}");
        assert_eq!(s["model_nll"].as_array().unwrap().len(), models);
        assert!(is_png(&out.join("returns.png")));
    }
    let o = tmp("rl-mbpo-bad");
    let o = o.display();
    for (line, want) in [
        (
            format!("rl train --algo mbpo --models 0 --out {o}"),
            "1 to 16 models",
        ),
        (
            format!("rl train --algo mbpo --reg gp --out {o}"),
            "spectral-all, adv",
        ),
        (
            format!("rl train --algo mbpo --reg adv --adv-eps 0 --out {o}"),
            "--adv-eps",
        ),
        (
            format!("rl train --algo mbpo --env lqr --out {o}"),
            "available: pendulum",
        ),
        (
            format!("rl train --algo td3 --updates-per-step 0 --out {o}"),
            "updates_per_step",
        ),
    ] {
        fails_with(&argv(&line), want);
    }
}

#[test]
fn rl_eval_replays_trained_policies() {
    let td3 = tmp("rl-eval-td3");
    ok(&argv(&format!(
        "rl train --env pendulum --algo td3 --steps 450 --learning-starts 200 --hidden 8-8 --out {} --json",
        td3.display()
    )));
    let pg = tmp("rl-eval-pg");
    ok(&argv(&format!(
        "rl train --env cartpole --algo n-pg-igt --steps 300 --hidden 8 --out {} --json",
        pg.display()
    )));
    for (dir, env) in [(&td3, "Pendulum-v1"), (&pg, "CartPole-v1")] {
        let s: serde_json::Value = serde_json::from_str(&ok(&argv(&format!(
            "rl eval {} --episodes 3 --json",
            dir.display()
        ))))
        .unwrap();
        assert_eq!(s["env"], env);
        let (lo, mean, hi) = (
            s["min_return"].as_f64().unwrap(),
            s["mean_return"].as_f64().unwrap(),
            s["max_return"].as_f64().unwrap(),
        );
        assert!(lo <= mean && mean <= hi, "{s}");
    }
    // A CartPole policy's file in a Pendulum run: the observation sizes differ.
    let mixed = tmp("rl-eval-mixed");
    std::fs::create_dir_all(&mixed).unwrap();
    std::fs::copy(
        pg.join("policy.safetensors"),
        mixed.join("policy.safetensors"),
    )
    .unwrap();
    let summary = std::fs::read_to_string(pg.join("summary.json"))
        .unwrap()
        .replace("CartPole-v1", "LQR");
    std::fs::write(mixed.join("summary.json"), summary).unwrap();
    fails_with(
        &argv(&format!("rl eval {} --episodes 2", mixed.display())),
        "observations",
    );
    fails_with(
        &argv(&format!("rl eval {} --episodes 0", td3.display())),
        "--episodes",
    );
    fails_with(
        &argv(&format!("rl eval {}", tmp("rl-eval-none").display())),
        "summary.json",
    );
}

/// Asserts that the files `names` are byte-identical in the run directories `a` and `b`.
fn same_files(a: &std::path::Path, b: &std::path::Path, names: &[&str]) {
    for f in names {
        assert!(
            std::fs::read(a.join(f)).unwrap() == std::fs::read(b.join(f)).unwrap(),
            "{f} differs after the resume"
        );
    }
}

/// A TD3 run killed after a checkpoint, and a policy-gradient run stopped with --stop-after, resume bit-exactly:
/// the log and the weights equal those of the uninterrupted run.
#[test]
fn rl_train_resumes_a_killed_run_bit_exactly() {
    let td3 = "rl train --env pendulum --algo td3 --steps 1400 --learning-starts 200 --hidden 8-8 --seed 2 --checkpoint-every 200";
    let (full, cut) = (tmp("rl-resume-full"), tmp("rl-resume-cut"));
    ok(&argv(&format!("{td3} --out {} --json", full.display())));
    let mut child = crate::common::optlab()
        .args(argv(&format!("{td3} --out {} --json", cut.display())))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Kill it once a checkpoint after step 400 exists (or let it finish on a very fast machine).
    let latest = cut.join("checkpoints/latest.json");
    let t0 = std::time::Instant::now();
    loop {
        let step = std::fs::read_to_string(&latest)
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| v["step"].as_u64());
        if step.is_some_and(|s| s >= 400) || child.try_wait().unwrap().is_some() {
            break;
        }
        assert!(t0.elapsed().as_secs() < 300, "no checkpoint appeared");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    // Flags beside --resume are refused (the recorded ones rule).
    let o = crate::common::run(&argv(&format!(
        "rl train --resume {} --steps 5",
        cut.display()
    )));
    assert_eq!(o.status.code(), Some(2));
    assert!(crate::common::text(&o).1.contains("cannot be used with"));
    ok(&argv(&format!(
        "rl train --resume {} --json",
        cut.display()
    )));
    same_files(&full, &cut, &["episodes.jsonl", "actor.safetensors"]);
    // A fresh run into a directory with checkpoints is refused.
    fails_with(&argv(&format!("{td3} --out {}", cut.display())), "--resume");

    let pg = "rl train --env cartpole --algo harpg --steps 2000 --batch 2 --hidden 8 --seed 1 --checkpoint-every 500";
    let (full, cut) = (tmp("rl-resume-pg-full"), tmp("rl-resume-pg-cut"));
    ok(&argv(&format!("{pg} --out {} --json", full.display())));
    let (_, err) = crate::common::text(&crate::common::run(&argv(&format!(
        "{pg} --stop-after 700 --out {}",
        cut.display()
    ))));
    assert!(
        err.contains("continue with: optlab rl train --resume"),
        "{err}"
    );
    ok(&argv(&format!(
        "rl train --resume {} --json",
        cut.display()
    )));
    same_files(&full, &cut, &["iterations.jsonl", "policy.safetensors"]);
    // Nothing to resume: one line each.
    let empty = tmp("rl-resume-none");
    std::fs::create_dir_all(&empty).unwrap();
    fails_with(
        &argv(&format!("rl train --resume {}", empty.display())),
        "config.toml",
    );
}
