//! Fuzz target: policy files through loading and compiling
//! (`PolicySet::from_texts`). The input is split at NUL bytes into up to
//! four files, so rules, roles and tools in one file can refer to another.
//! Any text must compile or give diagnostics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let names = ["a.yaml", "b.yaml", "c.yaml", "d.yaml"];
    let files: Vec<(&str, &str)> = names.iter().copied().zip(text.splitn(4, '\0')).collect();
    match agent::policy::PolicySet::from_texts(&files) {
        Ok(set) => {
            // What compiled can be listed and hashed.
            let _ = set.rules().count();
            assert!(!set.content_hash().is_empty());
        }
        Err(diags) => assert!(!diags.is_empty(), "a refusal says why"),
    }
});
