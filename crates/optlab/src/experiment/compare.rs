//! Several optimizers and/or models on one task, over one or more seeds: every configuration's runs in their
//! own directories under `OUT/runs/`, the outcomes aggregated over seeds, and one report.

use super::report::{fmt_mean_std, mean_curve, run_curves, smooth, Chart, Report, Series};
use crate::nn::ModelSpec;
use crate::optim::OptimizerSpec;
use crate::train::run_dir::RunDirLock;
use crate::train::{Observer, Summary, TrainConfig, Trainer};
use crate::{Error, Result};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// What to compare: every model with every optimizer, each over every seed, on `base`'s task. A model or
/// optimizer carries the label the report shows (what the user typed, usually).
#[derive(Debug, Clone)]
pub struct Comparison {
    /// Data, schedule, length and the other settings shared by every run.
    pub base: TrainConfig,
    /// (label, model); empty means `base.model`.
    pub models: Vec<(String, ModelSpec)>,
    /// (label, optimizer); empty means `base.optimizer`.
    pub optimizers: Vec<(String, OptimizerSpec)>,
    /// Seeds (same data, split, init and batches across configurations for one seed).
    pub seeds: Vec<u64>,
}

/// One run of a configuration: its seed, directory and summary (or why it diverged).
#[derive(Debug)]
pub struct RunOutcome {
    pub seed: u64,
    pub dir: PathBuf,
    pub result: std::result::Result<Summary, String>,
}

/// One configuration and its runs.
#[derive(Debug)]
pub struct Outcome {
    pub label: String,
    pub runs: Vec<RunOutcome>,
}

impl Outcome {
    /// `f` of every run that finished.
    pub fn values(&self, f: &dyn Fn(&Summary) -> Option<f64>) -> Vec<f64> {
        self.runs
            .iter()
            .filter_map(|r| r.result.as_ref().ok().and_then(f))
            .collect()
    }

    /// Runs that diverged.
    pub fn diverged(&self) -> usize {
        self.runs.iter().filter(|r| r.result.is_err()).count()
    }
}

/// The runs of one configuration: (seed, run directory, trainer).
type Runs = Vec<(u64, PathBuf, Trainer)>;

/// Every trainer of a comparison, built before any training so that a typo in the last spec fails first.
pub struct Plan {
    /// The report directory, held for the comparison's life (its runs/ is cleared and rewritten).
    lock: RunDirLock,
    out: PathBuf,
    kind: &'static str,
    configs: Vec<(String, Runs)>,
    seeds: Vec<u64>,
}

/// A comparison's outcomes.
#[derive(Debug)]
pub struct ComparisonResult {
    /// The report directory stays locked until the result (and the report written from it) is dropped.
    _lock: RunDirLock,
    /// What varies: `optimizer`, `model` or `model | optimizer`.
    pub kind: &'static str,
    pub outcomes: Vec<Outcome>,
    pub seeds: Vec<u64>,
    pub batch_size: usize,
    pub out: PathBuf,
}

fn slug(i: usize, spec: &str) -> String {
    let s: String = spec
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{i:02}-{}", s.chars().take(60).collect::<String>())
}

impl Comparison {
    /// Builds every trainer; run directories go to `out/runs/` (cleared first).
    pub fn plan(&self, out: &Path) -> Result<Plan> {
        if self.seeds.is_empty() {
            return Err(Error::invalid("give at least one seed"));
        }
        let models = if self.models.is_empty() {
            vec![(self.base.model.to_string(), self.base.model.clone())]
        } else {
            self.models.clone()
        };
        let optimizers = if self.optimizers.is_empty() {
            vec![(self.base.optimizer.to_string(), self.base.optimizer.clone())]
        } else {
            self.optimizers.clone()
        };
        let (many_models, many_opts) = (models.len() > 1, optimizers.len() > 1);
        let kind = match (many_models, many_opts) {
            (true, true) => "model | optimizer",
            (true, false) => "model",
            _ => "optimizer",
        };
        let lock = RunDirLock::acquire(out)?;
        let runs_dir = out.join("runs");
        if runs_dir.exists() {
            std::fs::remove_dir_all(&runs_dir)
                .map_err(|e| Error::file(&runs_dir, format!("cannot clear: {e}")))?;
        }
        std::fs::create_dir_all(&runs_dir)
            .map_err(|e| Error::file(&runs_dir, format!("cannot create: {e}")))?;
        let mut configs = Vec::new();
        for (ml, m) in &models {
            for (ol, o) in &optimizers {
                let label = match (many_models, many_opts) {
                    (true, true) => format!("{ml} | {ol}"),
                    (true, false) => ml.clone(),
                    _ => ol.clone(),
                };
                let i = configs.len();
                let name = if many_models { ml } else { ol };
                let mut trainers = Vec::new();
                for &seed in &self.seeds {
                    let mut cfg = self.base.clone();
                    cfg.model = m.clone();
                    cfg.optimizer = o.clone();
                    cfg.options.seed = seed;
                    let t =
                        Trainer::new(cfg).map_err(|e| Error::invalid(format!("{label}: {e}")))?;
                    let dir = runs_dir.join(slug(i, name));
                    let dir = if self.seeds.len() > 1 {
                        dir.join(format!("seed{seed}"))
                    } else {
                        dir
                    };
                    trainers.push((seed, dir, t));
                }
                configs.push((label, trainers));
            }
        }
        Ok(Plan {
            lock,
            out: out.to_path_buf(),
            kind,
            configs,
            seeds: self.seeds.clone(),
        })
    }
}

impl Plan {
    /// The number of configurations.
    pub fn configurations(&self) -> usize {
        self.configs.len()
    }

    /// The number of seeds.
    pub fn seeds(&self) -> usize {
        self.seeds.len()
    }

    /// The first trainer (every run shares its data and length).
    pub fn first(&self) -> &Trainer {
        &self.configs[0].1[0].2
    }

    /// Trains every run in turn; `observer(label)` makes each run's observer (a progress bar). A run whose loss
    /// or gradient becomes NaN or infinite is recorded as diverged and the others go on; any other error stops.
    pub fn run(
        self,
        observer: &mut dyn FnMut(&str) -> Box<dyn Observer>,
    ) -> Result<ComparisonResult> {
        let batch_size = self.first().config().options.batch_size;
        let mut outcomes = Vec::new();
        for (label, trainers) in self.configs {
            let mut runs = Vec::new();
            for (seed, dir, mut t) in trainers {
                let mut obs = observer(&label);
                let result = match t.run(Some(&dir), &mut [obs.as_mut()]) {
                    Ok(s) => Ok(s),
                    Err(Error::NonFinite(msg)) => Err(msg),
                    Err(e) => return Err(Error::invalid(format!("training {label}: {e}"))),
                };
                runs.push(RunOutcome { seed, dir, result });
            }
            outcomes.push(Outcome { label, runs });
        }
        Ok(ComparisonResult {
            _lock: self.lock,
            kind: self.kind,
            outcomes,
            seeds: self.seeds,
            batch_size,
            out: self.out,
        })
    }
}

impl ComparisonResult {
    /// The finished run with the best validation accuracy (classification) or the lowest validation loss, with
    /// its configuration's label.
    pub fn best(&self) -> Option<(&str, &RunOutcome)> {
        let score = |s: &Summary| {
            s.val_accuracy
                .or(s.val_loss.map(|l| -l))
                .unwrap_or(-s.final_train_loss)
        };
        self.outcomes
            .iter()
            .flat_map(|o| o.runs.iter().map(move |r| (o.label.as_str(), r)))
            .filter(|(_, r)| r.result.as_ref().is_ok_and(|s| score(s).is_finite()))
            .max_by(|a, b| {
                let (sa, sb) = (
                    a.1.result.as_ref().map(score).unwrap_or(f64::NEG_INFINITY),
                    b.1.result.as_ref().map(score).unwrap_or(f64::NEG_INFINITY),
                );
                sa.total_cmp(&sb)
            })
    }

    /// The report: a table (mean ± std over seeds) and the mean curves of each configuration.
    pub fn report(&self) -> Result<Report> {
        let (mut loss, mut val, mut acc) = (Vec::new(), Vec::new(), Vec::new());
        for o in &self.outcomes {
            let mut curves = Vec::new();
            for r in &o.runs {
                if r.result.is_ok() {
                    curves.push(run_curves(&r.dir)?);
                }
            }
            let series = |f: &dyn Fn(&super::report::RunCurves) -> Vec<(f64, f64)>| Series {
                name: o.label.clone(),
                points: mean_curve(&curves.iter().map(f).collect::<Vec<_>>()),
            };
            loss.push(series(&|c| smooth(&c.train_loss, 0.9)));
            val.push(series(&|c| c.val_loss.clone()));
            acc.push(series(&|c| c.val_accuracy.clone()));
        }
        let seeds = if self.seeds.len() > 1 {
            format!(", mean over {} seeds", self.seeds.len())
        } else {
            String::new()
        };
        let chart = |file: &str, title: String, y: &str, series: Vec<Series>, log_y| Chart {
            file: file.into(),
            title,
            x_label: "step".into(),
            y_label: y.into(),
            series,
            log_y,
        };
        // A run shorter than the logging interval has no training curve; draw what there is.
        let charts: Vec<Chart> = [
            chart(
                "loss.png",
                format!("Training loss (smoothed{seeds})"),
                "loss",
                loss,
                true,
            ),
            chart(
                "val_loss.png",
                format!("Validation loss{seeds}"),
                "loss",
                val,
                true,
            ),
            chart(
                "accuracy.png",
                format!("Validation accuracy{seeds}"),
                "accuracy",
                acc,
                false,
            ),
        ]
        .into_iter()
        .filter(Chart::has_points)
        .collect();
        let mut md = String::new();
        let w = |e: std::fmt::Error| Error::invalid(format!("report: {e}"));
        writeln!(md, "# optlab compare\n").map_err(w)?;
        let first = self
            .outcomes
            .iter()
            .flat_map(|o| o.runs.iter())
            .find_map(|r| r.result.as_ref().ok());
        if let Some(f) = first {
            writeln!(
                md,
                "Data `{}`, schedule `{}`, {} steps of batch {}, seeds {:?}.\n",
                f.data, f.schedule, f.steps, self.batch_size, self.seeds
            )
            .map_err(w)?;
        }
        md.push_str(&self.markdown_table());
        writeln!(md).map_err(w)?;
        for c in &charts {
            writeln!(
                md,
                "![{}]({})\n",
                c.file.trim_end_matches(".png").replace('_', " "),
                c.file
            )
            .map_err(w)?;
        }
        writeln!(
            md,
            "Each run's directory (config, metrics, model, optimizer state, plots) is under `runs/`."
        )
        .map_err(w)?;
        for o in &self.outcomes {
            for r in &o.runs {
                let status = match &r.result {
                    Ok(_) => String::new(),
                    Err(e) => format!(" — diverged: {e}"),
                };
                let rel = r.dir.strip_prefix(&self.out).unwrap_or(&r.dir);
                writeln!(
                    md,
                    "- `{}` seed {}: `{}`{status}",
                    o.label,
                    r.seed,
                    rel.display()
                )
                .map_err(w)?;
            }
        }
        Ok(Report {
            markdown: md,
            charts,
        })
    }

    /// The Markdown table: one row per configuration, mean ± std over seeds.
    pub fn markdown_table(&self) -> String {
        let mut md = format!(
            "| {} | final train loss | val loss | val accuracy | best val accuracy | time (s) | samples/s |\n|---|---|---|---|---|---|---|\n",
            self.kind
        );
        for o in &self.outcomes {
            let col = |f: &dyn Fn(&Summary) -> Option<f64>| fmt_mean_std(&o.values(f));
            let note = match o.diverged() {
                0 => String::new(),
                d => format!(" ({d} of {} runs diverged)", o.runs.len()),
            };
            let _ = writeln!(
                md,
                "| `{}`{note} | {} | {} | {} | {} | {} | {} |",
                o.label,
                col(&|s| Some(s.final_train_loss)),
                col(&|s| s.val_loss),
                col(&|s| s.val_accuracy),
                col(&|s| s.best_val_accuracy),
                col(&|s| Some(s.wall_time_s)),
                col(&|s| Some(s.samples_per_s))
            );
        }
        md
    }

    /// A plain-text table of the means, for a terminal.
    pub fn text_table(&self) -> String {
        let mut s = format!(
            "{:<45} {:>10} {:>10} {:>10} {:>8}\n",
            self.kind, "train loss", "val loss", "val acc", "time s"
        );
        for o in &self.outcomes {
            let mean = |f: &dyn Fn(&Summary) -> Option<f64>| {
                let v = o.values(f);
                if v.is_empty() {
                    "-".to_string()
                } else {
                    format!("{:.4}", v.iter().sum::<f64>() / v.len() as f64)
                }
            };
            let _ = writeln!(
                s,
                "{:<45} {:>10} {:>10} {:>10} {:>8}{}",
                o.label,
                mean(&|r| Some(r.final_train_loss)),
                mean(&|r| r.val_loss),
                mean(&|r| r.val_accuracy),
                mean(&|r| Some(r.wall_time_s)),
                if o.diverged() > 0 {
                    format!("  ({} diverged)", o.diverged())
                } else {
                    String::new()
                }
            );
        }
        s
    }
}
