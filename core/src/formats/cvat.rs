//! CVAT "Segmentation mask 1.1" zips (the Pascal VOC layout CVAT imports and exports), written
//! from label maps and read back (annotation-tool integration).
//!
//! Layout: `labelmap.txt` (`# label:color_rgb:parts:actions`, then `name:r,g,b::` per label),
//! `ImageSets/Segmentation/default.txt` (one id per line), `SegmentationClass/<id>.png` (RGB in
//! the label colours) and `SegmentationObject/<id>.png` (RGB, one colour per instance).
//!
//! CVAT rejects class-mask colours that labelmap.txt does not declare, so the ignore value 255
//! needs a declared colour. [`IgnoreAs::Background`] (the default) paints it as background,
//! because a CVAT project normally has no "ignore" label and import into an existing project
//! fails on unknown labels; [`IgnoreAs::Label`] declares an extra `ignore` label in the VOC void
//! colour (224, 224, 192) so reviewers see the uncertain regions, and the reader turns it back
//! into 255. Instances are the connected components ([`Connectivity`]) of each foreground
//! class, coloured with the VOC palette by instance number (1, 2, …) as CVAT/Datumaro decode
//! object masks with that fixed palette, not with labelmap.txt; at most 254 instances per
//! image are kept (the largest; smaller ones stay background in the object mask only).

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use zip::ZipWriter;
use zip::write::SimpleFileOptions;

use super::components::{Connectivity, label_class};
use super::{MaskSource, MaskWriter, check_class_names, png_io};
use crate::classes::{ClassMap, IGNORE, IGNORE_COLOR, voc_color};
use crate::{CoreError, Result, atomic};

/// Name of the label declared for ignore pixels under [`IgnoreAs::Label`].
pub const IGNORE_LABEL: &str = "ignore";
/// Most instances written per image (VOC palette entries 1…254).
pub const MAX_INSTANCES: usize = 254;

/// How ignore pixels (255) are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IgnoreAs {
    /// As background (colour of class 0); lost on reading back.
    #[default]
    Background,
    /// As a declared `ignore` label in the VOC void colour; read back as 255.
    Label,
}

/// Options of [`CvatWriter`].
#[derive(Debug, Clone, Copy, Default)]
pub struct CvatOptions {
    /// How ignore pixels are written.
    pub ignore: IgnoreAs,
    /// Connectivity of instances in `SegmentationObject`.
    pub connectivity: Connectivity,
}

type Zip = ZipWriter<BufWriter<File>>;

/// Streams label maps into a CVAT "Segmentation mask 1.1" zip.
pub struct CvatWriter {
    path: PathBuf,
    tmp: PathBuf,
    zip: Option<Zip>,
    classes: ClassMap,
    opts: CvatOptions,
    ids: Vec<String>,
    seen: HashSet<String>,
}

impl CvatWriter {
    /// Starts a zip at `path` (written to a temporary file beside it until `finish`).
    pub fn begin(path: &Path, classes: &ClassMap, opts: CvatOptions) -> Result<Self> {
        check_class_names(classes)?;
        let mut colors = HashSet::new();
        for (n, c) in classes.names.iter().zip(&classes.colors) {
            if !colors.insert(*c) {
                return Err(CoreError::Invalid(format!(
                    "class {n:?}: colour {c:?} is used twice; CVAT masks need one colour per class"
                )));
            }
        }
        if opts.ignore == IgnoreAs::Label
            && (classes.index_of(IGNORE_LABEL).is_some() || colors.contains(&IGNORE_COLOR))
        {
            return Err(CoreError::Invalid(format!(
                "the class map already has an `{IGNORE_LABEL}` class or the colour {IGNORE_COLOR:?}"
            )));
        }
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| CoreError::io(parent, e))?;
        }
        let tmp = atomic::temp_path(path);
        let file = File::create(&tmp).map_err(|e| CoreError::io(&tmp, e))?;
        Ok(CvatWriter {
            path: path.to_path_buf(),
            tmp,
            zip: Some(ZipWriter::new(BufWriter::new(file))),
            classes: classes.clone(),
            opts,
            ids: Vec::new(),
            seen: HashSet::new(),
        })
    }

    fn zip(&mut self) -> Result<&mut Zip> {
        let path = &self.path;
        self.zip.as_mut().ok_or_else(|| {
            CoreError::Invalid(format!("{}: writer already finished", path.display()))
        })
    }

    fn entry(&mut self, name: &str, bytes: &[u8]) -> Result<()> {
        let path = self.path.clone();
        let zip = self.zip()?;
        zip.start_file(name, SimpleFileOptions::default())
            .map_err(|e| zip_err(&path, e))?;
        zip.write_all(bytes).map_err(|e| CoreError::io(&path, e))
    }

    /// RGB class mask in label colours.
    fn class_rgb(&self, m: &MaskSource) -> Vec<u8> {
        let ignore = match self.opts.ignore {
            IgnoreAs::Background => self.classes.colors[0],
            IgnoreAs::Label => IGNORE_COLOR,
        };
        m.labels
            .iter()
            .flat_map(|&v| match v {
                IGNORE => ignore,
                v => self.classes.colors[v as usize],
            })
            .collect()
    }

    /// RGB instance mask: VOC palette colour of the instance number, black elsewhere.
    fn object_rgb(&self, m: &MaskSource, present: &[u8]) -> Result<Vec<u8>> {
        let (w, h) = (m.width as usize, m.height as usize);
        let mut comps = Vec::new();
        for &c in present {
            comps.push(label_class(&m.labels, w, h, c, self.opts.connectivity)?);
        }
        // (class slot, component, area) of every instance, in class then raster order
        let mut all: Vec<(usize, u32, u64)> = comps
            .iter()
            .enumerate()
            .flat_map(|(s, c)| {
                c.areas
                    .iter()
                    .enumerate()
                    .map(move |(k, &a)| (s, k as u32 + 1, a))
            })
            .collect();
        if all.len() > MAX_INSTANCES {
            tracing::warn!(
                "{}: {} instances, keeping the {MAX_INSTANCES} largest in SegmentationObject",
                m.id,
                all.len()
            );
            let mut by_area: Vec<usize> = (0..all.len()).collect();
            by_area.sort_by_key(|&i| std::cmp::Reverse(all[i].2));
            let keep: HashSet<usize> = by_area[..MAX_INSTANCES].iter().copied().collect();
            all = all
                .into_iter()
                .enumerate()
                .filter(|(i, _)| keep.contains(i))
                .map(|(_, x)| x)
                .collect();
        }
        let number: HashMap<(usize, u32), u8> = all
            .iter()
            .enumerate()
            .map(|(n, &(s, k, _))| ((s, k), n as u8 + 1))
            .collect();
        let mut rgb = vec![0u8; w * h * 3];
        for (s, c) in comps.iter().enumerate() {
            for (i, &k) in c.labels.iter().enumerate() {
                if let Some(&n) = (k != 0).then(|| number.get(&(s, k))).flatten() {
                    rgb[3 * i..3 * i + 3].copy_from_slice(&voc_color(n));
                }
            }
        }
        Ok(rgb)
    }

    fn labelmap(&self) -> String {
        let mut s = String::from("# label:color_rgb:parts:actions\n");
        for (n, c) in self.classes.names.iter().zip(&self.classes.colors) {
            s.push_str(&format!("{n}:{},{},{}::\n", c[0], c[1], c[2]));
        }
        if self.opts.ignore == IgnoreAs::Label {
            let c = IGNORE_COLOR;
            s.push_str(&format!("{IGNORE_LABEL}:{},{},{}::\n", c[0], c[1], c[2]));
        }
        s
    }
}

impl MaskWriter for CvatWriter {
    fn add(&mut self, m: &MaskSource) -> Result<()> {
        self.zip()?;
        let present = m.present_classes(&self.classes)?;
        check_id(&m.id)?;
        if self.seen.contains(&m.id) {
            return Err(CoreError::Invalid(format!("{}: id added twice", m.id)));
        }
        let what = |dir: &str| format!("{}: {dir}/{}.png", self.path.display(), m.id);
        let class_rgb = self.class_rgb(m);
        let class_png =
            png_io::encode_rgb(m.width, m.height, &class_rgb, &what("SegmentationClass"))?;
        let object_rgb = self.object_rgb(m, &present)?;
        let object_png =
            png_io::encode_rgb(m.width, m.height, &object_rgb, &what("SegmentationObject"))?;
        self.entry(&format!("SegmentationClass/{}.png", m.id), &class_png)?;
        self.entry(&format!("SegmentationObject/{}.png", m.id), &object_png)?;
        self.seen.insert(m.id.clone());
        self.ids.push(m.id.clone());
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        self.zip()?;
        let labelmap = self.labelmap();
        self.entry("labelmap.txt", labelmap.as_bytes())?;
        let mut list = self.ids.join("\n");
        list.push('\n');
        self.entry("ImageSets/Segmentation/default.txt", list.as_bytes())?;
        let zip = self.zip.take().expect("checked above");
        let path = self.path.clone();
        let result = (|| -> Result<()> {
            let buf = zip.finish().map_err(|e| zip_err(&path, e))?;
            let file = buf
                .into_inner()
                .map_err(|e| CoreError::io(&path, e.into_error()))?;
            file.sync_all().map_err(|e| CoreError::io(&path, e))?;
            std::fs::rename(&self.tmp, &path).map_err(|e| CoreError::io(&path, e))
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&self.tmp);
        }
        result
    }
}

impl Drop for CvatWriter {
    fn drop(&mut self) {
        // an unfinished zip is never moved into place
        if self.zip.take().is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Reads a CVAT "Segmentation mask 1.1" zip into label maps (ids in `ImageSets/Segmentation`
/// list order, else `SegmentationClass` order). Labels of `labelmap.txt` are matched to
/// `classes` by name; `ignore` (when not a class) becomes 255. Object masks are not read.
pub fn read_cvat(path: &Path, classes: &ClassMap) -> Result<Vec<MaskSource>> {
    let file = File::open(path).map_err(|e| CoreError::io(path, e))?;
    let mut zip = zip::ZipArchive::new(BufReader::new(file)).map_err(|e| zip_err(path, e))?;
    let text = |zip: &mut zip::ZipArchive<BufReader<File>>, name: &str| -> Result<String> {
        let bytes = read_entry(zip, path, name)?;
        String::from_utf8(bytes).map_err(|_| CoreError::format(path.join(name), "not UTF-8 text"))
    };
    let colors = parse_labelmap(
        &text(&mut zip, "labelmap.txt")?,
        classes,
        &path.join("labelmap.txt"),
    )?;
    let names: Vec<String> = zip
        .file_names()
        .filter_map(|n| n.ok())
        .map(|n| n.into_owned())
        .collect();
    let mut ids = Vec::new();
    let lists: Vec<&String> = names
        .iter()
        .filter(|n| n.starts_with("ImageSets/Segmentation/") && n.ends_with(".txt"))
        .collect();
    for list in &lists {
        ids.extend(
            text(&mut zip, list)?
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(String::from),
        );
    }
    if lists.is_empty() {
        ids.extend(names.iter().filter_map(|n| {
            n.strip_prefix("SegmentationClass/")?
                .strip_suffix(".png")
                .map(String::from)
        }));
    }
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        let name = format!("SegmentationClass/{id}.png");
        let bytes = read_entry(&mut zip, path, &name)?;
        let entry = path.join(&name);
        let (w, h, rgb) = png_io::decode_rgb(&bytes, &entry.display().to_string())?;
        let mut labels = Vec::with_capacity(rgb.len() / 3);
        for p in rgb.chunks_exact(3) {
            let c = [p[0], p[1], p[2]];
            let v = colors.get(&c).ok_or_else(|| {
                CoreError::format(
                    &entry,
                    format!("colour {c:?} is not declared in labelmap.txt"),
                )
            })?;
            labels.push(*v);
        }
        out.push(MaskSource::new(id, w, h, labels)?);
    }
    Ok(out)
}

/// Colour → label value from labelmap.txt lines `name:r,g,b:parts:actions`.
fn parse_labelmap(text: &str, classes: &ClassMap, file: &Path) -> Result<HashMap<[u8; 3], u8>> {
    let mut map = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |m: String| CoreError::format(file, format!("line {}: {m}", i + 1));
        let mut parts = line.split(':');
        let name = parts.next().unwrap_or_default();
        let rgb: Vec<u8> = parts
            .next()
            .unwrap_or_default()
            .split(',')
            .map(|v| v.trim().parse::<u8>())
            .collect::<std::result::Result<_, _>>()
            .map_err(|_| bad(format!("label {name:?} has no r,g,b colour")))?;
        let [r, g, b] = rgb[..] else {
            return Err(bad(format!("label {name:?} has no r,g,b colour")));
        };
        let value = match classes.index_of(name) {
            Some(v) => v as u8,
            None if name == IGNORE_LABEL => IGNORE,
            None => return Err(bad(format!("label {name:?} is not in the class map"))),
        };
        map.insert([r, g, b], value);
    }
    Ok(map)
}

fn read_entry(
    zip: &mut zip::ZipArchive<BufReader<File>>,
    path: &Path,
    name: &str,
) -> Result<Vec<u8>> {
    let mut f = zip
        .by_name(name)
        .map_err(|_| CoreError::format(path, format!("the zip has no {name}")))?;
    let mut bytes = Vec::new();
    f.read_to_end(&mut bytes)
        .map_err(|e| CoreError::io(path.join(name), e))?;
    Ok(bytes)
}

/// Ids become zip entry names: no empty ids, absolute paths, `..`, backslashes or line breaks.
fn check_id(id: &str) -> Result<()> {
    let bad = id.is_empty()
        || id.starts_with('/')
        || id.contains(['\\', '\n', '\r'])
        || id.split('/').any(|p| p == ".." || p.is_empty());
    if bad {
        return Err(CoreError::Invalid(format!(
            "{id:?}: not usable as a file name in a zip"
        )));
    }
    Ok(())
}

fn zip_err(path: &Path, e: zip::result::ZipError) -> CoreError {
    CoreError::io(path, std::io::Error::other(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labelmap_parsing() {
        let voc = ClassMap::voc();
        let t = "# label:color_rgb:parts:actions\nbackground:0,0,0::\ndog:64,0,128::\nignore:224,224,192::\n";
        let m = parse_labelmap(t, &voc, Path::new("l.txt")).unwrap();
        assert_eq!(m[&[64, 0, 128]], 12);
        assert_eq!(m[&IGNORE_COLOR], 255);
        let e = parse_labelmap("unicorn:1,2,3::", &voc, Path::new("l.txt")).unwrap_err();
        assert!(e.to_string().contains("l.txt") && e.to_string().contains("unicorn"));
        assert!(parse_labelmap("dog:1,2::", &voc, Path::new("l.txt")).is_err());
    }

    #[test]
    fn ids_are_checked() {
        assert!(check_id("2007_000032").is_ok());
        assert!(check_id("sub/a").is_ok());
        for bad in ["", "../a", "/a", "a\nb", "a//b"] {
            assert!(check_id(bad).is_err(), "{bad:?}");
        }
    }
}
