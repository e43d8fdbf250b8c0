//! What a plan is asked for: [`PlanOptions`], and [`KernelChoice`] with its measured
//! break-even densities.

/// Weight density at or below which [`KernelChoice::Auto`] runs the sparse kernel, for a
/// linear layer at batch 1 (CSR gather-dot against the `gemm` crate's GEMV): the
/// break-even measured by `cargo bench -p tether-deploy --bench sparse_kernels` was at
/// 73-83% sparsity on LeNet-sized layers (BENCHMARKS.md), so density 0.2.
pub const SPARSE_BREAK_EVEN_GEMV: f64 = 0.2;

/// The same for a batch or a convolution (register-blocked spmm): sparse was already
/// faster at 50% sparsity on every measured shape, so density 0.5.
pub const SPARSE_BREAK_EVEN_GEMM: f64 = 0.5;

/// The same for a linear layer on a batch whose input is a sparse linear layer's output
/// (directly or through element-wise ops): run sparse, the chain keeps its activations in
/// the transposed layout `spmm` reads and writes (`plan::step::transposed_chains`); run
/// dense, the layer before writes its output transposed back and this one packs it again.
/// Measured on LeNet-300-100 pruned to 90% at batch 32 (thread CPU time, `cpu_time
/// --kernels auto|sparse`), whose last layer (100 -> 10) is 65% dense: `auto` with the
/// GEMM break-even ran it dense and was 20% slower than all-sparse (48.5 against 40.5 us).
pub const SPARSE_BREAK_EVEN_CHAIN: f64 = 0.75;

/// The same for a convolution of one group with padding or a stride where the implicit
/// AVX-512 product runs ([`crate::kernels::implicit_conv`]): the dense kernel reads the
/// padded input directly while the sparse one multiplies an im2col patch matrix, so sparse
/// wins only on sparser weights. Measured on the 90%-pruned small ResNet of
/// `scripts/bench-vs-ort.py` (layer densities 0.07 to 0.35, thread CPU time of the `auto`
/// plan with this constant at 0.5 / 0.2 / 0.1 / 0.05): batch 1 394 / 269 / 270 / 322 us,
/// batch 32 13.1 / 9.1 / 9.1 / 10.2 ms. Convolutions whose sparse kernel reads the input
/// itself (1x1, or the direct kernel at stride 1 without padding) keep
/// [`SPARSE_BREAK_EVEN_GEMM`] (LeNet-5 at 90%: 16 us at 0.5, 19 us below 0.2).
pub const SPARSE_BREAK_EVEN_CONV: f64 = 0.15;

/// How a plan picks each layer's kernel.
///
/// Every choice computes the same model, NaN and infinities included: the sparse kernels
/// skip pruned weights, which the dense product multiplies (`0 * inf` and `0 * NaN` are
/// NaN), so where a sparse layer's input holds a non-finite value its outputs are made the
/// dense product's (`kernels::sparse::match_dense_on_non_finite`), as ONNX Runtime or
/// PyTorch would compute them on the exported model.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KernelChoice {
    /// Sparse where the density is at or below the measured break-even
    /// ([`SPARSE_BREAK_EVEN_GEMV`] for linear layers at batch 1,
    /// [`SPARSE_BREAK_EVEN_CHAIN`] for one on a batch that continues a chain of sparse
    /// ones, [`SPARSE_BREAK_EVEN_CONV`] for a convolution the implicit product runs,
    /// [`SPARSE_BREAK_EVEN_GEMM`] otherwise), dense elsewhere; a convolution of one group
    /// on a CPU where both the dense implicit product and the sparse direct kernel
    /// ([`crate::kernels::sparse_conv`]) run takes the one of fewer estimated cycles.
    #[default]
    Auto,
    /// Dense everywhere (CSR weights are expanded at plan time).
    Dense,
    /// Sparse everywhere (dense weights are compressed at plan time).
    Sparse,
}

/// Options of [`Plan::new`](super::Plan::new).
#[derive(Clone, Copy, Debug)]
pub struct PlanOptions {
    /// Largest batch `run` accepts.
    pub batch: usize,
    /// Kernel selection.
    pub kernels: KernelChoice,
    /// Most bytes the plan may allocate for activations, scratch and converted weights
    /// (a hostile model cannot make the runtime allocate without bound).
    pub max_bytes: usize,
    /// With [`KernelChoice::Auto`]: run a CSR-stored weight denser than the sparse
    /// kernel's break-even from a dense copy (faster; the copy counts against
    /// `max_bytes`, and the plan falls back to the sparse kernel where it would not fit).
    /// Off on a microcontroller whose heap is smaller than `max_bytes` says: the copy is
    /// allocated before the plan's total is checked.
    pub expand_csr: bool,
    /// Use this CPU's vector kernels where they run (AVX2 / AVX-512 on x86-64), with the
    /// weight copies some of them read (packed panels, SELL-8 and block layouts, direct
    /// convolution offsets). Off, the plan is the one a microcontroller builds: every
    /// weight read in place from the model's bytes, portable kernels, so its
    /// [`ram_bytes`](super::Plan::ram_bytes) is the device's (with `expand_csr` off too;
    /// [`PlanOptions::in_place`]).
    pub vector_kernels: bool,
}

impl PlanOptions {
    /// The plan a microcontroller builds for batches of `batch`: no weight copied to RAM
    /// (no vector-kernel layouts, CSR weights run sparse), so that
    /// [`Plan::ram_bytes`](super::Plan::ram_bytes) is the RAM the device needs besides the
    /// model in flash: the activation arena and scratch. What a RAM budget is judged on
    /// (`tether-deploy inspect --board`, `tether-train prune --max-ram`).
    pub fn in_place(batch: usize) -> Self {
        Self {
            batch,
            expand_csr: false,
            vector_kernels: false,
            ..Self::default()
        }
    }
}

impl Default for PlanOptions {
    fn default() -> Self {
        Self {
            batch: 1,
            kernels: KernelChoice::Auto,
            max_bytes: 256 << 20,
            expand_csr: true,
            vector_kernels: true,
        }
    }
}
