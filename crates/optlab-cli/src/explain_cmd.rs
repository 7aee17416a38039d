//! `optlab explain counterfactual`: a counterfactual for one row of an embedded table (P07), from a run directory
//! of `optlab train --data german|breast-cancer`: the base search of the official code (ART's elastic-net attack,
//! L1 or L2 rule) and, with `--method trex`, T-Rex's Stability ascent; the changed columns in the data's units,
//! the class probabilities before and after, and the Stability at the counterfactual.

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use optlab::data::tabular::{breast_cancer, german_credit, Encoding, Table, Value};
use optlab::data::DataSpec;
use optlab::explain::ead::EadConfig;
use optlab::explain::stability::{gaussian_noise, stability_and_gradient};
use optlab::explain::table::counterfactual as counterfactual_for_row;
use optlab::explain::table::{
    blocking_immutables, closest_counterfactual, closest_within, counterfactual_within,
};
use optlab::explain::trex::{class_probability, TrexConfig};
use optlab::explain::validity::{Method, ValidityConfig};
use optlab::rng::{rng_for, Stream};
use optlab::train::{TrainConfig, Trainer};
use serde_json::json;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct ExplainArgs {
    #[command(subcommand)]
    pub what: ExplainWhat,
}

#[derive(Subcommand, Debug)]
pub enum ExplainWhat {
    /// A counterfactual for one row: the smallest change (L1 or L2, as the official IGD_L1 / IGD_L2) that moves the
    /// model's decision to the other class, made robust to model changes by T-Rex with --method trex.
    #[command(
        after_help = "Examples:\n  optlab train --data german --model mlp:hidden=128-128 --optimizer adam:lr=1e-3 --epochs 50 --out runs/credit\n  optlab explain counterfactual runs/credit --row 1 --method l1\n  optlab explain counterfactual runs/credit --row 1 --method trex:tau=0.75,sigma=0.05 --json\n  optlab explain counterfactual runs/credit --input applicant.json --method closest\n\nThe base search is ART's elastic-net attack with the official settings (confidence 0.5, learning rate 1e-3,\n60 iterations, 9 binary-search steps; beta 1 and the L1 rule for l1, beta 0 and the L2 rule for l2 and trex).\nT-Rex then climbs the Stability R = mean m(x_i) - mean |m(x_i) - m(x)| (x_i ~ N(x, sigma^2 I), K samples) in\nsteps of --step along the unit gradient, within radius 1 of the base counterfactual, until R >= tau or --steps\nsteps (official: tau 0.75, sigma 0.05, K 1000, 20 steps of 0.01). Immutable columns (personal status and sex,\nforeign worker) stay fixed, age may only grow, numbers stay in the data's range, and categories are one-hot\nagain at the end. \"No counterfactual found\" is an answer, not an error; where the search finds one only with the\nimmutable columns free, the answer is an error naming the columns it would change."
    )]
    Counterfactual(CounterfactualArgs),
    /// P07's claim: counterfactuals found on a baseline model, checked on retrained models (half with other
    /// seeds, half also with 10% of the training rows replaced); validity, L1 and L2 cost, Stability and time per
    /// method. Writes DIR/validity.json.
    #[command(
        after_help = "Examples:\n  optlab explain validity --data german --models 50 --points 100 --out runs/validity\n  optlab explain validity --data breast-cancer --models 10 --points 20 --methods l1,trex:tau=0.6 --out runs/v --json\n\nThe models are MLPs 128-128 (ReLU) trained as the official code trains its Keras model (Adam 1e-3, 50 epochs,\nbatch 256) on all folds but one (5 seeded folds: 80% of the rows); the points are rows of the held-out fold\nlabelled 0 and predicted 0, taken fold by fold until --points are explained."
    )]
    Validity(ValidityArgs),
}

#[derive(Args, Debug)]
pub struct ValidityArgs {
    /// german or breast-cancer.
    #[arg(long, default_value = "german")]
    data: String,
    /// Changed models.
    #[arg(long, default_value_t = 50)]
    models: usize,
    /// Rejected test rows to explain (at most).
    #[arg(long, default_value_t = 100)]
    points: usize,
    /// Methods, separated by `;` or `,` between names: l1, l2, trex[:tau=..,sigma=..,k=..,steps=..,step=..],
    /// closest (the nearest training row of the other class).
    #[arg(long, default_value = "l1,l2,trex,closest")]
    methods: String,
    /// Epochs of every model.
    #[arg(long, default_value_t = 50)]
    epochs: u64,
    /// Folds: each in turn is the test rows (the points come from them) of models trained on the others, until
    /// --points rows are explained.
    #[arg(long, default_value_t = 5)]
    folds: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long)]
    out: PathBuf,
    /// The result as one JSON object on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
pub struct CounterfactualArgs {
    /// A run directory of `optlab train --data german|breast-cancer`.
    run: PathBuf,
    /// The row of the table to explain (0-based, in the embedded file's order).
    #[arg(long, required_unless_present = "input", conflicts_with = "input")]
    row: Option<usize>,
    /// A row to explain from a JSON file instead: an object of column name -> value (a number, or a category's
    /// code such as "A11"), or an array of the values in the table's column order.
    #[arg(long)]
    input: Option<PathBuf>,
    /// l1, l2, trex[:tau=..,sigma=..,k=..,steps=..,step=..], or closest (the nearest training row the model gives
    /// the other class, within the row's constraints).
    #[arg(long, default_value = "trex")]
    method: String,
    /// The seed of the Stability samples.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// The result as one JSON object on stdout.
    #[arg(long)]
    json: bool,
}

pub fn run(a: ExplainArgs) -> Result<()> {
    match a.what {
        ExplainWhat::Counterfactual(c) => counterfactual(c),
        ExplainWhat::Validity(v) => validity(v),
    }
}

/// The base rule and T-Rex's settings of `--method`.
fn parse_method(s: &str) -> Result<(EadConfig, Option<TrexConfig>)> {
    let mut spec = optlab::Spec::parse(s)?;
    let out = match spec.name.as_str() {
        "l1" => (EadConfig::l1(), None),
        "l2" => (EadConfig::l2(), None),
        "trex" => {
            let d = TrexConfig::default();
            let t = TrexConfig {
                tau: spec.f64("tau", d.tau)?,
                sigma: spec.f64("sigma", d.sigma)?,
                k: spec.usize("k", d.k)?,
                max_steps: spec.usize("steps", d.max_steps)?,
                step: spec.f64("step", d.step as f64)? as f32,
                ..d
            };
            (EadConfig::l2(), Some(t))
        }
        other => bail!("--method {other}: available: l1, l2, trex, closest"),
    };
    spec.finish()?;
    if let Some(t) = &out.1 {
        if t.k > 100_000 || t.max_steps > 10_000 {
            bail!("--method trex: k at most 100000 and steps at most 10000");
        }
    }
    Ok(out)
}

fn counterfactual(a: CounterfactualArgs) -> Result<()> {
    let closest = a.method.trim() == "closest";
    let (ead, trex_cfg) = if closest {
        (EadConfig::l2(), None)
    } else {
        parse_method(&a.method)?
    };
    let cfg = TrainConfig::from_toml_file(&a.run.join("config.toml"))?;
    let table: Table = match cfg.data {
        DataSpec::German => german_credit()?,
        DataSpec::BreastCancer => breast_cancer()?,
        ref other => bail!(
            "{}: trained on --data {other}; explain needs a run on german or breast-cancer",
            a.run.display()
        ),
    };
    let (raw, label) = match (a.row, &a.input) {
        (Some(r), _) if r >= table.rows.len() => {
            bail!("--row {r}: {} has rows 0..{}", table.name, table.rows.len())
        }
        (Some(r), _) => (table.rows[r].clone(), format!("row {r}")),
        (None, Some(path)) => (read_row(&table, path)?, format!("{} input", path.display())),
        (None, None) => bail!("give --row I or --input FILE"),
    };
    let trainer = Trainer::new(cfg)?;
    let net = trainer.model();
    net.load(&a.run.join("model.safetensors"))
        .with_context(|| format!("{}: the model does not load", a.run.display()))?;
    let enc = saved_encoding(&a.run, &table)?;
    let d = enc.features;
    let x = enc.encode_row(&raw)?;
    // T-Rex's samples: a stream per row; an --input row takes one no row index reaches (u64::MAX is the
    // Stability report's below).
    let mut rng = rng_for(
        a.seed,
        Stream::Probe,
        a.row.map_or(u64::MAX - 1, |r| r as u64),
    );
    let res = if closest {
        closest_counterfactual(net, &enc, &x, &trainer.train_data().x)?
    } else {
        counterfactual_for_row(
            net,
            &enc,
            &x,
            &ead,
            trex_cfg.as_ref().map(|t| (t, &mut rng)),
        )?
    };
    if !res.found {
        // One that only an immutable column's change would give is refused, not reported as a search result.
        let points = &trainer.train_data().x;
        let blocking = blocking_immutables(&enc, &x, |free| {
            if closest {
                closest_within(net, &enc, &x, points, free)
            } else {
                counterfactual_within(net, &enc, &x, &ead, None, free)
            }
        })?;
        if !blocking.is_empty() {
            bail!(
                "{label}: no counterfactual within the budget keeps the immutable columns; with them free, the search flips the decision by changing {}",
                blocking.join(", ")
            );
        }
    }
    let (class, cf, found) = (res.class, res.counterfactual.clone(), res.found);
    let target = 1 - class;
    let steps = res.trex.as_ref().map(|r| (r.stability.len(), r.reached));
    let (tau, sigma, k) = trex_cfg
        .as_ref()
        .map_or((0.75, 0.05, 1000), |t| (t.tau, t.sigma, t.k));
    let mut rng = rng_for(a.seed, Stream::Probe, u64::MAX);
    let noise = gaussian_noise(k, d, sigma, &mut rng)?;
    let (stability, _) = stability_and_gradient(net, &cf, &noise, target)?;
    let lipschitz = optlab::explain::local_lipschitz(net, &cf, sigma)?;
    let (before, after) = (enc.decode_row(&x)?, enc.decode_row(&cf)?);
    let show = |c: usize, v: &Value| -> String {
        match v {
            Value::Number(n) => significant(*n),
            Value::Level(l) => enc.columns[c].levels[*l].clone(),
        }
    };
    // Changed in the data's own units, as shown (6 significant digits, below the f32 features' rounding): a
    // smaller move of a number is not reported.
    let differs = |c: usize| show(c, &before[c]) != show(c, &after[c]);
    let changed: Vec<serde_json::Value> = (0..enc.columns.len())
        .filter(|&c| differs(c))
        .map(|c| json!({"column": enc.columns[c].name, "from": show(c, &before[c]), "to": show(c, &after[c])}))
        .collect();
    // Both rows whole, in the data's own units.
    let row_object = |row: &[Value]| -> serde_json::Map<String, serde_json::Value> {
        row.iter()
            .enumerate()
            .map(|(c, v)| (enc.columns[c].name.clone(), json!(show(c, v))))
            .collect()
    };
    let l1: f32 = x.iter().zip(&cf).map(|(p, q)| (p - q).abs()).sum();
    let l2: f32 = x
        .iter()
        .zip(&cf)
        .map(|(p, q)| (p - q) * (p - q))
        .sum::<f32>()
        .sqrt();
    let summary = json!({
        "data": table.name, "row": a.row, "input": a.input, "method": a.method, "class": table.classes[class],
        "counterfactual_class": table.classes[target], "found": found,
        "probability_before": class_probability(net, &x, target)?,
        "probability_after": class_probability(net, &cf, target)?,
        "stability": stability, "stability_samples": k, "sigma": sigma, "tau": tau,
        "local_lipschitz": lipschitz,
        "trex_steps": steps.map(|s| s.0), "tau_reached": steps.map(|s| s.1),
        "categories_fixed_in_a_second_search": res.second_pass,
        "l1": l1, "l2": l2, "changed": changed,
        "original": row_object(&before), "counterfactual": row_object(&after),
    });
    if a.json {
        println!("{summary}");
        return Ok(());
    }
    println!(
        "{} {}: {} (p({}) = {:.3})",
        table.name,
        label,
        table.classes[class],
        table.classes[target],
        summary["probability_before"].as_f64().unwrap_or(f64::NAN)
    );
    if !found {
        println!(
            "no counterfactual found within the budget ({}); the closest iterate keeps the decision",
            a.method
        );
        return Ok(());
    }
    println!(
        "counterfactual ({}): p({}) = {:.3}, Stability {:.3} (K {k}, sigma {sigma}){}; L1 {l1:.3}, L2 {l2:.3} in standardized units; local Lipschitz bound of the logits {lipschitz:.3} (l-inf ball of radius {sigma})",
        a.method,
        table.classes[target],
        summary["probability_after"].as_f64().unwrap_or(f64::NAN),
        stability,
        steps.map_or(String::new(), |(n, r)| format!(
            ", {n} T-Rex steps, tau {tau} {}",
            if r { "reached" } else { "not reached" }
        ))
    );
    println!(
        "  {:<32} {:>14} {:>14}",
        "column", "original", "counterfactual"
    );
    for (c, col) in enc.columns.iter().enumerate() {
        println!(
            "{} {:<32} {:>14} {:>14}",
            if differs(c) { "*" } else { " " },
            col.name,
            show(c, &before[c]),
            show(c, &after[c])
        );
    }
    println!(
        "(* changed: {} of {} columns)",
        changed.len(),
        enc.columns.len()
    );
    Ok(())
}

/// A number of the data in 6 significant digits, trailing zeros dropped (5951, 42.5479, 1.745).
fn significant(v: f64) -> String {
    let digits = if v == 0.0 || !v.is_finite() {
        1
    } else {
        v.abs().log10().floor() as i32 + 1
    };
    let decimals = (6 - digits).clamp(0, 6) as usize;
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// `--methods`: names at the top level; a trex spec keeps its own `key=value` pairs.
fn parse_methods(s: &str) -> Result<Vec<Method>> {
    let mut out = Vec::new();
    let mut parts: Vec<String> = Vec::new();
    for piece in s.split(&[',', ';'][..]) {
        let piece = piece.trim();
        match parts.last_mut() {
            Some(last) if piece.contains('=') && !piece.contains(':') => {
                last.push(',');
                last.push_str(piece);
            }
            _ => parts.push(piece.to_string()),
        }
    }
    for p in &parts {
        if p == "closest" {
            out.push(Method::Closest);
            continue;
        }
        let (_, t) = parse_method(p)?;
        out.push(match (p.split(':').next().unwrap_or(""), t) {
            ("l1", _) => Method::L1,
            ("l2", _) => Method::L2,
            (_, Some(t)) => Method::Trex(t),
            (other, None) => bail!("--methods {other}: available: l1, l2, trex, closest"),
        });
    }
    if out.is_empty() || out.len() > 16 {
        bail!("--methods: give 1 to 16 methods");
    }
    Ok(out)
}

fn validity(a: ValidityArgs) -> Result<()> {
    let table = match a.data.as_str() {
        "german" => german_credit()?,
        "breast-cancer" => breast_cancer()?,
        other => bail!("--data {other}: available: german, breast-cancer"),
    };
    let cfg = ValidityConfig {
        models: a.models,
        points: a.points,
        epochs: a.epochs,
        folds: a.folds,
        seed: a.seed,
        methods: parse_methods(&a.methods)?,
        ..ValidityConfig::default()
    };
    if a.epochs > 10_000 || a.points > 100_000 {
        bail!("--epochs at most 10000 and --points at most 100000");
    }
    let _lock = optlab::train::run_dir::RunDirLock::acquire(&a.out)?;
    let bar = crate::progress::bar("validity", a.json);
    bar.set_length((a.models as u64 + 1 + cfg.methods.len() as u64) * a.folds as u64);
    let report = optlab::explain::validity::run(&table, &cfg, &a.out, |m| {
        bar.inc(1);
        bar.set_message(m.to_string());
    })?;
    bar.finish_and_clear();
    optlab::tensor_io::write_atomic(
        &a.out.join("validity.json"),
        serde_json::to_string_pretty(&report)?.as_bytes(),
    )?;
    if a.json {
        println!("{}", serde_json::to_string(&report)?);
        return Ok(());
    }
    println!(
        "{}: {} folds of {} training rows, {} test rows in all; test accuracy {:.3} (baselines), {:.3} ({} changed models per fold)",
        report.data,
        report.folds,
        report.train_rows,
        report.test_rows,
        report.baseline_accuracy,
        report.changed_accuracy,
        report.models
    );
    println!(
        "{:<44} {:>9} {:>16} {:>8} {:>8} {:>10} {:>10} {:>10}",
        "method", "found", "validity", "L1", "L2", "stability", "local Lip", "ms/point"
    );
    for m in &report.methods {
        println!(
            "{:<44} {:>4}/{:<4} {:>9.3} ± {:.3} {:>8.3} {:>8.3} {:>10.3} {:>10.3} {:>10.1}",
            m.method,
            m.found,
            m.tried,
            m.validity,
            m.validity_se,
            m.l1,
            m.l2,
            m.stability,
            m.local_lipschitz,
            m.seconds * 1e3
        );
    }
    println!("wrote {}", a.out.join("validity.json").display());
    Ok(())
}

/// The encoding the run recorded next to its model (`encoding.json`), which must be the embedded table's; a run
/// written before the file existed gets the table's own.
fn saved_encoding(run: &std::path::Path, table: &Table) -> Result<Encoding> {
    let computed = table.encoding();
    let path = run.join(optlab::data::tabular::ENCODING_FILE);
    if !path.exists() {
        return Ok(computed);
    }
    let size = std::fs::metadata(&path)?.len();
    if size > 16 << 20 {
        bail!(
            "{}: {size} bytes; an encoding fits in 16 MiB",
            path.display()
        );
    }
    let saved: Encoding = serde_json::from_str(&std::fs::read_to_string(&path)?)
        .with_context(|| format!("{}: not an encoding", path.display()))?;
    if saved != computed {
        bail!(
            "{}: the encoding the model was trained with differs from the embedded {} table's",
            path.display(),
            table.name
        );
    }
    Ok(saved)
}

/// A raw row from a JSON file: an object of column name -> value or an array in column order; a number for a
/// numeric column, a level's code for a categorical one. Anything else is one error line.
fn read_row(table: &Table, path: &std::path::Path) -> Result<Vec<Value>> {
    let size = std::fs::metadata(path)
        .with_context(|| format!("--input {}: cannot read", path.display()))?
        .len();
    if size > 1 << 20 {
        bail!(
            "--input {}: {size} bytes; a row fits in 1 MiB",
            path.display()
        );
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("--input {}: cannot read", path.display()))?;
    let json: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("--input {}: not JSON", path.display()))?;
    let cols = &table.columns;
    let values: Vec<&serde_json::Value> = match &json {
        serde_json::Value::Array(v) if v.len() == cols.len() => v.iter().collect(),
        serde_json::Value::Array(v) => bail!(
            "--input: {} values for the {} columns of {}",
            v.len(),
            cols.len(),
            table.name
        ),
        serde_json::Value::Object(m) => {
            if let Some(k) = m.keys().find(|k| !cols.iter().any(|c| &c.name == *k)) {
                bail!("--input: {} has no column '{k}'", table.name);
            }
            cols.iter()
                .map(|c| {
                    m.get(&c.name)
                        .ok_or_else(|| anyhow::anyhow!("--input: column '{}' is missing", c.name))
                })
                .collect::<Result<_>>()?
        }
        _ => bail!("--input: a row is a JSON object (column -> value) or an array"),
    };
    cols.iter()
        .zip(values)
        .map(|(c, v)| match (c.levels.is_empty(), v) {
            (true, serde_json::Value::Number(n)) => n
                .as_f64()
                .filter(|x| x.is_finite())
                .map(Value::Number)
                .ok_or_else(|| anyhow::anyhow!("--input: column '{}': {n} is not a finite number", c.name)),
            (true, other) => bail!("--input: column '{}' is numeric, not {other}", c.name),
            (false, serde_json::Value::String(code)) => c
                .levels
                .iter()
                .position(|l| l == code)
                .map(Value::Level)
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "--input: column '{}': category '{code}' was not seen in training (levels: {})",
                        c.name,
                        c.levels.join(", ")
                    )
                }),
            (false, other) => bail!(
                "--input: column '{}' takes a category code ({}), not {other}",
                c.name,
                c.levels.join(", ")
            ),
        })
        .collect()
}
