//! `optlab-bench train`: one training step of MLP 64-256-256-10 (batch 128), 784-1024-1024-10 (batch 256), a CNN
//! on digits-size (1×8×8, channels 8-16) and MNIST-size (1×28×28, channels 32-64) images (batch 128; Conv 3×3 pad 1,
//! ReLU, MaxPool 2 per stage, Linear), and the `charlm` task's transformer (2 pre-norm layers, dim 64, 4 heads,
//! LayerNorm; 32 windows of 64 tokens over 62 characters), optlab against PyTorch (2 threads) in the same run: the
//! time per step, and the peak resident memory each side adds to a fresh process (after a tiny warm-up case of the
//! same kind, whose freed memory both sides hand back to the OS first) while building the case and taking a few
//! steps.

use anyhow::Result;
use candle_core::{DType, Device, Tensor};
use clap::Args;
use optlab::nn::loss::cross_entropy;
use optlab::nn::{ModelSpec, Sequential};
use optlab::optim::from_spec;

#[derive(Args, Debug)]
pub struct TrainBenchArgs {
    /// Timed steps per repetition (best of 3 repetitions is reported).
    #[arg(long, default_value_t = 30)]
    pub steps: usize,
    /// Rounds that time optlab's cases and then PyTorch's in turn, the best of all rounds reported for each
    /// side: one side timed a minute after the other can meet a machine of another speed.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    #[command(flatten)]
    pub torch: crate::harness::TorchSide,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Run only the cases whose name contains this text (for example `cnn`).
    #[arg(long)]
    pub only: Option<String>,
    /// Skip the peak-memory column (each case's memory is measured in a process of its own, on both sides).
    #[arg(long)]
    pub no_memory: bool,
    /// Internal: measure one case's peak memory in this process and print it as JSON.
    #[arg(long, hide = true)]
    pub memory_case: Option<String>,
}

/// The model family of a case.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Mlp,
    Cnn,
    Lm,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Mlp => "mlp",
            Kind::Cnn => "cnn",
            Kind::Lm => "lm",
        }
    }
}

struct Case {
    name: &'static str,
    /// MLP layer widths; for a CNN [channels, height, width, stage channels..., classes]; for the language model
    /// [vocab, context, dim, heads, layers].
    dims: &'static [usize],
    batch: usize,
    kind: Kind,
}

const CASES: &[Case] = &[
    Case {
        name: "mlp-64-256-256-10/b128",
        dims: &[64, 256, 256, 10],
        batch: 128,
        kind: Kind::Mlp,
    },
    Case {
        name: "mlp-784-1024-1024-10/b256",
        dims: &[784, 1024, 1024, 10],
        batch: 256,
        kind: Kind::Mlp,
    },
    Case {
        name: "cnn-8-16/1x8x8/b128",
        dims: &[1, 8, 8, 8, 16, 10],
        batch: 128,
        kind: Kind::Cnn,
    },
    Case {
        name: "cnn-32-64/1x28x28/b128",
        dims: &[1, 28, 28, 32, 64, 10],
        batch: 128,
        kind: Kind::Cnn,
    },
    Case {
        name: "charlm-transformer-2x64/b32x64",
        dims: &[62, 64, 64, 4, 2],
        batch: 32,
        kind: Kind::Lm,
    },
];

impl Case {
    /// The case as the PyTorch script reads it.
    fn json(&self) -> serde_json::Value {
        serde_json::json!({"name": self.name, "dims": self.dims, "batch": self.batch, "kind": self.kind.name()})
    }

    /// A tiny case of the same kind, stepped before a memory measurement so that both sides have loaded the
    /// code they run (PyTorch maps in over 100 MiB of kernels on its first step).
    fn warm_up(&self) -> Case {
        let (dims, batch): (&'static [usize], usize) = match self.kind {
            Kind::Mlp => (&[4, 8, 2], 4),
            Kind::Cnn => (&[1, 4, 4, 2, 2], 2),
            Kind::Lm => (&[5, 4, 8, 2, 1], 2),
        };
        Case {
            name: "warm-up",
            dims,
            batch,
            kind: self.kind,
        }
    }
}

/// The model, an input batch and its labels for a case.
fn setup(c: &Case) -> Result<(Sequential, Tensor, Tensor)> {
    if c.kind == Kind::Lm {
        let [vocab, ctx, dim, heads, layers] = c.dims else {
            anyhow::bail!("language-model case needs 5 sizes")
        };
        let spec = ModelSpec::parse(&format!(
            "transformer:layers={layers},dim={dim},heads={heads},mlp=4,norm=ln"
        ))?;
        let model = Sequential::new(&spec, &[*ctx], *vocab, 0, DType::F32)?;
        let ids: Vec<f32> = (0..c.batch * ctx).map(|i| (i * 7 % vocab) as f32).collect();
        let x = Tensor::from_vec(ids, (c.batch, *ctx), &Device::Cpu)?;
        let labels: Vec<u32> = (0..c.batch * ctx)
            .map(|i| (i * 11 % vocab) as u32)
            .collect();
        let y = Tensor::from_vec(labels, (c.batch, *ctx), &Device::Cpu)?;
        return Ok((model, x, y));
    }
    let out = *c.dims.last().expect("dims");
    let labels: Vec<u32> = (0..c.batch).map(|i| (i * 7 % out) as u32).collect();
    let y = Tensor::from_vec(labels, c.batch, &Device::Cpu)?;
    if c.kind == Kind::Cnn {
        let (image, stages) = c.dims[..c.dims.len() - 1].split_at(3);
        let stages: Vec<String> = stages.iter().map(|d| d.to_string()).collect();
        let spec = ModelSpec::parse(&format!("cnn:channels={}", stages.join("-")))?;
        let model = Sequential::new(&spec, image, out, 0, DType::F32)?;
        let x = Tensor::randn(
            0f32,
            1.0,
            (c.batch, image[0], image[1], image[2]),
            &Device::Cpu,
        )?;
        return Ok((model, x, y));
    }
    let hidden: Vec<String> = c.dims[1..c.dims.len() - 1]
        .iter()
        .map(|d| d.to_string())
        .collect();
    let spec = ModelSpec::parse(&format!("mlp:hidden={},act=relu", hidden.join("-")))?;
    let model = Sequential::new(&spec, &c.dims[..1], out, 0, DType::F32)?;
    let x = Tensor::randn(0f32, 1.0, (c.batch, c.dims[0]), &Device::Cpu)?;
    Ok((model, x, y))
}

/// The case's model and data with an AdamW step over them.
fn stepper(c: &Case) -> Result<impl FnMut() -> Result<()>> {
    let (model, x, y) = setup(c)?;
    let mut opt = from_spec("adamw:lr=1e-3")?;
    Ok(move || {
        let loss = cross_entropy(&model.forward_mode(&x, true)?, &y)?;
        opt.backward_step(&model.params(), &loss)?;
        Ok(())
    })
}

fn optlab_ms(c: &Case, steps: usize) -> Result<f64> {
    crate::harness::best_ms(steps, stepper(c)?)
}

/// Steps per peak-memory measurement (the peak settles after the first: optimizer state and gradients exist).
const MEMORY_STEPS: usize = 3;

/// Peak memory (MiB) of building a case and taking [`MEMORY_STEPS`] steps, measured in a fresh process of this
/// program (`--memory-case`), so earlier cases' allocator caches do not hide it; `None` when it cannot say.
fn optlab_peak_mib(c: &Case) -> Option<f64> {
    let exe = std::env::current_exe().ok()?;
    let out = std::process::Command::new(exe)
        .args(["train", "--memory-case", c.name])
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!(
            "warning: the memory probe of {} failed: {}",
            c.name,
            String::from_utf8_lossy(&out.stderr).trim()
        );
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    v["peak_mib"].as_f64()
}

/// Hands the memory the allocators keep for reuse back to the OS (PyTorch's side calls glibc's `malloc_trim`), so
/// that a case's peak counts the memory it needs, not what the warm-up left cached.
fn release_free_memory() {
    crate::GLOBAL.release();
    // SAFETY: mi_collect takes no pointers; `force` frees every page mimalloc holds free.
    unsafe { libmimalloc_sys::mi_collect(true) };
}

/// The `--memory-case` child: one case's peak memory as `{"peak_mib": ...}`.
fn memory_child(name: &str) -> Result<()> {
    let c = CASES
        .iter()
        .find(|c| c.name == name)
        .ok_or_else(|| anyhow::anyhow!("no case named {name:?}"))?;
    let mut warm = stepper(&c.warm_up())?;
    warm()?;
    warm()?;
    drop(warm);
    release_free_memory();
    let peak = crate::harness::peak_added_mib(|| {
        let mut step = stepper(c)?;
        for _ in 0..MEMORY_STEPS {
            step()?;
        }
        Ok(())
    })?;
    println!("{}", serde_json::json!({ "peak_mib": peak }));
    Ok(())
}

pub fn run(a: TrainBenchArgs) -> Result<()> {
    anyhow::ensure!(
        a.steps >= 1 && a.rounds >= 1,
        "--steps and --rounds must be at least 1"
    );
    if let Some(name) = &a.memory_case {
        return memory_child(name);
    }
    let selected: Vec<&Case> = CASES
        .iter()
        .filter(|c| a.only.as_ref().is_none_or(|o| c.name.contains(o.as_str())))
        .collect();
    if selected.is_empty() {
        let names: Vec<&str> = CASES.iter().map(|c| c.name).collect();
        anyhow::bail!(
            "--only {:?} matches no case; the cases are {}",
            a.only.as_deref().unwrap_or(""),
            names.join(", ")
        );
    }
    let cases = serde_json::json!(selected.iter().map(|c| c.json()).collect::<Vec<_>>());
    let mut ours = vec![f64::INFINITY; selected.len()];
    let mut theirs: Vec<Option<f64>> = vec![None; selected.len()];
    for _ in 0..a.rounds {
        for (best, c) in ours.iter_mut().zip(&selected) {
            *best = best.min(optlab_ms(c, a.steps)?);
        }
        let torch = a
            .torch
            .run("torch_train.py", &[cases.to_string(), a.steps.to_string()]);
        for (best, c) in theirs.iter_mut().zip(&selected) {
            if let Some(t) = torch.as_ref().and_then(|v| v[c.name].as_f64()) {
                *best = Some(best.map_or(t, |b: f64| b.min(t)));
            }
        }
    }
    let mut rows = Vec::new();
    for ((c, ms), t) in selected.iter().zip(&ours).zip(theirs) {
        let (mem, torch_mem) = if a.no_memory {
            (None, None)
        } else {
            let case = serde_json::json!([c.warm_up().json(), c.json()]);
            let theirs = a.torch.run(
                "torch_train.py",
                &[case.to_string(), MEMORY_STEPS.to_string(), "memory".into()],
            );
            (optlab_peak_mib(c), theirs.and_then(|v| v[c.name].as_f64()))
        };
        rows.push(serde_json::json!({
            "case": c.name,
            "optlab_ms_per_step": ms,
            "torch_ms_per_step": t,
            "ratio_optlab_over_torch": t.map(|t| ms / t),
            "optlab_peak_mib": mem,
            "torch_peak_mib": torch_mem,
            "memory_ratio_optlab_over_torch": mem.zip(torch_mem).map(|(m, t)| m / t),
        }));
    }
    if a.json {
        println!(
            "{}",
            serde_json::json!({ "bench": "train", "threads": rayon_threads(), "rounds": a.rounds, "cases": rows })
        );
        return Ok(());
    }
    println!("optlab-bench train (AdamW step incl. forward/backward; best of {} rounds x 3 x {} steps, the sides in turn; optlab threads {}; n/a: no PyTorch or no /proc)", a.rounds, a.steps, rayon_threads());
    println!(
        "{:<32} {:>10} {:>10} {:>9} {:>11} {:>11} {:>9}",
        "case", "optlab ms", "torch ms", "ratio", "optlab MiB", "torch MiB", "ratio"
    );
    let num = |v: &serde_json::Value, digits: usize| {
        v.as_f64().map_or("n/a".into(), |x| format!("{x:.digits$}"))
    };
    let times = |v: &serde_json::Value| v.as_f64().map_or("n/a".into(), |x| format!("{x:.2}x"));
    for r in &rows {
        println!(
            "{:<32} {:>10} {:>10} {:>9} {:>11} {:>11} {:>9}",
            r["case"].as_str().unwrap_or(""),
            num(&r["optlab_ms_per_step"], 3),
            num(&r["torch_ms_per_step"], 3),
            times(&r["ratio_optlab_over_torch"]),
            num(&r["optlab_peak_mib"], 1),
            num(&r["torch_peak_mib"], 1),
            times(&r["memory_ratio_optlab_over_torch"]),
        );
    }
    println!(
        "peak MiB: resident memory a fresh process adds while building the case and taking {MEMORY_STEPS} steps \
         (after a warm-up whose free memory both allocators hand back to the OS)"
    );
    Ok(())
}

fn rayon_threads() -> usize {
    std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(num_cpus)
}

fn num_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
