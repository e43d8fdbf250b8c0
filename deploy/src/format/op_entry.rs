//! Reading one op-table entry (either version): the opcode, its parameters and inputs,
//! every parameter checked.

use super::bytes::u32_at;
use super::dims::Dims;
use super::functions::{Binary, Reduce, Unary};
use super::geometry::{ConvGeom, ConvTransposeGeom, PadGeom, PadMode, PoolGeom};
use super::layout::{MAX_RANK, NONE, OP_PARAMS};
use super::op::{MAX_INPUTS, MAX_RELTAN_POWERS, MeshFeatures, Node, Op};
use super::opcode;
use super::resize::ResizeGeom;
use super::tensor::Tensor;
use crate::error::Error;

/// An op entry's fields, whichever the version.
struct RawOp {
    code: u8,
    rank: usize,
    n_inputs: usize,
    inputs: [usize; MAX_INPUTS],
    output: usize,
    p: [u32; OP_PARAMS],
}

fn raw_op(bytes: &[u8], at: usize, version: u16) -> RawOp {
    let mut inputs = [0usize; MAX_INPUTS];
    let mut p = [0u32; OP_PARAMS];
    if version == 1 {
        for (i, v) in inputs.iter_mut().take(2).enumerate() {
            *v = u32_at(bytes, at + 4 + 4 * i) as usize;
        }
        for (i, v) in p.iter_mut().take(4).enumerate() {
            *v = u32_at(bytes, at + 16 + 4 * i);
        }
        RawOp {
            code: bytes[at],
            rank: 0,
            n_inputs: bytes[at + 1] as usize,
            inputs,
            output: u32_at(bytes, at + 12) as usize,
            p,
        }
    } else {
        for (i, v) in inputs.iter_mut().enumerate() {
            *v = u32_at(bytes, at + 4 + 4 * i) as usize;
        }
        for (i, v) in p.iter_mut().enumerate() {
            *v = u32_at(bytes, at + 24 + 4 * i);
        }
        RawOp {
            code: bytes[at],
            rank: bytes[at + 2] as usize,
            n_inputs: bytes[at + 1] as usize,
            inputs,
            output: u32_at(bytes, at + 20) as usize,
            p,
        }
    }
}

/// Largest stride, padding, kernel or dilation accepted (keeps index arithmetic far from
/// overflow).
const MAX_GEOM: u32 = 1 << 16;

pub(super) fn read_node(
    bytes: &[u8],
    at: usize,
    index: usize,
    version: u16,
    tensors: &[Tensor],
) -> Result<Node, Error> {
    let bad = |reason| Error::BadOp { index, reason };
    let r = raw_op(bytes, at, version);
    let p = r.p;
    let tensor = |id: u32| -> Result<usize, Error> {
        let id = id as usize;
        if id < tensors.len() {
            Ok(id)
        } else {
            Err(bad("tensor reference out of range"))
        }
    };
    let optional = |id: u32| -> Result<Option<usize>, Error> {
        if id == NONE {
            Ok(None)
        } else {
            tensor(id).map(Some)
        }
    };
    let positive = |v: u32, what| {
        if v == 0 || v > MAX_GEOM {
            Err(bad(what))
        } else {
            Ok(v as usize)
        }
    };
    let small = |v: u32, what| {
        if v > MAX_GEOM {
            Err(bad(what))
        } else {
            Ok(v as usize)
        }
    };
    let pair = |v: u32, what| -> Result<[usize; 2], Error> {
        Ok([positive(v & 0xffff, what)?, positive(v >> 16, what)?])
    };
    let pads = |from: usize| -> Result<[usize; 4], Error> {
        let mut out = [0; 4];
        for (i, o) in out.iter_mut().enumerate() {
            *o = small(p[from + i], "padding too large")?;
        }
        Ok(out)
    };
    let shape = |from: usize| -> Result<Dims, Error> {
        if r.rank == 0 || r.rank > MAX_RANK || from + r.rank > OP_PARAMS {
            return Err(bad("bad rank"));
        }
        let mut d = [0usize; MAX_RANK];
        for (i, v) in d.iter_mut().enumerate().take(r.rank) {
            *v = p[from + i] as usize;
        }
        Dims::new(&d[..r.rank]).ok_or(bad("bad shape"))
    };
    let v1 = version == 1;
    let op = match r.code {
        opcode::LINEAR => Op::Linear {
            weight: tensor(p[0])?,
            bias: optional(p[1])?,
        },
        opcode::CONV2D => Op::Conv2d {
            weight: tensor(p[0])?,
            bias: optional(p[1])?,
            geom: if v1 {
                ConvGeom::simple(
                    positive(p[2], "conv stride must be in 1..=65536")?,
                    small(p[3], "conv padding too large")?,
                )
            } else {
                ConvGeom {
                    stride: [
                        positive(p[2], "conv stride must be in 1..=65536")?,
                        positive(p[3], "conv stride must be in 1..=65536")?,
                    ],
                    pads: pads(4)?,
                    dilation: pair(p[8], "conv dilation must be in 1..=65535")?,
                    group: positive(p[9], "conv group must be in 1..=65536")?,
                }
            },
        },
        opcode::MAX_POOL2D | opcode::AVG_POOL2D => {
            let geom = if v1 {
                PoolGeom::simple(
                    positive(p[0], "pool kernel must be in 1..=65536")?,
                    positive(p[1], "pool stride must be in 1..=65536")?,
                )
            } else {
                if p[9] > 3 {
                    return Err(bad("unknown pool flags"));
                }
                PoolGeom {
                    kernel: [
                        positive(p[0], "pool kernel must be in 1..=65536")?,
                        positive(p[1], "pool kernel must be in 1..=65536")?,
                    ],
                    stride: [
                        positive(p[2], "pool stride must be in 1..=65536")?,
                        positive(p[3], "pool stride must be in 1..=65536")?,
                    ],
                    pads: pads(4)?,
                    dilation: pair(p[8], "pool dilation must be in 1..=65535")?,
                    ceil: p[9] & 1 != 0,
                    count_pad: p[9] & 2 != 0,
                }
            };
            if geom.pads[0] >= geom.kernel[0] * geom.dilation[0]
                || geom.pads[2] >= geom.kernel[0] * geom.dilation[0]
                || geom.pads[1] >= geom.kernel[1] * geom.dilation[1]
                || geom.pads[3] >= geom.kernel[1] * geom.dilation[1]
            {
                return Err(bad("pool padding must be smaller than the window"));
            }
            if r.code == opcode::MAX_POOL2D {
                Op::MaxPool2d(geom)
            } else {
                Op::AvgPool2d(geom)
            }
        }
        opcode::FLATTEN => Op::Flatten,
        opcode::RELU => Op::Relu,
        opcode::SINE => {
            let w0 = f32::from_bits(p[0]);
            if !w0.is_finite() {
                return Err(bad("sine w0 is not finite"));
            }
            Op::Sine { w0 }
        }
        opcode::SOFTMAX => Op::Softmax {
            axis: small(p[0], "bad softmax axis")?,
            end: small(p[1], "bad softmax axis")?,
        },
        opcode::ADD => Op::Binary(Binary::Add),
        opcode::MUL => Op::Binary(Binary::Mul),
        opcode::SUB => Op::Binary(Binary::Sub),
        opcode::DIV => Op::Binary(Binary::Div),
        opcode::UNARY => {
            Op::Unary(Unary::decode(p[0], p[1], p[2]).ok_or(bad("unknown unary function"))?)
        }
        opcode::MATMUL => Op::MatMul,
        opcode::TRANSPOSE => {
            let n = r.rank;
            if n == 0 || n > MAX_RANK {
                return Err(bad("bad transpose rank"));
            }
            let mut perm = [0usize; MAX_RANK];
            let mut seen = [false; MAX_RANK];
            for i in 0..n {
                let a = p[i] as usize;
                if a >= n || seen[a] {
                    return Err(bad("transpose perm is not a permutation"));
                }
                seen[a] = true;
                perm[i] = a;
            }
            Op::Transpose { perm, rank: n }
        }
        opcode::CONCAT => Op::Concat {
            axis: small(p[0], "bad concat axis")?,
        },
        opcode::RESHAPE => Op::Reshape(shape(0)?),
        opcode::CONST => Op::Const {
            tensor: tensor(p[0])?,
        },
        opcode::INPUT => Op::Input {
            index: small(p[0], "bad input index")?,
            shape: shape(1)?,
        },
        opcode::MESH_FEATURES => {
            let f = |v: u32, what| {
                let x = f32::from_bits(v);
                if x.is_finite() { Ok(x) } else { Err(bad(what)) }
            };
            Op::MeshFeatures(match p[0] {
                0 => {
                    let count = p[1] as usize;
                    if count == 0 || count > MAX_RELTAN_POWERS {
                        return Err(bad("RelTan needs 1 to 6 powers"));
                    }
                    let mut powers = [0.0; MAX_RELTAN_POWERS];
                    for (k, w) in powers.iter_mut().enumerate().take(count) {
                        *w = f(p[2 + k], "a RelTan power is not finite")?;
                    }
                    let constant = f(p[9], "the RelTan constant is not finite")?;
                    if constant <= 0.0 {
                        return Err(bad("the RelTan constant must be positive"));
                    }
                    MeshFeatures::RelTan {
                        powers,
                        count,
                        degree_power: f(p[8], "the RelTan degree power is not finite")?,
                        constant,
                    }
                }
                1 => {
                    let scale = f(p[4], "the XYZ scale is not finite")?;
                    if scale <= 0.0 {
                        return Err(bad("the XYZ scale must be positive"));
                    }
                    MeshFeatures::Xyz {
                        mean: [
                            f(p[1], "an XYZ mean is not finite")?,
                            f(p[2], "an XYZ mean is not finite")?,
                            f(p[3], "an XYZ mean is not finite")?,
                        ],
                        scale,
                    }
                }
                _ => return Err(bad("unknown mesh feature kind")),
            })
        }
        opcode::EMAN_CONV => Op::EmanConv {
            key: tensor(p[0])?,
            value: tensor(p[1])?,
            query: tensor(p[2])?,
            self_kernel: tensor(p[3])?,
            bias: tensor(p[4])?,
            heads: positive(p[5], "EMAN heads must be in 1..=65536")?,
            order_out: small(p[6], "bad EMAN output order")?,
        },
        opcode::GATE => Op::Gate,
        opcode::SCALARS => Op::Scalars,
        opcode::BINARY => Op::Binary(Binary::decode(p[0]).ok_or(bad("unknown binary function"))?),
        opcode::REDUCE => {
            let kind = Reduce::decode(p[0]).ok_or(bad("unknown reduction"))?;
            if p[1] == 0 || p[1] >= 1 << MAX_RANK {
                return Err(bad("bad reduction axes"));
            }
            Op::Reduce {
                kind,
                axes: p[1] as u8,
            }
        }
        opcode::PAD => {
            let n = r.rank;
            if n == 0 || n > MAX_RANK {
                return Err(bad("bad pad rank"));
            }
            let (mut begin, mut end) = ([0usize; MAX_RANK], [0usize; MAX_RANK]);
            for i in 0..n {
                begin[i] = small(p[i], "pad width out of range")?;
                end[i] = small(p[4 + i], "pad width out of range")?;
            }
            if p[..8]
                .iter()
                .enumerate()
                .any(|(i, &v)| i % 4 >= n && v != 0)
            {
                return Err(bad("pad widths beyond the rank"));
            }
            let value = f32::from_bits(p[9]);
            let mode = match p[8] {
                0 if !value.is_nan() => PadMode::Constant(value),
                1 => PadMode::Reflect,
                2 => PadMode::Edge,
                _ => return Err(bad("unknown pad mode")),
            };
            Op::Pad(PadGeom { begin, end, mode })
        }
        opcode::RESIZE => {
            let n = r.rank;
            if n == 0 || n > MAX_RANK {
                return Err(bad("bad resize rank"));
            }
            let (mode, coord) = ResizeGeom::decode_mode(p[8]).ok_or(bad("unknown resize mode"))?;
            let mut out = [0usize; MAX_RANK];
            let mut scales = [0f32; MAX_RANK];
            for i in 0..MAX_RANK {
                let s = f32::from_bits(p[4 + i]);
                if i < n {
                    if p[i] == 0 || p[i] > 1 << 24 {
                        return Err(bad("resize output extent out of range"));
                    }
                    if !s.is_finite() || s < 0.0 {
                        return Err(bad("resize scale is not finite and non-negative"));
                    }
                } else if p[i] != 0 || p[4 + i] != 0 {
                    return Err(bad("resize extents beyond the rank"));
                }
                out[i] = p[i] as usize;
                scales[i] = s;
            }
            if p[9] != 0 {
                return Err(bad("resize reserved parameter is not zero"));
            }
            Op::Resize(ResizeGeom {
                out,
                scales,
                mode,
                coord,
            })
        }
        opcode::CONV_TRANSPOSE2D => {
            let geom = ConvTransposeGeom {
                stride: pair(p[2], "transposed conv stride must be in 1..=65535")?,
                pads: pads(3)?,
                dilation: pair(p[7], "transposed conv dilation must be in 1..=65535")?,
                group: positive(p[8], "transposed conv group must be in 1..=65536")?,
                output_padding: [(p[9] & 0xffff) as usize, (p[9] >> 16) as usize],
            };
            for a in 0..2 {
                if geom.output_padding[a] >= geom.stride[a].max(geom.dilation[a]) {
                    return Err(bad(
                        "transposed conv output padding not below the stride or dilation",
                    ));
                }
            }
            Op::ConvTranspose2d {
                weight: tensor(p[0])?,
                bias: optional(p[1])?,
                geom,
            }
        }
        opcode::WHERE => Op::Where,
        opcode::OUTPUT => Op::Output {
            index: positive(p[0], "bad output index")?,
        },
        _ => return Err(bad("unknown opcode")),
    };
    let inputs_ok = match op {
        Op::Binary(_) | Op::MatMul => r.n_inputs == 2,
        Op::Where => r.n_inputs == 3,
        Op::Concat { .. } => (2..=MAX_INPUTS).contains(&r.n_inputs),
        Op::Const { .. } | Op::Input { .. } => r.n_inputs == 0,
        _ => r.n_inputs == 1,
    };
    if !inputs_ok || (v1 && r.n_inputs > 2) {
        return Err(bad("wrong number of inputs for the opcode"));
    }
    Ok(Node {
        op,
        inputs: r.inputs,
        n_inputs: r.n_inputs,
        output: r.output,
    })
}
