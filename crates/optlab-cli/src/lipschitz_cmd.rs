//! `optlab lipschitz`: a sound Lipschitz bound of a network given as a PyTorch state dict (P02, P14).

use anyhow::{bail, Result};
use clap::Args;
use optlab::lipschitz::bab::{local_lipschitz, BabOptions};
use optlab::lipschitz::exact::exact_local;
use optlab::lipschitz::local::{LocalOptions, Relaxation, SlopeOpt};
use optlab::lipschitz::naive::{naive_bound, Norm};
use optlab::lipschitz::network::Network;
use std::path::PathBuf;

#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  optlab lipschitz model.safetensors --method naive --norm inf\n  optlab lipschitz model.safetensors --method local --center x.json --eps 0.01 --timeout 10\n  optlab lipschitz cnn.safetensors --spec cnn.json --norm 2 --json\n\nThe model is an nn.Sequential state dict (keys 0.weight, 0.bias, 2.weight, ...) of Linear, Conv2d, ReLU,\nFlatten and MaxMin layers. Without --spec, modules between weighted layers are ReLU (and ReLU, Flatten between a\nConv2d and a Linear). A spec names them and gives the input shape of convolutional nets:\n  {\"input_shape\": [1, 28, 28], \"layers\": [\"conv2d:stride=1,padding=1\", \"relu\", \"flatten\", \"linear\"]}"
)]
pub struct LipschitzArgs {
    /// The network's state dict (safetensors).
    pub model: PathBuf,
    /// naive (product of sound per-layer operator norms, global), local (over the l-inf box of --eps around
    /// --center: bound propagation through the Clarke-Jacobian graph, optimised slopes, then branch and bound for
    /// --timeout seconds; P02), exact (the same local constant by enumerating activation regions: tiny networks) or
    /// lipsdp (global l2 bound by semidefinite programming for ReLU or MaxMin networks, P14; needs a build with
    /// --features lipsdp).
    #[arg(long, default_value = "naive")]
    pub method: String,
    /// Local: the branch-and-bound time budget in seconds (0: relaxation only).
    #[arg(long, default_value_t = 60.0)]
    pub timeout: f64,
    /// Local: linear (P02's relaxation of the ReLU-derivative terms) or recurjac (constant intervals, weaker).
    #[arg(long, default_value = "linear")]
    pub relaxation: String,
    /// Local: Adam steps on the relaxation slopes (alpha-CROWN style; 0 keeps the chords).
    #[arg(long, default_value_t = 20)]
    pub opt_steps: usize,
    /// Local: stop branching after this many domains.
    #[arg(long, default_value_t = 200_000)]
    pub max_domains: usize,
    /// The centre x0 of the local box: a JSON array of numbers.
    #[arg(long)]
    pub center: Option<PathBuf>,
    /// Radius of the l-inf box around --center.
    #[arg(long, default_value_t = 0.0)]
    pub eps: f64,
    /// Exact mode: stop with an error beyond this many activation regions.
    #[arg(long, default_value_t = 1_000_000)]
    pub max_regions: usize,
    /// Input and output norm: inf or 2.
    #[arg(long, default_value = "inf")]
    pub norm: String,
    /// Architecture spec (JSON).
    #[arg(long)]
    pub spec: Option<PathBuf>,
    /// One JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: LipschitzArgs) -> Result<()> {
    let norm = Norm::parse(&a.norm)?;
    anyhow::ensure!(
        a.eps.is_finite() && a.eps >= 0.0,
        "eps={} must be a finite number >= 0 (the radius of the box)",
        a.eps
    );
    let global = matches!(a.method.as_str(), "naive" | "lipsdp");
    anyhow::ensure!(
        !(global && (a.center.is_some() || a.eps != 0.0)),
        "--method {} gives a global bound; --center and --eps apply to --method local or exact",
        a.method
    );
    let start = std::time::Instant::now();
    let net = Network::load(&a.model, a.spec.as_deref())?;
    match a.method.as_str() {
        "naive" => {}
        "exact" => return exact(&a, &net, norm, start),
        "local" => return local(&a, &net, norm, start),
        "lipsdp" => return lipsdp(&a, &net, norm, start),
        other => bail!("--method {other}: available: naive, local, exact, lipsdp"),
    }
    let nb = naive_bound(&net, norm)?;
    let seconds = start.elapsed().as_secs_f64();
    if a.json {
        println!(
            "{}",
            serde_json::json!({
                "model": a.model.display().to_string(), "method": "naive", "norm": nb.norm, "bound": nb.bound,
                "seconds": seconds, "layers": nb.layers,
                "architecture": net.layers.iter().map(|l| l.name()).collect::<Vec<_>>(),
            })
        );
        return Ok(());
    }
    println!(
        "naive l{} Lipschitz bound {:.6e} ({} layers, {:.3} s)",
        a.norm,
        nb.bound,
        net.layers.len(),
        seconds
    );
    for l in &nb.layers {
        match (l.power_estimate, l.power_iterations, l.power_change) {
            (Some(e), Some(i), Some(c)) => println!(
                "  {:<45} {:>12.6}   power iteration {e:.6} after {i} iterations (last change {c:.1e})",
                l.layer, l.bound
            ),
            _ => println!("  {:<45} {:>12.6}", l.layer, l.bound),
        }
    }
    Ok(())
}

/// The centre of the local box (`--center`, a JSON array).
fn load_center(a: &LipschitzArgs) -> Result<Vec<f64>> {
    let Some(center) = &a.center else {
        bail!("--method {} needs --center x.json (and --eps)", a.method);
    };
    let text = std::fs::read_to_string(center)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", center.display()))?;
    serde_json::from_str(&text).map_err(|e| {
        anyhow::anyhow!(
            "{}: expected a JSON array of numbers ({e})",
            center.display()
        )
    })
}

fn local(a: &LipschitzArgs, net: &Network, norm: Norm, start: std::time::Instant) -> Result<()> {
    let x0 = load_center(a)?;
    let relax = match a.relaxation.as_str() {
        "linear" => Relaxation::Linear,
        "recurjac" => Relaxation::RecurJac,
        other => bail!("--relaxation {other}: available: linear, recurjac"),
    };
    if !(a.timeout.is_finite() && a.timeout >= 0.0) {
        bail!(
            "--timeout {} must be a non-negative number of seconds",
            a.timeout
        );
    }
    let opts = LocalOptions {
        norm,
        relax,
        slopes: SlopeOpt {
            steps: a.opt_steps,
            ..SlopeOpt::default()
        },
        ..LocalOptions::new(a.eps)
    };
    let bab = (a.timeout > 0.0).then(|| BabOptions {
        timeout: std::time::Duration::from_secs_f64(a.timeout),
        max_domains: a.max_domains,
        ..BabOptions::default()
    });
    let r = local_lipschitz(net, &x0, &opts, bab)?;
    let seconds = start.elapsed().as_secs_f64();
    let label = match norm {
        Norm::Inf => "l-inf input norm (l1 of the gradient)",
        Norm::Two => "l2 input norm (l2 of the gradient; looser: the relaxation is built for l1)",
    };
    if a.json {
        println!(
            "{}",
            serde_json::json!({"model": a.model.display().to_string(), "method": "local", "norm": norm,
                "relaxation": opts.relax, "eps": a.eps, "bound": r.bound, "per_class": r.per_class,
                "phases": r.phases, "unstable": r.unstable, "domains": r.domains, "exhausted": r.exhausted,
                "seconds": seconds})
        );
        return Ok(());
    }
    println!(
        "local Lipschitz bound over the l-inf box eps {} ({label}): {:.6e} ({} unstable ReLUs, {seconds:.3} s)",
        a.eps, r.bound, r.unstable
    );
    for p in &r.phases {
        println!(
            "  {:<48} {:>14.6e}   {:>8.3} s   {} domains",
            p.phase, p.bound, p.seconds, p.domains
        );
    }
    for (c, v) in r.per_class.iter().enumerate() {
        println!("  output {c}: {v:.6e}");
    }
    Ok(())
}

fn exact(a: &LipschitzArgs, net: &Network, norm: Norm, start: std::time::Instant) -> Result<()> {
    let x0 = load_center(a)?;
    let r = exact_local(net, &x0, a.eps, norm, a.max_regions)?;
    let seconds = start.elapsed().as_secs_f64();
    if a.json {
        println!(
            "{}",
            serde_json::json!({"model": a.model.display().to_string(), "method": "exact", "norm": norm,
                "eps": a.eps, "bound": r.bound, "per_class": r.per_class, "regions": r.regions, "lps": r.lps,
                "seconds": seconds})
        );
    } else {
        println!(
            "exact local Lipschitz constant (l{} input norm, box eps {}) {:.6e}: {} regions, {} LPs, {seconds:.3} s",
            a.norm, a.eps, r.bound, r.regions, r.lps
        );
        for (c, v) in r.per_class.iter().enumerate() {
            println!("  output {c}: {v:.6e}");
        }
    }
    Ok(())
}

#[cfg(feature = "lipsdp")]
fn lipsdp(a: &LipschitzArgs, net: &Network, norm: Norm, start: std::time::Instant) -> Result<()> {
    if norm != Norm::Two {
        bail!("--method lipsdp gives l2 bounds: use --norm 2");
    }
    let r = optlab::lipschitz::lipsdp::lipsdp_l2(net)?;
    let naive = naive_bound(net, Norm::Two)?.bound;
    let seconds = start.elapsed().as_secs_f64();
    if a.json {
        println!(
            "{}",
            serde_json::json!({"model": a.model.display().to_string(), "method": "lipsdp", "norm": norm,
                "bound": r.bound, "solver_bound": r.solver_bound, "naive": naive, "activation": r.activation,
                "lmi_sizes": r.lmi_sizes, "reduced": r.reduced, "status": r.status, "iterations": r.iterations,
                "solve_seconds": r.seconds, "seconds": seconds})
        );
        return Ok(());
    }
    println!(
        "LipSDP l2 Lipschitz bound {:.6} ({:?} network, certified from the solver's multipliers; solver value {:.6}, {} in {} iterations)",
        r.bound, r.activation, r.solver_bound, r.status, r.iterations
    );
    println!(
        "  naive (product of spectral norms) {naive:.6}; PSD cones {:?}{}; {seconds:.3} s",
        r.lmi_sizes,
        if r.reduced {
            ", input block reduced by QR"
        } else {
            ""
        }
    );
    Ok(())
}

#[cfg(not(feature = "lipsdp"))]
fn lipsdp(_: &LipschitzArgs, _: &Network, _: Norm, _: std::time::Instant) -> Result<()> {
    bail!(
        "this optlab was built without LipSDP: rebuild with `cargo build --release -p optlab-cli --features lipsdp` \
         (links the system OpenBLAS; Debian: apt-get install libopenblas-dev libgfortran-12-dev)"
    )
}
