//! A file that exists but is not an ONNX Runtime library is a typed error, not an ort panic.
//! (Its own test binary: the library can be loaded only once per process.)

use ssc_inference::InferenceError;
use ssc_inference::runtime::init;

#[test]
fn a_file_that_is_not_a_library_is_a_load_error() {
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("libonnxruntime.so.1.31.1");
    std::fs::write(&fake, b"this is not an ELF file").unwrap();
    let e = init(Some(&fake)).unwrap_err();
    assert!(matches!(e, InferenceError::RuntimeLoad { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(msg.contains(&fake.display().to_string()), "{msg}");
    assert!(msg.contains("scripts/setup-ort.sh"), "{msg}");
}
