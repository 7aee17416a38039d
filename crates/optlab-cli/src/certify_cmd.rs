//! `optlab certify`: randomized-smoothing l2 certificates (P03: Cohen et al.'s CERTIFY, or the
//! Lipschitz-variance-margin variant LVM-RS) for the inputs of a CSV.

use anyhow::{bail, Result};
use clap::Args;
use optlab::data::read_numeric_csv;
use optlab::lipschitz::lvm::{certify_lvm, default_grid, LvmConfig, Selection, SimplexMap};
use optlab::lipschitz::network::Network;
use optlab::lipschitz::smoothing::{certify, SmoothingConfig};
use std::path::PathBuf;

#[derive(Args, Debug)]
#[command(
    after_help = "Example:\n  optlab certify model.safetensors --sigma 0.25 --n0 100 --n 100000 --alpha 0.001 --inputs test.csv --label y --json\n\nThe base classifier is the argmax of the network's outputs (an nn.Sequential state dict, see `optlab lipschitz`).\nThe CSV has a header; every column but --label is an input feature. sigma is in the units of those features.\nEach radius holds with probability at least 1 - alpha (one configuration, no selection on the samples).\n--method lvm: softmax/sparsemax scores with empirical Bernstein bounds; --search tries 14 (map, temperature)\nconfigurations with alpha split among them (sound); --replication reproduces the paper's uncorrected best-of-all\nselection and is labelled as not a valid certificate at level alpha."
)]
pub struct CertifyArgs {
    /// The network's state dict (safetensors).
    pub model: PathBuf,
    /// Architecture spec (JSON), as for `optlab lipschitz`.
    #[arg(long)]
    pub spec: Option<PathBuf>,
    #[arg(long)]
    pub sigma: f64,
    #[arg(long, default_value_t = 100)]
    pub n0: u64,
    #[arg(long, default_value_t = 100_000)]
    pub n: u64,
    #[arg(long, default_value_t = 0.001)]
    pub alpha: f64,
    /// Inputs (CSV with a header row).
    #[arg(long)]
    pub inputs: PathBuf,
    /// A column of true classes, to report certified accuracy.
    #[arg(long)]
    pub label: Option<String>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// cohen (CERTIFY, Clopper-Pearson) or lvm (LVM-RS, empirical Bernstein on simplex scores).
    #[arg(long, default_value = "cohen")]
    pub method: String,
    /// LVM-RS: softmax or sparsemax.
    #[arg(long, default_value = "softmax")]
    pub map: String,
    /// LVM-RS: temperature of the map.
    #[arg(long, default_value_t = 1.0)]
    pub temperature: f64,
    /// LVM-RS: search 14 (map, temperature) configurations with a Bonferroni-corrected alpha.
    #[arg(long)]
    pub search: bool,
    /// LVM-RS: the paper's best-of-all configurations on the same samples without correction (replication only;
    /// not a certificate at level alpha).
    #[arg(long)]
    pub replication: bool,
    /// One JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: CertifyArgs) -> Result<()> {
    let net = Network::load(&a.model, a.spec.as_deref())?;
    let table = read_numeric_csv(&a.inputs)?;
    let (rows, cols) = (table.rows, table.cols());
    let (names, values) = (table.names, table.values);
    let label_col = match &a.label {
        Some(l) => Some(names.iter().position(|n| n == l).ok_or_else(|| {
            anyhow::anyhow!(
                "{}: no column named `{l}` ({})",
                a.inputs.display(),
                names.join(", ")
            )
        })?),
        None => None,
    };
    let features = cols - label_col.is_some() as usize;
    if features != net.input_dim() {
        bail!(
            "{}: {features} feature columns, but the network takes {} inputs",
            a.inputs.display(),
            net.input_dim()
        );
    }
    let classes = net.output_dim();
    let cfg = SmoothingConfig {
        sigma: a.sigma,
        n0: a.n0,
        n: a.n,
        alpha: a.alpha,
        seed: a.seed,
    };
    let classify = |x: &[f64]| {
        net.forward(x)
            .map(|o| {
                (0..o.len())
                    .max_by(|&i, &j| o[i].total_cmp(&o[j]).then(j.cmp(&i)))
                    .unwrap_or(0)
            })
            .unwrap_or(usize::MAX)
    };
    let lvm = match a.method.as_str() {
        "cohen" => {
            if a.search || a.replication {
                bail!("--search and --replication belong to --method lvm");
            }
            None
        }
        "lvm" => {
            let configs = if a.search || a.replication {
                default_grid()
            } else {
                vec![(SimplexMap::parse(&a.map)?, a.temperature)]
            };
            Some(LvmConfig {
                sigma: a.sigma,
                n: a.n,
                alpha: a.alpha,
                seed: a.seed,
                configs,
                selection: if a.replication {
                    Selection::Replication
                } else {
                    Selection::Bonferroni
                },
            })
        }
        other => bail!("--method {other}: available: cohen, lvm"),
    };
    let logits = |x: &[f64]| net.forward(x).unwrap_or_else(|_| vec![f64::NAN; classes]);
    let start = std::time::Instant::now();
    let mut results = Vec::with_capacity(rows);
    for r in 0..rows {
        let row = &values[r * cols..(r + 1) * cols];
        let x: Vec<f64> = (0..cols)
            .filter(|c| Some(*c) != label_col)
            .map(|c| row[c])
            .collect();
        let label = label_col.map(|c| row[c] as usize);
        let cert = match &lvm {
            None => {
                let c = certify(&classify, &x, classes, &cfg, r as u64)?;
                Cert {
                    class: c.class,
                    radius: c.radius,
                    p_lower: c.p_lower,
                    extra: serde_json::json!({"top_count": c.top_count}),
                }
            }
            Some(l) => {
                let c = certify_lvm(&logits, &x, classes, l, r as u64)?;
                Cert {
                    class: c.class,
                    radius: c.radius,
                    p_lower: c.p_lower,
                    extra: serde_json::json!({"p_runner_upper": c.p_runner_upper, "map": c.map,
                        "temperature": c.temperature}),
                }
            }
        };
        results.push((cert, label));
    }
    let seconds = start.elapsed().as_secs_f64();
    let abstained = results.iter().filter(|(c, _)| c.class.is_none()).count();
    let correct = results
        .iter()
        .filter(|(c, l)| l.is_some() && c.class == *l)
        .count();
    if a.json {
        let per: Vec<serde_json::Value> = results
            .iter()
            .enumerate()
            .map(|(i, (c, l))| {
                serde_json::json!({"index": i, "class": c.class, "radius": c.radius, "p_lower": c.p_lower,
                    "label": l, "correct": l.map(|l| c.class == Some(l)), "details": c.extra})
            })
            .collect();
        println!(
            "{}",
            serde_json::json!({"method": a.method, "selection": lvm.as_ref().map(|l| l.selection),
                "sound": !a.replication, "sigma": a.sigma, "n0": a.n0, "n": a.n, "alpha": a.alpha, "inputs": rows,
                "abstained": abstained, "certified_correct": label_col.map(|_| correct), "seconds": seconds,
                "results": per})
        );
        return Ok(());
    }
    println!(
        "{:>6} {:>8} {:>10} {:>10} {:>7}",
        "input", "class", "radius", "pA_lower", "label"
    );
    for (i, (c, l)) in results.iter().enumerate() {
        println!(
            "{i:>6} {:>8} {:>10.4} {:>10.4} {:>7}",
            c.class.map_or("abstain".to_string(), |k| k.to_string()),
            c.radius,
            c.p_lower,
            l.map_or("-".to_string(), |k| k.to_string())
        );
    }
    if a.replication {
        println!(
            "REPLICATION MODE: best of {} configurations on the same samples without correction; these radii do NOT hold with probability 1 - alpha",
            default_grid().len()
        );
    }
    println!(
        "{rows} inputs, {abstained} abstained{}; sigma {}, n0 {}, n {}, alpha {} ({seconds:.2} s)",
        label_col.map_or(String::new(), |_| format!(", {correct} certified correct")),
        a.sigma,
        a.n0,
        a.n,
        a.alpha
    );
    Ok(())
}

/// One input's certificate, whichever method made it.
struct Cert {
    class: Option<usize>,
    radius: f64,
    p_lower: f64,
    extra: serde_json::Value,
}
