//! One module per hook family; each program is named `<event>_<hook>`.

pub(crate) mod access;
mod exec;
mod exit;
mod fork;
mod lsm;
