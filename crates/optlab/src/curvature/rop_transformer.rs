//! The transformer's layers under Pearlmutter's R-operator ([`super::rop`]): LayerNorm, the pre-norm block (causal
//! attention, the GELU MLP, two residuals) and the token and position embeddings. A [`Dual`] carries a value and
//! its R-derivative; dense layers see rows (positions), attention (B, T, C).
//!
//! LayerNorm and GELU run as single-pass kernels (`nn::fused::{layer_norm_r, gelu_r}` and their backward
//! passes, formulas there), attention as a fused pass per head ([`AttentionR`]), dense layers as products
//! accumulated into one buffer each (`super::rop::affine_forward` and its backward).

use super::rop::{affine_forward, affine_input_grad, affine_weight_hv};
use crate::nn::fused::{
    gelu_r, gelu_r_grad, layer_norm_r, layer_norm_r_grad, sum_rows, AttentionR,
};
use crate::nn::transformer::{Block, Dense, SeqNorm};
use crate::{Error, Result};
use candle_core::{Tensor, D};

/// A value and its R-derivative, of one shape.
#[derive(Clone)]
pub(super) struct Dual {
    pub v: Tensor,
    pub r: Tensor,
}

impl Dual {
    fn rows(&self) -> Result<Dual> {
        let c = self.v.dim(D::Minus1)?;
        Ok(Dual {
            v: self.v.reshape(((), c))?,
            r: self.r.reshape(((), c))?,
        })
    }

    fn reshape(&self, dims: &[usize]) -> Result<Dual> {
        Ok(Dual {
            v: self.v.reshape(dims)?,
            r: self.r.reshape(dims)?,
        })
    }

    fn add(&self, o: &Dual) -> Result<Dual> {
        Ok(Dual {
            v: (&self.v + &o.v)?,
            r: (&self.r + &o.r)?,
        })
    }
}

/// A dense layer's weight and bias with their directions.
struct DenseDir {
    w: Tensor,
    b: Tensor,
    vw: Tensor,
    vb: Tensor,
}

impl DenseDir {
    fn of(d: &Dense, v: &[Tensor]) -> DenseDir {
        DenseDir {
            w: d.weight.tensor().detach(),
            b: d.bias.tensor().detach(),
            vw: v[0].clone(),
            vb: v[1].clone(),
        }
    }

    /// y = x Wᵀ + b on rows, R(y) = x Vᵀ + v_b + R(x) Wᵀ.
    fn forward(&self, x: &Dual) -> Result<Dual> {
        let (v, r) = affine_forward(
            &x.v,
            Some(&x.r),
            [&self.w, &self.vw],
            [Some(&self.b), Some(&self.vb)],
        )?;
        Ok(Dual { v, r })
    }

    /// (H v)_W, (H v)_b and the input's (g, R(g)).
    fn backward(&self, x: &Dual, g: &Dual) -> Result<([Tensor; 2], Dual)> {
        let hw = affine_weight_hv(&x.v, Some(&x.r), [&g.v, &g.r])?;
        let [v, r] = affine_input_grad([&self.w, &self.vw], [&g.v, &g.r])?;
        Ok(([hw, sum_rows(&g.r)?], Dual { v, r }))
    }
}

/// What LayerNorm's backward pass needs: x̂, R(x̂) and each row's [s, k].
pub(super) struct NormSaved {
    xhat: Tensor,
    rxhat: Tensor,
    sk: Tensor,
    gamma: Tensor,
    vgamma: Tensor,
}

/// LayerNorm's weight and bias when `n` is one (not PowerNorm or BatchNorm).
pub(super) fn layer_norm_params(n: &SeqNorm) -> Option<(Tensor, Tensor)> {
    match n {
        SeqNorm::Layer { weight, bias } => Some((weight.tensor().detach(), bias.tensor().detach())),
        _ => None,
    }
}

/// LayerNorm over the last axis with weight γ, bias β and their directions `v` = [V_γ, V_β].
pub(super) fn norm_forward(
    x: &Dual,
    (gamma, beta): &(Tensor, Tensor),
    v: &[Tensor],
) -> Result<(Dual, NormSaved)> {
    let [y, ry, xhat, rxhat, sk] = layer_norm_r(&x.v, &x.r, [gamma, beta, &v[0], &v[1]])?;
    let saved = NormSaved {
        xhat,
        rxhat,
        sk,
        gamma: gamma.clone(),
        vgamma: v[0].clone(),
    };
    Ok((Dual { v: y, r: ry }, saved))
}

/// (H v)_γ, (H v)_β and the input's (g, R(g)).
pub(super) fn norm_backward(n: &NormSaved, g: &Dual) -> Result<([Tensor; 2], Dual)> {
    let [v, r, hg] = layer_norm_r_grad(
        &g.v,
        &g.r,
        [&n.xhat, &n.rxhat, &n.sk],
        [&n.gamma, &n.vgamma],
    )?;
    Ok(([sum_rows(&hg)?, sum_rows(&g.r)?], Dual { v, r }))
}

/// What a block's backward pass needs.
pub(super) struct BlockSaved {
    dims: Vec<usize>,
    norm1: Option<NormSaved>,
    n1: Dual,
    attn: AttentionR,
    a: Dual,
    norm2: Option<NormSaved>,
    n2: Dual,
    u: Dual,
    /// GELU's σ′(u) and σ″(u).
    d1: Tensor,
    d2: Tensor,
    act: Dual,
}

/// The block's parameters with their directions (in [`Block::params`] order), or `None` when a normalization is
/// not LayerNorm.
struct BlockDirs {
    norm1: Option<(Tensor, Tensor)>,
    v_norm1: Vec<Tensor>,
    qkv: DenseDir,
    proj: DenseDir,
    norm2: Option<(Tensor, Tensor)>,
    v_norm2: Vec<Tensor>,
    fc: DenseDir,
    out: DenseDir,
}

/// Parameters a block holds: 8, and 2 more per LayerNorm.
pub(super) fn block_params(b: &Block) -> usize {
    b.params().len()
}

/// Whether the R-operator covers the block (its normalizations are LayerNorm or none).
pub(super) fn block_covered(b: &Block) -> bool {
    b.norms()
        .into_iter()
        .all(|n| layer_norm_params(n).is_some())
}

fn dirs(b: &Block, v: &[Tensor]) -> Result<BlockDirs> {
    let norm = |n: &Option<SeqNorm>| -> Result<Option<(Tensor, Tensor)>> {
        n.as_ref()
            .map(|n| {
                layer_norm_params(n)
                    .ok_or_else(|| Error::invalid("the R-operator covers LayerNorm blocks only"))
            })
            .transpose()
    };
    let (norm1, norm2) = (norm(&b.norm1)?, norm(&b.norm2)?);
    let mut at = 0;
    let mut take = |n: usize| {
        let s = v[at..at + n].to_vec();
        at += n;
        s
    };
    let v_norm1 = take(if norm1.is_some() { 2 } else { 0 });
    let qkv = DenseDir::of(&b.attn.qkv, &take(2));
    let proj = DenseDir::of(&b.attn.proj, &take(2));
    let v_norm2 = take(if norm2.is_some() { 2 } else { 0 });
    let fc = DenseDir::of(&b.fc, &take(2));
    let out = DenseDir::of(&b.proj, &take(2));
    Ok(BlockDirs {
        norm1,
        v_norm1,
        qkv,
        proj,
        norm2,
        v_norm2,
        fc,
        out,
    })
}

/// LayerNorm when the block has one, the identity otherwise.
fn maybe_norm_forward(
    x: &Dual,
    norm: &Option<(Tensor, Tensor)>,
    v: &[Tensor],
) -> Result<(Dual, Option<NormSaved>)> {
    Ok(match norm {
        Some(gb) => {
            let (y, saved) = norm_forward(x, gb, v)?;
            (y, Some(saved))
        }
        None => (x.clone(), None),
    })
}

/// [`maybe_norm_forward`]'s H v (none without a norm) and input gradient.
fn maybe_norm_backward(saved: &Option<NormSaved>, g: Dual) -> Result<(Vec<Tensor>, Dual)> {
    Ok(match saved {
        Some(n) => {
            let (h, gi) = norm_backward(n, &g)?;
            (h.to_vec(), gi)
        }
        None => (Vec::new(), g),
    })
}

/// `x + attn(norm1(x))`, then `h + mlp(norm2(h))`, on (B, T, C) with the directions `v` of the block's parameters.
pub(super) fn block_forward(b: &Block, v: &[Tensor], x: &Dual) -> Result<(Dual, BlockSaved)> {
    let p = dirs(b, v)?;
    let dims = x.v.dims().to_vec();
    let x = x.rows()?;
    let (n1, norm1) = maybe_norm_forward(&x, &p.norm1, &p.v_norm1)?;
    let qkv = p.qkv.forward(&n1)?;
    let (c3, bt) = (qkv.v.dim(1)?, [dims[0], dims[1]]);
    let qkv = qkv.reshape(&[bt[0], bt[1], c3])?;
    let (y, ry, attn) = AttentionR::forward(&qkv.v, &qkv.r, b.attn.heads, b.attn.scale)?;
    let a = Dual { v: y, r: ry }.rows()?;
    let h = x.add(&p.proj.forward(&a)?)?;
    let (n2, norm2) = maybe_norm_forward(&h, &p.norm2, &p.v_norm2)?;
    let u = p.fc.forward(&n2)?;
    let [act, ract, d1, d2] = gelu_r(&u.v, &u.r)?;
    let act = Dual { v: act, r: ract };
    let y = h.add(&p.out.forward(&act)?)?.reshape(&dims)?;
    let saved = BlockSaved {
        dims,
        norm1,
        n1,
        attn,
        a,
        norm2,
        n2,
        u,
        d1,
        d2,
        act,
    };
    Ok((y, saved))
}

/// The block's H v (in [`Block::params`] order) and its input's (g, R(g)), from the output's.
pub(super) fn block_backward(
    b: &Block,
    v: &[Tensor],
    s: &BlockSaved,
    g: &Dual,
) -> Result<(Vec<Tensor>, Dual)> {
    let p = dirs(b, v)?;
    let g = g.rows()?;
    let ([ow, ob], g_act) = p.out.backward(&s.act, &g)?;
    let [gu, rgu] = gelu_r_grad(&g_act.v, &g_act.r, [&s.d1, &s.d2], &s.u.r)?;
    let g_u = Dual { v: gu, r: rgu };
    let ([fw, fb], g_n2) = p.fc.backward(&s.n2, &g_u)?;
    let (h_norm2, g_h) = maybe_norm_backward(&s.norm2, g_n2)?;
    let g_h = g.add(&g_h)?;
    let ([pw, pb], g_a) = p.proj.backward(&s.a, &g_h)?;
    let (c, [bb, tt]) = (g_a.v.dim(1)?, [s.dims[0], s.dims[1]]);
    let (gq, rgq) = s
        .attn
        .backward(&g_a.v.reshape((bb, tt, c))?, &g_a.r.reshape((bb, tt, c))?)?;
    let g_qkv = Dual { v: gq, r: rgq }.rows()?;
    let ([qw, qb], g_n1) = p.qkv.backward(&s.n1, &g_qkv)?;
    let (h_norm1, g_x) = maybe_norm_backward(&s.norm1, g_n1)?;
    let g_x = g_h.add(&g_x)?.reshape(&s.dims)?;
    let mut hv = h_norm1;
    hv.extend([qw, qb, pw, pb]);
    hv.extend(h_norm2);
    hv.extend([fw, fb, ow, ob]);
    Ok((hv, g_x))
}
