//! Fuzz target: `debugmon verify`'s record reader. The input is a file of
//! record lines; every line must be verified, or reported malformed, and
//! the report must render, whatever the bytes.
#![no_main]

use agent::record::verify::Verifier;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut v = Verifier::default();
    v.read(data, "fuzz input")
        .expect("reading from memory cannot fail");
    let report = v.finish();
    let _ = report.ok();
    assert!(!report.to_string().is_empty(), "the report renders");
});
