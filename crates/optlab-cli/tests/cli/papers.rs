//! `optlab papers`: the 42 seed papers from the method registry.

use crate::common::{fails_with, run, text};

#[test]
fn papers_lists_42_rows_with_modules_for_the_implemented_ones() {
    let o = run(&["papers", "--json"]);
    let (stdout, stderr) = text(&o);
    assert!(o.status.success(), "{stderr}");
    let rows: Vec<serde_json::Value> = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(rows.len(), 42);
    let done: Vec<&serde_json::Value> = rows.iter().filter(|r| r["status"] != "not_yet").collect();
    assert!(done.len() >= 21, "{} papers with code", done.len());
    for r in &done {
        assert!(
            !r["modules"].as_array().unwrap().is_empty()
                && !r["commands"].as_array().unwrap().is_empty(),
            "{r}"
        );
    }
    let lion = rows.iter().find(|r| r["id"] == "P41").unwrap();
    assert_eq!(lion["status"], "implemented");
    assert_eq!(lion["modules"][0], "optlab::optim::lion");
    let o = run(&["papers", "--markdown"]);
    let md = String::from_utf8_lossy(&o.stdout);
    let committed =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/papers.md"))
            .unwrap();
    assert_eq!(md, committed, "docs/papers.md is out of date");
    // An optimizer the registry lacks is named with the registered ones; a bare `chain` says what it needs.
    fails_with(
        &[
            "train",
            "--optimizer",
            "adamq",
            "--out",
            "/tmp/optlab-never",
        ],
        "unknown optimizer 'adamq'; available: sgd, adam, adamw",
    );
    fails_with(
        &[
            "train",
            "--optimizer",
            "chain",
            "--out",
            "/tmp/optlab-never",
        ],
        "chain needs at least one transformation",
    );
}
