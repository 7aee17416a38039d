//! What every registered method declares about itself: its name, kind, paper, summary, where it lives and how
//! muP scales it. The tables themselves are in the families ([`crate::optim::OPTIMIZERS`]) and gathered in
//! [`crate::registry`]; this module only defines the types, so every family can use them without cycles.

use serde::Serialize;

/// The kind of a registered method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// An optimizer (`--optimizer NAME:...`).
    Optimizer,
    /// A schedule or hyperparameter law.
    Schedule,
    /// A layer, normalization or parametrization.
    Layer,
    /// An analysis of a trained model (curvature, Lipschitz bounds, certificates).
    Analysis,
    /// A standalone solver.
    Solver,
    /// A training procedure (batch-size tests, ...).
    Training,
}

impl Kind {
    /// The kind in words (`optimizer`, `schedule`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Kind::Optimizer => "optimizer",
            Kind::Schedule => "schedule",
            Kind::Layer => "layer",
            Kind::Analysis => "analysis",
            Kind::Solver => "solver",
            Kind::Training => "training",
        }
    }
}

/// One registered method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Method {
    /// The name users write (spec name, or a short identifier for methods reached by a command).
    pub name: &'static str,
    pub kind: Kind,
    /// The seed paper it implements (`P41`), if any.
    pub paper: Option<&'static str>,
    /// One line: what it does.
    pub summary: &'static str,
    /// The library module (`optlab::optim::lion`).
    pub module: &'static str,
    /// The CLI command that reaches it.
    pub command: &'static str,
}

/// Which of microsoft/mup's optimizer rules scales an optimizer's per-tensor learning rates (P42).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MupRule {
    /// MuAdam: for optimizers whose update size per entry does not scale with the gradient (Adam, Lion, ...).
    Adam,
    /// MuSGD: for optimizers whose update is proportional to the gradient (SGD, SGDP, M-FAC).
    Sgd,
}

impl MupRule {
    /// `adam` or `sgd`.
    pub fn name(self) -> &'static str {
        match self {
            MupRule::Adam => "adam",
            MupRule::Sgd => "sgd",
        }
    }
}

/// How muP treats an optimizer by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MupSupport {
    /// This rule always.
    Rule(MupRule),
    /// The instance decides (a `chain:` recipe, by its transformations).
    ByInstance,
    /// No rule applies; the reason, for the error message.
    Unsupported(&'static str),
}
