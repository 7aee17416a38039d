#!/usr/bin/env bash
# Issue 19's P06 experiment: last-iterate suboptimality F(x_T) + h(x_T) - f* of composite stochastic mirror descent
# against T = 100 .. 100000 (7 horizons), median and 95% quantile over 100 seeds, fitted log-log slopes next to the
# theory, and the averaged iterate on the same axes. f* is solved exactly by the conic solver (clarabel).
#   (a) convex Lipschitz: least absolute deviations on the RAND HIE data, eta/sqrt(T), eta/sqrt(t), linear decay;
#   (b) strongly convex: digits hinge + 0.01/2 |x|^2 as a composite term (prox), eta_t = 1/(mu t);
#   (c) heavy tails: (a) plus Student-t gradient noise (dof 1.8: infinite variance), with eta/T^(1/p), p = 1.5 and 2.
#   scripts/experiments/online_rates.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-runs/online_rates}
cargo build --release -q -p optlab-cli
O=target/release/optlab
mkdir -p "$OUT"
run() { # name, args...
  local name=$1; shift
  echo "== $name"
  "$O" online rate "$@" --out "$OUT/$name" | tail -n +2
}
run lad-sqrtT --problem lad --method csmd:rule=sqrt_T,eta=0.5
run lad-sqrtt --problem lad --method csmd:rule=sqrt_t,eta=0.5
run lad-linear --problem lad --method csmd:rule=linear,eta=1
run hinge-strong --problem hinge --method csmd:rule=strong,mu=0.01,prox=l2,lambda=0.01
run heavy-p1.5 --problem lad --noise student:dof=1.8,scale=1 --method csmd:rule=sqrt_T,p=1.5,eta=0.5
run heavy-p2 --problem lad --noise student:dof=1.8,scale=1 --method csmd:rule=sqrt_T,eta=0.5
