//! One module per hook family; each program is named `<event>_<hook>`:
//! process lifecycle (`exec`, `fork`, `exit`), one process reaching into
//! another (`access`, by vector), and the BPF-LSM hooks (`lsm`).

pub(crate) mod access;
mod exec;
mod exit;
mod fork;
mod lsm;
