//! `optlab explain counterfactual` on a run trained on the embedded German Credit data: a counterfactual that
//! flips the decision, keeps the immutable columns and one-hot categories, and one error line for bad input.

use crate::common::{argv, fails_with, ok, tmp};

#[test]
fn explain_counterfactual_flips_a_rejected_row() {
    let run = tmp("explain-credit");
    ok(&argv(&format!(
        "train --data german --model mlp:hidden=32 --optimizer adam:lr=1e-2 --epochs 5 --seed 1 --out {} --quiet",
        run.display()
    )));
    let r = run.display();
    let mut flipped = 0;
    for row in [1, 4, 10] {
        for method in ["l1", "trex:k=50,steps=3", "closest"] {
            let s: serde_json::Value = serde_json::from_str(&ok(&argv(&format!(
                "explain counterfactual {r} --row {row} --method {method} --json"
            ))))
            .unwrap();
            if s["found"] == true {
                flipped += 1;
                assert!(s["probability_after"].as_f64().unwrap() > 0.5, "{s}");
                let changed = s["changed"].as_array().unwrap();
                assert!(!changed.is_empty(), "{s}");
                for c in changed {
                    let col = c["column"].as_str().unwrap();
                    assert!(
                        col != "personal status and sex" && col != "foreign worker",
                        "an immutable column changed: {s}"
                    );
                    // The whole rows, in the data's units, agree with the list of changes.
                    assert_eq!(s["original"][col], c["from"], "{s}");
                    assert_eq!(s["counterfactual"][col], c["to"], "{s}");
                }
                let (orig, cf) = (
                    s["original"].as_object().unwrap(),
                    s["counterfactual"].as_object().unwrap(),
                );
                assert_eq!((orig.len(), cf.len()), (20, 20));
                let differ = orig.iter().filter(|(k, v)| cf[k.as_str()] != **v).count();
                assert_eq!(differ, changed.len(), "{s}");
                let s_val = s["stability"].as_f64().unwrap();
                assert!(s_val <= 1.0, "{s}");
            }
        }
    }
    assert!(flipped >= 2, "too few counterfactuals found ({flipped})");
    // Row 1 of the embedded file as an --input array (the table's column order): the same answer as --row 1.
    let row1 = r#"["A12", 48, "A32", "A43", 5951, "A61", "A73", 2, "A92", "A101", 2, "A121", 22, "A143", "A152", 1,
        "A173", 1, "A191", "A201"]"#;
    let input = |name: &str, text: &str| {
        let p = run.join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    };
    let by_row = ok(&argv(&format!(
        "explain counterfactual {r} --row 1 --method l2 --json"
    )));
    let by_input = ok(&argv(&format!(
        "explain counterfactual {r} --input {} --method l2 --json",
        input("row1.json", row1)
    )));
    let (by_row, by_input): (serde_json::Value, serde_json::Value) = (
        serde_json::from_str(&by_row).unwrap(),
        serde_json::from_str(&by_input).unwrap(),
    );
    assert_eq!(by_row["changed"], by_input["changed"]);
    assert_eq!(by_row["l2"], by_input["l2"]);
    // The run recorded its encoding (the standardization statistics) next to the model; explain checks it.
    let enc_path = run.join("encoding.json");
    let saved = std::fs::read_to_string(&enc_path).unwrap();
    let enc: serde_json::Value = serde_json::from_str(&saved).unwrap();
    assert_eq!(enc["features"], 63, "{enc}");
    let mut other = enc.clone();
    other["mean"][1] = serde_json::json!(1234.5);
    std::fs::write(&enc_path, other.to_string()).unwrap();
    fails_with(
        &argv(&format!("explain counterfactual {r} --row 1")),
        "the encoding the model was trained with differs from the embedded german table's",
    );
    std::fs::write(&enc_path, "{").unwrap();
    fails_with(
        &argv(&format!("explain counterfactual {r} --row 1")),
        "not an encoding",
    );
    std::fs::write(&enc_path, saved).unwrap();
    let short = input("short.json", &row1.replace(r#", "A201""#, ""));
    let unseen = input("unseen.json", &row1.replace("A12", "A19"));
    let unknown = input("unknown.json", r#"{"salary": 1}"#);
    for (line, want) in [
        (
            format!("explain counterfactual {r} --input {short}"),
            "19 values for the 20 columns",
        ),
        (
            format!("explain counterfactual {r} --input {unseen}"),
            "category 'A19' was not seen in training",
        ),
        (
            format!("explain counterfactual {r} --input {unknown}"),
            "german has no column 'salary'",
        ),
        (
            format!("explain counterfactual {r} --row 5000"),
            "rows 0..1000",
        ),
        (
            format!("explain counterfactual {r} --row 1 --method l3"),
            "available: l1, l2, trex, closest",
        ),
        (
            format!("explain counterfactual {r} --row 1 --method trex:tau=nan"),
            "tau",
        ),
        (
            format!("explain counterfactual {r} --row 1 --method trex:k=0"),
            "K",
        ),
        (
            "explain counterfactual /nonexistent --row 1".to_string(),
            "config.toml",
        ),
    ] {
        fails_with(&argv(&line), want);
    }
}

/// A run whose model approves only applicants who are not foreign workers (an immutable column): explaining a
/// foreign worker is one error line naming that column, for the search and for the closest training row; the
/// same model file in a run of another architecture does not load.
#[test]
fn explain_names_an_immutable_column_that_must_change() {
    use candle_core::{DType, Device, Tensor};
    let run = tmp("explain-immutable");
    ok(&argv(&format!(
        "train --data german --model mlp:hidden=2 --optimizer adam:lr=1e-2 --epochs 1 --out {} --quiet",
        run.display()
    )));
    let enc = optlab::data::tabular::german_credit().unwrap().encoding();
    let d = enc.features;
    let j = enc
        .columns
        .iter()
        .position(|c| c.name == "foreign worker")
        .unwrap();
    let level =
        |l: &str| enc.offsets[j] + enc.columns[j].levels.iter().position(|v| v == l).unwrap();
    let (yes, no) = (level("A201"), level("A202"));
    // h = relu(±(x[no] − x[yes])); logits (h₁, h₀): class 1 (good) exactly for a non-foreign worker.
    let mut w1 = vec![0f32; 2 * d];
    (w1[no], w1[yes], w1[d + no], w1[d + yes]) = (1.0, -1.0, -1.0, 1.0);
    let cpu = &Device::Cpu;
    let tensors: Vec<(String, Tensor)> = [
        ("0.weight", Tensor::from_vec(w1, (2, d), cpu)),
        ("0.bias", Tensor::zeros(2, DType::F32, cpu)),
        ("2.weight", Tensor::new(&[[0f32, 1.0], [1.0, 0.0]], cpu)),
        ("2.bias", Tensor::zeros(2, DType::F32, cpu)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.unwrap()))
    .collect();
    let model = run.join("model.safetensors");
    optlab::tensor_io::write_safetensors(&model, &tensors, None).unwrap();
    // Row 1 is a foreign worker (A201).
    let r = run.display();
    for method in ["l2", "closest"] {
        fails_with(
            &argv(&format!(
                "explain counterfactual {r} --row 1 --method {method}"
            )),
            "no counterfactual within the budget keeps the immutable columns; with them free, the search flips the decision by changing foreign worker",
        );
    }
    let other = tmp("explain-other-architecture");
    ok(&argv(&format!(
        "train --data german --model mlp:hidden=8 --optimizer adam:lr=1e-2 --epochs 1 --out {} --quiet",
        other.display()
    )));
    std::fs::copy(&model, other.join("model.safetensors")).unwrap();
    fails_with(
        &argv(&format!(
            "explain counterfactual {} --row 1",
            other.display()
        )),
        "the model does not load",
    );
}

/// The retraining study at a tiny size: every method reports validity in [0, 1] over the points it found; 50
/// points are more than one fold of breast cancer's 569 rows holds (at most 114 test rows, about 40 rejected).
#[test]
fn explain_validity_reports_each_method() {
    let out = tmp("explain-validity");
    let s: serde_json::Value = serde_json::from_str(&ok(&argv(&format!(
        "explain validity --data breast-cancer --models 2 --points 50 --epochs 5 --methods l2,trex:k=20,steps=2,closest --out {} --json",
        out.display()
    ))))
    .unwrap();
    assert_eq!(s["models"], 2);
    assert!(s["folds"].as_u64().unwrap() >= 2, "{s}");
    let methods = s["methods"].as_array().unwrap();
    assert_eq!(methods.len(), 3);
    assert_eq!(methods[2]["method"], "closest");
    for m in methods {
        let v = m["validity"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&v), "{m}");
        assert!(m["found"].as_u64().unwrap() <= m["tried"].as_u64().unwrap());
        assert_eq!(m["tried"], 50, "{m}");
    }
    assert!(s["baseline_accuracy"].as_f64().unwrap() > 0.6, "{s}");
    assert!(out.join("validity.json").is_file());
    let o = out.display();
    for (line, want) in [
        (
            format!("explain validity --data adult --out {o}"),
            "german, breast-cancer",
        ),
        (
            format!("explain validity --models 0 --out {o}"),
            "1 to 1000 models",
        ),
        (
            format!("explain validity --folds 1 --out {o}"),
            "2 to 20 folds",
        ),
        (
            format!("explain validity --methods l3 --out {o}"),
            "available: l1, l2, trex, closest",
        ),
    ] {
        fails_with(&argv(&line), want);
    }
}
