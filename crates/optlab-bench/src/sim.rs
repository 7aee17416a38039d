//! `optlab-bench sim`: the tactile core of P20 - simulation steps per second (forward, and forward plus the
//! checkpointed reverse pass) on the default sensor's press-and-slide at three mesh sizes, with the element
//! updates per second and the gradient's cost in forward runs.

use anyhow::Result;
use clap::Args;
use optlab::sim::fem::{Law, Pad};
use optlab::sim::gradient::{value, value_and_gradient};
use optlab::sim::mesh::Mesh;
use optlab::sim::tactile::simulate;
use optlab::sim::tasks::{knot_path, normalized_match, press_and_slide, Scene};

#[derive(Args, Debug)]
pub struct SimBenchArgs {
    /// Simulated steps per run.
    #[arg(long, default_value_t = 2000)]
    pub steps: usize,
    /// Timed runs per repetition (best of 3 repetitions is reported).
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
}

const MESHES: [(usize, usize); 3] = [(16, 4), (32, 8), (64, 16)];

pub fn run(a: SimBenchArgs) -> Result<()> {
    anyhow::ensure!(
        (10..=1_000_000).contains(&a.steps) && a.runs >= 1,
        "--steps must be 10 to 1000000 and --runs at least 1"
    );
    // Per mesh: (nx, ny, elements, forward ms, forward-and-reverse ms).
    let mut rows = Vec::new();
    for (nx, ny) in MESHES {
        let mut s = Scene::sensor(Law::NeoHookean)?;
        // Finer meshes have lighter nodes: keep the contact's explicit step stable (ω dt fixed).
        s.dt *= 16.0 / nx as f64;
        s.pad = Pad::new(
            Mesh::rectangle(2.0, 0.5, nx, ny)?,
            s.pad.material,
            s.pad.density,
        )?
        .with_damping(s.pad.damping)?;
        let path = knot_path(&press_and_slide(&s, 0.7, 0.06, 0.5, 4), a.steps);
        let target = simulate(&s.pad, &s.indenter, &path, s.dt)?;
        let obj = normalized_match(target);
        let forward = crate::harness::best_ms(a.runs, || {
            value(&s.pad, &s.indenter, &path, s.dt, &obj)?;
            Ok(())
        })?;
        let grad = crate::harness::best_ms(a.runs, || {
            value_and_gradient(&s.pad, &s.indenter, &path, s.dt, &obj, 64)?;
            Ok(())
        })?;
        rows.push((nx, ny, s.pad.mesh.tris.len(), forward, grad));
    }
    let per_s = |ms: f64| a.steps as f64 / (ms * 1e-3);
    if a.json {
        let cases: Vec<_> = rows
            .iter()
            .map(|&(nx, ny, elements, forward, grad)| {
                serde_json::json!({
                    "mesh": format!("{nx}x{ny}"),
                    "elements": elements,
                    "optlab_forward_ms": forward,
                    "optlab_gradient_ms": grad,
                    "steps_per_s": per_s(forward),
                    "element_updates_per_s": per_s(forward) * elements as f64,
                    "steps_per_s_with_gradient": per_s(grad),
                    "ratio_gradient_over_forward": grad / forward,
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::json!({"bench": "sim", "steps": a.steps, "runs": a.runs, "cases": cases})
        );
        return Ok(());
    }
    println!(
        "optlab-bench sim (P20 tactile core, neo-Hookean pad, press-and-slide, {} steps; best of 3 x {} runs, 1 thread)",
        a.steps, a.runs
    );
    println!(
        "{:<10} {:>9} {:>14} {:>18} {:>18} {:>16}",
        "mesh", "elements", "steps/s", "element updates/s", "steps/s with grad", "grad / forward"
    );
    for (nx, ny, elements, forward, grad) in rows {
        println!(
            "{:<10} {:>9} {:>14.0} {:>18.3e} {:>18.0} {:>15.2}x",
            format!("{nx}x{ny}"),
            elements,
            per_s(forward),
            per_s(forward) * elements as f64,
            per_s(grad),
            grad / forward
        );
    }
    Ok(())
}
