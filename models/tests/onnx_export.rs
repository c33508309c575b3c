//! ONNX export without a runtime: the file's protobuf structure (decoded here by a minimal
//! reader), its metadata, determinism, and typed errors for bad state dicts and configs.
//! (Numerical parity through ONNX Runtime lives in `inference/tests/onnx_*.rs`.)

use ssc_core::fixtures;
use ssc_models::config::{DeepLabConfig, ResNetConfig};
use ssc_models::onnx::{
    ExportMeta, OnnxError, Weights, export_cam, export_cam_with, export_deeplab_with,
};

/// Decodes one protobuf message level into `(field, value)` where value is the varint or
/// the length-delimited payload.
fn fields(mut b: &[u8]) -> Vec<(u64, Result<u64, Vec<u8>>)> {
    fn varint(b: &mut &[u8]) -> u64 {
        let (mut v, mut shift) = (0u64, 0);
        loop {
            let byte = b[0];
            *b = &b[1..];
            v |= ((byte & 0x7f) as u64) << shift;
            shift += 7;
            if byte < 0x80 {
                return v;
            }
        }
    }
    let mut out = Vec::new();
    while !b.is_empty() {
        let key = varint(&mut b);
        let value = match key & 7 {
            0 => Ok(varint(&mut b)),
            2 => {
                let n = varint(&mut b) as usize;
                let (p, rest) = b.split_at(n);
                b = rest;
                Err(p.to_vec())
            }
            5 => {
                let (p, rest) = b.split_at(4);
                b = rest;
                Err(p.to_vec())
            }
            w => panic!("unexpected wire type {w}"),
        };
        out.push((key >> 3, value));
    }
    out
}

fn bytes_of(fs: &[(u64, Result<u64, Vec<u8>>)], field: u64) -> Vec<Vec<u8>> {
    fs.iter()
        .filter(|(f, _)| *f == field)
        .filter_map(|(_, v)| v.clone().err())
        .collect()
}

fn string_of(fs: &[(u64, Result<u64, Vec<u8>>)], field: u64) -> String {
    String::from_utf8(bytes_of(fs, field).concat()).unwrap()
}

fn fixture_weights() -> Option<(Weights, ResNetConfig)> {
    let dir = fixtures::case(env!("CARGO_MANIFEST_DIR"), "resnet")?;
    let text = std::fs::read_to_string(dir.join("config.json")).unwrap();
    let j: serde_json::Value = serde_json::from_str(&text).unwrap();
    let a = |v: &serde_json::Value| -> [usize; 4] {
        serde_json::from_value::<Vec<usize>>(v.clone())
            .unwrap()
            .try_into()
            .unwrap()
    };
    let cfg = ResNetConfig {
        blocks: a(&j["blocks"]),
        base_width: j["base_width"].as_u64().unwrap() as usize,
        strides: a(&j["configs"]["os16"]["layer_strides"]),
        dilations: a(&j["configs"]["os16"]["layer_dilations"]),
        bn_eps: j["bn_eps"].as_f64().unwrap(),
    };
    Some((Weights::open(dir.join("weights.safetensors")).unwrap(), cfg))
}

fn with_classifier(mut w: Weights, c: usize, cin: usize) -> Weights {
    w.insert("classifier.weight", vec![0.01; c * cin], vec![c, cin, 1, 1]);
    w
}

#[test]
fn cam_file_has_the_onnx_structure_and_metadata() {
    let Some((w, cfg)) = fixture_weights() else {
        return;
    };
    let w = with_classifier(w, 3, cfg.out_channels(3));
    let meta = ExportMeta::new(vec!["a".into(), "b".into(), "c".into()]);
    let bytes = export_cam_with(&w, &cfg, 0.55, &meta).unwrap();
    assert_eq!(
        bytes,
        export_cam_with(&w, &cfg, 0.55, &meta).unwrap(),
        "deterministic"
    );

    let model = fields(&bytes);
    assert!(model.contains(&(1, Ok(8))), "ir_version 8");
    let opset = fields(&bytes_of(&model, 8)[0]);
    assert_eq!(string_of(&opset, 1), "");
    assert!(opset.contains(&(2, Ok(17))), "opset 17");
    let props: Vec<(String, String)> = bytes_of(&model, 14)
        .iter()
        .map(|e| {
            let f = fields(e);
            (string_of(&f, 1), string_of(&f, 2))
        })
        .collect();
    let get = |k: &str| props.iter().find(|(pk, _)| pk == k).map(|(_, v)| v.clone());
    assert_eq!(get("ssc.arch").as_deref(), Some("cam"));
    assert_eq!(get("ssc.class_names").as_deref(), Some(r#"["a","b","c"]"#));
    assert_eq!(
        get("ssc.output_stride"),
        Some(cfg.output_stride().to_string())
    );
    let conf: serde_json::Value = serde_json::from_str(&get("ssc.config").unwrap()).unwrap();
    assert_eq!(conf["num_classes"], 3);
    assert_eq!(conf["backbone"]["strides"], serde_json::json!(cfg.strides));
    for k in ["ssc.mean", "ssc.std", "ssc.version"] {
        assert!(get(k).is_some(), "{k}");
    }

    let graph = fields(&bytes_of(&model, 7)[0]);
    let inputs = bytes_of(&graph, 11);
    assert_eq!(inputs.len(), 1);
    assert_eq!(string_of(&fields(&inputs[0]), 1), "image");
    let outputs = bytes_of(&graph, 12);
    assert_eq!(outputs.len(), 1);
    assert_eq!(string_of(&fields(&outputs[0]), 1), "cam");
    // every BN is folded: no BatchNormalization node, one bias per conv
    let ops: Vec<String> = bytes_of(&graph, 1)
        .iter()
        .map(|n| string_of(&fields(n), 4))
        .collect();
    assert!(!ops.iter().any(|o| o == "BatchNormalization"));
    let convs = ops.iter().filter(|o| *o == "Conv").count();
    let per_block = 3;
    let blocks: usize = cfg.blocks.iter().sum();
    assert_eq!(
        convs,
        1 + per_block * blocks + 4 + 1,
        "stem + blocks + shortcuts + classifier"
    );
    assert_eq!(
        ops.iter().filter(|o| *o == "ReduceMax").count(),
        cfg.blocks[3],
        "DRS per layer4 block"
    );
    // every initializer is float or int64 with raw data of the right length
    for t in bytes_of(&graph, 5) {
        let f = fields(&t);
        let dims: usize = match bytes_of(&f, 1).first() {
            Some(packed) => fields_packed(packed).iter().product::<u64>() as usize,
            None => 1,
        };
        let elem = if f.contains(&(2, Ok(7))) { 8 } else { 4 };
        assert_eq!(
            bytes_of(&f, 9)[0].len(),
            dims * elem,
            "{}",
            string_of(&f, 8)
        );
    }
}

fn fields_packed(b: &[u8]) -> Vec<u64> {
    let mut out = Vec::new();
    let (mut v, mut shift) = (0u64, 0);
    for &byte in b {
        v |= ((byte & 0x7f) as u64) << shift;
        shift += 7;
        if byte < 0x80 {
            out.push(v);
            v = 0;
            shift = 0;
        }
    }
    out
}

#[test]
fn bad_state_dicts_and_configs_are_typed_errors() {
    let Some((w, cfg)) = fixture_weights() else {
        return;
    };
    // no classifier
    let e = export_cam(&w, &cfg, 3, 0.55).unwrap_err();
    assert!(
        matches!(&e, OnnxError::MissingWeight { name, .. } if name == "classifier.weight"),
        "{e:?}"
    );
    assert!(
        e.to_string().contains("weights.safetensors"),
        "names the file: {e}"
    );
    // classifier for another width
    let bad = with_classifier(w.clone(), 3, 7);
    let e = export_cam(&bad, &cfg, 3, 0.55).unwrap_err();
    assert!(matches!(e, OnnxError::BadShape { .. }), "{e:?}");
    // a config the weights do not fit: a backbone key with the wrong shape
    let wide = ResNetConfig {
        base_width: 2 * cfg.base_width,
        ..cfg.clone()
    };
    let e = export_cam(
        &with_classifier(w.clone(), 3, wide.out_channels(3)),
        &wide,
        3,
        0.55,
    )
    .unwrap_err();
    assert!(
        matches!(&e, OnnxError::BadShape { name, .. } if name == "conv1.weight"),
        "{e:?}"
    );
    // unusable configs
    let zero = ResNetConfig {
        strides: [1, 0, 2, 1],
        ..cfg.clone()
    };
    let good = with_classifier(w.clone(), 3, cfg.out_channels(3));
    assert!(matches!(
        export_cam(&good, &zero, 3, 0.55),
        Err(OnnxError::Invalid(_))
    ));
    assert!(matches!(
        export_cam(&good, &cfg, 3, f32::NAN),
        Err(OnnxError::Invalid(_))
    ));
    let dl = DeepLabConfig {
        backbone: cfg.clone().into(),
        ..DeepLabConfig::synthetic(4)
    };
    let e = export_deeplab_with(&w, &dl, &ExportMeta::new(vec!["x".into()])).unwrap_err();
    assert!(
        matches!(e, OnnxError::Invalid(_)),
        "class-name count: {e:?}"
    );
}

#[test]
fn default_class_names_follow_the_dataset() {
    assert_eq!(ExportMeta::foreground(20).class_names[0], "aeroplane");
    assert_eq!(ExportMeta::foreground(80).class_names[0], "person");
    assert_eq!(
        ExportMeta::foreground(3).class_names,
        ["class0", "class1", "class2"]
    );
    let voc = ExportMeta::with_background(21).class_names;
    assert_eq!(
        (voc.len(), voc[0].as_str(), voc[20].as_str()),
        (21, "background", "tvmonitor")
    );
    assert_eq!(ExportMeta::with_background(81).class_names.len(), 81);
    assert_eq!(
        ExportMeta::with_background(2).class_names,
        ["background", "class1"]
    );
}
