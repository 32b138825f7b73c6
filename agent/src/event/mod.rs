//! Events from the kernel: the owned model and the pure decoder that builds
//! it from ring buffer bytes.

pub mod decode;
pub mod model;

pub use decode::{DecodeError, decode, encode};
pub use model::{AccessInfo, Event, ExecInfo, ExitInfo, ForkInfo};
