//! One module per hook family; each program is named `<event>_<hook>`:
//! process lifecycle (`exec`, `fork`, `exit`; `exec_env`: the debug and
//! injection switches in a new program's environment), one process reaching into
//! another (`access`, by vector), the BPF-LSM hooks (`lsm`), and keeping
//! the protected processes current at fork, exec and exit (`protect`).

pub(crate) mod access;
mod exec;
mod exec_env;
mod exit;
mod fork;
mod lsm;
mod protect;
