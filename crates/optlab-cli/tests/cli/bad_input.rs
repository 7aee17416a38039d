//! One clear error (exit 1, one `error:` line, no panic) for each kind of bad input.

use crate::common::{fails_with, tmp};

#[test]
fn bad_input_gives_one_clear_error() {
    let d = tmp("bad");
    std::fs::create_dir_all(&d).unwrap();
    let csv = d.join("bad.csv");
    std::fs::write(&csv, "a,b,label\n1,2,0\n3,oops,1\n").unwrap();
    let trunc = d.join("trunc.safetensors");
    std::fs::write(&trunc, b"\x10\x00\x00\x00\x00\x00\x00\x00{\"x\":").unwrap();
    let toml = d.join("run.toml");
    std::fs::write(&toml, "epochs = 2\nbatch_sise = 3\n").unwrap();
    let out = d.join("o");
    let o = out.to_str().unwrap();
    fails_with(
        &["train", "--optimizer", "adamx", "--out", o],
        "unknown optimizer 'adamx'; available: sgd, adam, adamw",
    );
    fails_with(
        &["train", "--optimizer", "sgd:lr=-0.1", "--out", o],
        "lr=-0.1 is invalid; it must be >= 0",
    );
    fails_with(
        &["train", "--optimizer", "adam:beta2=1.5", "--out", o],
        "beta2=1.5 is invalid",
    );
    fails_with(
        &[
            "train",
            "--optimizer",
            "sgd:lr=0.1,momentun=0.9",
            "--out",
            o,
        ],
        "unknown key 'momentun'",
    );
    fails_with(
        &["train", "--schedule", "cosin", "--out", o],
        "unknown schedule 'cosin'",
    );
    fails_with(
        &[
            "train",
            "--data",
            &format!("csv:path={}", csv.display()),
            "--out",
            o,
        ],
        "line 3, column 'b': 'oops' is not a number",
    );
    fails_with(
        &["train", "--data", "csv:path=/nonexistent.csv", "--out", o],
        "/nonexistent.csv",
    );
    fails_with(
        &[
            "train",
            "--data",
            &format!("safetensors:path={}", trunc.display()),
            "--out",
            o,
        ],
        "not a valid safetensors file",
    );
    fails_with(
        &["train", "--config", toml.to_str().unwrap(), "--out", o],
        "batch_sise",
    );
    fails_with(
        &["train", "--model", "cnn", "--data", "moons", "--out", o],
        "not a square image",
    );
    fails_with(
        &["train", "--batch-size", "0", "--out", o],
        "batch_size must be at least 1",
    );
    fails_with(&["train", "--resume", d.to_str().unwrap()], "config.toml");
    // Normalization layers: a group count that does not divide the channels; zero-width layers.
    fails_with(
        &[
            "train",
            "--model",
            "cnn:channels=4-8,norm=gn+ws,groups=3",
            "--out",
            o,
        ],
        "groups=3 must divide every channel count [4, 8]",
    );
    fails_with(
        &[
            "train",
            "--model",
            "resnet:channels=4-8,norm=bcn+ws,groups=3",
            "--out",
            o,
        ],
        "groups=3 must divide",
    );
    fails_with(
        &["train", "--model", "cnn:channels=0-8", "--out", o],
        "positive channel counts",
    );
    fails_with(
        &["train", "--model", "mlp:hidden=64-0", "--out", o],
        "hidden widths must be positive",
    );
    fails_with(
        &[
            "train",
            "--task",
            "charlm",
            "--model",
            "transformer:dim=0",
            "--out",
            o,
        ],
        "must be positive",
    );
    // The language-model task: a transformer needs a text, a text needs the task; bad model specs.
    fails_with(
        &["train", "--model", "transformer", "--out", o],
        "--task charlm",
    );
    fails_with(
        &["train", "--task", "charlm", "--data", "digits", "--out", o],
        "task=charlm trains a transformer",
    );
    fails_with(
        &[
            "train",
            "--task",
            "charlm",
            "--model",
            "transformer:dim=30,heads=4",
            "--out",
            o,
        ],
        "heads=4 must divide dim=30",
    );
    fails_with(
        &["train", "--task", "chat", "--out", o],
        "unknown task 'chat'; available: supervised, charlm",
    );
    fails_with(
        &[
            "train",
            "--task",
            "charlm",
            "--data",
            "text:path=/nonexistent.txt",
            "--out",
            o,
        ],
        "/nonexistent.txt",
    );
    fails_with(
        &["train", "--model", "mlp:param=mup,base=0", "--out", o],
        "positive base width",
    );
    fails_with(
        &[
            "train",
            "--model",
            "mlp:param=mup",
            "--optimizer",
            "nsgd",
            "--out",
            o,
        ],
        "mup_rule",
    );
    fails_with(
        &["mup", "lr-sweep", "--model", "cnn", "--out", o],
        "available for mlp and transformer",
    );
    fails_with(
        &["mup", "coord-check", "--widths", "0", "--out", o],
        "positive width",
    );
    std::fs::remove_dir_all(&d).unwrap();
}
