//! Datasets (§1.1, §1.3, §1.4) on small layouts built in temp folders, the real VOC samples,
//! and the `.npy`/pickle reader on files written by numpy (core/tests/data/make_npy.py).

use std::fs;
use std::path::{Path, PathBuf};

use ssc_core::classes::ClassMap;
use ssc_core::dataset::labels::read_label_table;
use ssc_core::dataset::{
    CocoOptions, DatasetKind, DatasetSpec, GtSource, LabelSource, VocOptions, coco, folder,
    load_class_map, open, voc,
};
use ssc_core::mask::{LabelMap, write_grey_png, write_palette_png};
use ssc_core::npy::{self, NpyData};
use ssc_core::pickle::PyValue;

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

/// Multi-hot of length `k` with the given 0-based foreground indices.
fn hot(k: usize, on: &[usize]) -> Vec<u8> {
    let mut v = vec![0; k];
    for &i in on {
        v[i] = 1;
    }
    v
}

fn touch(p: &Path) {
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, b"not decoded by dataset constructors").unwrap();
}

/// The ids in the committed cls_labels files and their VOC foreground indices (0-based).
const CLS: [(&str, &[usize]); 3] = [
    ("2007_000032", &[0, 14]),
    ("2007_000039", &[19]),
    ("2011_003276", &[4, 8, 17]),
];

#[test]
fn cls_labels_npy_from_numpy_all_protocols() {
    let voc = ClassMap::voc();
    for f in ["cls_labels.npy", "cls_labels_p2.npy", "cls_labels_p4.npy"] {
        let t = read_label_table(&data(f), &voc).unwrap();
        assert_eq!(t.entries.len(), 3, "{f}");
        for (e, (id, on)) in t.entries.iter().zip(CLS) {
            assert_eq!(e.key, id, "{f}");
            assert_eq!(e.labels, hot(20, on), "{f} {id}");
        }
    }
    // The raw object array: a 0-d array holding a dict with integer keys.
    let a = npy::read(&data("cls_labels.npy")).unwrap();
    assert!(a.shape.is_empty());
    let NpyData::Object(v) = &a.data else {
        panic!("expected an object array")
    };
    let PyValue::Dict(d) = &v[0] else {
        panic!("expected a dict")
    };
    assert_eq!(d[0].0, PyValue::Int(2007000032));
    // A table for 20 classes does not fit an 80-class map: clear error naming the file.
    let err = read_label_table(&data("cls_labels.npy"), &ClassMap::coco())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("cls_labels.npy") && err.contains("80"),
        "{err}"
    );
}

#[test]
fn plain_npy_arrays() {
    let a = npy::read(&data("train_labels.npy")).unwrap();
    assert_eq!(a.shape, vec![3, 80]);
    let v = a.to_f32().unwrap();
    assert_eq!(v[0], 1.0);
    assert_eq!(v[79], 1.0);
    assert_eq!(v[80 + 5], 1.0);
    assert_eq!(v.iter().sum::<f32>(), 6.0);
    let f = npy::read(&data("labels_f64_fortran.npy")).unwrap();
    assert_eq!(f.shape, vec![2, 3]);
    assert_eq!(f.data, NpyData::F64(vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0]));
    let b = npy::read(&data("labels_be_i2.npy")).unwrap();
    assert_eq!(b.data, NpyData::Int(vec![1, -2, 300, 0]));
    // Truncated data and garbage are errors naming the file.
    let dir = tempfile::tempdir().unwrap();
    let bytes = fs::read(data("train_labels.npy")).unwrap();
    let p = dir.path().join("cut.npy");
    fs::write(&p, &bytes[..bytes.len() - 10]).unwrap();
    let err = npy::read(&p).unwrap_err().to_string();
    assert!(
        err.contains("cut.npy") && err.contains("truncated"),
        "{err}"
    );
    let p = dir.path().join("cut_pickle.npy");
    let bytes = fs::read(data("cls_labels.npy")).unwrap();
    fs::write(&p, &bytes[..bytes.len() - 40]).unwrap();
    assert!(
        npy::read(&p)
            .unwrap_err()
            .to_string()
            .contains("cut_pickle.npy")
    );
    let p = dir.path().join("junk.npy");
    fs::write(&p, b"hello world, not numpy").unwrap();
    assert!(npy::read(&p).unwrap_err().to_string().contains("junk.npy"));
}

/// A VOC devkit with 3 ids: `a` has both GT kinds, `b` only SegmentationClass, `c` none.
fn voc_layout(root: &Path) {
    let voc = ClassMap::voc();
    for id in ["2007_000032", "2007_000039", "2011_003276"] {
        touch(&root.join(format!("JPEGImages/{id}.jpg")));
    }
    // Palette GT: person (15) + aeroplane (1); the aug GT of the same id differs (dog, 12),
    // which proves which folder was chosen.
    let pal = LabelMap::new(2, 2, vec![0, 1, 15, 255]).unwrap();
    write_palette_png(&root.join("SegmentationClass/2007_000032.png"), &pal, &voc).unwrap();
    let aug = LabelMap::new(2, 2, vec![0, 12, 12, 255]).unwrap();
    write_grey_png(&root.join("SegmentationClassAug/2007_000032.png"), &aug).unwrap();
    let b = LabelMap::new(2, 1, vec![20, 0]).unwrap();
    write_palette_png(&root.join("SegmentationClass/2007_000039.png"), &b, &voc).unwrap();
    let lists = root.join("ImageSets/Segmentation");
    fs::create_dir_all(&lists).unwrap();
    fs::write(lists.join("val.txt"), "2007_000032\n2007_000039\n").unwrap();
    fs::write(
        lists.join("trainaug.txt"),
        "# comment\n2007000032\n\n/JPEGImages/2007_000039.jpg /SegmentationClassAug/2007_000039.png\n2011_003276\n",
    )
    .unwrap();
}

#[test]
fn voc_layout_gt_choice_and_labels() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    voc_layout(root);
    // val: every id has GT → auto labels derived from the masks, aug preferred over class.
    let ds = voc(root, "val", &VocOptions::default()).unwrap();
    assert_eq!(ds.name, "voc:val");
    assert_eq!(ds.len(), 2);
    let a = &ds.items[0];
    assert_eq!(a.id, "2007_000032");
    assert!(
        a.gt.as_ref()
            .unwrap()
            .ends_with("SegmentationClassAug/2007_000032.png")
    );
    assert_eq!(a.labels.as_deref(), Some(&hot(20, &[11])[..]));
    assert_eq!(a.label_classes(), vec![12]);
    assert!(
        ds.items[1]
            .gt
            .as_ref()
            .unwrap()
            .ends_with("SegmentationClass/2007_000039.png")
    );
    assert_eq!(ds.items[1].labels.as_deref(), Some(&hot(20, &[19])[..]));
    // Forcing SegmentationClass reads the palette indices.
    let opts = VocOptions {
        gt: GtSource::Class,
        labels: LabelSource::FromGt,
        list: None,
    };
    let ds = voc(root, "val", &opts).unwrap();
    assert_eq!(ds.items[0].labels.as_deref(), Some(&hot(20, &[0, 14])[..]));

    // train_aug is found as trainaug.txt; integer and path-style lines give plain ids. One id
    // has no GT, so auto labels are absent…
    let ds = voc(root, "train_aug", &VocOptions::default()).unwrap();
    let ids: Vec<&str> = ds.items.iter().map(|i| i.id.as_str()).collect();
    assert_eq!(ids, ["2007_000032", "2007_000039", "2011_003276"]);
    assert!(ds.items[2].gt.is_none());
    assert!(!ds.fully_labelled());
    // …until cls_labels.npy is in the root, which then wins.
    fs::copy(data("cls_labels.npy"), root.join("cls_labels.npy")).unwrap();
    let ds = voc(root, "trainaug", &VocOptions::default()).unwrap();
    assert!(ds.fully_labelled());
    for (it, (id, on)) in ds.items.iter().zip(CLS) {
        assert_eq!(
            (it.id.as_str(), it.labels.clone().unwrap()),
            (id, hot(20, on))
        );
    }
    // Requiring aug GT fails on the id that lacks it, naming list file, line and mask.
    let opts = VocOptions {
        gt: GtSource::Aug,
        ..Default::default()
    };
    let err = voc(root, "train_aug", &opts).unwrap_err().to_string();
    assert!(
        err.contains("trainaug.txt") && err.contains("line 4") && err.contains("2007_000039.png"),
        "{err}"
    );
}

#[test]
fn voc_label_tables_json_and_csv() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    voc_layout(root);
    let json = root.join("labels.json");
    let mut vec20 = vec![0; 20];
    vec20[3] = 1;
    fs::write(
        &json,
        serde_json::json!({"2007_000032": ["dog", "sofa"], "2007_000039.jpg": vec20}).to_string(),
    )
    .unwrap();
    let opts = VocOptions {
        labels: LabelSource::File(json.clone()),
        ..Default::default()
    };
    let ds = voc(root, "val", &opts).unwrap();
    assert_eq!(ds.items[0].label_classes(), vec![12, 18]);
    assert_eq!(ds.items[1].label_classes(), vec![4]);
    let csv = root.join("labels.csv");
    fs::write(
        &csv,
        "id,classes\n2007_000032,person;cat\n2007_000039,bus car\n",
    )
    .unwrap();
    let opts = VocOptions {
        labels: LabelSource::File(csv.clone()),
        ..Default::default()
    };
    let ds = voc(root, "val", &opts).unwrap();
    assert_eq!(ds.items[0].label_classes(), vec![8, 15]);
    assert_eq!(ds.items[1].label_classes(), vec![6, 7]);
    // An id of the split without labels is an error naming the table and the id.
    fs::write(&csv, "2007_000032,person\n").unwrap();
    let err = voc(root, "val", &opts).unwrap_err().to_string();
    assert!(
        err.contains("labels.csv") && err.contains("2007_000039"),
        "{err}"
    );
    // 0/1 vector rows of the wrong length: error with the line.
    fs::write(&csv, "2007_000032,1,0,1\n").unwrap();
    let err = voc(root, "val", &opts).unwrap_err().to_string();
    assert!(
        err.contains("labels.csv") && err.contains("line 1"),
        "{err}"
    );
}

#[test]
fn voc_list_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    voc_layout(root);
    let err = voc(root, "test", &VocOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("test.txt"), "{err}");
    let lists = root.join("ImageSets/Segmentation");
    fs::write(lists.join("bad.txt"), "2007_000032\nsome thing else here\n").unwrap();
    let err = voc(root, "bad", &VocOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("bad.txt") && err.contains("line 2"), "{err}");
    fs::write(lists.join("miss.txt"), "2007_000032\n2099_000001\n").unwrap();
    let err = voc(root, "miss", &VocOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("miss.txt") && err.contains("line 2") && err.contains("2099_000001.jpg"),
        "{err}"
    );
    fs::write(lists.join("dup.txt"), "2007_000032\n2007000032\n").unwrap();
    let err = voc(root, "dup", &VocOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("dup.txt") && err.contains("duplicate"),
        "{err}"
    );
}

#[test]
fn real_voc_samples_as_a_dataset() {
    let Some(root) = ssc_core::fixtures::voc_samples(env!("CARGO_MANIFEST_DIR")) else {
        return;
    };
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(root.join("index.json")).unwrap()).unwrap();
    let pairs = index["pairs"].as_array().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("list.txt");
    let ids: Vec<&str> = pairs.iter().map(|p| p["id"].as_str().unwrap()).collect();
    fs::write(&list, ids.join("\n")).unwrap();
    let opts = VocOptions {
        list: Some(list),
        ..Default::default()
    };
    let ds = voc(&root, "samples", &opts).unwrap();
    assert_eq!(ds.len(), pairs.len());
    for (it, p) in ds.items.iter().zip(pairs) {
        assert!(
            it.gt
                .as_ref()
                .unwrap()
                .ends_with(format!("SegmentationClass/{}.png", it.id))
        );
        let want: Vec<usize> = p["classes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .filter(|&c| c != 0 && c != 255)
            .collect();
        assert_eq!(it.label_classes(), want, "{}", it.id);
    }
}

/// COCO layout with ids 42, 9 and 100 (out of lexical order on purpose).
fn coco_layout(root: &Path, masks: bool) {
    for n in [42u64, 9, 100] {
        touch(&root.join(format!("train2014/COCO_train2014_{n:012}.jpg")));
        if masks {
            let v = (n % 80) as u8 + 1;
            let m = LabelMap::new(2, 1, vec![0, v]).unwrap();
            write_grey_png(&root.join(format!("mask/train2014/{n}.png")), &m).unwrap();
        }
    }
    touch(&root.join("train2014/readme.txt"));
}

#[test]
fn coco_layout_ids_masks_and_labels() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    coco_layout(root, true);
    let ds = coco(root, "train", &CocoOptions::default()).unwrap();
    assert_eq!(ds.classes.len(), 81);
    let ids: Vec<&str> = ds.items.iter().map(|i| i.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "COCO_train2014_000000000009",
            "COCO_train2014_000000000042",
            "COCO_train2014_000000000100"
        ]
    );
    assert!(
        ds.items[1]
            .gt
            .as_ref()
            .unwrap()
            .ends_with("mask/train2014/42.png")
    );
    // Derived from masks: id 42 → class 43.
    assert_eq!(ds.items[1].label_classes(), vec![43]);
    // train_labels.npy in the root wins and is aligned with the sorted ids.
    fs::copy(data("train_labels.npy"), root.join("train_labels.npy")).unwrap();
    let ds = coco(root, "train2014", &CocoOptions::default()).unwrap();
    assert_eq!(ds.items[0].label_classes(), vec![1, 80]);
    assert_eq!(ds.items[1].label_classes(), vec![6]);
    assert_eq!(ds.items[2].label_classes(), vec![11, 12, 13]);
    // A list restricts and orders the items (integer ids or stems).
    let list = root.join("some.txt");
    fs::write(&list, "100\nCOCO_train2014_000000000009\n").unwrap();
    let opts = CocoOptions {
        list: Some(list.clone()),
        ..Default::default()
    };
    let ds = coco(root, "train", &opts).unwrap();
    assert_eq!(ds.len(), 2);
    assert_eq!(ds.items[0].label_classes(), vec![11, 12, 13]);
    fs::write(&list, "7\n").unwrap();
    let err = coco(root, "train", &opts).unwrap_err().to_string();
    assert!(err.contains("some.txt") && err.contains("line 1"), "{err}");
}

#[test]
fn coco_label_row_count_mismatch_and_no_masks() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    coco_layout(root, false);
    let ds = coco(root, "train", &CocoOptions::default()).unwrap();
    assert!(
        ds.items
            .iter()
            .all(|i| i.gt.is_none() && i.labels.is_none())
    );
    touch(&root.join("train2014/COCO_train2014_000000000777.jpg"));
    let opts = CocoOptions {
        labels: LabelSource::File(data("train_labels.npy")),
        ..Default::default()
    };
    let err = coco(root, "train", &opts).unwrap_err().to_string();
    assert!(
        err.contains("train_labels.npy") && err.contains("3 label rows"),
        "{err}"
    );
    // A keyed table matches by integer id, whatever the key spelling.
    let json = root.join("coco_labels.json");
    fs::write(
        &json,
        r#"{"42": ["dog"], "COCO_train2014_000000000009.jpg": ["cat", "tv"], "100": [], "777": []}"#,
    )
    .unwrap();
    let opts = CocoOptions {
        labels: LabelSource::File(json),
        ..Default::default()
    };
    let ds = coco(root, "train", &opts).unwrap();
    let got: Vec<Vec<usize>> = ds.items.iter().map(|i| i.label_classes()).collect();
    assert_eq!(got, vec![vec![16, 63], vec![17], vec![], vec![]]); // cat 16, tv 63, dog 17
    let err = coco(root, "val", &CocoOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("val2014"), "{err}");
}

fn folder_layout(root: &Path) {
    for rel in [
        "b/x.JPG",
        "a/deep/z.png",
        "top.webp",
        ".hidden.jpg",
        ".cache/q.jpg",
        "notes.txt",
    ] {
        touch(&root.join(rel));
    }
}

#[test]
fn folder_recursive_sorted_with_csv_and_json_labels() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("imgs");
    folder_layout(&root);
    let ds = folder(&root, None, ClassMap::coco()).unwrap();
    let ids: Vec<&str> = ds.items.iter().map(|i| i.id.as_str()).collect();
    assert_eq!(ids, ["a/deep/z", "b/x", "top"]);
    assert!(ds.items[1].image.ends_with("b/x.JPG"));

    let csv = dir.path().join("labels.csv");
    fs::write(
        &csv,
        "image,classes\nb/x.JPG,dog;traffic light\n\"a/deep/z.png\",person cat\ntop,\n",
    )
    .unwrap();
    let ds = folder(&root, Some(&csv), ClassMap::coco()).unwrap();
    assert_eq!(ds.items[0].label_classes(), vec![1, 16]);
    assert_eq!(ds.items[1].label_classes(), vec![10, 17]);
    assert_eq!(ds.items[2].labels.as_deref(), Some(&vec![0u8; 80][..]));

    let json = dir.path().join("labels.json");
    fs::write(
        &json,
        r#"{"b/x.JPG": ["toothbrush"], "top.webp": ["background"]}"#,
    )
    .unwrap();
    let ds = folder(&root, Some(&json), ClassMap::coco()).unwrap();
    assert!(ds.items[0].labels.is_none());
    assert_eq!(ds.items[1].label_classes(), vec![80]);
    assert!(ds.items[2].label_classes().is_empty());
}

#[test]
fn folder_label_errors_name_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("imgs");
    folder_layout(&root);
    let csv = dir.path().join("bad.csv");
    fs::write(&csv, "b/x.JPG,dog\ntop.webp,unicorn\n").unwrap();
    let err = folder(&root, Some(&csv), ClassMap::voc())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("bad.csv") && err.contains("line 2") && err.contains("unicorn"),
        "{err}"
    );
    fs::write(&csv, "b/x.JPG,dog\n\nmissing/img.jpg,cat\n").unwrap();
    let err = folder(&root, Some(&csv), ClassMap::voc())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("bad.csv") && err.contains("line 3") && err.contains("missing/img.jpg"),
        "{err}"
    );
    let json = dir.path().join("bad.json");
    fs::write(&json, r#"{"gone.png": ["dog"]}"#).unwrap();
    let err = folder(&root, Some(&json), ClassMap::voc())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("bad.json") && err.contains("gone.png"),
        "{err}"
    );
    fs::write(&json, "[1,2").unwrap();
    assert!(
        folder(&root, Some(&json), ClassMap::voc())
            .unwrap_err()
            .to_string()
            .contains("bad.json")
    );
    // Two images with one id would overwrite each other's outputs.
    touch(&root.join("b/x.png"));
    let err = folder(&root, None, ClassMap::voc())
        .unwrap_err()
        .to_string();
    assert!(err.contains("b/x"), "{err}");
    let err = folder(&dir.path().join("nope"), None, ClassMap::voc())
        .unwrap_err()
        .to_string();
    assert!(err.contains("nope"), "{err}");
}

#[test]
fn class_lists_and_spec_entry_point() {
    let dir = tempfile::tempdir().unwrap();
    let txt = dir.path().join("classes.txt");
    fs::write(&txt, "# my classes\ncat\n\ndog\n").unwrap();
    let m = load_class_map(&txt).unwrap();
    assert_eq!(m.names, ["background", "cat", "dog"]);
    let js = dir.path().join("classes.json");
    fs::write(&js, r#"["background", "a", "b", "c"]"#).unwrap();
    assert_eq!(load_class_map(&js).unwrap().len(), 4);
    fs::write(&js, r#"["a", "A"]"#).unwrap();
    let err = load_class_map(&js).unwrap_err().to_string();
    assert!(
        err.contains("classes.json") && err.contains("duplicate"),
        "{err}"
    );

    let root = dir.path().join("imgs");
    folder_layout(&root);
    let csv = dir.path().join("l.csv");
    fs::write(&csv, "top.webp,dog\n").unwrap();
    let kind: DatasetKind = "Folder".parse().unwrap();
    let mut spec = DatasetSpec::new(kind, &root, None);
    spec.labels = Some(csv);
    spec.classes = Some(txt.to_string_lossy().into_owned());
    let ds = spec.open().unwrap();
    assert_eq!(ds.classes.len(), 3);
    assert_eq!(ds.get("top").unwrap().label_classes(), vec![2]);
    // The spec survives a JSON round trip (it is written beside artifacts).
    let back: DatasetSpec = serde_json::from_str(&serde_json::to_string(&spec).unwrap()).unwrap();
    assert_eq!(back, spec);
    assert!("imagenet".parse::<DatasetKind>().is_err());

    let voc_root = dir.path().join("voc");
    voc_layout(&voc_root);
    let ds = open(DatasetKind::Voc, &voc_root, "val").unwrap();
    assert_eq!(ds.len(), 2);
    let err = DatasetSpec::new(DatasetKind::Voc, &voc_root, None)
        .open()
        .unwrap_err()
        .to_string();
    assert!(err.contains("split"), "{err}");
}
