//! Image files to pixels: the decoder and the `[C, H, W]` layout that the in-memory
//! folder ([`super::folder`]) and the streamed one ([`super::files`]) share, so that a
//! sample reads to the same values either way.

use std::path::Path;

use image::imageops::{FilterType, resize};

use super::Channels;

/// File name extensions read as images (lower case).
pub const IMAGE_EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];

/// Whether `path`'s extension is one of [`IMAGE_EXTENSIONS`].
pub(super) fn has_image_extension(path: &Path) -> bool {
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    IMAGE_EXTENSIONS.contains(&ext.as_str())
}

/// Decodes an image file, or says why not.
pub(super) fn decode(path: &Path) -> Result<image::DynamicImage, String> {
    if !has_image_extension(path) {
        return Err("not a PNG or JPEG image (only .png, .jpg and .jpeg files are read)".into());
    }
    image::ImageReader::open(path)
        .and_then(|r| r.with_guessed_format())
        .map_err(|e| format!("cannot read the image: {e}"))?
        .decode()
        .map_err(|e| format!("cannot decode the image: {e}"))
}

/// Appends `img`'s pixels as `[C, H, W]` floats in `[0, 1]`, resized to `(h, w)`.
pub(super) fn push_pixels(
    out: &mut Vec<f32>,
    img: &image::DynamicImage,
    ch: Channels,
    (h, w): (u32, u32),
) {
    let same = (img.height(), img.width()) == (h, w);
    match ch {
        Channels::Gray => {
            let mut buf = img.to_luma32f();
            if !same {
                buf = resize(&buf, w, h, FilterType::Triangle);
            }
            out.extend(buf.into_raw().into_iter().map(|v| v.clamp(0.0, 1.0)));
        }
        Channels::Rgb => {
            let mut buf = img.to_rgb32f();
            if !same {
                buf = resize(&buf, w, h, FilterType::Triangle);
            }
            let raw = buf.into_raw();
            for c in 0..3 {
                out.extend(raw.iter().skip(c).step_by(3).map(|v| v.clamp(0.0, 1.0)));
            }
        }
    }
}
