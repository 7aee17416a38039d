//! `--help` of every command explains its flags with examples.

use crate::common::{run, text};

#[test]
fn help_explains_flags_with_examples() {
    for (args, want) in [
        (vec!["--help"], "optlab demo"),
        (vec!["train", "--help"], "optlab train --resume"),
        (vec!["demo", "--help"], "optlab demo --out"),
        (vec!["compare", "--help"], "optlab compare --optimizer"),
        (
            vec!["mup", "coord-check", "--help"],
            "optlab mup coord-check",
        ),
        (vec!["mup", "lr-sweep", "--help"], "optlab mup lr-sweep"),
        (vec!["train", "--help"], "--task charlm"),
    ] {
        let o = run(&args);
        let (out, _) = text(&o);
        assert!(o.status.success() && out.contains(want), "{args:?}: {out}");
    }
}
