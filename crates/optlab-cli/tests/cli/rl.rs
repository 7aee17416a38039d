//! `optlab rl train`: TD3 on Pendulum-v1 at a tiny size, and one error line for what is not built or invalid.

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
        (format!("rl train --algo ppo --out {o}"), "available: td3"),
        (format!("rl train --hidden 8-x --out {o}"), "hidden"),
        (format!("rl train --hidden 0 --out {o}"), "hidden"),
        (format!("rl train --steps 0 --out {o}"), "total_steps"),
    ] {
        fails_with(&argv(&line), want);
    }
}
