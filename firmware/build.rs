//! Puts `memory.x` on the linker's search path and links with cortex-m-rt's `link.x`.
//! (The link argument is given here rather than in `.cargo/config.toml` so that a
//! `RUSTFLAGS` in the environment, which replaces config rustflags, cannot drop it.)

use std::{env, fs, path::PathBuf};

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR"));
    fs::copy("memory.x", out.join("memory.x")).expect("copy memory.x");
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rustc-link-arg=-Tlink.x");
    println!("cargo:rerun-if-changed=memory.x");
    println!("cargo:rerun-if-changed=build.rs");
}
