//! `optlab align`: f-DPO on a tiny character model (outputs, a bit-exact resume after --stop-after, one error
//! line for bad input) and the exact categorical check.

use crate::common::{argv, fails_with, is_png, ok, tmp};

fn sft(dir: &std::path::Path) {
    ok(&argv(&format!(
        "train --task charlm --model transformer:layers=1,dim=16,heads=2,mlp=2 --data text:context=16 --steps 12 --schedule constant \
         --batch-size 8 --eval-every 12 --out {} --quiet",
        dir.display()
    )));
}

#[test]
fn align_dpo_writes_its_run_and_resumes_bit_exactly() {
    let root = tmp("align-dpo");
    let sft_dir = root.join("sft");
    sft(&sft_dir);
    let flags = |out: &std::path::Path| {
        format!(
            "align dpo --sft {} --divergence js --beta 0.5 --pairs 24 --prompt-len 6 --completion-len 6 \
             --eval-prompts 8 --epochs 3 --batch-size 8 --optimizer adam:lr=3e-3 --seed 2 --out {} --quiet",
            sft_dir.display(),
            out.display()
        )
    };
    let full = root.join("full");
    let s: serde_json::Value =
        serde_json::from_str(&ok(&argv(&format!("{} --json", flags(&full))))).unwrap();
    assert_eq!(s["divergence"], "js");
    assert_eq!(s["steps"], 9, "{s}");
    for who in ["reference", "policy"] {
        let e = &s[who];
        let r = e["reward"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&r), "{s}");
        for d in e["distinct"].as_array().unwrap() {
            assert!((0.0..=1.0).contains(&d.as_f64().unwrap()), "{s}");
        }
        assert!(e["entropy"].as_f64().unwrap() > 0.0, "{s}");
    }
    assert_eq!(s["reference"]["kl"].as_f64().unwrap(), 0.0);
    for f in ["loss.png", "eval.png"] {
        assert!(is_png(&full.join(f)), "{f}");
    }
    let metrics = std::fs::read_to_string(full.join("metrics.jsonl")).unwrap();
    assert_eq!(
        metrics.lines().filter(|l| l.contains("\"eval\"")).count(),
        4,
        "{metrics}"
    );
    assert_eq!(
        metrics.lines().filter(|l| l.contains("\"loss\"")).count(),
        9,
        "{metrics}"
    );

    // Stopped after epoch 1, resumed: the same log and weights, byte for byte.
    let part = root.join("part");
    ok(&argv(&format!("{} --stop-after 1", flags(&part))));
    assert!(!part.join("model.safetensors").exists());
    ok(&argv(&format!(
        "align dpo --resume {} --quiet",
        part.display()
    )));
    for f in ["metrics.jsonl", "model.safetensors"] {
        assert_eq!(
            std::fs::read(full.join(f)).unwrap(),
            std::fs::read(part.join(f)).unwrap(),
            "{f} differs after the resume"
        );
    }

    let s = sft_dir.display();
    let o = root.join("bad");
    let o = o.display();
    for (line, want) in [
        (
            format!("align dpo --sft {s} --divergence tv --out {o}"),
            "unknown divergence 'tv'",
        ),
        (
            format!("align dpo --sft {s} --divergence alpha:1 --out {o}"),
            "alpha must lie in (0, 1)",
        ),
        (
            format!("align dpo --sft {s} --beta 0 --out {o}"),
            "beta = 0 must be a positive number",
        ),
        (
            format!("align dpo --sft {s} --reward vowels --out {o}"),
            "expected chars:SET",
        ),
        (
            format!("align dpo --sft {s} --prompt-len 12 --completion-len 8 --out {o}"),
            "context of 16",
        ),
        (
            format!("align dpo --sft {s} --optimizer adam:lr=-1 --out {o}"),
            "lr",
        ),
        (
            format!(
                "align dpo --sft {} --out {o}",
                root.join("missing").display()
            ),
            "no such run directory",
        ),
        (
            format!("align dpo --sft {} --out {o}", root.display()),
            "config.toml",
        ),
        (
            format!("align dpo --resume {}", root.join("missing").display()),
            "cannot read",
        ),
        (format!("align dpo --out {o}"), "needs --sft RUN"),
        (format!("align dpo --sft {s}"), "needs --out DIR"),
    ] {
        fails_with(&argv(&line), want);
    }
    // A resumed run keeps its recorded flags.
    let o = crate::common::run(&argv(&format!(
        "align dpo --resume {} --beta 2",
        part.display()
    )));
    assert!(!o.status.success());
    assert!(crate::common::text(&o).1.contains("cannot be used with"));
}

#[test]
fn align_bandit_reaches_the_exact_optimum() {
    for div in ["reverse-kl", "forward-kl", "js", "alpha:0.3"] {
        let s: serde_json::Value = serde_json::from_str(&ok(&argv(&format!(
            "align bandit --divergence {div} --beta 0.5 --reference 0.4,0.3,0.2,0.1 --reward 0,0.5,1,-0.5 --json"
        ))))
        .unwrap();
        assert!(s["max_abs_error"].as_f64().unwrap() < 1e-3, "{s}");
        let total: f64 = s["exact"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .sum();
        assert!((total - 1.0).abs() < 1e-9, "{s}");
    }
    fails_with(
        &argv("align bandit --reference 0.5,0.4 --reward 0,1"),
        "sum to 1",
    );
    fails_with(&argv("align bandit --reward 1,x"), "'x' is not a number");
}
