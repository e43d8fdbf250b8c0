//! Image folders: `root/<class>/<image>`, one subfolder per class (class `i` is the
//! `i`-th subfolder name in sorted order), images found at any depth below it.
//!
//! - Only `.png`, `.jpg` and `.jpeg` files are read (decoded by their content). Hidden
//!   files and folders (names starting with `.`, such as `.DS_Store`) are ignored, and so
//!   are files directly in `root`. Any other file, or an image that does not decode, is an
//!   error naming it; with [`LoadOptions::skip_unreadable`] it is skipped and listed in
//!   [`LabelledSet::skipped`] instead. A class folder left without images is an error.
//! - Pixels become `f32` in `[0, 1]` (16-bit images keep their precision), grey as
//!   Rec. 709 luma, colour as RGB with any alpha dropped, laid out `[C, H, W]`.
//! - With [`LoadOptions::image_size`] every image is resized (bilinear, aspect ratio not
//!   kept); without it every image must have the size of the first one read.
//! - Groups: [`LoadOptions::groups_file`], a CSV with a header holding `path` and
//!   `group` columns, paths relative to `root` with `/` (images it does not list get
//!   [`crate::data::groups::NO_GROUP`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::files::ImageFiles;
use super::pixels::{decode, has_image_extension, push_pixels};
use super::table::split_line;
use super::{
    Channels, LabelledSet, LoadOptions, OwnError, index_group_keys, io, malformed, read_file,
};

pub use super::pixels::IMAGE_EXTENSIONS;

/// Loads an image folder (see the module documentation).
pub fn load_image_folder(root: &Path, options: &LoadOptions) -> Result<LabelledSet, OwnError> {
    let mut features = Vec::new();
    let files = scan(root, options, Some(&mut features))?;
    Ok(files.into_set(features))
}

/// Indexes an image folder without keeping its pixels: every file is decoded once, so that
/// an unreadable one, or one of another size, is an error naming it now rather than in the
/// middle of training (with [`LoadOptions::skip_unreadable`] it is skipped and listed),
/// and the images are read again from their files for each batch ([`ImageFiles`]).
pub fn index_image_folder(root: &Path, options: &LoadOptions) -> Result<ImageFiles, OwnError> {
    scan(root, options, None)
}

/// The files of the folder's first class folder that has a PNG/JPEG file, and the first
/// such file decoded: what [`super::loading`] estimates a folder's decoded size from
/// (with the image count of [`count_images`]).
pub fn first_image(root: &Path) -> Result<Option<(PathBuf, image::DynamicImage)>, OwnError> {
    for (dir, is_dir) in list(root)?.0 {
        if !is_dir {
            continue;
        }
        let mut files = Vec::new();
        walk(&dir, &mut files)?;
        for file in files {
            if let Ok(img) = decode(&file) {
                return Ok(Some((file, img)));
            }
        }
    }
    Ok(None)
}

/// The number of PNG/JPEG files (by name) in the class folders of `root`.
pub fn count_images(root: &Path) -> Result<usize, OwnError> {
    let mut n = 0;
    for (dir, is_dir) in list(root)?.0 {
        if is_dir {
            let mut files = Vec::new();
            walk(&dir, &mut files)?;
            n += files.iter().filter(|f| has_image_extension(f)).count();
        }
    }
    Ok(n)
}

/// Reads the folder: every image decoded in order, its pixels appended to `features`
/// when given (the in-memory set), else only checked (the streamed one).
fn scan(
    root: &Path,
    options: &LoadOptions,
    mut features: Option<&mut Vec<f32>>,
) -> Result<ImageFiles, OwnError> {
    let (classes, loose_files) = list(root)?;
    let class_dirs: Vec<(String, PathBuf)> = classes
        .into_iter()
        .filter(|(_, is_dir)| *is_dir)
        .map(|(p, _)| {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            (name, p)
        })
        .collect();
    if class_dirs.is_empty() {
        let found = if loose_files > 0 {
            format!(
                " (it holds {loose_files} files but no subfolder: move each class's images into a folder named after the class)"
            )
        } else {
            String::new()
        };
        return Err(OwnError::NoClasses {
            dir: root.to_path_buf(),
            found,
        });
    }
    let mut out = LabelledSet {
        features: Vec::new(),
        sample_shape: Vec::new(),
        labels: Vec::new(),
        class_names: class_dirs.iter().map(|(n, _)| n.clone()).collect(),
        groups: None,
        skipped: Vec::new(),
    };
    let mut channels = options.channels;
    // The first image's path and size (height, width), when no size is given.
    let mut first: Option<(PathBuf, (u32, u32))> = None;
    let mut paths = Vec::new();
    for (class, (name, dir)) in class_dirs.iter().enumerate() {
        let mut files = Vec::new();
        walk(dir, &mut files)?;
        let before = out.labels.len();
        for file in files {
            let img = match decode(&file) {
                Ok(img) => img,
                Err(reason) if options.skip_unreadable => {
                    out.skipped.push((file, reason));
                    continue;
                }
                Err(reason) => {
                    return Err(malformed(
                        &file,
                        format!("{reason} (remove it, or skip unreadable files)"),
                    ));
                }
            };
            let ch = *channels.get_or_insert(if img.color().has_color() {
                Channels::Rgb
            } else {
                Channels::Gray
            });
            let (h, w) = (img.height(), img.width());
            let size = match (options.image_size, &first) {
                (Some(size), _) => size,
                (None, None) => {
                    first = Some((file.clone(), (h, w)));
                    (h, w)
                }
                (None, Some((first_path, size))) => {
                    if *size != (h, w) {
                        return Err(malformed(
                            &file,
                            format!(
                                "image is {h}x{w} (HxW) but {} is {}x{}: give an image size to \
                                 resize every image to one size",
                                first_path.display(),
                                size.0,
                                size.1
                            ),
                        ));
                    }
                    *size
                }
            };
            if let Some(features) = features.as_deref_mut() {
                push_pixels(features, &img, ch, size);
            }
            if out.sample_shape.is_empty() {
                out.sample_shape = vec![ch.count(), size.0 as usize, size.1 as usize];
            }
            out.labels.push(class as u32);
            paths.push(file);
        }
        if out.labels.len() == before {
            let what = if out.skipped.iter().any(|(p, _)| p.starts_with(dir)) {
                "holds no readable image"
            } else {
                "holds no image"
            };
            return Err(OwnError::EmptyClass {
                class: name.clone(),
                context: format!("its folder {} {what}", dir.display()),
            });
        }
    }
    if let Some(groups_file) = &options.groups_file {
        out.groups = Some(group_keys(root, &paths, groups_file).map(|k| index_group_keys(&k))?);
    }
    let channels = channels.unwrap_or(Channels::Gray);
    let size = (out.sample_shape[1] as u32, out.sample_shape[2] as u32);
    Ok(ImageFiles::new(
        out,
        paths,
        channels,
        size,
        options.image_size.is_some(),
    ))
}

/// The entries of `dir` that are not hidden, sorted by name, with whether each is a
/// directory, and how many plain files there were.
fn list(dir: &Path) -> Result<(Vec<(PathBuf, bool)>, usize), OwnError> {
    let mut entries = Vec::new();
    let mut files = 0;
    for entry in std::fs::read_dir(dir).map_err(|e| io(dir, e))? {
        let entry = entry.map_err(|e| io(dir, e))?;
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        // Follows symbolic links (a class folder may link elsewhere).
        let path = entry.path();
        let is_dir = path.is_dir();
        files += usize::from(!is_dir);
        entries.push((path, is_dir));
    }
    entries.sort_by(|a, b| a.0.file_name().cmp(&b.0.file_name()));
    Ok((entries, files))
}

/// Every file below `dir` (not hidden), depth first in sorted order.
fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), OwnError> {
    for (path, is_dir) in list(dir)?.0 {
        if is_dir {
            walk(&path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}

/// Each image's group name from a `path,group` CSV (`None` when it is not listed).
fn group_keys(
    root: &Path,
    paths: &[PathBuf],
    groups_file: &Path,
) -> Result<Vec<Option<String>>, OwnError> {
    let bytes = read_file(groups_file)?;
    let text = String::from_utf8_lossy(&bytes);
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let bad = |line: usize, reason: String| OwnError::Row {
        path: groups_file.to_path_buf(),
        line,
        reason,
    };
    let (_, header) = lines
        .next()
        .ok_or_else(|| malformed(groups_file, "empty file: expected a header `path,group`"))?;
    let head = split_line(header.trim_start_matches('\u{feff}'), b',').map_err(|e| bad(1, e))?;
    let col = |name: &str| {
        head.iter().position(|h| h == name).ok_or_else(|| {
            bad(
                1,
                format!("no column {name:?} in the header (expected `path,group`)"),
            )
        })
    };
    let (pc, gc) = (col("path")?, col("group")?);
    let mut map: HashMap<String, String> = HashMap::new();
    for (i, line) in lines {
        let f = split_line(line, b',').map_err(|e| bad(i + 1, e))?;
        if f.len() != head.len() {
            let reason = format!("expected {} fields, found {}", head.len(), f.len());
            return Err(bad(i + 1, reason));
        }
        map.insert(f[pc].trim_start_matches("./").to_string(), f[gc].clone());
    }
    Ok(paths
        .iter()
        .map(|p| {
            let rel = p.strip_prefix(root).unwrap_or(p);
            let key: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            map.get(&key.join("/")).cloned()
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::super::tests::TempDir;
    use super::*;
    use crate::data::groups::NO_GROUP;

    fn gray(dir: &TempDir, rel: &str, w: u32, h: u32, level: u8) {
        let img = image::GrayImage::from_pixel(w, h, image::Luma([level]));
        let p = dir.path(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        img.save(&p).unwrap();
    }

    fn rgb(dir: &TempDir, rel: &str, w: u32, h: u32, px: [u8; 3]) {
        let img = image::RgbImage::from_pixel(w, h, image::Rgb(px));
        let p = dir.path(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        img.save(&p).unwrap();
    }

    #[test]
    fn classes_are_sorted_folders_and_pixels_are_chw() {
        let dir = TempDir::new("folder");
        rgb(&dir, "dog/a.png", 3, 2, [255, 0, 51]);
        rgb(&dir, "cat/b.png", 3, 2, [0, 255, 0]);
        rgb(&dir, "cat/sub/c.png", 3, 2, [0, 0, 255]);
        dir.write(".DS_Store", b"junk");
        dir.write("cat/.hidden", b"junk");
        dir.write("README.txt", b"loose files in the root are ignored");
        let s = load_image_folder(&dir.0, &LoadOptions::default()).unwrap();
        assert_eq!(s.class_names, vec!["cat", "dog"]);
        assert_eq!(s.labels, vec![0, 0, 1]);
        assert_eq!(s.sample_shape, vec![3, 2, 3]);
        // Sample 2 (dog): channel planes of 6 pixels each.
        let d = s.sample(2);
        assert!(d[..6].iter().all(|&v| v == 1.0));
        assert!(d[6..12].iter().all(|&v| v == 0.0));
        assert!(d[12..].iter().all(|&v| (v - 0.2).abs() < 1e-6));
        // Grey on request.
        let opts = LoadOptions {
            channels: Some(Channels::Gray),
            image_size: Some((4, 5)),
            ..LoadOptions::default()
        };
        let s = load_image_folder(&dir.0, &opts).unwrap();
        assert_eq!(s.sample_shape, vec![1, 4, 5]);
        // Pure green is 0.7152 luma; resizing a flat image keeps it flat.
        assert!(
            s.sample(0).iter().all(|&v| (v - 0.7152).abs() < 0.01),
            "{:?}",
            s.sample(0)
        );
    }

    #[test]
    fn channels_follow_the_first_image_and_sizes_must_agree() {
        let dir = TempDir::new("folder-size");
        gray(&dir, "a/1.png", 4, 4, 128);
        rgb(&dir, "b/2.jpg", 4, 4, [10, 20, 30]);
        let s = load_image_folder(&dir.0, &LoadOptions::default()).unwrap();
        assert_eq!(s.sample_shape, vec![1, 4, 4]);
        assert!((s.sample(0)[0] - 128.0 / 255.0).abs() < 1e-6);
        gray(&dir, "b/3.png", 5, 4, 0);
        let e = load_image_folder(&dir.0, &LoadOptions::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("3.png: image is 4x5 (HxW) but "), "{e}");
        assert!(e.contains("1.png is 4x4: give an image size"), "{e}");
        let opts = LoadOptions {
            image_size: Some((8, 8)),
            ..LoadOptions::default()
        };
        let s = load_image_folder(&dir.0, &opts).unwrap();
        assert_eq!((s.len(), s.sample_shape.clone()), (3, vec![1, 8, 8]));
    }

    #[test]
    fn errors_name_the_folder_or_file() {
        let dir = TempDir::new("folder-err");
        let e = load_image_folder(&dir.0, &LoadOptions::default())
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("no class folders in "), "{e}");
        gray(&dir, "loose.png", 2, 2, 0);
        let e = load_image_folder(&dir.0, &LoadOptions::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("it holds 1 files but no subfolder"), "{e}");

        gray(&dir, "cat/1.png", 2, 2, 0);
        std::fs::create_dir_all(dir.path("dog")).unwrap();
        let e = load_image_folder(&dir.0, &LoadOptions::default()).unwrap_err();
        assert!(matches!(&e, OwnError::EmptyClass { class, .. } if class == "dog"));
        assert!(
            e.to_string()
                .contains("class \"dog\" has no samples: its folder"),
            "{e}"
        );

        dir.write("dog/notes.txt", b"not an image");
        let e = load_image_folder(&dir.0, &LoadOptions::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("notes.txt: not a PNG or JPEG image"), "{e}");
        dir.write("dog/broken.png", b"\x89PNG\r\n\x1a\ntruncated");
        let skip = LoadOptions {
            skip_unreadable: true,
            ..LoadOptions::default()
        };
        let e = load_image_folder(&dir.0, &skip).unwrap_err().to_string();
        assert!(e.contains("holds no readable image"), "{e}");
        std::fs::remove_file(dir.path("dog/notes.txt")).unwrap();
        let e = load_image_folder(&dir.0, &LoadOptions::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("broken.png: cannot decode the image"), "{e}");
        gray(&dir, "dog/2.png", 2, 2, 255);
        let s = load_image_folder(&dir.0, &skip).unwrap();
        assert_eq!(s.labels, vec![0, 1]);
        assert_eq!(s.skipped.len(), 1);
        assert!(s.skipped[0].0.ends_with("dog/broken.png"));
    }

    #[test]
    fn groups_come_from_a_path_group_csv() {
        let dir = TempDir::new("folder-groups");
        gray(&dir, "img/a/1.png", 2, 2, 0);
        gray(&dir, "img/a/2.png", 2, 2, 0);
        gray(&dir, "img/b/3.png", 2, 2, 0);
        let g = dir.write("groups.csv", b"path,group\na/1.png,young\n./b/3.png,old\n");
        let opts = LoadOptions {
            groups_file: Some(g),
            ..LoadOptions::default()
        };
        let s = load_image_folder(&dir.path("img"), &opts).unwrap();
        let groups = s.groups.unwrap();
        assert_eq!(groups.names, vec!["old", "young"]);
        assert_eq!(groups.ids, vec![1, NO_GROUP, 0]);
        let g = dir.write("bad.csv", b"file,group\n");
        let opts = LoadOptions {
            groups_file: Some(g),
            ..LoadOptions::default()
        };
        let e = load_image_folder(&dir.path("img"), &opts).unwrap_err();
        assert!(e.to_string().contains("no column \"path\""), "{e}");
    }
}
