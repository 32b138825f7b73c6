//! Fuzz target: config file text through parsing and validation
//! (`config::load::from_text`). Any text must give a config or an error
//! that renders.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = std::path::Path::new("fuzz.toml");
    if let Err(e) = agent::config::load::from_text(path, text) {
        assert!(!e.to_string().is_empty());
    }
});
