//! With `--features coolchic`: the device decodes a Cool-chic file (issue 27) embedded in
//! flash, a 96x64 Kodak image (`kodim23` downscaled 8x, 1,455 bytes, format version 3 with learned
//! upsampling filters), with the same
//! `no_std` decoder the host runs (`tether_deploy::coolchic`), and prints every pixel.
//!
//! Why print the pixels and not a score: the codec's claim is that its decoder is
//! float-deterministic, so a Cortex-M4F (scalar FPU code) and an x86-64 host (AVX2
//! lanes) decode *the same bytes*; `tests/tests/firmware_qemu.rs` compares them all.

use alloc::string::String;
use core::fmt::Write;

use cortex_m_semihosting::hprintln;
use tether_deploy::coolchic::{CodecError, decode, synthesis};

/// The file, from `tether-compress encode kodim23.png -o kodim23-96x64.cc --downscale 8
/// --method coolchic --bpp 2 --steps 1000 --coolchic-learn-upsampling` (format version 3).
static FILE: &[u8] = include_bytes!("../assets/kodim23-96x64.cc");

/// Decodes [`FILE`] and prints its size, shape, decode cost and pixels (one line per row,
/// RGB bytes in hex).
pub fn run() -> Result<(), CodecError> {
    let c = decode(FILE)?;
    let (w, h) = (c.header.width, c.header.height);
    let arch = &c.header.arch;
    hprintln!(
        "tether-deploy {} on a Cortex-M4F: Cool-chic file {} bytes, image {} {}, levels {}, \
         ARM {}->{:?}->2, synthesis {}->{:?}->3, {} MACs per pixel",
        tether_deploy::VERSION,
        FILE.len(),
        w,
        h,
        arch.levels,
        arch.context,
        arch.arm_hidden.as_slice(),
        arch.levels,
        arch.synth_hidden.as_slice(),
        arch.macs_per_pixel(w, h) as u32
    );
    let rgb = synthesis::render(&c)?;
    let mut line = String::with_capacity(16 + 6 * w);
    let mut sum = 0u32;
    for (y, row) in rgb.chunks_exact(3 * w).enumerate() {
        line.clear();
        // Writing into a String cannot fail.
        let _ = write!(line, "row {y}:");
        for &b in row {
            let _ = write!(line, "{b:02x}");
            sum = sum.wrapping_mul(31).wrapping_add(u32::from(b));
        }
        hprintln!("{}", line);
    }
    hprintln!(
        "summary: {} pixels decoded; checksum {:08x}; heap peak {} of {} bytes; \
         stack peak {} bytes",
        w * h,
        sum,
        crate::heap_peak(),
        crate::HEAP_SIZE,
        crate::stack_peak()
    );
    Ok(())
}
