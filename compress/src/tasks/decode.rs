//! `decode`: a compressed file decoded to a PNG through the `tether-deploy` runtime.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;

use super::config::DecodeConfig;
use crate::render::decode_file;

/// What [`run`] decoded.
#[derive(Clone, Debug, PartialEq)]
pub struct DecodeReport {
    /// The file decoded.
    pub input: PathBuf,
    /// The PNG written.
    pub output: PathBuf,
    /// The image's width and height.
    pub size: (usize, usize),
    /// Seconds of decoding (reading and writing excluded).
    pub seconds: f64,
}

impl std::fmt::Display for DecodeReport {
    /// The line `tether-compress decode` prints.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} -> {} ({}x{}, decoded in {:.3} s)",
            self.input.display(),
            self.output.display(),
            self.size.0,
            self.size.1,
            self.seconds
        )
    }
}

/// Decodes `config.input` and writes the image to `config.output`; prints the report line
/// to `out`.
///
/// # Errors
/// An unreadable or invalid file, or an output that cannot be written.
pub fn run(config: &DecodeConfig, out: &mut dyn Write) -> anyhow::Result<DecodeReport> {
    let DecodeConfig { input, output } = config;
    let bytes = std::fs::read(input).with_context(|| input.display().to_string())?;
    let started = Instant::now();
    let image = decode_file(&bytes).with_context(|| input.display().to_string())?;
    let seconds = started.elapsed().as_secs_f64();
    image.save_png(output)?;
    let report = DecodeReport {
        input: input.clone(),
        output: output.clone(),
        size: (image.width, image.height),
        seconds,
    };
    writeln!(out, "{report}")?;
    Ok(report)
}
