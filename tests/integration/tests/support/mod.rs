//! Helpers the privileged test files share (not a test target itself).

pub(crate) mod attack;
