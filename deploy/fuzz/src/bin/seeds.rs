//! Writes the seed models into the fuzz corpus:
//! `cd deploy/fuzz && cargo run --bin seeds` (any toolchain; no sanitizer needed).

#[path = "../seed_models.rs"]
mod seed_models;

use tether_deploy::{AlignedBytes, Model};

fn main() -> std::io::Result<()> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/load");
    std::fs::create_dir_all(&dir)?;
    for seed in seed_models::seeds() {
        let aligned = AlignedBytes::from_slice(&seed.bytes);
        let model = Model::parse(&aligned).expect("the builder writes models that load");
        assert_eq!(model.input_shape().as_slice(), seed.input, "{}", seed.name);
        assert_eq!(
            model.output_shape().as_slice(),
            seed.output,
            "{}",
            seed.name
        );
        let path = dir.join(seed.name);
        std::fs::write(&path, &seed.bytes)?;
        println!("{} ({} bytes)", path.display(), seed.bytes.len());
    }
    Ok(())
}
