//! Rewrites a Cool-chic file of any version this build reads as the current version
//! (`tether_deploy::coolchic::file::VERSION`): the same latents and networks, so the same
//! image, under the current format's entropy tables. Used for the firmware's asset and the
//! fuzz corpus when the format changed without the model changing.
//!
//! ```sh
//! cargo run --release -p tether-deploy --example coolchic_transcode -- IN.cc OUT.cc
//! ```

use anyhow::{Context, bail};
use tether_deploy::coolchic::{decode, encode};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [input, output] = args.as_slice() else {
        bail!("usage: coolchic_transcode IN.cc OUT.cc");
    };
    let bytes = std::fs::read(input).with_context(|| format!("reading {input}"))?;
    let file = decode(&bytes).with_context(|| format!("decoding {input}"))?;
    let out = encode(&file).context("encoding")?;
    // A temporary file renamed over the output: never a half-written file.
    let tmp = format!("{output}.tmp");
    std::fs::write(&tmp, &out).with_context(|| format!("writing {tmp}"))?;
    std::fs::rename(&tmp, output).with_context(|| format!("renaming {tmp} to {output}"))?;
    println!(
        "{input}: version {} -> {}, {} -> {} bytes",
        bytes[2],
        out[2],
        bytes.len(),
        out.len()
    );
    Ok(())
}
