//! The output sink of the labelling and prediction jobs (`ssc-label`, `ssc-predict`,
//! `ssc-convert`): VOC palette PNGs (§1.2 label maps, §10.6) and the annotation-tool files of
//! `ssc_core::formats` (CVAT zip, COCO JSON, Label Studio tasks + config).
//!
//! [`OutputOptions`] names the formats (`voc`, `cvat`, `coco`, `labelstudio`) and the writers'
//! options; [`Outputs`] is the sink a batch run feeds one finished mask at a time from its
//! worker threads:
//!
//! * **voc** masks are written at once, atomically, at `<masks>/<id>.png` (ids are relative
//!   paths without extension, so nested input folders are mirrored), by the calling thread.
//! * **aggregate** files (zip / JSON) must not depend on which worker finished first, so masks
//!   reach their writers in the order given by [`Outputs::set_order`]; masks that arrive early
//!   wait in a small reorder buffer, and [`Outputs::admit`] holds a worker back before it
//!   starts an item too far ahead of the oldest unfinished one, which bounds that buffer.
//!   A failed item is announced with [`Outputs::skip`] so the order moves on. On resume, items
//!   finished by an earlier run are fed back from their PNGs ([`Outputs::add_existing`]), so
//!   the aggregate files always cover the whole shard.
//! * [`Outputs::finish`] writes the aggregate files atomically (named `coco.json`, or
//!   `coco.<i>-of-<n>.json` for shard `i` of `n`).
//!
//! Resume needs the PNGs: without `voc` nothing counts as done ([`Outputs::is_done`]) and every
//! item is redone, which keeps the aggregate files complete.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};

use ssc_core::classes::ClassMap;
use ssc_core::formats::coco::{CocoOptions, CocoWriter};
use ssc_core::formats::cvat::{CvatOptions, CvatWriter};
use ssc_core::formats::labelstudio::{
    LabelStudioOptions, LabelStudioWriter, write_labeling_config,
};
use ssc_core::formats::{MaskSource, MaskWriter};
use ssc_core::mask::{LabelMap, read_mask, write_grey_png, write_palette_png};

use crate::batch::{Failure, Shard, Tracker};
use crate::error::{Context, InferenceError, Result, bail};

/// One output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Format {
    /// Palette PNG per image at `<out>/<id>.png` (VOC colours, values = class indices).
    Voc,
    /// `cvat.zip` (CVAT "Segmentation mask 1.1").
    Cvat,
    /// `coco.json` (COCO JSON with compressed RLE segmentations).
    Coco,
    /// `labelstudio-tasks.json` (brush-RLE predictions) and `labelstudio-config.xml`.
    Labelstudio,
}

impl Format {
    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Format::Voc => "voc",
            Format::Cvat => "cvat",
            Format::Coco => "coco",
            Format::Labelstudio => "labelstudio",
        }
    }
}

/// The formats of a run and each writer's options.
#[derive(Debug, Clone)]
pub struct OutputOptions {
    /// Output formats, in the order given (duplicates are ignored).
    pub formats: Vec<Format>,
    /// COCO writer options.
    pub coco: CocoOptions,
    /// CVAT writer options.
    pub cvat: CvatOptions,
    /// Label Studio writer and labelling-config options.
    pub labelstudio: LabelStudioOptions,
}

impl Default for OutputOptions {
    fn default() -> Self {
        OutputOptions::new(&[Format::Voc])
    }
}

impl OutputOptions {
    /// `formats` with every writer's default options.
    pub fn new(formats: &[Format]) -> Self {
        OutputOptions {
            formats: formats.to_vec(),
            coco: CocoOptions::default(),
            cvat: CvatOptions::default(),
            labelstudio: LabelStudioOptions::default(),
        }
    }

    /// The requested formats, duplicates removed, in the order given.
    pub fn formats(&self) -> Vec<Format> {
        let mut out = Vec::new();
        for &f in &self.formats {
            if !out.contains(&f) {
                out.push(f);
            }
        }
        out
    }
}

/// Where an [`Outputs`] puts its files.
#[derive(Debug, Clone)]
pub struct OutputPaths {
    /// Folder of the per-image PNGs `<id>.png`.
    pub masks: PathBuf,
    /// Folder of the aggregate files (`cvat.zip`, `coco.json`, `labelstudio-*.{json,xml}`).
    pub files: PathBuf,
    /// When set, `voc` also writes `<root>/classes.txt` and the id list
    /// `<root>/ImageSets/Segmentation/default.txt` (the VOC layout `ssc-convert` produces).
    pub voc_root: Option<PathBuf>,
    /// Shard of this process; aggregate file names get `.<i>-of-<n>` when there are several.
    pub shard: Shard,
}

impl OutputPaths {
    /// Everything in `out`: masks at `<out>/<id>.png`, aggregate files beside them.
    pub fn flat(out: &Path, shard: Shard) -> Self {
        OutputPaths {
            masks: out.to_path_buf(),
            files: out.to_path_buf(),
            voc_root: None,
            shard,
        }
    }

    /// `<files>/<stem>.<ext>`, or `<stem>.<i>-of-<n>.<ext>` in a sharded run.
    pub fn file(&self, stem: &str, ext: &str) -> PathBuf {
        let name = if self.shard.count > 1 {
            format!("{stem}.{}-of-{}.{ext}", self.shard.index, self.shard.count)
        } else {
            format!("{stem}.{ext}")
        };
        self.files.join(name)
    }
}

type Writer = Box<dyn MaskWriter + Send>;

/// The ordered part of [`Outputs`]: writers and the reorder buffer.
struct Aggregate {
    writers: Vec<(Format, Writer)>,
    /// Position of each expected id; `None` until [`Outputs::set_order`], meaning arrival
    /// order.
    order: Option<HashMap<String, usize>>,
    /// Next position to hand to the writers.
    next: usize,
    /// Early arrivals by position (`None`: the item failed or was skipped).
    pending: BTreeMap<usize, Option<MaskSource>>,
    /// Errors of the aggregate writers, by item.
    failures: Vec<Failure>,
    /// Ids handed to the writers, in order (the VOC id list).
    ids: Vec<String>,
}

impl Aggregate {
    /// Hands one mask to every writer; errors are returned joined, naming the formats.
    fn write(&mut self, m: &MaskSource) -> std::result::Result<(), String> {
        let mut errs = Vec::new();
        for (f, w) in &mut self.writers {
            if let Err(e) = w.add(m) {
                errs.push(format!("{}: {e}", f.name()));
            }
        }
        self.ids.push(m.id.clone());
        if errs.is_empty() {
            Ok(())
        } else {
            Err(errs.join("; "))
        }
    }

    /// Writes the buffered masks that are next in order; returns the error of `own` (the
    /// caller's item) if it was among them, records the others.
    fn drain(&mut self, own: Option<&str>) -> std::result::Result<(), String> {
        let mut mine = Ok(());
        while let Some(entry) = self.pending.remove(&self.next) {
            self.next += 1;
            if let Some(m) = entry
                && let Err(e) = self.write(&m)
            {
                if own == Some(m.id.as_str()) {
                    mine = Err(e);
                } else {
                    self.failures.push(Failure {
                        id: m.id.clone(),
                        message: e,
                    });
                }
            }
        }
        mine
    }
}

/// What [`Outputs::finish`] wrote.
#[derive(Debug, Default)]
pub struct Finished {
    /// The aggregate files written.
    pub files: Vec<PathBuf>,
    /// Items an aggregate writer refused after their own call had returned (out-of-order
    /// items); empty in practice, but a run must report them.
    pub failures: Vec<Failure>,
}

/// The thread-safe output sink of a batch run (see the module docs).
pub struct Outputs {
    paths: OutputPaths,
    classes: ClassMap,
    voc: bool,
    /// `voc` masks as grey PNGs (class ids) instead of palette PNGs.
    grey: bool,
    /// Aggregate writers or a VOC id list exist, so masks go through the ordered part.
    ordered: bool,
    aggregate: Mutex<Aggregate>,
    moved: Condvar,
    window: usize,
}

impl Outputs {
    /// Opens the requested formats (the Label Studio config is written at once; the other
    /// aggregate files appear in [`Outputs::finish`]).
    pub fn create(paths: OutputPaths, classes: &ClassMap, args: &OutputOptions) -> Result<Self> {
        let mut writers: Vec<(Format, Writer)> = Vec::new();
        let formats = args.formats();
        if formats.is_empty() {
            bail!("no output format given (voc, cvat, coco, labelstudio)");
        }
        for f in &formats {
            let w: Writer = match f {
                Format::Voc => continue,
                Format::Cvat => {
                    let path = paths.file("cvat", "zip");
                    Box::new(
                        CvatWriter::begin(&path, classes, args.cvat)
                            .with_context(|| format!("cannot start {}", path.display()))?,
                    )
                }
                Format::Coco => {
                    let path = paths.file("coco", "json");
                    Box::new(
                        CocoWriter::begin(&path, classes, args.coco)
                            .with_context(|| format!("cannot start {}", path.display()))?,
                    )
                }
                Format::Labelstudio => {
                    let opts = args.labelstudio.clone();
                    let config = paths.files.join("labelstudio-config.xml");
                    write_labeling_config(&config, classes, &opts)
                        .with_context(|| format!("cannot write {}", config.display()))?;
                    let path = paths.file("labelstudio-tasks", "json");
                    Box::new(
                        LabelStudioWriter::begin(&path, classes, opts)
                            .with_context(|| format!("cannot start {}", path.display()))?,
                    )
                }
            };
            writers.push((*f, w));
        }
        let voc = formats.contains(&Format::Voc);
        if voc {
            std::fs::create_dir_all(&paths.masks)
                .with_context(|| format!("cannot create {}", paths.masks.display()))?;
        }
        let ordered = !writers.is_empty() || (voc && paths.voc_root.is_some());
        Ok(Outputs {
            paths,
            classes: classes.clone(),
            voc,
            grey: false,
            ordered,
            aggregate: Mutex::new(Aggregate {
                writers,
                order: None,
                next: 0,
                pending: BTreeMap::new(),
                failures: Vec::new(),
                ids: Vec::new(),
            }),
            moved: Condvar::new(),
            window: 64,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Aggregate> {
        self.aggregate.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether per-image PNGs are written (what resume relies on).
    pub fn writes_masks(&self) -> bool {
        self.voc
    }

    /// Whether any aggregate file (or VOC id list) is written: then every item, done or not,
    /// must pass through `add`, `add_existing` or `skip`.
    pub fn has_aggregates(&self) -> bool {
        self.ordered
    }

    /// The per-image PNG of `id`.
    pub fn mask_path(&self, id: &str) -> PathBuf {
        self.paths.masks.join(format!("{id}.png"))
    }

    /// The paths this sink writes to.
    pub fn paths(&self) -> &OutputPaths {
        &self.paths
    }

    /// Fixes the order of the aggregate files: the ids of every item of the run (done ones
    /// included), in the order they are dispatched.
    pub fn set_order<'a>(&self, ids: impl IntoIterator<Item = &'a str>) -> Result<()> {
        let mut order = HashMap::new();
        for (i, id) in ids.into_iter().enumerate() {
            if order.insert(id.to_string(), i).is_some() {
                bail!("id `{id}` appears twice (outputs are named by id)");
            }
        }
        let mut a = self.lock();
        if a.next != 0 || !a.pending.is_empty() {
            bail!("set_order must be called before the first mask");
        }
        a.order = Some(order);
        Ok(())
    }

    /// Blocks until the item `id` is within the reorder window (no-op without aggregate files
    /// or order). Call it before starting an item, never while holding a finished mask.
    pub fn admit(&self, id: &str) {
        if !self.ordered {
            return;
        }
        let mut a = self.lock();
        let Some(pos) = a.order.as_ref().and_then(|o| o.get(id).copied()) else {
            return;
        };
        while pos >= a.next + self.window {
            a = self.moved.wait(a).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Writes the `voc` masks as grey PNGs (pixel value = class index, what `ssc-label
    /// --grey` produces) instead of palette PNGs; both read back the same.
    pub fn with_grey(mut self, grey: bool) -> Self {
        self.grey = grey;
        self
    }

    /// Sets how far ahead of the oldest unfinished item [`Outputs::admit`] lets a worker start
    /// (default 64 items; each buffered item holds one label map).
    pub fn with_window(mut self, window: usize) -> Self {
        self.window = window.max(1);
        self
    }

    /// Writes one finished mask: the PNG now (voc), the aggregate writers in order. An error
    /// concerns this item only; the sink stays usable.
    pub fn add(&self, mask: MaskSource) -> Result<()> {
        mask.present_classes(&self.classes)
            .with_context(|| format!("{}: mask does not fit the class map", mask.id))?;
        if self.voc {
            let path = self.mask_path(&mask.id);
            let map = LabelMap::new(
                mask.width as usize,
                mask.height as usize,
                mask.labels.clone(),
            )?;
            if self.grey {
                write_grey_png(&path, &map)
            } else {
                write_palette_png(&path, &map, &self.classes)
            }
            .with_context(|| format!("cannot write {}", path.display()))?;
        }
        self.aggregate(mask)
    }

    /// Feeds an item finished by an earlier run to the aggregate writers, reading its PNG
    /// (`image`: the relative image path the formats reference; `scores`: per-class scores).
    pub fn add_existing(&self, id: &str, image: &str, scores: Option<Vec<f32>>) -> Result<()> {
        if !self.has_aggregates() {
            return Ok(());
        }
        let path = self.mask_path(id);
        let map = read_mask(&path, &self.classes)
            .with_context(|| format!("cannot read the earlier mask {}", path.display()))?;
        let mut m =
            MaskSource::new(id, map.width as u32, map.height as u32, map.data)?.with_image(image);
        if let Some(s) = scores {
            m = m.with_scores(s);
        }
        self.aggregate(m)
    }

    /// Announces that item `id` produced no mask (failed), so later items are not held back.
    pub fn skip(&self, id: &str) {
        if !self.ordered {
            return;
        }
        let mut a = self.lock();
        if let Some(pos) = a.order.as_ref().and_then(|o| o.get(id).copied()) {
            a.pending.insert(pos, None);
            let _ = a.drain(None);
            drop(a);
            self.moved.notify_all();
        }
    }

    fn aggregate(&self, mask: MaskSource) -> Result<()> {
        if !self.ordered {
            return Ok(());
        }
        let mut a = self.lock();
        let pos = match &a.order {
            None => None,
            Some(o) => Some(
                *o.get(&mask.id)
                    .with_context(|| format!("{}: not among the items of this run", mask.id))?,
            ),
        };
        let result = match pos {
            None => a.write(&mask),
            Some(p) => {
                let id = mask.id.clone();
                if p < a.next || a.pending.contains_key(&p) {
                    bail!("{id}: mask added twice");
                }
                a.pending.insert(p, Some(mask));
                let r = a.drain(Some(&id));
                drop(a);
                self.moved.notify_all();
                r
            }
        };
        result.map_err(InferenceError::Invalid)
    }

    /// `true` when the PNG of `id` exists and decodes to `size` (`(width, height)`); always
    /// `false` without `voc` (see the module docs).
    pub fn is_done(&self, id: &str, size: (u32, u32)) -> bool {
        if !self.voc {
            return false;
        }
        read_mask(&self.mask_path(id), &self.classes)
            .is_ok_and(|m| (m.width as u32, m.height as u32) == size)
    }

    /// Hands any remaining buffered masks to the writers (in order, gaps skipped) and moves
    /// the aggregate files into place.
    pub fn finish(self) -> Result<Finished> {
        let mut a = self
            .aggregate
            .into_inner()
            .unwrap_or_else(|p| p.into_inner());
        let rest: Vec<MaskSource> = std::mem::take(&mut a.pending)
            .into_values()
            .flatten()
            .collect();
        for m in rest {
            if let Err(e) = a.write(&m) {
                a.failures.push(Failure {
                    id: m.id.clone(),
                    message: e,
                });
            }
        }
        let mut files = Vec::new();
        for (f, w) in &mut a.writers {
            w.finish()
                .with_context(|| format!("cannot finish the {} output", f.name()))?;
            files.push(match f {
                Format::Cvat => self.paths.file("cvat", "zip"),
                Format::Coco => self.paths.file("coco", "json"),
                Format::Labelstudio => self.paths.file("labelstudio-tasks", "json"),
                Format::Voc => unreachable!("voc has no aggregate writer"),
            });
        }
        if self.voc
            && let Some(root) = &self.paths.voc_root
        {
            let names = self.classes.names.join("\n") + "\n";
            let classes = root.join("classes.txt");
            ssc_core::atomic::write(&classes, names.as_bytes())?;
            let list = root.join("ImageSets/Segmentation/default.txt");
            let ids = a.ids.join("\n") + "\n";
            ssc_core::atomic::write(&list, ids.as_bytes())?;
            files.push(classes);
            files.push(list);
        }
        a.failures.sort_by(|x, y| x.id.cmp(&y.id));
        Ok(Finished {
            files,
            failures: a.failures,
        })
    }
}

/// Runs this shard's items (`mine`, in the order given to [`Outputs::set_order`]) on the
/// threads of `pool`, handing them out in that order so the oldest unfinished item is always
/// being worked on (which keeps [`Outputs::admit`] from waiting forever). Items in `todo` go
/// to `process` (which adds its mask) and are recorded in `tracker`; the others were finished
/// by an earlier run and go to `existing` (which feeds them back, e.g. through
/// [`Outputs::add_existing`]). A failed or panicking item is skipped in the order. Returns the
/// finished items that could not be fed back (missing from the aggregate files).
#[allow(clippy::too_many_arguments)]
pub fn run_in_order<T: Sync, E: std::fmt::Display>(
    pool: &rayon::ThreadPool,
    outputs: &Outputs,
    mine: &[&T],
    todo: &HashSet<&str>,
    id: impl Fn(&T) -> &str + Sync,
    existing: impl Fn(&T) -> Result<(), E> + Sync,
    process: impl Fn(&T) -> Result<(), E> + Sync,
    tracker: &Tracker,
) -> Vec<Failure> {
    let next = AtomicUsize::new(0);
    let late: Mutex<Vec<Failure>> = Mutex::new(Vec::new());
    pool.broadcast(|_| {
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(&item) = mine.get(i) else { break };
            let key = id(item);
            outputs.admit(key);
            let done = !todo.contains(key);
            // a panic must not leave the reorder buffer waiting for this item
            let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
                if done { existing(item) } else { process(item) }
            }))
            .map_err(|_| InferenceError::Panic(format!("on {key}")).to_string())
            .and_then(|r| r.map_err(|e| format!("{e:#}")));
            if result.is_err() {
                outputs.skip(key);
            }
            if !done {
                tracker.record(key, result);
            } else if let Err(e) = result {
                late.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(Failure {
                        id: key.to_string(),
                        message: e,
                    });
            }
        }
    });
    late.into_inner().unwrap_or_else(|p| p.into_inner())
}

/// Ends the outputs of a run: finishes the aggregate files and fails when items are missing
/// from them (`late`: finished items that could not be fed back; each is logged). Returns the
/// files written.
pub fn finish_run(outputs: Outputs, mut late: Vec<Failure>) -> Result<Vec<PathBuf>> {
    let finished = outputs.finish()?;
    late.extend(finished.failures);
    if !late.is_empty() {
        for f in &late {
            tracing::error!("not in the annotation files: {}: {}", f.id, f.message);
        }
        return Err(InferenceError::MissingFromAnnotations(late.len()));
    }
    Ok(finished.files)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ssc_core::formats::coco::{CocoReadOptions, read_coco};
    use ssc_core::formats::cvat::read_cvat;

    fn mask(id: &str, v: u8) -> MaskSource {
        let mut labels = vec![0u8; 12];
        labels[..4].fill(v);
        MaskSource::new(id, 4, 3, labels)
            .unwrap()
            .with_image(format!("{id}.jpg"))
    }

    fn args(formats: &[Format]) -> OutputOptions {
        OutputOptions::new(formats)
    }

    #[test]
    fn out_of_order_masks_reach_the_aggregates_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let classes = ClassMap::voc();
        let paths = OutputPaths {
            voc_root: Some(dir.path().to_path_buf()),
            ..OutputPaths::flat(dir.path(), Shard::ALL)
        };
        let out = Outputs::create(
            paths,
            &classes,
            &args(&[Format::Voc, Format::Cvat, Format::Coco, Format::Cvat]),
        )
        .unwrap();
        out.set_order(["a", "sub/b", "c", "d"]).unwrap();
        out.add(mask("c", 3)).unwrap();
        out.add(mask("d", 4)).unwrap();
        // the PNGs are written at once, whatever the order
        assert!(out.mask_path("c").is_file() && out.mask_path("d").is_file());
        out.skip("sub/b");
        out.add(mask("a", 1)).unwrap();
        assert!(
            out.add(mask("a", 1)).is_err(),
            "an id added twice is refused"
        );
        let done = out.finish().unwrap();
        assert!(done.failures.is_empty());
        let ids = |ms: Vec<MaskSource>| ms.into_iter().map(|m| m.id).collect::<Vec<_>>();
        let cvat = read_cvat(&dir.path().join("cvat.zip"), &classes).unwrap();
        assert_eq!(ids(cvat.clone()), ["a", "c", "d"]);
        assert_eq!(cvat[1].labels, mask("c", 3).labels);
        let coco = read_coco(
            &dir.path().join("coco.json"),
            &classes,
            CocoReadOptions::default(),
        )
        .unwrap();
        assert_eq!(coco.len(), 3);
        let list = std::fs::read_to_string(dir.path().join("ImageSets/Segmentation/default.txt"));
        assert_eq!(list.unwrap(), "a\nc\nd\n");
        assert!(dir.path().join("classes.txt").is_file());
    }

    #[test]
    fn resume_reads_earlier_masks_and_sharded_names_differ() {
        let dir = tempfile::tempdir().unwrap();
        let classes = ClassMap::voc();
        let shard = Shard::new(1, 3).unwrap();
        let first = Outputs::create(
            OutputPaths::flat(dir.path(), shard),
            &classes,
            &args(&[Format::Voc]),
        )
        .unwrap();
        first.add(mask("x/one", 5)).unwrap();
        assert!(first.is_done("x/one", (4, 3)));
        assert!(!first.is_done("x/one", (3, 4)), "a size mismatch is redone");
        assert!(!first.is_done("two", (4, 3)));
        first.finish().unwrap();

        let second = Outputs::create(
            OutputPaths::flat(dir.path(), shard),
            &classes,
            &args(&[Format::Voc, Format::Labelstudio, Format::Cvat]),
        )
        .unwrap()
        .with_window(1);
        second.set_order(["two", "x/one"]).unwrap();
        second.add_existing("x/one", "x/one.jpg", None).unwrap();
        second.admit("two");
        second.add(mask("two", 2)).unwrap();
        second.finish().unwrap();
        let cvat = read_cvat(&dir.path().join("cvat.1-of-3.zip"), &classes).unwrap();
        assert_eq!(cvat.len(), 2);
        assert_eq!((cvat[0].id.as_str(), cvat[1].id.as_str()), ("two", "x/one"));
        assert_eq!(cvat[1].labels, mask("x/one", 5).labels);
        assert!(dir.path().join("labelstudio-tasks.1-of-3.json").is_file());
        assert!(dir.path().join("labelstudio-config.xml").is_file());
    }

    #[test]
    fn without_voc_nothing_is_done_and_bad_masks_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let out = Outputs::create(
            OutputPaths::flat(dir.path(), Shard::ALL),
            &ClassMap::voc(),
            &args(&[Format::Coco]),
        )
        .unwrap();
        assert!(!out.writes_masks());
        out.add(mask("a", 30)).unwrap_err();
        out.add(mask("a", 2)).unwrap();
        assert!(!out.is_done("a", (4, 3)));
        assert!(!out.mask_path("a").exists());
        out.finish().unwrap();
        assert!(dir.path().join("coco.json").is_file());
    }
}
