//! Round trips of the annotation writers and readers (CVAT zip, COCO JSON, Label Studio tasks)
//! on synthetic label maps with several classes, ignore pixels and multiple instances, plus
//! well-formedness of the JSON and XML they write.

use std::collections::HashSet;
use std::io::Read;
use std::path::Path;

use ssc_core::classes::{ClassMap, IGNORE, IGNORE_COLOR, voc_color};
use ssc_core::formats::coco::{
    CategoryIds, CocoMode, CocoOptions, CocoOutput, CocoReadOptions, CocoWriter, read_coco,
};
use ssc_core::formats::cvat::{CvatOptions, CvatWriter, IgnoreAs, read_cvat};
use ssc_core::formats::labelstudio::{
    LabelStudioOptions, LabelStudioWriter, labeling_config, read_tasks,
};
use ssc_core::formats::{MaskSource, MaskWriter};

const W: u32 = 40;
const H: u32 = 30;

fn rect(l: &mut [u8], x0: u32, y0: u32, x1: u32, y1: u32, v: u8) {
    for y in y0..y1 {
        for x in x0..x1 {
            l[(y * W + x) as usize] = v;
        }
    }
}

/// Image "a": two separate dogs (12), a person (15) touching one dog, an aeroplane (1)
/// made of two diagonal-touching squares, an ignore border line. Image "b": only background
/// and ignore. Image "c": one cat (8) covering a corner.
fn samples() -> Vec<MaskSource> {
    let mut a = vec![0u8; (W * H) as usize];
    rect(&mut a, 2, 2, 10, 8, 12);
    rect(&mut a, 20, 3, 26, 12, 12);
    rect(&mut a, 26, 5, 32, 20, 15);
    rect(&mut a, 3, 20, 6, 23, 1);
    rect(&mut a, 6, 23, 9, 26, 1);
    rect(&mut a, 0, 29, 40, 30, IGNORE);
    let mut b = vec![0u8; (W * H) as usize];
    rect(&mut b, 10, 10, 20, 20, IGNORE);
    let mut c = vec![0u8; (W * H) as usize];
    rect(&mut c, 30, 20, 40, 30, 8);
    let mut scores = vec![0.0f32; 21];
    scores[1] = 0.5;
    scores[12] = 0.9;
    scores[15] = 0.7;
    vec![
        MaskSource::new("a", W, H, a).unwrap().with_scores(scores),
        MaskSource::new("b", W, H, b)
            .unwrap()
            .with_image("sub/b.png"),
        MaskSource::new("c", W, H, c).unwrap(),
    ]
}

fn without_ignore(m: &MaskSource) -> Vec<u8> {
    m.labels
        .iter()
        .map(|&v| if v == IGNORE { 0 } else { v })
        .collect()
}

fn write_all(w: &mut dyn MaskWriter, masks: &[MaskSource]) {
    for m in masks {
        w.add(m).unwrap();
    }
    w.finish().unwrap();
}

fn zip_entry(path: &Path, name: &str) -> Vec<u8> {
    let mut z = zip::ZipArchive::new(std::fs::File::open(path).unwrap()).unwrap();
    let mut buf = Vec::new();
    z.by_name(name).unwrap().read_to_end(&mut buf).unwrap();
    buf
}

fn distinct_colors(png: &[u8]) -> HashSet<[u8; 3]> {
    let img = image::load_from_memory(png).unwrap().to_rgb8();
    img.pixels().map(|p| p.0).collect()
}

#[test]
fn cvat_zip_round_trip_keeps_ignore_as_label() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out/cvat.zip");
    let voc = ClassMap::voc();
    let masks = samples();
    let opts = CvatOptions {
        ignore: IgnoreAs::Label,
        ..Default::default()
    };
    write_all(&mut CvatWriter::begin(&path, &voc, opts).unwrap(), &masks);
    assert_eq!(
        std::fs::read_dir(path.parent().unwrap()).unwrap().count(),
        1
    );

    let back = read_cvat(&path, &voc).unwrap();
    assert_eq!(back.len(), 3);
    for (m, r) in masks.iter().zip(&back) {
        assert_eq!((r.id.as_str(), r.width, r.height), (m.id.as_str(), W, H));
        assert_eq!(r.labels, m.labels, "{}", m.id);
    }

    let labelmap = String::from_utf8(zip_entry(&path, "labelmap.txt")).unwrap();
    let lines: Vec<&str> = labelmap.lines().collect();
    assert_eq!(lines[0], "# label:color_rgb:parts:actions");
    assert_eq!(lines[1], "background:0,0,0::");
    assert_eq!(lines[13], "dog:64,0,128::");
    assert_eq!(lines[22], "ignore:224,224,192::");
    assert_eq!(lines.len(), 23);
    let ids = String::from_utf8(zip_entry(&path, "ImageSets/Segmentation/default.txt")).unwrap();
    assert_eq!(ids, "a\nb\nc\n");

    // every class-mask colour is declared
    let declared: HashSet<[u8; 3]> = voc.colors.iter().copied().chain([IGNORE_COLOR]).collect();
    let class_colors = distinct_colors(&zip_entry(&path, "SegmentationClass/a.png"));
    assert!(class_colors.is_subset(&declared), "{class_colors:?}");
    assert_eq!(
        class_colors.len(),
        5,
        "background, dog, person, aeroplane, ignore"
    );

    // 8-connectivity: 2 dogs + 1 person + 1 aeroplane (diagonal squares join) = 4 instances
    let obj = distinct_colors(&zip_entry(&path, "SegmentationObject/a.png"));
    let want: HashSet<[u8; 3]> = (0..=4).map(voc_color).collect();
    assert_eq!(obj, want);
    let obj_b = distinct_colors(&zip_entry(&path, "SegmentationObject/b.png"));
    assert_eq!(obj_b, HashSet::from([[0, 0, 0]]));
}

#[test]
fn cvat_ignore_as_background_and_four_connectivity() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cvat.zip");
    let voc = ClassMap::voc();
    let masks = samples();
    let opts = CvatOptions {
        connectivity: ssc_core::formats::components::Connectivity::Four,
        ..Default::default()
    };
    write_all(&mut CvatWriter::begin(&path, &voc, opts).unwrap(), &masks);
    let back = read_cvat(&path, &voc).unwrap();
    for (m, r) in masks.iter().zip(&back) {
        assert_eq!(r.labels, without_ignore(m), "{}", m.id);
    }
    let labelmap = String::from_utf8(zip_entry(&path, "labelmap.txt")).unwrap();
    assert!(!labelmap.contains("ignore"));
    let obj = distinct_colors(&zip_entry(&path, "SegmentationObject/a.png"));
    assert_eq!(
        obj.len(),
        6,
        "background + 5 instances (aeroplane splits in two)"
    );
}

#[test]
fn cvat_writer_errors_and_abandon() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cvat.zip");
    let voc = ClassMap::voc();
    let mut w = CvatWriter::begin(&path, &voc, CvatOptions::default()).unwrap();
    let bad = MaskSource::new("bad", 2, 1, vec![0, 30]).unwrap();
    assert!(w.add(&bad).unwrap_err().to_string().contains("bad"));
    let m = &samples()[0];
    w.add(m).unwrap();
    assert!(w.add(m).is_err(), "duplicate id");
    drop(w);
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "an abandoned writer leaves nothing"
    );
    let e = read_cvat(&path, &voc).unwrap_err().to_string();
    assert!(e.contains("cvat.zip"), "{e}");
}

#[test]
fn cvat_keeps_the_largest_254_instances() {
    // 300 isolated pixels (no two touch, even diagonally) plus one 3x3 block
    let (w, h) = (40u32, 32u32);
    let mut l = vec![0u8; (w * h) as usize];
    for y in (0..30).step_by(2) {
        for x in (0..40).step_by(2) {
            l[(y * w + x) as usize] = 12;
        }
    }
    for y in 29..32 {
        for x in 0..3 {
            l[(y * w + x) as usize] = 15;
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("many.zip");
    let voc = ClassMap::voc();
    let m = MaskSource::new("many", w, h, l.clone()).unwrap();
    write_all(
        &mut CvatWriter::begin(&path, &voc, CvatOptions::default()).unwrap(),
        &[m],
    );
    let obj = zip_entry(&path, "SegmentationObject/many.png");
    let img = image::load_from_memory(&obj).unwrap().to_rgb8();
    let colors: HashSet<[u8; 3]> = img.pixels().map(|p| p.0).collect();
    assert_eq!(colors.len(), 255, "black + 254 instance colours");
    // the 9-pixel person block is the largest instance, so it is kept
    assert_ne!(img.get_pixel(1, 30).0, [0, 0, 0]);
    // the class mask is complete regardless
    assert_eq!(read_cvat(&path, &voc).unwrap()[0].labels, l);
}

fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn coco_per_class_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("coco.json");
    let voc = ClassMap::voc();
    let masks = samples();
    write_all(
        &mut CocoWriter::begin(&path, &voc, CocoOptions::default()).unwrap(),
        &masks,
    );
    let doc = read_json(&path);
    assert_eq!(doc["categories"].as_array().unwrap().len(), 20);
    assert_eq!(
        doc["categories"][11],
        serde_json::json!({"id": 12, "name": "dog"})
    );
    let images = doc["images"].as_array().unwrap();
    assert_eq!(images[1]["file_name"], "sub/b.png");
    assert_eq!(
        (images[2]["id"].as_u64(), images[2]["width"].as_u64()),
        (Some(3), Some(40))
    );
    let anns = doc["annotations"].as_array().unwrap();
    assert_eq!(anns.len(), 4, "a: aeroplane, dog, person; c: cat");
    let dog = &anns[1];
    assert_eq!(
        (dog["category_id"].as_u64(), dog["iscrowd"].as_u64()),
        (Some(12), Some(1))
    );
    assert_eq!(dog["area"].as_u64(), Some(8 * 6 + 6 * 9));
    assert_eq!(dog["bbox"], serde_json::json!([2.0, 2.0, 24.0, 10.0]));
    assert_eq!(dog["segmentation"]["size"], serde_json::json!([30, 40]));

    let back = read_coco(&path, &voc, CocoReadOptions::default()).unwrap();
    assert_eq!(back.len(), 3);
    for (m, r) in masks.iter().zip(&back) {
        assert_eq!((&r.id, &r.image), (&m.id, &m.image));
        assert_eq!(r.labels, without_ignore(m), "{}", m.id);
    }
    // §1.4 ground-truth reading skips crowd annotations: everything is per-class crowd here
    let gt = read_coco(
        &path,
        &voc,
        CocoReadOptions {
            include_crowd: false,
        },
    )
    .unwrap();
    assert!(gt.iter().all(|m| m.labels.iter().all(|&v| v == 0)));
}

#[test]
fn coco_per_instance_and_results() {
    let dir = tempfile::tempdir().unwrap();
    let voc = ClassMap::voc();
    let masks = samples();
    let path = dir.path().join("inst.json");
    let opts = CocoOptions {
        mode: CocoMode::PerInstance,
        ..Default::default()
    };
    write_all(&mut CocoWriter::begin(&path, &voc, opts).unwrap(), &masks);
    let doc = read_json(&path);
    let anns = doc["annotations"].as_array().unwrap();
    assert_eq!(anns.len(), 5, "a: 1 aeroplane, 2 dogs, 1 person; c: 1 cat");
    assert!(anns.iter().all(|a| a["iscrowd"] == 0));
    let ids: HashSet<u64> = anns.iter().map(|a| a["id"].as_u64().unwrap()).collect();
    assert_eq!(ids.len(), 5);
    let back = read_coco(
        &path,
        &voc,
        CocoReadOptions {
            include_crowd: false,
        },
    )
    .unwrap();
    for (m, r) in masks.iter().zip(&back) {
        assert_eq!(r.labels, without_ignore(m), "{}", m.id);
    }

    let path = dir.path().join("results.json");
    let opts = CocoOptions {
        output: CocoOutput::Results,
        ..Default::default()
    };
    write_all(&mut CocoWriter::begin(&path, &voc, opts).unwrap(), &masks);
    let res = read_json(&path);
    let res = res.as_array().unwrap();
    assert_eq!(res.len(), 4);
    let keys: Vec<&String> = res[1].as_object().unwrap().keys().collect();
    assert_eq!(keys, ["category_id", "image_id", "score", "segmentation"]);
    assert_eq!(res[1]["category_id"], 12);
    assert!((res[1]["score"].as_f64().unwrap() - 0.9).abs() < 1e-6);
    assert_eq!(res[3]["score"], 1.0, "no scores given");
}

#[test]
fn coco_category_ids_and_overwrite_order() {
    let dir = tempfile::tempdir().unwrap();
    let coco = ClassMap::coco();
    let mut l = vec![0u8; 12];
    l[3] = 80; // toothbrush, COCO id 90
    l[4] = 12; // stop sign, COCO id 13
    let m = MaskSource::new("42", 4, 3, l.clone()).unwrap();
    let path = dir.path().join("coco_ids.json");
    let opts = CocoOptions {
        category_ids: CategoryIds::Coco,
        numeric_image_ids: true,
        ..Default::default()
    };
    write_all(&mut CocoWriter::begin(&path, &coco, opts).unwrap(), &[m]);
    let doc = read_json(&path);
    assert_eq!(doc["images"][0]["id"], 42);
    assert_eq!(
        doc["categories"][79],
        serde_json::json!({"id": 90, "name": "toothbrush"})
    );
    let cats: Vec<u64> = doc["annotations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["category_id"].as_u64().unwrap())
        .collect();
    assert_eq!(cats, [13, 90]);
    assert_eq!(
        read_coco(&path, &coco, CocoReadOptions::default()).unwrap()[0].labels,
        l
    );
    assert!(CocoWriter::begin(&path, &ClassMap::voc(), opts).is_err());

    // later annotations overwrite earlier ones (§1.4); uncompressed counts are accepted
    let doc = serde_json::json!({
        "images": [{"id": 7, "file_name": "x.jpg", "width": 2, "height": 2}],
        "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}],
        "annotations": [
            {"image_id": 7, "category_id": 1, "iscrowd": 0, "segmentation": {"size": [2, 2], "counts": [0, 4]}},
            {"image_id": 7, "category_id": 2, "iscrowd": 0, "segmentation": {"size": [2, 2], "counts": "112"}},
        ],
    });
    let p = dir.path().join("hand.json");
    std::fs::write(&p, doc.to_string()).unwrap();
    // column-major runs [1 zero, 1 one, 2 zeros]: pixel (y=1, x=0) is the dog
    let r = &read_coco(&p, &ClassMap::voc(), CocoReadOptions::default()).unwrap()[0];
    assert_eq!(
        (r.id.as_str(), r.labels.as_slice()),
        ("x", &[8, 8, 12, 8][..])
    );

    let poly = serde_json::json!({
        "images": [{"id": 7, "file_name": "x.jpg", "width": 2, "height": 2}],
        "categories": [{"id": 1, "name": "cat"}],
        "annotations": [{"id": 5, "image_id": 7, "category_id": 1, "segmentation": [[0, 0, 1, 0, 1, 1]]}],
    });
    std::fs::write(&p, poly.to_string()).unwrap();
    let e = read_coco(&p, &ClassMap::voc(), CocoReadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("hand.json") && e.contains("annotation 5") && e.contains("polygon"),
        "{e}"
    );
}

#[test]
fn label_studio_tasks_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tasks.json");
    let voc = ClassMap::voc();
    let masks = samples();
    let opts = LabelStudioOptions::default();
    write_all(
        &mut LabelStudioWriter::begin(&path, &voc, opts.clone()).unwrap(),
        &masks,
    );
    let doc = read_json(&path);
    let tasks = doc.as_array().unwrap();
    assert_eq!(tasks.len(), 3);
    assert_eq!(tasks[0]["data"]["image"], "/data/local-files/?d=a.jpg");
    assert_eq!(tasks[1]["data"]["image"], "/data/local-files/?d=sub/b.png");
    let pred = &tasks[0]["predictions"][0];
    assert_eq!(pred["model_version"], "ssc");
    assert!((pred["score"].as_f64().unwrap() - (0.5 + 0.9 + 0.7) / 3.0).abs() < 1e-6);
    let results = pred["result"].as_array().unwrap();
    assert_eq!(results.len(), 3);
    let r = &results[1];
    assert_eq!(
        (&r["from_name"], &r["to_name"], &r["type"]),
        (&"tag".into(), &"image".into(), &"brushlabels".into())
    );
    assert_eq!(
        (r["original_width"].as_u64(), r["original_height"].as_u64()),
        (Some(40), Some(30))
    );
    assert_eq!(r["image_rotation"], 0);
    assert_eq!(r["value"]["format"], "rle");
    assert_eq!(r["value"]["brushlabels"], serde_json::json!(["dog"]));
    assert!(
        tasks[1]["predictions"][0]["result"]
            .as_array()
            .unwrap()
            .is_empty()
    );

    let back = read_tasks(&path, &voc, &opts).unwrap();
    assert_eq!(back.len(), 3);
    for (m, r) in masks.iter().zip(&back) {
        assert_eq!((&r.id, &r.image), (&m.id, &m.image));
        assert_eq!(r.labels, without_ignore(m), "{}", m.id);
    }

    // custom names: results under another from_name are not this control's
    let other = LabelStudioOptions {
        from_name: "brush".into(),
        image_prefix: String::new(),
        ..opts
    };
    let back = read_tasks(&path, &voc, &other).unwrap();
    assert_eq!(back[0].image, "/data/local-files/?d=a.jpg");
    assert!(back[0].labels.iter().all(|&v| v == 0));
}

/// Minimal XML structure check: tags nest and close, attribute values are quoted, and `&` only
/// starts an entity.
fn check_xml(xml: &str) -> Vec<(String, Vec<(String, String)>)> {
    let mut stack: Vec<String> = Vec::new();
    let mut elements = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find('<') {
        assert!(
            rest[..start].trim().is_empty(),
            "text outside tags: {:?}",
            &rest[..start]
        );
        let end = rest[start..].find('>').expect("unclosed tag") + start;
        let tag = &rest[start + 1..end];
        assert!(!tag.contains('<'), "{tag}");
        rest = &rest[end + 1..];
        if let Some(name) = tag.strip_prefix('/') {
            assert_eq!(stack.pop().as_deref(), Some(name), "mismatched </{name}>");
            continue;
        }
        let self_closing = tag.ends_with('/');
        let body = tag.trim_end_matches('/');
        let (name, mut attrs_text) = body.split_once(' ').unwrap_or((body, ""));
        let mut attrs = Vec::new();
        while !attrs_text.trim().is_empty() {
            let t = attrs_text.trim_start();
            let (k, v) = t.split_once("=\"").expect("attribute without quoted value");
            let close = v.find('"').expect("unterminated value");
            let value = &v[..close];
            for (i, _) in value.match_indices('&') {
                let ent = &value[i..];
                assert!(
                    ["&amp;", "&lt;", "&gt;", "&quot;", "&apos;"]
                        .iter()
                        .any(|e| ent.starts_with(e)),
                    "bare & in {value}"
                );
            }
            attrs.push((k.to_string(), value.to_string()));
            attrs_text = &v[close + 1..];
        }
        elements.push((name.to_string(), attrs));
        if !self_closing {
            stack.push(name.to_string());
        }
    }
    assert!(stack.is_empty(), "unclosed {stack:?}");
    elements
}

#[test]
fn labeling_config_is_well_formed() {
    let classes = ClassMap::custom(vec![
        "background".into(),
        "dog".into(),
        r#"a<b & "c""#.into(),
    ]);
    let xml = labeling_config(&classes, &LabelStudioOptions::default());
    let el = check_xml(&xml);
    let names: Vec<&str> = el.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["View", "Image", "BrushLabels", "Label", "Label"]);
    let attr = |i: usize, k: &str| el[i].1.iter().find(|(a, _)| a == k).map(|(_, v)| v.clone());
    assert_eq!(attr(1, "name").as_deref(), Some("image"));
    assert_eq!(attr(1, "value").as_deref(), Some("$image"));
    assert_eq!(attr(2, "name").as_deref(), Some("tag"));
    assert_eq!(attr(2, "toName").as_deref(), Some("image"));
    assert_eq!(attr(3, "value").as_deref(), Some("dog"));
    assert_eq!(attr(3, "background").as_deref(), Some("#800000"));
    assert_eq!(
        attr(4, "value").as_deref(),
        Some("a&lt;b &amp; &quot;c&quot;")
    );
    assert_eq!(attr(4, "background").as_deref(), Some("#008000"));
}
