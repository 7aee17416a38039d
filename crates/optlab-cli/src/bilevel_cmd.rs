//! `optlab bilevel`: bilevel problems on the embedded digits, by implicit differentiation (P10), BO-REP (P05) or
//! LV-HBA (P13).

use crate::plot::{image_row, line_chart, Series};
use anyhow::{Context, Result};
use clap::Args;
use optlab::bilevel::{Method, Problem};
use optlab::tensor_io::write_atomic;
use optlab::train::run_dir::RunDirLock;
use std::path::PathBuf;

#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  optlab bilevel --problem ridge-hparam --out runs/ridge\n  optlab bilevel --problem logreg-hparam --method implicit:solver=cg --steps 50 --out runs/logreg --json\n  optlab bilevel --problem distill --steps 200 --seed 1 --out runs/distill\n  optlab bilevel --problem hyper-rep --method stocbio:lr=0.1 --steps 1000 --out runs/hr-stocbio\n  optlab bilevel --problem svm-hparam --method implicit:solver=lu --out runs/svm\n\nProblems (digits split 60/20/20 by --seed into train / validation / test):\n  ridge-hparam   one ridge strength per pixel, learned on the validation loss, from the best single strength of a grid\n  logreg-hparam  the same for a multiclass logistic regression\n  distill        one synthetic image per class, so that a logistic regression trained on the ten fits the real data\n  hyper-rep      a tanh RNN reading images row by row (upper) under a linear head fitted on the training split (lower)\n  toy-constrained  LV-HBA's official toy (x in R^100, y in R^200, a coupling constraint; x* = -0.3)\n  svm-hparam     per-class costs of a soft-margin SVM (digits 3 against 8) with its margin constraints as the lower level\nMethods:\n  implicit[:solver=normal-cg|cg|gmres|bicgstab|lu|cholesky,tol=1e-10,max_iter=1000,ridge=0,restart=30,verify=true,lr=..]\n      hypergradient descent (Adam on the upper variables) through implicit differentiation (the hparam problems, distill);\n      verify=false trusts the solver's own residual and saves the final check's product\n  bo-rep[:lr=0.05,beta=0.9,normalized=true,inner_lr=0.5,nu=0.01,interval=3,warm=3,refine=30]   (hyper-rep; P05)\n  stocbio[:lr=0.1,inner_lr=0.5,inner_steps=1,q=5,neumann_lr=0.1]                               (hyper-rep)\n  lv-hba[:alpha,beta,eta,gamma1,gamma2,u,c,p,lambda0,z0]   (toy-constrained: the official toy defaults; svm-hparam:\n      the official SVM script's; P13)\n  grid[:lo=-4,hi=4,points=9]   (svm-hparam: the best log-costs on a grid)\nWrites DIR/curve.csv and curve.png (the upper objective per step), DIR/metrics.json and, for distill,\nDIR/images.png and images.csv."
)]
pub struct BilevelArgs {
    /// ridge-hparam, logreg-hparam, distill, hyper-rep, toy-constrained or svm-hparam.
    #[arg(long)]
    pub problem: String,
    /// The method spec (default: implicit; bo-rep for hyper-rep; lv-hba for toy-constrained and svm-hparam).
    #[arg(long)]
    pub method: Option<String>,
    /// Upper-level steps (default: the problem's; 100 for the hparam problems, 200 for distill, 300 for hyper-rep,
    /// 1500 LV-HBA iterations for toy-constrained, 1000 for svm-hparam (50 implicit steps)).
    #[arg(long)]
    pub steps: Option<usize>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output directory.
    #[arg(long)]
    pub out: PathBuf,
    /// The final metrics as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: BilevelArgs) -> Result<()> {
    let problem: Problem = a.problem.parse()?;
    let method = match &a.method {
        Some(m) => m.parse::<Method>()?,
        None => problem.default_method(),
    };
    problem.check(&method)?;
    if a.steps == Some(0) {
        anyhow::bail!("--steps must be at least 1");
    }
    let _lock = RunDirLock::acquire(&a.out)?;
    let bar = crate::progress::bar(&problem.to_string(), a.json);
    let mut tick = |step: usize, steps: usize, upper: f64| {
        bar.set_length(steps as u64);
        bar.set_position(step as u64);
        bar.set_message(format!("upper {upper:.5}"));
    };
    let run = optlab::bilevel::run(problem, &method, a.steps, a.seed, Some(&mut tick))?;
    bar.finish_and_clear();
    let o = &run.outcome;
    let mut csv = String::from("step,upper\n");
    for p in &o.curve {
        csv.push_str(&format!("{},{}\n", p.step, p.upper));
    }
    write_atomic(&a.out.join("curve.csv"), csv.as_bytes())?;
    line_chart(
        &a.out.join("curve.png"),
        &format!("{problem}: upper objective ({})", o.method),
        "upper step",
        "upper objective",
        &[Series {
            name: String::new(),
            points: o.curve.iter().map(|p| (p.step as f64, p.upper)).collect(),
        }],
        false,
    )?;
    if let Some(images) = &run.images {
        let rows: Vec<Vec<f64>> = images.to_vec2()?;
        let mut csv = String::new();
        for r in &rows {
            csv.push_str(
                &r.iter()
                    .map(|v| v.to_string())
                    .collect::<Vec<_>>()
                    .join(","),
            );
            csv.push('\n');
        }
        write_atomic(&a.out.join("images.csv"), csv.as_bytes())?;
        let labels: Vec<String> = (0..rows.len()).map(|c| c.to_string()).collect();
        image_row(&a.out.join("images.png"), &rows, 8, 12, &labels)?;
    }
    let json = serde_json::to_string_pretty(o)?;
    write_atomic(&a.out.join("metrics.json"), json.as_bytes())
        .with_context(|| format!("cannot write into {}", a.out.display()))?;
    if a.json {
        println!("{}", serde_json::to_string(o)?);
    } else {
        println!(
            "{problem} ({}), {} steps in {:.1} s: upper objective {:.6} -> {:.6}",
            o.method,
            o.curve.len().saturating_sub(1),
            o.seconds,
            o.curve.first().map_or(f64::NAN, |p| p.upper),
            o.curve.last().map_or(f64::NAN, |p| p.upper)
        );
        for (k, v) in &o.metrics {
            println!("  {k:<28} {v:.6}");
        }
        println!("wrote {}", a.out.display());
    }
    Ok(())
}
