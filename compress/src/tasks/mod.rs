//! What the `tether-compress` command line does, as a library: one module per subcommand,
//! each with its typed config (in [`config`]) and a `run` that does the work, prints what
//! the CLI prints to the writer given and returns a report. The binary parses its flags
//! into these configs and calls `run`.
//!
//! - [`encode`]: fit an image under a bit budget and write the compressed file.
//! - [`decode`]: a compressed file to a PNG, through `tether-deploy`.
//! - [`eval`]: a folder of images at several rates and methods, resumable, summarised
//!   against JPEG and published curves ([`summary`]).
//!
//! ```no_run
//! use tether_compress::tasks::config::{CodecConfig, EncodeConfig};
//! use tether_compress::tasks::encode;
//!
//! let config = EncodeConfig {
//!     image: "photo.png".into(),
//!     output: "photo.tc".into(),
//!     bpp: 0.3,
//!     downscale: 1,
//!     decoded: None,
//!     log: None,
//!     strict_input: false,
//!     checkpoint_every: 0,
//!     resume: None,
//!     codec: CodecConfig { steps: 500, ..CodecConfig::default() },
//! };
//! let report = encode::run(&config, &mut std::io::sink(), false)?;
//! println!("{:.2} dB at {:.3} bpp", report.encoded.psnr, report.encoded.bpp);
//! # Ok::<(), anyhow::Error>(())
//! ```

pub mod config;
pub mod decode;
pub mod encode;
pub mod eval;
pub mod summary;
