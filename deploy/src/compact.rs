//! Removing the output channels that structured pruning closed.
//!
//! A Linear or Conv layer whose output channel has an all-zero weight row and a zero bias
//! writes zeros there. Through ReLU, max or average pooling and a flatten they stay zeros,
//! and the next Linear or Conv multiplies them by its matching input columns. Removing
//! the row, the bias entry and those columns computes the same function on a narrower
//! activation: a smaller file, fewer MACs, and less RAM, since the plan's arena holds
//! narrower values. This is what per-unit and per-channel L0 gates (Louizos et al. 2018,
//! section 3: "group sparsity"; `tether-train prune --structure unit`) are for on a
//! device: unstructured zeros shrink the file and the time, never the activations.
//!
//! Only what provably computes the same is removed: the channel's value must reach
//! exactly one reader through channel-wise ops that map 0 to 0, the layers' tensors must
//! not be shared, and the model's outputs keep their width. A channel feeding a residual
//! `Add`, a concatenation or a model output stays (its zeros matter there).

use alloc::vec;
use alloc::vec::Vec;

use crate::error::Error;
use crate::format::{Model, Op};
use crate::write::rebuild_resized;

/// One layer whose output was narrowed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Narrowed {
    /// The layer's index among the model's nodes.
    pub node: usize,
    /// Output channels before.
    pub channels: usize,
    /// Output channels kept.
    pub kept: usize,
}

/// What [`remove_dead_channels`] did.
#[derive(Clone, Debug)]
pub struct Compacted {
    /// The narrowed model's bytes.
    pub bytes: Vec<u8>,
    /// Every layer narrowed, in graph order.
    pub narrowed: Vec<Narrowed>,
}

/// A Linear or single-group Conv layer: its weight, its bias, whether it is a conv.
fn layer(op: &Op) -> Option<(usize, Option<usize>, bool)> {
    match *op {
        Op::Linear { weight, bias } => Some((weight, bias, false)),
        Op::Conv2d { weight, bias, geom } if geom.group == 1 => Some((weight, bias, true)),
        _ => None,
    }
}

/// The tensors an op reads.
fn tensors_of(op: &Op) -> Vec<usize> {
    match *op {
        Op::Linear { weight, bias }
        | Op::Conv2d { weight, bias, .. }
        | Op::ConvTranspose2d { weight, bias, .. } => {
            let mut t = vec![weight];
            t.extend(bias);
            t
        }
        Op::Const { tensor } => vec![tensor],
        Op::EmanConv {
            key,
            value,
            query,
            self_kernel,
            bias,
            ..
        } => vec![key, value, query, self_kernel, bias],
        _ => Vec::new(),
    }
}

/// The reader of layer `node`'s output channels, and the columns per channel it reads
/// them as (the spatial size a flatten folded into each channel; 1 otherwise), where
/// every op between is channel-wise and maps 0 to 0 and each value has one reader.
fn channel_reader(
    model: &Model,
    readers: &[Vec<usize>],
    node: usize,
    conv: bool,
) -> Option<(usize, usize)> {
    let mut value = model.nodes[node].output;
    let channels = {
        let d = model.shapes[value].as_slice();
        if conv {
            (d.len() == 3).then_some(d[0])?
        } else {
            *d.last()?
        }
    };
    // Columns per channel once flattened; `None` before a flatten.
    let mut flattened: Option<usize> = None;
    loop {
        if model.outputs.contains(&value) || readers[value].len() != 1 {
            return None;
        }
        let r = readers[value][0];
        let next = &model.nodes[r];
        if next.inputs().first() != Some(&value) {
            return None;
        }
        match next.op {
            Op::Relu => {}
            // Pooling works per channel of a [C, H, W] value: zeros pool to zeros (a
            // max pool pads with -inf, so a window of zeros is 0).
            Op::MaxPool2d(_) | Op::AvgPool2d(_) if conv && flattened.is_none() => {}
            Op::Flatten if conv && flattened.is_none() => {
                flattened = Some(model.shapes[value].numel() / channels);
            }
            Op::Linear { .. } if !conv || flattened.is_some() => {
                return Some((r, flattened.unwrap_or(1)));
            }
            Op::Conv2d { geom, .. } if conv && flattened.is_none() && geom.group == 1 => {
                return Some((r, 1));
            }
            _ => return None,
        }
        value = next.output;
    }
}

/// A row-major array viewed as `[outer, keep.len(), inner]`, with the entries `c` of its
/// middle axis where `keep[c]`.
fn keep_axis1(values: &[f32], outer: usize, keep: &[bool], inner: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(values.len());
    for o in 0..outer {
        for (c, _) in keep.iter().enumerate().filter(|(_, k)| **k) {
            let at = (o * keep.len() + c) * inner;
            out.extend_from_slice(&values[at..at + inner]);
        }
    }
    out
}

/// The model with every removable dead output channel removed (see the module doc), or
/// `None` where there is none. The result computes the same outputs (up to the order of
/// a sum's terms); a layer whose channels are all dead keeps one, so that no value is
/// empty.
///
/// # Errors
/// The writer's refusal of the narrowed model (it re-derives and checks every shape).
pub fn remove_dead_channels(model: &Model) -> Result<Option<Compacted>, Error> {
    if model.static_shapes {
        // The channel axis of a model without a batch axis is the second; not handled.
        return Ok(None);
    }
    let mut readers: Vec<Vec<usize>> = vec![Vec::new(); model.shapes.len()];
    let mut uses = vec![0usize; model.tensors.len()];
    for (i, node) in model.nodes.iter().enumerate() {
        for &v in node.inputs() {
            if !readers[v].contains(&i) {
                readers[v].push(i);
            }
        }
        for t in tensors_of(&node.op) {
            uses[t] += 1;
        }
    }
    // Per tensor: rows kept (a layer's own channels), and channels of its input kept.
    let mut rows: Vec<Option<Vec<bool>>> = vec![None; model.tensors.len()];
    let mut cols: Vec<Option<Vec<bool>>> = vec![None; model.tensors.len()];
    let mut narrowed = Vec::new();
    for (i, node) in model.nodes.iter().enumerate() {
        let Some((weight, bias, conv)) = layer(&node.op) else {
            continue;
        };
        let w = &model.tensors[weight];
        let channels = w.dims.as_slice()[0];
        let per = w.dims.numel() / channels.max(1);
        let dense = w.to_dense();
        let b = bias.map(|b| model.tensors[b].to_dense());
        let mut keep: Vec<bool> = (0..channels)
            .map(|c| {
                dense[c * per..(c + 1) * per].iter().any(|&v| v != 0.0)
                    || b.as_ref().is_some_and(|b| b[c] != 0.0)
            })
            .collect();
        if keep.iter().all(|&k| k) {
            continue;
        }
        if keep.iter().all(|&k| !k) {
            keep[0] = true;
        }
        let shared = uses[weight] != 1 || bias.is_some_and(|b| uses[b] != 1);
        let Some((reader, _)) = channel_reader(model, &readers, i, conv) else {
            continue;
        };
        let Some((reader_weight, reader_bias, _)) = layer(&model.nodes[reader].op) else {
            continue;
        };
        if shared || uses[reader_weight] != 1 || reader_bias.is_some_and(|b| uses[b] != 1) {
            continue;
        }
        narrowed.push(Narrowed {
            node: i,
            channels,
            kept: keep.iter().filter(|&&k| k).count(),
        });
        rows[weight] = Some(keep.clone());
        if let Some(b) = bias {
            rows[b] = Some(keep.clone());
        }
        cols[reader_weight] = Some(keep);
    }
    if narrowed.is_empty() {
        return Ok(None);
    }
    let bytes = rebuild_resized(model, |t| {
        if rows[t].is_none() && cols[t].is_none() {
            return Ok(None);
        }
        let tensor = &model.tensors[t];
        let mut dims = tensor.dims.as_slice().to_vec();
        let mut values = tensor.to_dense();
        if let Some(keep) = &rows[t] {
            let inner = values.len() / dims[0];
            values = keep_axis1(&values, 1, keep, inner);
            dims[0] = keep.iter().filter(|&&k| k).count();
        }
        if let Some(keep) = &cols[t] {
            // A Linear weight [out, channels * per] read after a flatten, or a Conv
            // weight [out, channels, kh, kw]: channel c is a run of columns either way.
            let outer = dims[0];
            let inner = values.len() / outer / keep.len();
            values = keep_axis1(&values, outer, keep, inner);
            let kept = keep.iter().filter(|&&k| k).count();
            if dims.len() == 2 {
                dims[1] = kept * inner;
            } else {
                dims[1] = kept;
            }
        }
        Ok(Some((dims, values)))
    })?;
    Ok(Some(Compacted { bytes, narrowed }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::ConvGeom;
    use crate::{AlignedBytes, ModelBuilder, OpSpec, Plan, PlanOptions};

    fn outputs(bytes: &[u8], inputs: &[Vec<f32>]) -> Vec<Vec<f32>> {
        let aligned = AlignedBytes::from_slice(bytes);
        let mut plan = Plan::new(Model::parse(&aligned).unwrap(), &PlanOptions::default()).unwrap();
        inputs
            .iter()
            .map(|x| plan.run(x).unwrap().to_vec())
            .collect()
    }

    fn parse(bytes: &[u8]) -> Model<'static> {
        let aligned =
            alloc::boxed::Box::leak(alloc::boxed::Box::new(AlignedBytes::from_slice(bytes)));
        Model::parse(aligned).unwrap()
    }

    fn value(k: usize) -> f32 {
        ((k * 7919 % 1013) as f32 / 1013.0 - 0.5) * 0.8
    }

    fn inputs(n: usize) -> Vec<Vec<f32>> {
        (0..4)
            .map(|s| (0..n).map(|k| value(k + 31 * s + 5)).collect())
            .collect()
    }

    fn assert_same(a: &[Vec<f32>], b: &[Vec<f32>]) {
        for (x, y) in a.iter().flatten().zip(b.iter().flatten()) {
            assert!((x - y).abs() <= 1e-5 * x.abs().max(1.0), "{x} vs {y}");
        }
    }

    /// An MLP 6 -> 5 -> 4 -> 3 with units `dead1` of the first layer and `dead2` of the
    /// second closed (weight rows and biases zero).
    fn mlp(dead1: &[usize], dead2: &[usize], bias_on_dead: bool) -> Vec<u8> {
        let mut b = ModelBuilder::new(&[6]);
        let mut x = b.input();
        for (l, (o, i, dead)) in [(5, 6, dead1), (4, 5, dead2), (3, 4, &[][..])]
            .into_iter()
            .enumerate()
        {
            let w: Vec<f32> = (0..o * i)
                .map(|k| {
                    if dead.contains(&(k / i)) {
                        0.0
                    } else {
                        value(k + 100 * l)
                    }
                })
                .collect();
            let bias: Vec<f32> = (0..o)
                .map(|k| {
                    if dead.contains(&k) && !bias_on_dead {
                        0.0
                    } else {
                        value(k + 7 + l)
                    }
                })
                .collect();
            let w = b.dense(&[o, i], &w);
            let bias = b.dense(&[o], &bias);
            x = b.op(
                OpSpec::Linear {
                    weight: w,
                    bias: Some(bias),
                },
                &[x],
            );
            if l < 2 {
                x = b.op(OpSpec::Relu, &[x]);
            }
        }
        b.finish(x).unwrap()
    }

    #[test]
    fn an_mlp_loses_its_closed_units_and_computes_the_same() {
        let bytes = mlp(&[1, 3], &[0], false);
        let model = parse(&bytes);
        let c = remove_dead_channels(&model)
            .unwrap()
            .expect("closed units to remove");
        assert_eq!(
            c.narrowed,
            vec![
                Narrowed {
                    node: 0,
                    channels: 5,
                    kept: 3
                },
                Narrowed {
                    node: 2,
                    channels: 4,
                    kept: 3
                }
            ]
        );
        let small = parse(&c.bytes);
        let dims: Vec<Vec<usize>> = small
            .tensors
            .iter()
            .map(|t| t.dims.as_slice().to_vec())
            .collect();
        assert_eq!(
            dims,
            vec![
                vec![3, 6],
                vec![3],
                vec![3, 3],
                vec![3],
                vec![3, 3],
                vec![3]
            ]
        );
        assert_same(&outputs(&bytes, &inputs(6)), &outputs(&c.bytes, &inputs(6)));
        assert!(c.bytes.len() < bytes.len());
        // Nothing is left to remove.
        assert!(remove_dead_channels(&small).unwrap().is_none());
    }

    #[test]
    fn a_zero_row_with_a_bias_or_an_open_network_stays() {
        // relu(b) is a constant the next layer reads: not a dead unit.
        assert!(
            remove_dead_channels(&parse(&mlp(&[1], &[], true)))
                .unwrap()
                .is_none()
        );
        assert!(
            remove_dead_channels(&parse(&mlp(&[], &[], false)))
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn a_layer_with_every_unit_closed_keeps_one() {
        let bytes = mlp(&[0, 1, 2, 3, 4], &[], false);
        let c = remove_dead_channels(&parse(&bytes)).unwrap().unwrap();
        assert_eq!(c.narrowed[0].kept, 1);
        assert_same(&outputs(&bytes, &inputs(6)), &outputs(&c.bytes, &inputs(6)));
    }

    /// LeNet-5's shape, small: conv 1 -> 4 (3x3, padding 1), ReLU, max pool 2, conv 4 ->
    /// 3 (3x3), ReLU, flatten, linear -> 2; `dead1` / `dead2` channels closed.
    fn convnet(dead1: &[usize], dead2: &[usize], residual: bool) -> Vec<u8> {
        let mut b = ModelBuilder::new(&[1, 8, 8]);
        let filled = |n: usize, per: usize, dead: &[usize], seed: usize| -> Vec<f32> {
            (0..n)
                .map(|k| {
                    if dead.contains(&(k / per)) {
                        0.0
                    } else {
                        value(k + seed)
                    }
                })
                .collect()
        };
        let w1 = b.dense(&[4, 1, 3, 3], &filled(36, 9, dead1, 1));
        let b1 = b.dense(&[4], &filled(4, 1, dead1, 2));
        let x = b.input();
        let mut h = b.op(
            OpSpec::Conv {
                weight: w1,
                bias: Some(b1),
                geom: ConvGeom::simple(1, 1),
            },
            &[x],
        );
        if residual {
            // The closed channels' zeros are added to the input's: they matter.
            let ws = b.dense(&[4, 1, 1, 1], &[1.0, 0.5, -0.5, 2.0]);
            let skip = b.op(
                OpSpec::Conv {
                    weight: ws,
                    bias: None,
                    geom: ConvGeom::simple(1, 0),
                },
                &[x],
            );
            h = b.op(OpSpec::Add, &[h, skip]);
        }
        h = b.op(OpSpec::Relu, &[h]);
        h = b.op(
            OpSpec::MaxPool2d {
                kernel: 2,
                stride: 2,
            },
            &[h],
        );
        let w2 = b.dense(&[3, 4, 3, 3], &filled(108, 36, dead2, 3));
        let b2 = b.dense(&[3], &filled(3, 1, dead2, 4));
        h = b.op(
            OpSpec::Conv {
                weight: w2,
                bias: Some(b2),
                geom: ConvGeom::simple(1, 0),
            },
            &[h],
        );
        h = b.op(OpSpec::Relu, &[h]);
        h = b.op(OpSpec::Flatten, &[h]);
        let w3 = b.dense(&[2, 12], &filled(24, 12, &[], 5));
        let y = b.op(
            OpSpec::Linear {
                weight: w3,
                bias: None,
            },
            &[h],
        );
        b.finish(y).unwrap()
    }

    #[test]
    fn a_convnet_loses_its_closed_channels_through_pooling_and_flatten() {
        let bytes = convnet(&[2], &[0, 2], false);
        let c = remove_dead_channels(&parse(&bytes)).unwrap().unwrap();
        let kept: Vec<(usize, usize)> = c.narrowed.iter().map(|n| (n.channels, n.kept)).collect();
        assert_eq!(kept, vec![(4, 3), (3, 1)]);
        let small = parse(&c.bytes);
        // The linear layer reads 1 channel of 2x2 after the flatten.
        assert_eq!(small.tensors.last().unwrap().dims.as_slice(), &[2, 4]);
        assert_same(
            &outputs(&bytes, &inputs(64)),
            &outputs(&c.bytes, &inputs(64)),
        );
        // The same kernels on both sides (by default the closed channels' zero rows can
        // make the wide model's convolution run sparse, whose scratch is another size).
        let ram = |bytes: &[u8]| {
            let options = PlanOptions {
                kernels: crate::plan::KernelChoice::Dense,
                ..PlanOptions::default()
            };
            Plan::new(parse(bytes), &options)
                .unwrap()
                .activation_bytes()
        };
        assert!(ram(&c.bytes) < ram(&bytes), "narrower values take less RAM");
    }

    /// The plan a microcontroller builds (no vector kernel, no weight copy) computes what
    /// this host's does, and takes no more RAM than its activations.
    #[test]
    fn the_in_place_plan_computes_the_same_and_copies_no_weight() {
        for bytes in [convnet(&[], &[1], true), mlp(&[2], &[], false)] {
            let model = parse(&bytes);
            let n = model.input_shape().numel();
            let mut host = Plan::new(model.clone(), &PlanOptions::default()).unwrap();
            let mut device = Plan::new(model, &PlanOptions::in_place(1)).unwrap();
            assert_eq!(device.ram_bytes(), device.activation_bytes());
            for x in inputs(n) {
                let a = host.run(&x).unwrap().to_vec();
                assert_same(&[a], &[device.run(&x).unwrap().to_vec()]);
            }
        }
    }

    #[test]
    fn a_channel_feeding_a_residual_add_stays() {
        let bytes = convnet(&[2], &[], true);
        assert!(remove_dead_channels(&parse(&bytes)).unwrap().is_none());
    }
}
