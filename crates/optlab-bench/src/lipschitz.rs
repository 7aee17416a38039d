//! `optlab-bench lipschitz`: local Lipschitz bounds (P02) on the paper's simple_mlp_3layer shapes
//! (16 → W → W → 10, PyTorch's default init, centre uniform in [−1, 2]) against auto_LiRPA's Jacobian bounds, and
//! LipSDP (P14) against cvxpy + Clarabel on the same SDPs, in the same run where those are installed.

use crate::harness::python_script as python;
use anyhow::{Context, Result};
use clap::Args;
use optlab::lipschitz::bab::{local_lipschitz, BabOptions, LocalResult};
use optlab::lipschitz::local::{LocalOptions, SlopeOpt};
use optlab::lipschitz::network::Network;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Args, Debug)]
pub struct LipschitzBenchArgs {
    /// Hidden widths of the 16-W-W-10 MLPs.
    #[arg(long, value_delimiter = ',', default_value = "16,32,64")]
    pub widths: Vec<usize>,
    /// Radii of the l-inf boxes.
    #[arg(long, value_delimiter = ',', default_value = "0.1,0.01")]
    pub eps: Vec<f64>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Branch-and-bound budget per problem, seconds.
    #[arg(long, default_value_t = 60.0)]
    pub timeout: f64,
    /// Also run the old Local-Lipschitz-Constants repo's branch and bound (needs its patched checkout, see
    /// lipschitz_autolirpa.py).
    #[arg(long)]
    pub autolirpa_bab: bool,
    /// Skip the Python side (auto_LiRPA, cvxpy).
    #[arg(long)]
    pub no_python: bool,
    /// Print one JSON object instead of the tables.
    #[arg(long)]
    pub json: bool,
}

/// One local-Lipschitz problem: optlab's result, auto_LiRPA's JSON line (when run), and the seconds optlab takes to
/// get as tight as auto_LiRPA's best bound next to auto_LiRPA's seconds for that bound (when it does).
struct Local {
    eps: f64,
    ours: LocalResult,
    lirpa: Option<Value>,
    reach: Option<(f64, f64)>,
}

impl Local {
    /// auto_LiRPA's value `k` of mode `m`; null when absent.
    fn mode(&self, m: &str, k: &str) -> Value {
        self.lirpa
            .as_ref()
            .map_or(Value::Null, |v| v["modes"][m][k].clone())
    }
}

/// One LipSDP network: its name, optlab's bound and seconds, and cvxpy's JSON line (when run).
type Sdp = (&'static str, f64, f64, Option<Value>);

/// A 16-W-W-10 MLP with PyTorch's default Linear init (U(±1/√fan_in) for weights and biases) and a centre in
/// [−1, 2]^16, from optlab's generator (used when PyTorch is not there to make the same model).
fn rust_model(width: usize, seed: u64, model: &Path, center: &Path) -> Result<()> {
    use candle_core::{Device, Tensor};
    use optlab::rng::{rng_for, Stream};
    use rand::Rng as _;
    let mut rng = rng_for(seed, Stream::Init, 7);
    let mut tensors = Vec::new();
    for (k, (i, o)) in [(16, width), (width, width), (width, 10)]
        .into_iter()
        .enumerate()
    {
        let b = 1.0 / (i as f64).sqrt();
        let mut u = |n: usize| -> Vec<f32> {
            (0..n)
                .map(|_| (b * (2.0 * rng.gen::<f64>() - 1.0)) as f32)
                .collect()
        };
        tensors.push((
            format!("{}.weight", 2 * k),
            Tensor::from_vec(u(o * i), &[o, i], &Device::Cpu)?,
        ));
        tensors.push((
            format!("{}.bias", 2 * k),
            Tensor::from_vec(u(o), &[o], &Device::Cpu)?,
        ));
    }
    optlab::tensor_io::write_safetensors(model, &tensors, None)?;
    let x: Vec<f64> = (0..16).map(|_| 3.0 * rng.gen::<f64>() - 1.0).collect();
    std::fs::write(center, serde_json::to_string(&x)?)?;
    Ok(())
}

fn secs(v: &Value) -> String {
    v.as_f64().map_or("-".into(), |s| format!("{s:.3}"))
}

pub fn run(a: LipschitzBenchArgs) -> Result<()> {
    let dir = std::env::temp_dir().join(format!("optlab-bench-lipschitz-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    // Per width: the model's source and each radius's results.
    let mut widths = Vec::new();
    for &w in &a.widths {
        let (model, center) = (
            dir.join(format!("m{w}.safetensors")),
            dir.join(format!("x{w}.json")),
        );
        let made = python(
            "lipschitz_autolirpa.py",
            &[
                "--make-model".into(),
                model.display().to_string(),
                "--width".into(),
                w.to_string(),
                "--seed".into(),
                a.seed.to_string(),
                "--center-out".into(),
                center.display().to_string(),
            ],
            a.no_python,
        );
        let source = if made.is_some() { "PyTorch" } else { "optlab" };
        if made.is_none() {
            rust_model(w, a.seed, &model, &center)?;
        }
        let net = Network::load(&model, None)?;
        let x0: Vec<f64> =
            serde_json::from_str(&std::fs::read_to_string(&center)?).context("centre")?;
        let mut rows = Vec::new();
        for &eps in &a.eps {
            let opts = LocalOptions {
                slopes: SlopeOpt {
                    steps: 0,
                    ..SlopeOpt::default()
                },
                ..LocalOptions::new(eps)
            };
            let bab = BabOptions {
                timeout: Duration::from_secs_f64(a.timeout),
                ..BabOptions::default()
            };
            let r = local_lipschitz(&net, &x0, &opts, Some(bab))?;
            let mut args = vec![
                "--model".to_string(),
                model.display().to_string(),
                "--center".into(),
                center.display().to_string(),
                "--eps".into(),
                eps.to_string(),
                "--modes".into(),
                "CROWN,CROWN-Optimized".into(),
                "--repeat".into(),
                "3".into(),
            ];
            if a.autolirpa_bab {
                args.extend([
                    "--bab".into(),
                    "--bab-timeout".into(),
                    a.timeout.to_string(),
                ]);
            }
            let mut row = Local {
                eps,
                ours: r,
                lirpa: python("lipschitz_autolirpa.py", &args, a.no_python),
                reach: None,
            };
            let best = ["CROWN", "CROWN-Optimized", "BaB-old-repo"]
                .iter()
                .filter_map(|m| {
                    Some((
                        row.mode(m, "bound").as_f64()?,
                        row.mode(m, "seconds").as_f64()?,
                    ))
                })
                .fold(None, |acc: Option<(f64, f64)>, (b, s)| match acc {
                    Some((ab, _)) if ab <= b => acc,
                    _ => Some((b, s)),
                });
            // The time optlab needs to get at least as tight as auto_LiRPA's best bound.
            let (r, relax) = (&row.ours, &row.ours.phases[0]);
            row.reach = best.and_then(|(b, s)| {
                // Equal up to optlab's 1e-12 rounding guard counts as reached.
                let b = b * (1.0 + 1e-9);
                let t = if relax.bound <= b {
                    Some(relax.seconds)
                } else {
                    r.history.iter().find(|(_, v)| *v <= b).map(|(t, _)| *t)
                };
                t.map(|t| (t, s))
            });
            rows.push(row);
        }
        widths.push((w, source, rows));
    }
    std::fs::remove_dir_all(&dir).ok();
    let sdp = lipsdp(&a)?;
    if a.json {
        use crate::harness::ratio;
        let ms = |v: Value| v.as_f64().map(|s| s * 1e3);
        let local: Vec<_> = widths
            .iter()
            .flat_map(|(w, source, rows)| {
                rows.iter().map(move |row| {
                    let (r, relax) = (&row.ours, &row.ours.phases[0]);
                    let reach = row.reach.map(|(t, s)| (t * 1e3, s * 1e3));
                    serde_json::json!({
                        "width": w,
                        "eps": row.eps,
                        "model_init": source,
                        "optlab_relax_bound": relax.bound,
                        "optlab_relax_ms": relax.seconds * 1e3,
                        "optlab_bab_bound": r.bound,
                        "optlab_bab_ms": r.phases.last().map(|p| p.seconds * 1e3),
                        "optlab_bab_exhausted": r.exhausted,
                        "lirpa_crown_bound": row.mode("CROWN", "bound"),
                        "lirpa_crown_ms": ms(row.mode("CROWN", "seconds")),
                        "lirpa_crown_optimized_bound": row.mode("CROWN-Optimized", "bound"),
                        "lirpa_crown_optimized_ms": ms(row.mode("CROWN-Optimized", "seconds")),
                        "old_repo_bab_bound": row.mode("BaB-old-repo", "bound"),
                        "old_repo_bab_ms": ms(row.mode("BaB-old-repo", "seconds")),
                        // optlab's time to auto_LiRPA's best bound, and auto_LiRPA's time for it.
                        "optlab_ms_to_lirpa_best": reach.map(|r| r.0),
                        "lirpa_best_ms": reach.map(|r| r.1),
                        "ratio_optlab_over_lirpa": ratio(reach.map(|r| r.0), reach.map(|r| r.1)),
                    })
                })
            })
            .collect();
        let sdp = sdp.map(|rows| {
            rows.into_iter()
                .map(|(name, bound, secs, cvx)| {
                    let get = |k: &str| cvx.as_ref().and_then(|v| v[k].as_f64());
                    let total = get("seconds_total").map(|s| s * 1e3);
                    serde_json::json!({
                        "network": name,
                        "optlab_bound": bound,
                        "optlab_ms": secs * 1e3,
                        "cvxpy_bound": get("bound"),
                        "cvxpy_ms": total,
                        "cvxpy_solver_ms": get("seconds_solver").map(|s| s * 1e3),
                        "ratio_optlab_over_cvxpy": ratio(Some(secs * 1e3), total),
                    })
                })
                .collect::<Vec<_>>()
        });
        println!(
            "{}",
            serde_json::json!({
                "bench": "lipschitz",
                "seed": a.seed,
                "timeout_s": a.timeout,
                "local": local,
                "lipsdp": sdp,
            })
        );
        return Ok(());
    }
    println!(
        "local Lipschitz (l-inf box, l1 of the gradient, max over 10 classes); optlab: CROWN forward bounds + Jacobian \
         relaxation, then branch and bound ({} s); auto_LiRPA: CROWN and CROWN-Optimized Jacobian bounds (float64)",
        a.timeout
    );
    println!(
        "{:>5} {:>6} | {:>12} {:>8} | {:>12} {:>8} {:>6} | {:>12} {:>8} | {:>12} {:>8} | {:>22}",
        "width",
        "eps",
        "optlab relax",
        "s",
        "optlab BaB",
        "s",
        "exact",
        "LiRPA CROWN",
        "s",
        "LiRPA opt",
        "s",
        "optlab time to LiRPA's"
    );
    for (w, source, rows) in &widths {
        for row in rows {
            let (r, eps) = (&row.ours, row.eps);
            let (relax, last) = (&r.phases[0], r.phases.last().expect("phases"));
            let reach = row
                .reach
                .map(|(t, s)| format!("{t:.4} s ({:.0}x faster)", s / t.max(1e-9)));
            println!(
                "{w:>5} {eps:>6} | {:>12.6} {:>8.4} | {:>12.6} {:>8.3} {:>6} | {:>12} {:>8} | {:>12} {:>8} | {:>22}",
                relax.bound,
                relax.seconds,
                r.bound,
                last.seconds,
                if r.exhausted { "yes" } else { "no" },
                row.mode("CROWN", "bound").as_f64().map_or("-".into(), |b| format!("{b:.6}")),
                secs(&row.mode("CROWN", "seconds")),
                row.mode("CROWN-Optimized", "bound").as_f64().map_or("-".into(), |b| format!("{b:.6}")),
                secs(&row.mode("CROWN-Optimized", "seconds")),
                reach.unwrap_or_else(|| if row.lirpa.is_some() { "not reached".into() } else { "-".into() }),
            );
            if let Some(b) = row.mode("BaB-old-repo", "bound").as_f64() {
                println!(
                    "{:>14}   old repo BaB (float32): {b:.6} in {} s",
                    "",
                    secs(&row.mode("BaB-old-repo", "seconds"))
                );
            }
        }
        println!("{:>14}   (model W={w}: {source} init, seed {})", "", a.seed);
    }
    let Some(sdp) = sdp else {
        println!("\nLipSDP: not in this build (rebuild with --features lipsdp)");
        return Ok(());
    };
    println!("\nLipSDP (l2): optlab (clarabel, in-process) vs cvxpy + Clarabel (same formulation and tolerances 1e-10)");
    println!(
        "{:>20} | {:>12} {:>8} | {:>12} {:>8} {:>8} | {:>8}",
        "network", "optlab", "s", "cvxpy", "s total", "s solver", "ratio"
    );
    for (name, bound, seconds, cvx) in sdp {
        let get = |k: &str| cvx.as_ref().and_then(|v| v[k].as_f64());
        println!(
            "{name:>20} | {:>12.6} {:>8.3} | {:>12} {:>8} {:>8} | {:>8}",
            bound,
            seconds,
            get("bound").map_or("-".into(), |b| format!("{b:.6}")),
            get("seconds_total").map_or("-".into(), |s| format!("{s:.3}")),
            get("seconds_solver").map_or("-".into(), |s| format!("{s:.3}")),
            get("seconds_total").map_or("-".into(), |s| format!("{:.2}x", s / seconds)),
        );
    }
    Ok(())
}

/// LipSDP on the fixtures' networks, optlab (best of 3) and cvxpy; `None` when not built in.
#[cfg(feature = "lipsdp")]
fn lipsdp(a: &LipschitzBenchArgs) -> Result<Option<Vec<Sdp>>> {
    let fixtures =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../optlab/tests/fixtures/lipsdp");
    let mut rows = Vec::new();
    for name in [
        "weights_l2_2fc_16",
        "weights_l2_2fc_32",
        "weights_l2_5fc_32",
        "relu_8_16_16_4",
    ] {
        let (model, spec) = (
            fixtures.join(format!("{name}.safetensors")),
            fixtures.join(format!("{name}.json")),
        );
        let net = Network::load(&model, Some(&spec))?;
        let r = (0..3)
            .map(|_| optlab::lipschitz::lipsdp::lipsdp_l2(&net))
            .collect::<optlab::Result<Vec<_>>>()?
            .into_iter()
            .min_by(|x, y| x.seconds.total_cmp(&y.seconds))
            .expect("three runs");
        let cvx = python(
            "lipsdp_cvxpy.py",
            &[
                "--model".into(),
                model.display().to_string(),
                "--spec".into(),
                spec.display().to_string(),
                "--repeat".into(),
                "3".into(),
            ],
            a.no_python,
        );
        rows.push((name, r.bound, r.seconds, cvx));
    }
    Ok(Some(rows))
}

#[cfg(not(feature = "lipsdp"))]
fn lipsdp(_: &LipschitzBenchArgs) -> Result<Option<Vec<Sdp>>> {
    let _ = PathBuf::new();
    Ok(None)
}
