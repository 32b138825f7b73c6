//! `aya::Pod` for the types userspace reads from or writes to the maps.

// SAFETY: all of these are `#[repr(C)]`, `Copy`, contain only integers and
// byte arrays, and have no padding (pinned by `layout!`).
unsafe impl aya::Pod for crate::KernelOffsets {}
unsafe impl aya::Pod for crate::EventHeader {}
unsafe impl aya::Pod for crate::AggKey {}
unsafe impl aya::Pod for crate::KRule {}
unsafe impl aya::Pod for crate::ExemptKey {}
unsafe impl aya::Pod for crate::GrantKey {}
unsafe impl aya::Pod for crate::InodeKey {}
unsafe impl aya::Pod for crate::PidKey {}
unsafe impl aya::Pod for crate::Protected {}
unsafe impl aya::Pod for crate::IdentityKey {}
unsafe impl aya::Pod for crate::CommKey {}
unsafe impl aya::Pod for crate::ObjectKey {}
unsafe impl aya::Pod for crate::EnvName {}
