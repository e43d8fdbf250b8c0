//! Which dense depthwise kernel the plan runs for a geometry, and the call to it: the one
//! measured fastest there (the `depthwise_modes` example times every kernel on the
//! depthwise layers of the benchmark networks and checks this choice against them).

use super::activation::Act;
use super::conv::{self, ConvShape, DepthwiseTaps};
use super::depthwise_lanes;

/// A dense depthwise kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernel {
    /// 16 channels in the vector lanes ([`depthwise_lanes`]): small outputs.
    Lanes,
    /// One channel's rows in the lanes, over stride-phase planes ([`conv::depthwise`]).
    Plane,
}

impl Kernel {
    /// The name `tether-deploy bench --per-node` prints.
    pub fn name(self) -> &'static str {
        match self {
            Kernel::Lanes => "depthwise lanes",
            Kernel::Plane => "depthwise planes",
        }
    }
}

/// Output positions up to which a strided layer runs the lanes kernel (stride 1: up to
/// [`depthwise_lanes::MAX_OUTPUTS`]). At stride 2 the plane kernel's phase split costs a
/// load, a permute and a store per input value for 2.25 multiply-adds, and the lanes
/// kernel's transposes cost less per value, so the lanes kernel wins on larger planes than
/// at stride 1 (`depthwise_modes`, least of 3, us plane / lanes, two runs at load 8-10:
/// 48x32x32 to 16x16 at batch 32 2406 / 676 and 1722 / 1014; 144x56x56 to 28x28 at
/// batch 1 103 / 104 and 127 / 151; 96x112x112 to 56x56 249 / 397 and 312 / 615).
pub const MAX_STRIDED_OUTPUTS: usize = 16 * 16;

/// The kernel the plan runs for `s` on this CPU.
pub fn choose(s: &ConvShape) -> Kernel {
    let (oh, ow) = s.out();
    let strided = s.stride[0] > 1 && s.stride[1] > 1;
    if depthwise_lanes::suits(s)
        || (strided && depthwise_lanes::runs(s) && oh * ow <= MAX_STRIDED_OUTPUTS)
    {
        Kernel::Lanes
    } else {
        Kernel::Plane
    }
}

/// Floats of scratch [`run`] needs for `s`.
pub fn scratch(s: &ConvShape) -> usize {
    match choose(s) {
        Kernel::Lanes => depthwise_lanes::scratch(s),
        Kernel::Plane => conv::depthwise_scratch(s),
    }
}

/// Every channel of every image by the kernel [`choose`] picks: `x` is `samples` of
/// `[channels, h, w]`, `y` as many of `[channels, oh, ow]`, `weight(ch)` channel `ch`'s
/// `kh kw` weights and bias, `taps` from [`DepthwiseTaps::new`]`(s)`, `scratch` at least
/// [`scratch`]`(s)` floats.
#[allow(clippy::too_many_arguments)]
pub fn run<'w>(
    x: &[f32],
    samples: usize,
    channels: usize,
    weight: &dyn Fn(usize) -> (&'w [f32], f32),
    s: &ConvShape,
    taps: &DepthwiseTaps,
    act: Act,
    scratch: &mut [f32],
    y: &mut [f32],
) {
    match choose(s) {
        Kernel::Lanes => {
            depthwise_lanes::depthwise(x, samples, channels, weight, s, act, scratch, y)
        }
        Kernel::Plane => conv::depthwise(x, samples, channels, weight, s, taps, act, scratch, y),
    }
}
