//! Every method optlab registers and the 42 seed papers they come from. The optimizers register in
//! [`crate::optim::OPTIMIZERS`]; the other methods (layers, schedules and laws, analyses, solvers, training
//! procedures) in [`METHODS`] here. `optlab papers` and `docs/papers.md` are made from these tables: a paper is
//! implemented when a registered method cites it.

use crate::method::{Kind, Method};
use serde::Serialize;

/// A seed paper: its id (`P01`..`P42`), its title, and a one-line summary in our words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Paper {
    pub id: &'static str,
    pub title: &'static str,
    pub summary: &'static str,
    /// What of the paper is not built yet, when a method cites it but does not cover it all.
    pub missing: Option<&'static str>,
}

const fn paper(id: &'static str, title: &'static str, summary: &'static str) -> Paper {
    Paper {
        id,
        title,
        summary,
        missing: None,
    }
}

/// The 42 seed papers.
pub static PAPERS: &[Paper] = &[
    paper("P01", "Micro-Batch Training with Batch-Channel Normalization and Weight Standardization", "weight standardization and batch-channel normalization for training with one or two examples per device"),
    paper("P02", "Efficiently Computing Local Lipschitz Constants of Neural Networks via Bound Propagation", "local Lipschitz bounds by bound propagation on the Clarke Jacobian, tightened by branch and bound"),
    paper("P03", "The Lipschitz-Variance-Margin Tradeoff for Enhanced Randomized Smoothing", "randomized smoothing with Lipschitz-aware scores and Bernstein bounds for larger certified radii"),
    paper("P04", "Lipschitzness Is All You Need To Tame Off-policy Generative Adversarial Imitation Learning", "off-policy adversarial imitation learning made stable by a locally Lipschitz reward"),
    paper("P05", "Bilevel Optimization under Unbounded Smoothness: A New Algorithm and Convergence Analysis", "BO-REP: bilevel optimization with normalized momentum when the upper level is not Lipschitz-smooth"),
    paper("P06", "Revisiting the Last-Iterate Convergence of Stochastic Gradient Methods", "high-probability last-iterate rates of stochastic (mirror) descent in general settings"),
    Paper {
        missing: Some("the guarantee's bound printed beside each counterfactual (the theorem's text was not reachable)"),
        ..paper("P07", "Robust Counterfactual Explanations for Neural Networks With Probabilistic Guarantees", "a stability measure and search for counterfactuals that stay valid when the model changes")
    },
    paper("P08", "Scaling physics-informed hard constraints with mixture-of-experts", "hard PDE constraints enforced per subdomain by experts differentiated implicitly"),
    Paper {
        missing: Some("the BVR-L-SGD subroutine (DIFF2 with the GD subroutine is built)"),
        ..paper("P09", "DIFF2: Differential Private Optimization via Gradient Differences for Nonconvex Distributed Learning", "private distributed optimization that communicates noisy gradient differences")
    },
    paper("P10", "Efficient and Modular Implicit Differentiation", "differentiating through solutions of optimality conditions with matrix-free linear solves"),
    paper("P11", "Learning Lipschitz Feedback Policies from Expert Demonstrations: Closed-Loop Guarantees, Generalization and Robustness", "imitation of feedback policies constrained to be Lipschitz, with closed-loop guarantees"),
    paper("P12", "PowerNorm: Rethinking Batch Normalization in Transformers", "a batch normalization for transformers with quadratic-mean statistics and an approximate backward"),
    paper("P13", "Constrained Bi-Level Optimization: Proximal Lagrangian Value function Approach and Hessian-free Algorithm", "LV-HBA: a Hessian-free method for bilevel problems with constrained lower levels"),
    paper("P14", "Novel Quadratic Constraints for Extending LipSDP beyond Slope-Restricted Activations", "LipSDP certificates for networks with MaxMin/GroupSort and other non-slope-restricted layers"),
    paper("P15", "diffGrad: An Optimization Method for Convolutional Neural Networks", "Adam with a friction term that slows steps where the gradient barely changes"),
    paper("P16", "Stochastic Policy Gradient Methods: Improved Sample Complexity for Fisher-non-degenerate Policies", "normalized policy gradients with implicit transport or Hessian correction"),
    paper("P17", "Predictable Scale: Part I -- Optimal Hyperparameter Scaling Law in Large Language Model Pretraining", "Step Law: optimal learning rate and batch size as power laws of model and data size"),
    paper("P18", "A Deep Conjugate Direction Method for Iteratively Solving Linear Systems", "a learned search direction for conjugate-direction solves of Poisson systems"),
    paper("P19", "Constrained Optimization via Exact Augmented Lagrangian and Randomized Iterative Sketching", "equality-constrained Newton steps solved inexactly by randomized sketching"),
    paper("P20", "DIFFTACTILE: A Physics-based Differentiable Tactile Simulator for Contact-rich Robotic Manipulation", "a differentiable tactile contact simulator for system identification and control"),
    Paper {
        missing: Some("the tree-based private SPIDER of the population setting (private SpiderBoost for finite sums is built)"),
        ..paper("P21", "Faster Rates of Convergence to Stationary Points in Differentially Private Optimization", "private variance-reduced methods reaching stationary points faster")
    },
    paper("P22", "Neural Network Approximations of PDEs Beyond Linearity: A Representational Perspective", "how well networks represent solutions of nonlinear variational PDEs"),
    paper("P23", "Gradient is All You Need?", "consensus-based optimization as a stochastic relaxation of gradient descent"),
    paper("P24", "Is Model Ensemble Necessary? Model-based RL via a Single Model with Lipschitz Regularized Value Function", "model-based RL with one model and a Lipschitz-regularized value function"),
    Paper {
        missing: Some("the explicit early-stopping rule 'adapted to unbounded domains' of the extended version (arXiv 2401.15604v4, 2026), whose text is not reachable here. The ICLR 2024 paper states none: its Assumption 3.11 asks for a stopping time that, in its words, an extension of classical early stopping rules for scalar-valued kernel regression satisfies; the classical rule of Raskutti, Wainwright & Yu (2014), with the constant Yang (ICML 2025) gives for two-layer ReLU networks, is built, on each output coordinate with the shared kernel, next to a hold-out stopping time"),
        ..paper("P25", "Neural Network-Based Score Estimation in Diffusion Models: Optimization and Generalization", "training dynamics and generalization of neural score estimators for diffusion")
    },
    paper("P26", "M-FAC: Efficient Matrix-Free Approximations of Second-Order Information", "inverse empirical Fisher products from a window of gradients, without forming matrices"),
    paper("P27", "The Implicit Regularization of Dynamical Stability in Stochastic Gradient Descent", "SGD is stable at a minimum only if the Hessian's trace is below 2/lr"),
    paper("P28", "Efficient Global Optimization of Two-layer ReLU Networks: Quadratic-time Algorithms and Adversarial Training", "training two-layer ReLU networks to global optimality through a convex program"),
    paper("P29", "AdAdaGrad: Adaptive Batch Size Schemes for Adaptive Gradient Methods", "growing the batch by norm and inner-product tests for AdaGrad-type methods"),
    paper("P30", "AdamP: Slowing Down the Slowdown for Momentum Optimizers on Scale-invariant Weights", "removing the radial update component that shrinks effective steps on scale-invariant weights"),
    paper("P31", "Improving equilibrium propagation without weight symmetry through Jacobian homeostasis", "holomorphic equilibrium propagation with a Jacobian homeostasis term"),
    paper("P32", "Optimistic Online Mirror Descent for Bridging Stochastic and Adversarial Online Convex Optimization", "optimistic mirror descent with regret bounds between the stochastic and adversarial cases"),
    paper("P33", "When, Why and How Much? Adaptive Learning Rate Scheduling by Refinement", "a learning-rate schedule refined from the gradient norms of a previous run"),
    paper("P34", "Target-based Surrogates for Stochastic Optimization", "surrogate minimization in the model's output space to reuse each gradient many times"),
    paper("P35", "ADAHESSIAN: An Adaptive Second Order Optimizer for Machine Learning", "Adam on a Hutchinson estimate of the Hessian diagonal, spatially averaged"),
    paper("P36", "Learning Rates as a Function of Batch Size: A Random Matrix Theory Approach to Neural Network Training", "maximal learning rates scale linearly (SGD) or as the square root (Adam) with batch size"),
    paper("P37", "Beyond Reverse KL: Generalizing Direct Preference Optimization with Diverse Divergence Constraints", "f-DPO: preference optimization under general f-divergence constraints"),
    paper("P38", "Scaling Law with Learning Rate Annealing", "loss curves as a law of forward and annealing areas of the learning-rate schedule"),
    Paper {
        missing: Some("a one-step generator as close to the target as the teacher (98% of the teacher's ODE samples lie on a mode of the 2-D mixtures): the default ReLU generator, means of 3 seeds per divergence, puts 41-57% of its samples on a mode of the ring of 8 and 33-38% on the 5x5 grid after 2000 steps, 66-81% and 39-43% after 8000, the rest on bridges between modes; the same network regressed directly on the teacher's ODE map reaches 83% and 47% after 2000 steps, 95% and 87% after 8000"),
        ..paper("P39", "One-step Diffusion Models with f-Divergence Distribution Matching", "distilling diffusion models into one-step generators by f-divergence matching")
    },
    paper("P40", "CoLiDE: Concomitant Linear DAG Estimation", "linear DAG learning with concomitant noise-scale estimation"),
    paper("P41", "Lion Secretly Solves Constrained Optimization: As Lyapunov Predicts", "Lion with decoupled weight decay solves a box-constrained problem; Lion-kappa generalizes it"),
    paper("P42", "Feature Learning in Infinite-Width Neural Networks", "muP: the parametrization whose hyperparameters transfer across widths"),
];

const fn method(
    name: &'static str,
    kind: Kind,
    paper: &'static str,
    summary: &'static str,
    module: &'static str,
    command: &'static str,
) -> Method {
    Method {
        name,
        kind,
        paper: Some(paper),
        summary,
        module,
        command,
    }
}

/// The registered methods other than optimizers.
pub static METHODS: &[Method] = &[
    method("bcn+ws", Kind::Layer, "P01", "weight-standardized convolutions with batch-channel normalization (and its estimated-statistics variant)", "optlab::nn::norm", "optlab train --model cnn:channels=8-16,norm=bcn+ws"),
    method("local-lipschitz", Kind::Analysis, "P02", "local Lipschitz bounds by Clarke-Jacobian bound propagation with branch and bound, and an exact mode", "optlab::lipschitz::local", "optlab lipschitz MODEL --method local|exact --center x.json --eps E"),
    method("lvm-rs", Kind::Analysis, "P03", "LVM-RS randomized-smoothing certificates with empirical Bernstein bounds", "optlab::lipschitz::lvm", "optlab certify MODEL --method lvm"),
    method("powernorm", Kind::Layer, "P12", "PowerNorm with its approximate backward in a transformer language model", "optlab::nn::powernorm", "optlab train --task charlm --model transformer:norm=pn"),
    method("dsm", Kind::Training, "P25", "denoising score matching of a time-conditioned score network (VP/VE) on Gaussian mixtures with an exact score; Euler-Maruyama and probability-flow (Heun) samplers; score error, energy distance, mode recall", "optlab::generative", "optlab diffusion train|sample|score-error"),
    method("ntk-score", Kind::Analysis, "P25", "score regression with noisy labels by wide two-layer ReLU networks under full-batch GD against the NTK kernel-regression predictor in closed form: the score error along training, memorization, the hold-out and kernel-complexity stopping times", "optlab::generative::ntk", "optlab diffusion ntk"),
    method("f-distill", Kind::Training, "P39", "f-distill: a one-step generator trained by the f-weighted difference of the fake and teacher scores' denoised estimates, h(r)(xhat_fake - xhat_teacher) normalized as in DMD, with h = r^2 f''(r) (reverse KL = DMD, forward KL, JS) and r normalized per time bin (NVIDIA FastGen's f-distill), a DSM fake score, a discriminator for r and a GAN term", "optlab::generative::distill", "optlab distill --target ring --divergence js"),
    method("dcdm", Kind::Solver, "P18", "the deep conjugate direction method: a convolutional network's search direction, A-orthogonalized against the last two, trained on Ritz-vector right-hand sides by the one-step residual; beside CG and IC(0)-PCG on the 2-D Poisson problem with obstacles", "optlab::linsolve", "optlab linsolve train|bench"),
    method("holo-ep", Kind::Training, "P31", "holomorphic equilibrium propagation: a layered vector field with learnt feedback weights relaxed to a fixed point, EP estimates from N real or complex nudges against the exact gradient (recurrent backpropagation solved by GMRES), and the Jacobian homeostasis penalty with its Gaussian-probe estimator", "optlab::ep", "optlab ep grad-check | optlab ep train"),
    method("f-dpo", Kind::Training, "P37", "f-DPO: the DPO loss under reverse KL, forward KL, JS and alpha-divergences (official losses), on a character transformer's preference pairs and on a categorical policy with a known optimum", "optlab::alignment", "optlab align dpo --sft RUN --divergence js | optlab align bandit"),
    method("trex", Kind::Analysis, "P07", "T-Rex: Stability ascent from elastic-net base counterfactuals (ART's, L1/L2 rules) on embedded tables, the closest training point of the other class as a data-point baseline, and the retraining validity study", "optlab::explain", "optlab explain counterfactual RUN --row I|--input ROW.json --method trex|l1|l2|closest | optlab explain validity --data german"),
    method("bo-rep", Kind::Solver, "P05", "BO-REP: normalized-momentum bilevel optimization with initialization refinement and periodic lower-level updates, beside StocBiO and the unnormalized variant", "optlab::bilevel::borep", "optlab bilevel --problem hyper-rep --method bo-rep|stocbio"),
    method("lv-hba", Kind::Solver, "P13", "LV-HBA: single-loop Hessian-free bilevel optimization with a constrained lower level through its proximal Lagrangian value function", "optlab::bilevel::lvhba", "optlab bilevel --problem toy-constrained|svm-hparam --method lv-hba"),
    method("implicit", Kind::Solver, "P10", "implicit differentiation of a solution through its optimality condition (root, fixed point, KKT, proximal gradient) with matrix-free linear solvers", "optlab::implicit", "optlab bilevel --problem ridge-hparam|logreg-hparam|distill --method implicit[:solver=..]"),
    method("deep-ritz", Kind::Solver, "P22", "Deep Ritz with a two-layer tanh network on a nonlinear elliptic variational energy over the unit cube (Monte-Carlo quadrature, boundary by a Robin-consistent penalty or a distance ansatz), beside the paper's preconditioned gradient descent u <- u - eta (I - Laplacian)^-1 DE(u) on a sine Galerkin basis", "optlab::pde::ritz", "optlab pde ritz | optlab pde spectral"),
    method("difftactile", Kind::Solver, "P20", "a differentiable 2-D tactile sensor: finite-element elastomer pad (linear or neo-Hookean), rigid indenter with Hunt-Crossley penalty contact and smoothed Coulomb friction, markers and force as the reading; reverse-mode gradients through time (checkpointed) for system identification and trajectory optimisation against CMA-ES, and a Hertz line-contact check", "optlab::sim", "optlab sim tactile identify|optimize | optlab sim hertz"),
    method("hard-constraint", Kind::Solver, "P08", "a hard-constraint layer: basis functions from an FNO (or an MLP) combined by weights a differentiable Levenberg-Marquardt solve fits to the PDE, initial and boundary conditions on sampled points, per expert of a domain split", "optlab::pde", "optlab pde train --constraint soft|hard [--experts K] [--basis fno|mlp]"),
    method("adasketch", Kind::Solver, "P19", "AdaSketch-Newton: Newton-KKT steps solved by randomized sketching (Kaczmarz, Gaussian, block) under the exact augmented Lagrangian merit, on a dense KKT matrix or matrix-free on Hessian-vector products, and its exact-solve variant", "optlab::constrained", "optlab nlp solve|suite [--method adasketch[:hessian=products]|newton]"),
    method("diff2", Kind::Solver, "P09", "DIFF2 with the GD subroutine: clipped, noised full gradients every T rounds and clipped, noised gradient differences (radius C2 times the step) in between, over workers that hold shards (threads or MPI ranks), RDP-accounted", "optlab::privacy::dp_methods", "optlab dp run --algo diff2 [--workers W | --distributed]"),
    method("private-spiderboost", Kind::Solver, "P21", "private SpiderBoost: full-gradient anchors every q rounds, Poisson-sampled gradient differences whose noise scales with the step (capped at 2 C1), uniformly drawn output iterate", "optlab::privacy::dp_methods", "optlab dp run --algo spider"),
    method("lipsdp", Kind::Analysis, "P14", "LipSDP l2 bounds for ReLU and MaxMin networks, certified from the solver's multipliers", "optlab::lipschitz::lipsdp", "optlab lipschitz MODEL --method lipsdp --norm 2"),
    method("step-law", Kind::Schedule, "P17", "optimal learning rate and batch size from model and data size", "optlab::scaling", "optlab hparams --params N --tokens D"),
    method("cbo", Kind::Solver, "P23", "consensus-based optimization with isotropic or anisotropic noise", "optlab::solvers::cbo", "optlab cbo --function F --dim D"),
    method("last-iterate-rates", Kind::Analysis, "P06", "last-iterate suboptimality of composite stochastic mirror descent against the horizon over seeds (median, 95% quantile, fitted slopes) on problems whose optimum the conic solver gives exactly", "optlab::online::rates", "optlab online rate --problem lad|hinge --method csmd:..."),
    method("optimistic-omd", Kind::Solver, "P32", "optimistic online mirror descent (last gradient as hint, adaptive step) beside OGD, OMD and the online Newton step, on loss sequences between stochastic and adversarial with exact regret", "optlab::online::learners", "optlab online run --learner oomd --sequence sea:sigma=..,Sigma=.."),
    method("stability", Kind::Analysis, "P27", "the GD (lambda_max) and SGD (trace) stability criteria against 2/lr", "optlab::curvature::stability", "optlab curvature --run DIR"),
    method("convex-relu", Kind::Solver, "P28", "convex training of two-layer ReLU networks by ADMM", "optlab::solvers::convex_relu", "optlab convex-relu train data.csv"),
    method("n-pg-igt", Kind::Training, "P16", "normalized policy gradient with implicit gradient transport: GPOMDP gradients at a look-ahead point, momentum and normalized steps on the official schedules", "optlab::rl::pg", "optlab rl train --env lqr|cartpole --algo n-pg-igt|harpg|reinforce"),
    method("harpg", Kind::Training, "P16", "(N)-HARPG: recursive momentum with an unbiased Hessian-vector correction (double backward plus the score term) at a random point between iterates", "optlab::rl::pg", "optlab rl train --env lqr|cartpole --algo n-pg-igt|harpg|reinforce"),
    method("lipschitz-bc", Kind::Training, "P11", "behaviour cloning of an LQR expert with the policy's Lipschitz constant bounded by per-layer spectral projection, certified by LipSDP, with closed-loop cost under random and attacked measurement perturbations", "optlab::rl::bc", "optlab rl bc --expert lqr --lipschitz 1,2,4,none --eps 0.1"),
    method("off-policy-gail", Kind::Training, "P04", "off-policy adversarial imitation: a discriminator with the official loss and a one-sided gradient penalty or spectral normalization, TD3 on the relabelled reward -log(1 - sigmoid(D)), the reward's local Lipschitz constant measured", "optlab::rl::gail", "optlab rl train --env pendulum --algo gail --expert RUN --reg gp|spectral|none"),
    method("single-model-mbpo", Kind::Training, "P24", "MBPO-style TD3 on one-step branches of a probabilistic dynamics model (or an ensemble) with a spectrally normalized or adversarially trained critic, and the Bellman gap between the learned and true model", "optlab::rl::mbpo", "optlab rl train --env pendulum --algo mbpo --models 1|5 --reg none|spectral|adv"),
    method("sso", Kind::Training, "P34", "SSO: one loss gradient in the model's outputs per batch, then m steps (the official line search, or the run's optimizer) on the target-space surrogate", "optlab::train::sso", "optlab train --sso inner=10,eta=1"),
    method("batch-tests", Kind::Training, "P29", "adaptive batch sizes by the norm, inner-product and augmented tests", "optlab::train::batch_size", "optlab train --batch-test norm:eta=0.5"),
    method("refinement", Kind::Schedule, "P33", "a schedule refined from a run's gradient norms", "optlab::refine", "optlab schedule refine --run DIR"),
    method("slq", Kind::Analysis, "P36", "stochastic Lanczos quadrature for the Hessian's spectral density", "optlab::curvature::estimators", "optlab curvature --run DIR --slq-plot slq.png"),
    method("batch-lr-rule", Kind::Schedule, "P36", "moving a learning rate to another batch size: linear for SGD, square root for Adam", "optlab::curvature::stability", "optlab hparams --scale-batch --lr LR --from B1 --to B2"),
    method("anneal-law", Kind::Schedule, "P38", "the learning-rate annealing scaling law, fitted and predicting", "optlab::anneal_law", "optlab scaling fit|predict|check"),
    method("colide", Kind::Solver, "P40", "CoLiDE-EV/NV and DAGMA linear DAG learning", "optlab::solvers::dag", "optlab dag fit data.csv"),
    method("mup", Kind::Layer, "P42", "muP: base shapes, MuReadout, per-tensor learning rates, coordinate check and lr sweep", "optlab::mup", "optlab mup coord-check|lr-sweep"),
];

/// Every registered method: the optimizers, then the others.
pub fn methods() -> Vec<&'static Method> {
    crate::optim::OPTIMIZERS
        .iter()
        .map(|e| &e.method)
        .chain(METHODS.iter())
        .collect()
}

/// How much of a paper is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Implemented,
    Partial,
    NotYet,
}

impl Status {
    /// `implemented`, `partial`, `not yet`.
    pub fn name(self) -> &'static str {
        match self {
            Status::Implemented => "implemented",
            Status::Partial => "partial",
            Status::NotYet => "not yet",
        }
    }
}

/// A paper with what implements it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PaperRow {
    pub id: &'static str,
    pub title: &'static str,
    pub summary: &'static str,
    pub status: Status,
    /// What is not built yet (partial papers).
    pub missing: Option<&'static str>,
    /// The registered methods citing it.
    pub methods: Vec<&'static str>,
    /// Their library modules (each once).
    pub modules: Vec<&'static str>,
    /// Their commands (each once).
    pub commands: Vec<&'static str>,
}

/// One row per paper, in id order.
pub fn papers() -> Vec<PaperRow> {
    let all = methods();
    PAPERS
        .iter()
        .map(|p| {
            let cites: Vec<&Method> = all
                .iter()
                .copied()
                .filter(|m| m.paper == Some(p.id))
                .collect();
            let mut modules: Vec<&'static str> = Vec::new();
            let mut commands: Vec<&'static str> = Vec::new();
            for m in &cites {
                if !modules.contains(&m.module) {
                    modules.push(m.module);
                }
                let command = if m.kind == Kind::Optimizer {
                    "optlab train --optimizer NAME:..."
                } else {
                    m.command
                };
                if !commands.contains(&command) {
                    commands.push(command);
                }
            }
            let status = match (cites.is_empty(), p.missing) {
                (true, _) => Status::NotYet,
                (false, Some(_)) => Status::Partial,
                (false, None) => Status::Implemented,
            };
            PaperRow {
                id: p.id,
                title: p.title,
                summary: p.summary,
                status,
                missing: p.missing.filter(|_| status == Status::Partial),
                methods: cites.iter().map(|m| m.name).collect(),
                modules,
                commands,
            }
        })
        .collect()
}

/// The table of [`papers`] as Markdown (`docs/papers.md`).
pub fn papers_markdown() -> String {
    let rows = papers();
    let count = |s: Status| rows.iter().filter(|r| r.status == s).count();
    let mut md = format!(
        "# The 42 seed papers in optlab\n\n\
         Generated by `optlab papers --markdown` from the method registry (`optlab::registry`, \
         `optlab::optim::OPTIMIZERS`); a test keeps this file equal to it. {} implemented, {} in part, {} not yet.\n\n\
         | id | paper | status | methods | module | command |\n|---|---|---|---|---|---|\n",
        count(Status::Implemented),
        count(Status::Partial),
        count(Status::NotYet)
    );
    let code = |v: &[&str]| {
        v.iter()
            .map(|s| format!("`{}`", s.replace('|', "\\|")))
            .collect::<Vec<_>>()
            .join(", ")
    };
    for r in &rows {
        let status = match r.missing {
            Some(m) => format!("{} (not yet: {m})", r.status.name()),
            None => r.status.name().to_string(),
        };
        md.push_str(&format!(
            "| {} | {} — {} | {status} | {} | {} | {} |\n",
            r.id,
            r.title,
            r.summary,
            r.methods.join(", "),
            code(&r.modules),
            code(&r.commands),
        ));
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_citation_has_a_paper_and_every_paper_is_listed_once() {
        assert_eq!(PAPERS.len(), 42);
        for (i, p) in PAPERS.iter().enumerate() {
            assert_eq!(p.id, format!("P{:02}", i + 1));
        }
        for m in methods() {
            if let Some(id) = m.paper {
                assert!(
                    PAPERS.iter().any(|p| p.id == id),
                    "{} cites {id}, which has no row",
                    m.name
                );
            }
            assert!(m.module.starts_with("optlab::"), "{}", m.name);
        }
        let mut names: Vec<&str> = methods().iter().map(|m| m.name).collect();
        names.sort_unstable();
        let n = names.len();
        names.dedup();
        assert_eq!(names.len(), n, "a method name is registered twice");
    }

    #[test]
    fn implemented_rows_name_modules_that_exist() {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        for r in papers() {
            if r.status == Status::NotYet {
                assert!(r.modules.is_empty());
                continue;
            }
            assert!(!r.modules.is_empty(), "{} has no module", r.id);
            for m in &r.modules {
                let rel = m.trim_start_matches("optlab::").replace("::", "/");
                let file = src.join(format!("{rel}.rs"));
                let dir = src.join(&rel).join("mod.rs");
                assert!(
                    file.exists() || dir.exists(),
                    "{}: module {m} has no file",
                    r.id
                );
            }
        }
    }

    #[test]
    fn docs_papers_md_is_the_registry() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/papers.md");
        let want = papers_markdown();
        let have = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            have == want,
            "docs/papers.md differs from the registry: run `cargo run --release -p optlab-cli -- papers --markdown > docs/papers.md`"
        );
    }
}
