//! Helpers shared by the tests that drive the `cairn` binary.
#![allow(dead_code)] // each test file uses its own subset

pub mod net;

use std::process::Output;

use serde_json::Value;

/// The JSON a successful command printed (panics with its output if it failed).
pub fn ok_json(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "cairn failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    serde_json::from_slice(&out.stdout).expect("json output")
}

/// What a failed command said on standard error (panics if it succeeded).
pub fn failure(out: &Output) -> String {
    assert!(
        !out.status.success(),
        "expected a failure: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}
