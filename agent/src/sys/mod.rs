//! The host the agent runs on, as other modules need it: its identity and
//! clocks ([`host`]), users and groups ([`users`]: the files, and
//! [`nss`]: the name service switch, off the caller's thread), the process
//! environment ([`env`]), the service manager ([`notify`]) and a precise
//! timer ([`timer`]).

pub mod env;
pub mod host;
pub mod notify;
pub mod nss;
pub mod timer;
pub mod users;
