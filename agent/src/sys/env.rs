//! The process environment behind a trait, so that tests hand in a map
//! instead of mutating the environment of the test process.

use std::{collections::HashMap, ffi::OsString};

/// Named strings (environment variables). A trait so that tests hand in a
/// map instead of mutating the process environment.
pub trait Strings {
    fn get(&self, name: &str) -> Option<OsString>;
}

/// The real process environment.
pub struct ProcessEnv;

impl Strings for ProcessEnv {
    fn get(&self, name: &str) -> Option<OsString> {
        std::env::var_os(name)
    }
}

impl Strings for HashMap<String, String> {
    fn get(&self, name: &str) -> Option<OsString> {
        HashMap::get(self, name).map(OsString::from)
    }
}
