//! A progress bar observer: step, loss, accuracy, lr, samples/s, ETA.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use optlab::train::{EvalMetrics, Observer, RunInfo, StepMetrics, Summary};

/// Draws one bar per run on stderr (hidden when `quiet`).
pub struct Progress {
    bar: ProgressBar,
    prefix: String,
    acc: Option<f64>,
}

/// A bar on stderr (hidden when `quiet`): `prefix [====>   ] pos/len message ETA`.
pub fn bar(prefix: &str, quiet: bool) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(
        Some(0),
        if quiet {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr()
        },
    );
    bar.set_style(
        ProgressStyle::with_template("{prefix:>12} [{bar:30}] {pos}/{len} {msg} ETA {eta}")
            .expect("template")
            .progress_chars("=> "),
    );
    bar.set_prefix(prefix.to_string());
    bar
}

impl Progress {
    pub fn new(prefix: &str, quiet: bool) -> Self {
        let bar = bar(prefix, quiet);
        Progress {
            bar,
            prefix: prefix.to_string(),
            acc: None,
        }
    }
}

impl Observer for Progress {
    fn on_start(&mut self, info: &RunInfo) {
        self.bar.set_length(info.total_steps);
        self.bar.set_position(info.start_step);
        self.bar.reset_eta();
    }
    fn on_step(&mut self, m: &StepMetrics) {
        self.bar.set_position(m.step);
        if m.step.is_multiple_of(5) || m.step == 1 {
            let acc = self.acc.map_or(String::new(), |a| format!(" acc {a:.3}"));
            let eps = m.epsilon.map_or(String::new(), |e| format!(" ε {e:.3}"));
            self.bar.set_message(format!(
                "loss {:.4}{acc}{eps} lr {:.2e} {:.0} samples/s",
                m.loss, m.lr, m.samples_per_s
            ));
        }
    }
    fn on_eval(&mut self, m: &EvalMetrics) {
        self.acc = m.val_accuracy;
    }
    fn on_end(&mut self, s: &Summary) {
        let acc = s
            .val_accuracy
            .map_or(String::new(), |a| format!(", val acc {a:.4}"));
        self.bar.finish_and_clear();
        if !self.bar.is_hidden() {
            eprintln!(
                "{:>12} done: {} steps, train loss {:.4}{acc}, {:.1} s",
                self.prefix, s.steps, s.final_train_loss, s.wall_time_s
            );
        }
    }
}
