//! Enforcement: which mechanism is in force, and the kernel maps the deny
//! rules are compiled into. The kernel decides; this module only keeps the
//! maps current (rules, protected processes, exemptions, grants).

pub mod compile;
pub mod kernel_policy;
pub mod maps;
pub mod mechanism;

pub use compile::kernel_policy;
pub use kernel_policy::{KernelPolicy, KernelRule};
pub use maps::{EnforceError, Enforcer};
pub use mechanism::Mechanism;
