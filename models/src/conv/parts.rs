//! The batch split over rayon's threads: one contiguous part of the samples per thread,
//! each part a whole call of a sequential kernel (its own scratch, no shared writes).
//! Without the `rayon` feature, or on one thread, the whole batch is one part.

/// Threads the kernels may use: rayon's pool with the `rayon` feature, else 1.
pub fn threads() -> usize {
    #[cfg(feature = "rayon")]
    return rayon::current_num_threads();
    #[cfg(not(feature = "rayon"))]
    1
}

/// Samples per part when `batch` samples are split over [`threads`].
pub fn per_part(batch: usize) -> usize {
    batch.div_ceil(threads().clamp(1, batch.max(1))).max(1)
}

/// Calls `f(first_sample, part)` for consecutive parts of `out` (`item` floats per
/// sample, [`per_part`] samples per part), on rayon's threads when there are several.
/// `f` runs on a worker thread: a kernel inside it calls
/// [`super::simd::vectorized`] itself.
pub fn split(out: &mut [f32], item: usize, f: impl Fn(usize, &mut [f32]) + Sync + Send) {
    if item == 0 || out.is_empty() {
        return;
    }
    #[cfg(feature = "rayon")]
    {
        let per = per_part(out.len() / item);
        if per * item < out.len() {
            use rayon::prelude::*;
            out.par_chunks_mut(per * item)
                .enumerate()
                .for_each(|(i, part)| f(i * per, part));
            return;
        }
    }
    f(0, out);
}

/// Calls `f(first_sample, samples, out_part, acc_part)` for the same parts of `batch`
/// samples as [`split`]: `out_part` the part's samples of `out` (`item` floats each)
/// when there is an `out`, and `acc_part` a zeroed accumulator of `acc_len` floats of
/// its own. Returns the accumulators summed over the parts (in part order), e.g. a
/// weight gradient summed over samples. With one part this is `f`'s accumulator as it is.
pub fn split_sum(
    batch: usize,
    item: usize,
    out: Option<&mut [f32]>,
    acc_len: usize,
    f: impl Fn(usize, usize, Option<&mut [f32]>, &mut [f32]) + Sync + Send,
) -> Vec<f32> {
    let per = per_part(batch);
    let count = batch.div_ceil(per).max(1);
    let mut acc = vec![0.0f32; count * acc_len];
    let outs: Vec<Option<&mut [f32]>> = match out {
        Some(out) if item > 0 && batch > 0 => out.chunks_mut(per * item).map(Some).collect(),
        _ => (0..count).map(|_| None).collect(),
    };
    let run = |i: usize, o: Option<&mut [f32]>, a: &mut [f32]| {
        let first = i * per;
        f(first, per.min(batch.saturating_sub(first)), o, a);
    };
    if acc_len == 0 {
        let mut none: [f32; 0] = [];
        outs.into_iter()
            .enumerate()
            .for_each(|(i, o)| run(i, o, &mut none));
        return acc;
    }
    #[cfg(feature = "rayon")]
    let parallel = count > 1;
    #[cfg(not(feature = "rayon"))]
    let parallel = false;
    if parallel {
        #[cfg(feature = "rayon")]
        {
            use rayon::prelude::*;
            outs.into_par_iter()
                .zip(acc.par_chunks_mut(acc_len))
                .enumerate()
                .for_each(|(i, (o, a))| run(i, o, a));
        }
    } else {
        for ((i, o), a) in outs.into_iter().enumerate().zip(acc.chunks_mut(acc_len)) {
            run(i, o, a);
        }
    }
    let (first, rest) = acc.split_at_mut(acc_len);
    for other in rest.chunks_exact(acc_len) {
        first.iter_mut().zip(other).for_each(|(a, b)| *a += b);
    }
    acc.truncate(acc_len);
    acc
}
