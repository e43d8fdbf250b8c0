//! tether-deploy on a Cortex-M4F: a pruned LeNet-300-100 classifies eight MNIST test
//! digits, all embedded in the image, and the results go out over semihosting.
//!
//! Runs under QEMU (`mps2-an386`, see `README.md`): `cargo run --release`. Output, one
//! line per digit plus a line of raw logits (the `f32` bits in hex, so a host can compare
//! them exactly), then layer and memory reports; the exit status is success when every
//! inference ran (a wrong prediction is a result, not a failure).
//!
//! With `--features coolchic` it decodes an embedded Cool-chic image instead
//! ([`coolchic`]).

#![no_std]
#![no_main]

extern crate alloc;

use core::alloc::{GlobalAlloc, Layout};
use core::mem::MaybeUninit;
use core::sync::atomic::{AtomicUsize, Ordering};

use cortex_m_rt::entry;
#[cfg(not(feature = "coolchic"))]
use cortex_m_semihosting::hprint;
use cortex_m_semihosting::{debug, hprintln};
use embedded_alloc::LlffHeap;
use panic_semihosting as _;
#[cfg(not(feature = "coolchic"))]
use tether_deploy::{Align16, Model, Plan, PlanOptions};

#[cfg(feature = "coolchic")]
mod coolchic;

/// The pruned network, read in place from flash: LeNet-300-100 pruned for `board.toml`
/// (`tether-train prune --board board.toml`), or with the `lenet5` feature a LeNet-5 pruned
/// by whole channels and units for the same board (`--model lenet5 --structure unit`),
/// whose convolutions run the portable patch-free kernel.
#[cfg(not(any(feature = "lenet5", feature = "coolchic")))]
static MODEL: &[u8] = tether_deploy::include_model!("../assets/lenet300-mnist-64k.tthr");
#[cfg(all(feature = "lenet5", not(feature = "coolchic")))]
static MODEL: &[u8] = tether_deploy::include_model!("../assets/lenet5-mnist-board.tthr");
/// Normalised test digits, `[n, 784]` little-endian `f32` (written by `host/`).
#[cfg(not(feature = "coolchic"))]
static DIGITS: &Align16<[u8]> = &Align16(*include_bytes!("../assets/digits.f32"));
/// Their labels, one byte each.
#[cfg(not(feature = "coolchic"))]
static LABELS: &[u8] = include_bytes!("../assets/labels.u8");

/// Heap for the model's tables and the plan (arena, converted weights). The run reports
/// how much of it was ever in use. The Cool-chic decode keeps every latent level and
/// every upsampled plane of its 96x64 image (about 150 KB).
#[cfg(not(feature = "coolchic"))]
const HEAP_SIZE: usize = 64 * 1024;
/// See above.
#[cfg(feature = "coolchic")]
pub(crate) const HEAP_SIZE: usize = 512 * 1024;

/// The heap allocator, recording its high-water mark.
struct PeakHeap {
    heap: LlffHeap,
    peak: AtomicUsize,
}

// SAFETY: forwards to `LlffHeap`; the bookkeeping does not touch the memory handed out.
unsafe impl GlobalAlloc for PeakHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract, passed on.
        let p = unsafe { self.heap.alloc(layout) };
        self.peak.fetch_max(self.heap.used(), Ordering::Relaxed);
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract, passed on.
        unsafe { self.heap.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static HEAP: PeakHeap = PeakHeap {
    heap: LlffHeap::empty(),
    peak: AtomicUsize::new(0),
};

unsafe extern "C" {
    // From cortex-m-rt's `link.x`: the stack runs down from `_stack_start` to at most
    // `_stack_end`, a region the `paint-stack` feature fills with 0xCCCCCCCC at reset.
    static _stack_start: u32;
    static _stack_end: u32;
    // Start of RAM statics (.data) and end of all of them (.data + .bss + .uninit).
    static __sdata: u32;
    static __sheap: u32;
}

/// Most bytes the heap has had in use.
#[cfg_attr(not(feature = "coolchic"), allow(dead_code))]
fn heap_peak() -> usize {
    HEAP.peak.load(Ordering::Relaxed)
}

/// Deepest the stack has been since reset, in bytes (from the paint left untouched).
fn stack_peak() -> usize {
    let lo = (&raw const _stack_end) as usize;
    let hi = (&raw const _stack_start) as usize;
    let mut p = lo;
    // SAFETY: every word in [lo, hi) is RAM the linker reserved for the stack.
    while p < hi && unsafe { core::ptr::read_volatile(p as *const u32) } == 0xCCCC_CCCC {
        p += 4;
    }
    hi - p
}

/// Index of the largest logit (the first, on ties). The host side uses the same rule.
#[cfg(not(feature = "coolchic"))]
fn argmax(xs: &[f32]) -> usize {
    let mut best = 0;
    for (i, &x) in xs.iter().enumerate() {
        if x > xs[best] {
            best = i;
        }
    }
    best
}

#[entry]
fn main() -> ! {
    {
        static mut HEAP_MEM: [MaybeUninit<u8>; HEAP_SIZE] = [MaybeUninit::uninit(); HEAP_SIZE];
        // SAFETY: called once, before the first allocation; `HEAP_MEM` is used by nothing
        // else.
        unsafe { HEAP.heap.init(&raw mut HEAP_MEM as usize, HEAP_SIZE) }
    }
    #[cfg(not(feature = "coolchic"))]
    let result = run();
    #[cfg(feature = "coolchic")]
    let result = coolchic::run();
    let status = match result {
        Ok(()) => debug::EXIT_SUCCESS,
        Err(e) => {
            hprintln!("error: {}", e);
            debug::EXIT_FAILURE
        }
    };
    debug::exit(status);
    loop {
        cortex_m::asm::wfi();
    }
}

#[cfg(not(feature = "coolchic"))]
fn run() -> Result<(), tether_deploy::Error> {
    let model = Model::parse(MODEL)?;
    // CSR weights stay sparse: a dense copy would be allocated from the 64 KiB heap
    // before the plan's size is checked.
    let options = PlanOptions {
        expand_csr: false,
        ..PlanOptions::default()
    };
    let mut plan = Plan::new(model, &options)?;
    let per = plan.model().input_shape().numel();
    let digits: &[f32] = bytemuck::cast_slice(&DIGITS.0);
    assert_eq!(
        digits.len(),
        per * LABELS.len(),
        "digits.f32 and labels.u8 disagree"
    );
    hprintln!(
        "tether-deploy {} on a Cortex-M4F: model {} bytes, {} digits",
        tether_deploy::VERSION,
        MODEL.len(),
        LABELS.len()
    );
    let mut macs = 0;
    for l in plan.layers() {
        let nnz = (l.density * (l.rows * l.cols) as f64 + 0.5) as usize;
        macs += nnz;
        hprintln!(
            "layer op {}: {}x{}, {} nonzeros ({} per mille), {} kernel",
            l.op,
            l.rows,
            l.cols,
            nnz,
            (l.density * 1000.0 + 0.5) as u32,
            if l.sparse { "sparse" } else { "dense" }
        );
    }

    let mut correct = 0;
    for (i, (x, &label)) in digits.chunks_exact(per).zip(LABELS).enumerate() {
        let logits = plan.run(x)?;
        let predicted = argmax(logits);
        correct += usize::from(predicted == usize::from(label));
        hprintln!("digit {}: predicted {} label {}", i, predicted, label);
        hprint!("logits {}:", i);
        for v in logits {
            hprint!(" {:08x}", v.to_bits());
        }
        hprintln!();
    }

    let statics = (&raw const __sheap) as usize - (&raw const __sdata) as usize;
    hprintln!(
        "summary: {}/{} correct; {} multiply-adds per digit; activation bytes {}; \
         heap peak {} of {} bytes; stack peak {} bytes; static RAM {} bytes (heap included)",
        correct,
        LABELS.len(),
        macs,
        plan.activation_bytes(),
        HEAP.peak.load(Ordering::Relaxed),
        HEAP_SIZE,
        stack_peak(),
        statics
    );
    Ok(())
}
