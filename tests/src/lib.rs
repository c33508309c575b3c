//! End-to-end tests of ssc.
//!
//! The tests that drive the command-line tools live in `tools/tests/` (for instance
//! `pipeline_e2e.rs`, the main job's chain on a tiny benchmark), because Cargo gives binary
//! paths (`CARGO_BIN_EXE_*`) only to the tests of the package that owns the binaries. This
//! crate holds cross-crate library tests that need no binary.
