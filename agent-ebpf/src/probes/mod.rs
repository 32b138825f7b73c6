//! One module per hook family; each program is named `<event>_<hook>`.

mod access;
mod exec;
mod exit;
mod fork;
