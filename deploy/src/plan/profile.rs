//! What each step of a plan runs ([`StepReport`], [`Plan::steps`]): the op, its kind for a
//! per-kind breakdown, the kernel chosen and the ops fused into it. A profiler times the
//! steps through [`Plan::run_observed`] (`tether-deploy bench --per-node`) and puts these
//! beside the times, so that a slow layer is found by its shape and kernel, and a
//! runtime's breakdown can be set against another's (`scripts/profile-vs-ort.py`).

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use super::build::Plan;
use super::layer::{Layer, Matrix};
use super::step::Step;
use crate::kernels::depthwise_choice;
use crate::kernels::implicit_conv::{Act, Mode};

/// One step of a plan, for reports.
#[derive(Clone, Debug, PartialEq)]
pub struct StepReport {
    /// Index of the model node the step runs (an activation or a residual Add fused into
    /// a convolution has no step of its own).
    pub node: usize,
    /// The node's op ([`crate::format::Op::name`]).
    pub op: &'static str,
    /// A coarse class to sum times by: `conv 1x1`, `conv kxk` (one group, a larger
    /// kernel), `conv depthwise` (one input channel per group), `conv grouped`, `linear`,
    /// `pool`, `elementwise` (activations and broadcast arithmetic), `layout` (copies,
    /// transposes, reshapes, concatenations, padding), `other`.
    pub kind: &'static str,
    /// The kernel that runs it (for a convolution: `winograd`, `implicit planes`,
    /// `implicit patches`, `implicit channels`, `sparse planes`, `depthwise lanes`,
    /// `depthwise planes`, ...); empty where there is one.
    pub kernel: &'static str,
    /// Shapes and fused ops, e.g. `32x112x112 -> 16x112x112, 1x1/1, +add +clip`.
    pub detail: String,
}

impl Plan<'_> {
    /// What each step runs, in the order [`Plan::run_observed`] numbers them.
    pub fn steps(&self) -> Vec<StepReport> {
        self.execs
            .iter()
            .map(|e| {
                let op = &self.model.nodes[e.node].op;
                let input = |k: usize| {
                    (k < e.n_inputs).then(|| dims(self.model.shapes[e.inputs[k]].as_slice()))
                };
                let out = dims(self.model.shapes[e.output].as_slice());
                let (kind, kernel, detail) = match &e.step {
                    Step::Conv {
                        first_layer,
                        groups,
                        shape,
                        act,
                        implicit,
                        patch_free,
                        residual,
                        ..
                    } => {
                        let kind = if shape.c == 1 && *groups > 1 {
                            "conv depthwise"
                        } else if *groups > 1 {
                            "conv grouped"
                        } else if shape.k == [1, 1] {
                            "conv 1x1"
                        } else {
                            "conv kxk"
                        };
                        let layers = &self.layers[*first_layer..*first_layer + *groups];
                        let kernel = conv_kernel(layers, *implicit, *patch_free, shape);
                        let density =
                            layers.iter().map(|l| l.density).sum::<f64>() / *groups as f64;
                        let mut d = format!(
                            "{} -> {out}, {}x{}/{}",
                            input(0).unwrap_or_default(),
                            shape.k[0],
                            shape.k[1],
                            shape.stride[0],
                        );
                        if *groups > 1 {
                            d += &format!(", {groups} groups");
                        }
                        if density < 1.0 {
                            d += &format!(", density {density:.2}");
                        }
                        if *residual {
                            d += ", +add";
                        }
                        match act {
                            Act::None => {}
                            Act::Relu => d += ", +relu",
                            Act::Clip(..) => d += ", +clip",
                        }
                        (kind, kernel, d)
                    }
                    Step::Linear { layer, .. } => {
                        let l = &self.layers[*layer];
                        let kernel = match l.weight {
                            Matrix::Dense(_) => "dense",
                            Matrix::Packed(_) => "packed",
                            Matrix::Sparse(_) => "sparse",
                        };
                        let d = format!("{} -> {}, density {:.2}", l.cols, l.rows, l.density);
                        ("linear", kernel, d)
                    }
                    Step::MaxPool { .. } | Step::AvgPool { .. } => (
                        "pool",
                        "",
                        format!("{} -> {out}", input(0).unwrap_or_default()),
                    ),
                    Step::Reduce { .. } => (
                        "pool",
                        "",
                        format!("{} -> {out}", input(0).unwrap_or_default()),
                    ),
                    Step::Relu
                    | Step::Sine(_)
                    | Step::Unary(_)
                    | Step::Binary { .. }
                    | Step::Softmax { .. }
                    | Step::Where { .. } => ("elementwise", "", out.clone()),
                    Step::Copy
                    | Step::Transpose { .. }
                    | Step::Concat { .. }
                    | Step::Pad { .. }
                    | Step::Resize { .. }
                    | Step::Input(_)
                    | Step::Const(_) => ("layout", "", out.clone()),
                    Step::MatMul { .. } => ("linear", "matmul", out.clone()),
                    Step::ConvTranspose { .. } => ("other", "", out.clone()),
                };
                StepReport {
                    node: e.node,
                    op: op.name(),
                    kind,
                    kernel,
                    detail,
                }
            })
            .collect()
    }
}

/// `c x h x w` for a shape's dimensions (per sample).
fn dims(d: &[usize]) -> String {
    let parts: Vec<String> = d.iter().map(|v| format!("{v}")).collect();
    parts.join("x")
}

/// The kernel `plan::run` runs a convolution with (the same tests, in the same order).
fn conv_kernel(
    layers: &[Layer],
    implicit: Option<Mode>,
    patch_free: bool,
    shape: &crate::kernels::conv::ConvShape,
) -> &'static str {
    let first = &layers[0];
    if let (Some(mode), Matrix::Packed(_)) = (implicit, &first.weight) {
        return match mode {
            Mode::Winograd => "winograd",
            Mode::Planes => "implicit planes",
            Mode::Patches => "implicit patches",
            Mode::Channels => "implicit channels",
        };
    }
    if let (Matrix::Sparse(_), Some(_)) = (&first.weight, &first.planes) {
        return "sparse planes";
    }
    let dense = layers.iter().all(|l| matches!(l.weight, Matrix::Dense(_)));
    if shape.c == 1 && layers.len() > 1 && dense {
        if layers.iter().all(|l| l.rows == 1) {
            return depthwise_choice::choose(shape).name();
        }
        return "depthwise per group";
    }
    if patch_free {
        return "portable patch-free";
    }
    match (&first.weight, &first.direct) {
        (Matrix::Sparse(_), Some(_)) => "sparse direct",
        (Matrix::Sparse(_), None) => "im2col spmm",
        _ => "im2col gemm",
    }
}

#[cfg(test)]
mod tests {
    use alloc::vec::Vec;

    use crate::format::ConvGeom;
    use crate::kernels::lcg;
    use crate::{AlignedBytes, Model, ModelBuilder, OpSpec, Plan, PlanOptions};

    /// A 3x3 convolution and its ReLU, a depthwise one, a 1x1 one with a residual Add,
    /// pooling, a flatten and a linear layer: every step numbered as `run_observed` calls
    /// back, with its kind and its fused ops.
    #[test]
    fn steps_name_what_runs_and_are_observed_in_order() {
        let (c, m, h) = (3, 16, 8);
        let mut mb = ModelBuilder::new(&[c, h, h]);
        let w1 = mb.dense(&[m, c, 3, 3], &lcg(m * c * 9, 1));
        let w2 = mb.dense(&[m, 1, 3, 3], &lcg(m * 9, 2));
        let w3 = mb.dense(&[m, m, 1, 1], &lcg(m * m, 3));
        let wl = mb.dense(&[10, m], &lcg(10 * m, 4));
        let conv = |weight, geom| OpSpec::Conv {
            weight,
            bias: None,
            geom,
        };
        let a = mb.op(conv(w1, ConvGeom::simple(1, 1)), &[mb.input()]);
        let a = mb.op(OpSpec::Relu, &[a]);
        let dw = ConvGeom {
            group: m,
            ..ConvGeom::simple(1, 1)
        };
        let d = mb.op(conv(w2, dw), &[a]);
        let p = mb.op(conv(w3, ConvGeom::simple(1, 0)), &[d]);
        let s = mb.op(OpSpec::Add, &[p, a]);
        let g = mb.op(
            OpSpec::AvgPool2d {
                kernel: h as u32,
                stride: h as u32,
            },
            &[s],
        );
        let f = mb.op(OpSpec::Flatten, &[g]);
        let y = mb.op(
            OpSpec::Linear {
                weight: wl,
                bias: None,
            },
            &[f],
        );
        let bytes = AlignedBytes::from_slice(&mb.finish(y).expect("a valid model"));
        let model = Model::parse(&bytes).expect("parses");
        let mut plan = Plan::new(model, &PlanOptions::default()).expect("plans");
        let steps = plan.steps();
        let kinds: Vec<&str> = steps.iter().map(|s| s.kind).collect();
        // The ReLU and the Add (with the default vector kernels, on any CPU) fused.
        let want = [
            "conv kxk",
            "conv depthwise",
            "conv 1x1",
            "pool",
            "layout",
            "linear",
        ];
        assert_eq!(kinds, want, "{steps:#?}");
        assert!(steps[0].detail.contains("+relu"), "{}", steps[0].detail);
        assert!(
            steps[0].detail.starts_with("3x8x8 -> 16x8x8, 3x3/1"),
            "{}",
            steps[0].detail
        );
        assert!(steps[1].detail.contains("16 groups"), "{}", steps[1].detail);
        assert!(
            steps[2].detail.ends_with("1x1/1, +add"),
            "{}",
            steps[2].detail
        );
        assert!(
            steps
                .iter()
                .all(|s| !s.kind.starts_with("conv") || !s.kernel.is_empty())
        );
        assert!(steps.windows(2).all(|w| w[0].node < w[1].node));
        assert_eq!(steps[0].op, "conv2d");

        let x = lcg(c * h * h, 5);
        let want = plan.run(&x).expect("runs").to_vec();
        let mut seen = Vec::new();
        plan.run_observed(&[&x], &mut |i| seen.push(i))
            .expect("runs");
        assert_eq!(seen, (0..steps.len()).collect::<Vec<_>>());
        assert_eq!(plan.run(&x).expect("runs"), &want[..]);
    }
}
