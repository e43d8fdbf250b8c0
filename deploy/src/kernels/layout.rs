//! Ops that move elements or combine two tensors of different shapes: broadcasting
//! element-wise binary ops, transpose, concatenation, and the matrix product of two values.
//! Shapes are of one sample, rank 1 to 4 (the model validated them).

use crate::format::{Binary, MAX_RANK, PadGeom, PadMode, Reduce};

/// `dims` left-padded with 1s to rank 4.
fn pad4(dims: &[usize]) -> [usize; MAX_RANK] {
    let mut d = [1; MAX_RANK];
    d[MAX_RANK - dims.len()..].copy_from_slice(dims);
    d
}

/// Row-major strides of a rank-4 shape, 0 along axes of extent 1 (so they broadcast).
fn broadcast_strides(d: &[usize; MAX_RANK]) -> [usize; MAX_RANK] {
    let mut s = [0; MAX_RANK];
    let mut acc = 1;
    for i in (0..MAX_RANK).rev() {
        s[i] = if d[i] == 1 { 0 } else { acc };
        acc *= d[i];
    }
    s
}

#[inline(always)]
fn apply(op: Binary, a: f32, b: f32) -> f32 {
    match op {
        Binary::Add => a + b,
        Binary::Sub => a - b,
        Binary::Mul => a * b,
        Binary::Div => a / b,
        Binary::Pow => libm::powf(a, b),
        // IEEE maxNum would drop a NaN operand; ONNX (numpy's maximum) propagates it.
        Binary::Max => {
            if a.is_nan() || b.is_nan() {
                f32::NAN
            } else if a >= b {
                a
            } else {
                b
            }
        }
        Binary::Min => {
            if a.is_nan() || b.is_nan() {
                f32::NAN
            } else if a <= b {
                a
            } else {
                b
            }
        }
        // `a < 0` is false for NaN, so a NaN input passes through.
        Binary::PRelu => {
            if a < 0.0 {
                a * b
            } else {
                a
            }
        }
        // Booleans as 0 and 1; IEEE comparisons (a NaN operand compares false).
        Binary::Equal => f32::from(u8::from(a == b)),
        Binary::Greater => f32::from(u8::from(a > b)),
        Binary::Less => f32::from(u8::from(a < b)),
        Binary::GreaterOrEqual => f32::from(u8::from(a >= b)),
        Binary::LessOrEqual => f32::from(u8::from(a <= b)),
    }
}

/// `y = a op b` for one sample, broadcasting `a` (`a_dims`) and `b` (`b_dims`) to `out`.
pub fn binary(
    op: Binary,
    a: &[f32],
    a_dims: &[usize],
    b: &[f32],
    b_dims: &[usize],
    out: &[usize],
    y: &mut [f32],
) {
    if a.len() == y.len() && b.len() == y.len() {
        for ((y, &a), &b) in y.iter_mut().zip(a).zip(b) {
            *y = apply(op, a, b);
        }
        return;
    }
    if b.len() == 1 {
        let b = b[0];
        for (y, &a) in y.iter_mut().zip(a) {
            *y = apply(op, a, b);
        }
        return;
    }
    let (da, db, d) = (pad4(a_dims), pad4(b_dims), pad4(out));
    let (sa, sb) = (broadcast_strides(&da), broadcast_strides(&db));
    let inner = d[3];
    let mut at = 0;
    for i0 in 0..d[0] {
        for i1 in 0..d[1] {
            for i2 in 0..d[2] {
                let oa = i0 * sa[0] + i1 * sa[1] + i2 * sa[2];
                let ob = i0 * sb[0] + i1 * sb[1] + i2 * sb[2];
                let row = &mut y[at..at + inner];
                match (sa[3], sb[3]) {
                    (1, 1) => {
                        for ((y, &a), &b) in row.iter_mut().zip(&a[oa..]).zip(&b[ob..]) {
                            *y = apply(op, a, b);
                        }
                    }
                    (1, 0) => {
                        let b = b[ob];
                        for (y, &a) in row.iter_mut().zip(&a[oa..]) {
                            *y = apply(op, a, b);
                        }
                    }
                    _ => {
                        for (j, y) in row.iter_mut().enumerate() {
                            *y = apply(op, a[oa + j * sa[3]], b[ob + j * sb[3]]);
                        }
                    }
                }
                at += inner;
            }
        }
    }
}

/// Transposes one sample: output axis `i` is input axis `perm[i]`.
pub fn transpose(x: &[f32], dims: &[usize], perm: &[usize], y: &mut [f32]) {
    let r = dims.len();
    let off = MAX_RANK - r;
    let d = pad4(dims);
    // Input strides, then permuted into output order (leading padded axes stay put).
    let mut st = [0; MAX_RANK];
    let mut acc = 1;
    for i in (0..MAX_RANK).rev() {
        st[i] = acc;
        acc *= d[i];
    }
    let mut od = [1; MAX_RANK];
    let mut os = [0; MAX_RANK];
    for i in 0..MAX_RANK {
        let src = if i < off { i } else { off + perm[i - off] };
        od[i] = d[src];
        os[i] = st[src];
    }
    let mut at = 0;
    for i0 in 0..od[0] {
        for i1 in 0..od[1] {
            for i2 in 0..od[2] {
                let base = i0 * os[0] + i1 * os[1] + i2 * os[2];
                for i3 in 0..od[3] {
                    y[at] = x[base + i3 * os[3]];
                    at += 1;
                }
            }
        }
    }
}

/// Concatenates one sample of each input along `axis`; `parts` are (data, dims).
pub fn concat(parts: &[(&[f32], &[usize])], axis: usize, y: &mut [f32]) {
    let outer: usize = parts[0].1[..axis].iter().product();
    let mut at = 0;
    for o in 0..outer {
        for (x, dims) in parts {
            let chunk: usize = dims[axis..].iter().product();
            y[at..at + chunk].copy_from_slice(&x[o * chunk..(o + 1) * chunk]);
            at += chunk;
        }
    }
}

/// Numpy's `matmul` for one sample: `a` `[.., m, k]` (or `[k]`) times `b` `[.., k, n]`
/// (or `[k]`), leading axes broadcast; `y` has the shape the model inferred.
pub fn matmul(a: &[f32], a_dims: &[usize], b: &[f32], b_dims: &[usize], y: &mut [f32]) {
    let (m, k) = if a_dims.len() == 1 {
        (1, a_dims[0])
    } else {
        (a_dims[a_dims.len() - 2], a_dims[a_dims.len() - 1])
    };
    let n = if b_dims.len() == 1 {
        1
    } else {
        b_dims[b_dims.len() - 1]
    };
    let lead = |d: &[usize]| pad4(&d[..d.len().saturating_sub(2)]);
    let (la, lb) = (lead(a_dims), lead(b_dims));
    let mut lo = [1; MAX_RANK];
    for i in 0..MAX_RANK {
        lo[i] = la[i].max(lb[i]);
    }
    let (sa, sb) = (broadcast_strides(&la), broadcast_strides(&lb));
    let mut at = 0;
    for i0 in 0..lo[0] {
        for i1 in 0..lo[1] {
            for i2 in 0..lo[2] {
                for i3 in 0..lo[3] {
                    let ia = (i0 * sa[0] + i1 * sa[1] + i2 * sa[2] + i3 * sa[3]) * m * k;
                    let ib = (i0 * sb[0] + i1 * sb[1] + i2 * sb[2] + i3 * sb[3]) * k * n;
                    super::dense::matmul_rows(
                        &a[ia..ia + m * k],
                        None,
                        &b[ib..ib + k * n],
                        m,
                        k,
                        n,
                        &mut y[at..at + m * n],
                    );
                    at += m * n;
                }
            }
        }
    }
}

/// Reduces one sample of shape `dims` over the axes in `axes` (bit `i`: axis `i`), which
/// keep extent 1 in `y`. Max and min propagate NaN (as numpy and ONNX do); the mean of
/// `n` elements is their sum over `n`.
pub fn reduce(kind: Reduce, x: &[f32], dims: &[usize], axes: u8, y: &mut [f32]) {
    let r = dims.len();
    let d = pad4(dims);
    let off = MAX_RANK - r;
    let reduced = |i: usize| i >= off && axes & (1 << (i - off)) != 0;
    // Input strides, and the output strides (0 along reduced axes).
    let mut st = [0; MAX_RANK];
    let mut acc = 1;
    for i in (0..MAX_RANK).rev() {
        st[i] = acc;
        acc *= d[i];
    }
    let mut ost = [0; MAX_RANK];
    let mut acc = 1;
    for i in (0..MAX_RANK).rev() {
        if !reduced(i) {
            ost[i] = acc;
            acc *= d[i];
        }
    }
    let init = match kind {
        Reduce::Mean | Reduce::Sum => 0.0,
        Reduce::Max => f32::NEG_INFINITY,
        Reduce::Min => f32::INFINITY,
    };
    y.fill(init);
    for i0 in 0..d[0] {
        for i1 in 0..d[1] {
            for i2 in 0..d[2] {
                for i3 in 0..d[3] {
                    let v = x[i0 * st[0] + i1 * st[1] + i2 * st[2] + i3 * st[3]];
                    let o = &mut y[i0 * ost[0] + i1 * ost[1] + i2 * ost[2] + i3 * ost[3]];
                    *o = match kind {
                        Reduce::Mean | Reduce::Sum => *o + v,
                        // Once NaN, `v > NaN` is false: the NaN stays.
                        Reduce::Max if v.is_nan() || v > *o => v,
                        Reduce::Min if v.is_nan() || v < *o => v,
                        Reduce::Max | Reduce::Min => *o,
                    };
                }
            }
        }
    }
    if kind == Reduce::Mean {
        let n: usize = (0..MAX_RANK)
            .filter(|&i| reduced(i))
            .map(|i| d[i])
            .product();
        let inv = 1.0 / n as f32;
        for v in y.iter_mut() {
            *v *= inv;
        }
    }
}

/// Pads one sample of shape `dims` (see [`PadGeom`]).
pub fn pad(x: &[f32], dims: &[usize], g: &PadGeom, y: &mut [f32]) {
    let r = dims.len();
    let off = MAX_RANK - r;
    let d = pad4(dims);
    let (mut b, mut od) = ([0usize; MAX_RANK], d);
    for i in 0..r {
        b[off + i] = g.begin[i];
        od[off + i] = d[off + i] + g.begin[i] + g.end[i];
    }
    let mut st = [0; MAX_RANK];
    let mut acc = 1;
    for i in (0..MAX_RANK).rev() {
        st[i] = acc;
        acc *= d[i];
    }
    // The source index along an axis of extent `n` for output position `o`, `None` for a
    // constant fill.
    let src = |o: usize, b: usize, n: usize| -> Option<usize> {
        let i = o as isize - b as isize;
        if (0..n as isize).contains(&i) {
            return Some(i as usize);
        }
        match g.mode {
            PadMode::Constant(_) => None,
            PadMode::Edge => Some(i.clamp(0, n as isize - 1) as usize),
            // Validated: the widths are below the extent, so one reflection lands inside.
            PadMode::Reflect => Some(if i < 0 {
                (-i) as usize
            } else {
                2 * (n - 1) - i as usize
            }),
        }
    };
    let fill = match g.mode {
        PadMode::Constant(v) => v,
        _ => 0.0,
    };
    let mut at = 0;
    for i0 in 0..od[0] {
        let s0 = src(i0, b[0], d[0]);
        for i1 in 0..od[1] {
            let s1 = src(i1, b[1], d[1]);
            for i2 in 0..od[2] {
                let s2 = src(i2, b[2], d[2]);
                for i3 in 0..od[3] {
                    y[at] = match (s0, s1, s2, src(i3, b[3], d[3])) {
                        (Some(a), Some(b), Some(c), Some(e)) => {
                            x[a * st[0] + b * st[1] + c * st[2] + e * st[3]]
                        }
                        _ => fill,
                    };
                    at += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcasting_matches_numpy() {
        // [2, 3] + [3] and [2, 1] * [1, 3].
        let a = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let mut y = [0.0; 6];
        binary(
            Binary::Add,
            &a,
            &[2, 3],
            &[10.0, 20.0, 30.0],
            &[3],
            &[2, 3],
            &mut y,
        );
        assert_eq!(y, [11.0, 22.0, 33.0, 14.0, 25.0, 36.0]);
        binary(
            Binary::Mul,
            &[1.0, 2.0],
            &[2, 1],
            &[1.0, 2.0, 3.0],
            &[1, 3],
            &[2, 3],
            &mut y,
        );
        assert_eq!(y, [1.0, 2.0, 3.0, 2.0, 4.0, 6.0]);
        binary(
            Binary::Sub,
            &[1.0, 2.0],
            &[2, 1],
            &[5.0],
            &[1],
            &[2, 1],
            &mut y[..2],
        );
        assert_eq!(&y[..2], &[-4.0, -3.0]);
    }

    #[test]
    fn transpose_and_concat() {
        // [2, 3] -> [3, 2].
        let x = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let mut y = [0.0; 6];
        transpose(&x, &[2, 3], &[1, 0], &mut y);
        assert_eq!(y, [1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
        // [2, 1, 3] with perm (2, 0, 1) -> [3, 2, 1].
        transpose(&x, &[2, 1, 3], &[2, 0, 1], &mut y);
        assert_eq!(y, [1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
        // [2, 1] ++ [2, 2] along axis 1.
        let mut y = [0.0; 6];
        concat(
            &[(&[1.0, 2.0], &[2, 1]), (&[3.0, 4.0, 5.0, 6.0], &[2, 2])],
            1,
            &mut y,
        );
        assert_eq!(y, [1.0, 3.0, 4.0, 2.0, 5.0, 6.0]);
    }

    #[test]
    fn batched_matmul_broadcasts() {
        // a [2, 1, 2] (two 1x2 rows), b [2, 1] shared: y [2, 1, 1].
        let mut y = [0.0; 2];
        matmul(
            &[1.0, 2.0, 3.0, 4.0],
            &[2, 1, 2],
            &[10.0, 1.0],
            &[2, 1],
            &mut y,
        );
        assert_eq!(y, [12.0, 34.0]);
        // Vector times matrix: [2] x [2, 3] -> [3].
        let mut y = [0.0; 3];
        matmul(
            &[1.0, 2.0],
            &[2],
            &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
            &[2, 3],
            &mut y,
        );
        assert_eq!(y, [9.0, 12.0, 15.0]);
    }

    #[test]
    fn reduce_matches_hand_sums_and_propagates_nan() {
        use crate::format::Reduce;
        // [2, 3]: rows (1, 2, 3), (4, 5, 6).
        let x = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let mut y = [0.0; 3];
        reduce(Reduce::Sum, &x, &[2, 3], 0b01, &mut y);
        assert_eq!(y, [5.0, 7.0, 9.0]);
        let mut y = [0.0; 2];
        reduce(Reduce::Mean, &x, &[2, 3], 0b10, &mut y);
        assert_eq!(y, [2.0, 5.0]);
        let mut y = [0.0; 1];
        reduce(Reduce::Max, &x, &[2, 3], 0b11, &mut y);
        assert_eq!(y, [6.0]);
        let x = [1.0, f32::NAN, 3.0, -f32::INFINITY];
        let mut y = [0.0; 2];
        reduce(Reduce::Max, &x, &[2, 2], 0b10, &mut y);
        assert!(y[0].is_nan() && y[1] == 3.0, "{y:?}");
        reduce(Reduce::Min, &x, &[2, 2], 0b10, &mut y);
        assert!(y[0].is_nan() && y[1] == -f32::INFINITY, "{y:?}");
    }

    #[test]
    fn pad_fills_reflects_and_repeats_the_edge() {
        use crate::format::{PadGeom, PadMode};
        let x = [1.0, 2.0, 3.0];
        let geom = |mode| PadGeom {
            begin: [2, 0, 0, 0],
            end: [1, 0, 0, 0],
            mode,
        };
        let mut y = [0.0; 6];
        pad(&x, &[3], &geom(PadMode::Constant(-1.0)), &mut y);
        assert_eq!(y, [-1.0, -1.0, 1.0, 2.0, 3.0, -1.0]);
        pad(&x, &[3], &geom(PadMode::Reflect), &mut y);
        assert_eq!(y, [3.0, 2.0, 1.0, 2.0, 3.0, 2.0]);
        pad(&x, &[3], &geom(PadMode::Edge), &mut y);
        assert_eq!(y, [1.0, 1.0, 1.0, 2.0, 3.0, 3.0]);
        // Two axes: [1, 2] padded by one column on each side of the last axis.
        let g = PadGeom {
            begin: [0, 1, 0, 0],
            end: [0, 1, 0, 0],
            mode: PadMode::Edge,
        };
        let mut y = [0.0; 4];
        pad(&[5.0, 6.0], &[1, 2], &g, &mut y);
        assert_eq!(y, [5.0, 5.0, 6.0, 6.0]);
    }
}
