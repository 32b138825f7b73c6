//! Events from the kernel: the owned model, the pure decoder that builds
//! it from ring buffer bytes, and the kind of record each event makes.

pub mod decode;
pub mod kind;
pub mod model;

pub use decode::{DecodeError, decode, encode};
pub use kind::Kind;
pub use model::{AccessInfo, EnvInfo, Event, ExeFile, ExecInfo, ExitInfo, ForkInfo};
