//! `Where`: element-wise selection `c != 0 ? a : b` between three values broadcast to one
//! shape (numpy's rules; ONNX booleans are held as 0 and 1). A NaN condition selects `a`
//! (NaN is true as a boolean); a NaN in the branch not taken does not reach the output,
//! as in onnxruntime and numpy's `where`.

use crate::format::MAX_RANK;

/// Strides of `dims` (right-aligned in a rank-4 shape), 0 along broadcast axes.
fn strides(dims: &[usize]) -> [usize; MAX_RANK] {
    let mut d = [1; MAX_RANK];
    d[MAX_RANK - dims.len()..].copy_from_slice(dims);
    let mut s = [0; MAX_RANK];
    let mut acc = 1;
    for i in (0..MAX_RANK).rev() {
        s[i] = if d[i] == 1 { 0 } else { acc };
        acc *= d[i];
    }
    s
}

/// `y = c != 0 ? a : b` for one sample, each operand broadcast to `out`.
pub fn select(
    (c, c_dims): (&[f32], &[usize]),
    (a, a_dims): (&[f32], &[usize]),
    (b, b_dims): (&[f32], &[usize]),
    out: &[usize],
    y: &mut [f32],
) {
    if c.len() == y.len() && a.len() == y.len() && b.len() == y.len() {
        for (((y, &c), &a), &b) in y.iter_mut().zip(c).zip(a).zip(b) {
            *y = if c != 0.0 { a } else { b };
        }
        return;
    }
    let (sc, sa, sb) = (strides(c_dims), strides(a_dims), strides(b_dims));
    let mut d = [1; MAX_RANK];
    d[MAX_RANK - out.len()..].copy_from_slice(out);
    let mut at = 0;
    for i0 in 0..d[0] {
        for i1 in 0..d[1] {
            for i2 in 0..d[2] {
                for i3 in 0..d[3] {
                    let i = [i0, i1, i2, i3];
                    let off = |s: &[usize; MAX_RANK]| (0..MAX_RANK).map(|k| i[k] * s[k]).sum();
                    let (oc, oa, ob): (usize, usize, usize) = (off(&sc), off(&sa), off(&sb));
                    y[at] = if c[oc] != 0.0 { a[oa] } else { b[ob] };
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
    fn selects_with_broadcasting_like_numpy() {
        // c: [2, 1], a: [3], b: scalar [1] -> [2, 3].
        let c = [1.0, 0.0];
        let a = [1.0, 2.0, 3.0];
        let b = [-1.0];
        let mut y = [0.0; 6];
        select((&c, &[2, 1]), (&a, &[3]), (&b, &[1]), &[2, 3], &mut y);
        assert_eq!(y, [1.0, 2.0, 3.0, -1.0, -1.0, -1.0]);
    }

    #[test]
    fn a_nan_condition_is_true_and_nan_branches_pass_through_only_when_taken() {
        let c = [f32::NAN, 0.0, 1.0];
        let a = [1.0, f32::NAN, f32::NAN];
        let b = [2.0, 2.0, 2.0];
        let mut y = [0.0; 3];
        select((&c, &[3]), (&a, &[3]), (&b, &[3]), &[3], &mut y);
        assert_eq!(y[0], 1.0);
        assert_eq!(y[1], 2.0);
        assert!(y[2].is_nan());
    }
}
