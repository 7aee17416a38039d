//! `optlab dag simulate|fit`: linear-SEM data and DAG structure learning with CoLiDE (P40) or DAGMA.

use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use optlab::data::{read_numeric_csv, write_numeric_csv};
use optlab::solvers::dag::colide::{fit, DagOptions, Score};
use optlab::solvers::dag::{accuracy, covariance, simulate, to_dag, Graph};
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct DagArgs {
    #[command(subcommand)]
    pub what: DagWhat,
}

#[derive(Subcommand, Debug)]
pub enum DagWhat {
    /// Simulate a linear SEM: samples (CSV, one column per variable) and the true weighted adjacency.
    #[command(
        after_help = "Example:\n  optlab dag simulate --graph er4 --d 50 --n 1000 --noise nv --out data.csv --truth W_true.csv"
    )]
    Simulate {
        /// erK (Erdős–Rényi, K·d expected edges) or sfK (scale-free).
        #[arg(long, default_value = "er2")]
        graph: String,
        #[arg(long)]
        d: usize,
        #[arg(long, default_value_t = 1000)]
        n: usize,
        /// ev (unit noise variances) or nv (variances uniform in [0.5, 10]).
        #[arg(long, default_value = "ev")]
        noise: String,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[arg(long)]
        out: PathBuf,
        /// Where to write the true adjacency (default: beside --out as <name>_truth.csv).
        #[arg(long)]
        truth: Option<PathBuf>,
    },
    /// Learn a DAG from data: CoLiDE-EV, CoLiDE-NV or DAGMA, thresholded to a DAG.
    #[command(
        after_help = "Example:\n  optlab dag fit data.csv --variant nv --out W.csv --truth W_true.csv --json\n\nW[i][j] is the weight of edge i -> j. With --truth the FDR, TPR, FPR, SHD and NNZ are reported.\nFrom d = 48 up a fit uses a second core (the same result; RAYON_NUM_THREADS=1 keeps it on one)."
    )]
    Fit {
        data: PathBuf,
        /// ev, nv (CoLiDE) or dagma.
        #[arg(long, default_value = "nv")]
        variant: String,
        /// l1 weight (default: 0.05 for CoLiDE, 0.03 for DAGMA).
        #[arg(long)]
        lambda1: Option<f64>,
        /// Drop |w| <= threshold, then break remaining cycles at their weakest edges.
        #[arg(long, default_value_t = 0.3)]
        threshold: f64,
        #[arg(long)]
        out: PathBuf,
        /// A true adjacency CSV to score the estimate against.
        #[arg(long)]
        truth: Option<PathBuf>,
        /// One JSON object on stdout.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(a: DagArgs) -> Result<()> {
    match a.what {
        DagWhat::Simulate {
            graph,
            d,
            n,
            noise,
            seed,
            out,
            truth,
        } => {
            let equal = match noise.as_str() {
                "ev" => true,
                "nv" => false,
                other => bail!("--noise {other}: available: ev, nv"),
            };
            let sem = simulate(Graph::parse(&graph)?, d, n, equal, seed)?;
            let names: Vec<String> = (0..d).map(|j| format!("x{j}")).collect();
            let mut csv = names.join(",") + "\n";
            for row in sem.x.chunks_exact(d) {
                csv.push_str(
                    &row.iter()
                        .map(|v| format!("{v}"))
                        .collect::<Vec<_>>()
                        .join(","),
                );
                csv.push('\n');
            }
            optlab::tensor_io::write_atomic(&out, csv.as_bytes())?;
            let truth = truth.unwrap_or_else(|| {
                let stem = out
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                out.with_file_name(format!("{stem}_truth.csv"))
            });
            write_numeric_csv(&truth, &names, &sem.w)?;
            let edges = sem.w.iter().flatten().filter(|v| **v != 0.0).count();
            println!(
                "{n} samples of {d} variables ({graph}, {edges} edges, {noise} noise): {}\ntrue adjacency: {}",
                out.display(),
                truth.display()
            );
            Ok(())
        }
        DagWhat::Fit {
            data,
            variant,
            lambda1,
            threshold,
            out,
            truth,
            json,
        } => {
            let score = Score::parse(&variant)?;
            let table = read_numeric_csv(&data)?;
            let (n, d) = (table.rows, table.cols());
            let (names, x) = (table.names, table.values);
            if d < 2 {
                bail!(
                    "{}: a DAG needs at least 2 variables (columns), found {d}",
                    data.display()
                );
            }
            if n < 2 {
                bail!(
                    "{}: at least 2 data rows are needed, found {n}",
                    data.display()
                );
            }
            let cov = covariance(&x, n, d)?;
            let max_var = (0..d).map(|j| cov[j][j]).fold(0.0, f64::max);
            if let Some(j) = (0..d).find(|&j| cov[j][j] <= 1e-20 * max_var) {
                bail!("{}: column {} is constant; remove it (a constant variable has no noise to model)", data.display(), names[j]);
            }
            let mut opts = DagOptions::for_score(score);
            if let Some(l) = lambda1 {
                opts.lambda1 = l;
            }
            let start = std::time::Instant::now();
            let fitted = fit(&cov, score, &opts)?;
            let seconds = start.elapsed().as_secs_f64();
            let w = to_dag(&fitted.w, threshold);
            write_numeric_csv(&out, &names, &w)?;
            let edges: Vec<(String, String, f64)> = (0..d)
                .flat_map(|i| (0..d).map(move |j| (i, j)))
                .filter(|&(i, j)| w[i][j] != 0.0)
                .map(|(i, j)| (names[i].clone(), names[j].clone(), w[i][j]))
                .collect();
            let metrics = match &truth {
                Some(p) => {
                    let t = read_numeric_csv(p)?;
                    let (tn, td, t) = (t.rows, t.cols(), t.values);
                    if td != d || tn != d {
                        bail!(
                            "{}: the true adjacency must be {d} x {d}, found {tn} x {td}",
                            p.display()
                        );
                    }
                    let t: Vec<Vec<f64>> = t.chunks_exact(d).map(<[f64]>::to_vec).collect();
                    Some(accuracy(&t, &w))
                }
                None => None,
            };
            if json {
                println!(
                    "{}",
                    serde_json::json!({
                        "variant": variant, "n": n, "d": d, "edges": edges.len(), "seconds": seconds,
                        "sigma": fitted.sigma, "rounds": fitted.rounds, "metrics": metrics,
                        "out": out.display().to_string(),
                    })
                );
            } else {
                println!(
                    "{} edges from {n} samples of {d} variables in {seconds:.2} s ({variant}): {}",
                    edges.len(),
                    out.display()
                );
                for (a, b, v) in edges.iter().take(20) {
                    println!("  {a} -> {b}: {v:.3}");
                }
                if edges.len() > 20 {
                    println!("  ... ({} more)", edges.len() - 20);
                }
                if let Some(m) = metrics {
                    println!(
                        "SHD {}  TPR {:.3}  FDR {:.3}  FPR {:.3}  NNZ {}",
                        m.shd, m.tpr, m.fdr, m.fpr, m.nnz
                    );
                }
            }
            Ok(())
        }
    }
}
