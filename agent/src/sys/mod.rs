//! The host the agent runs on, as other modules need it: its identity and
//! clocks ([`host`]), users and groups ([`users`]: the files, and
//! [`nss`]: the name service switch, off the caller's thread), the process
//! environment ([`env`]) and the service manager ([`notify`]).

pub mod env;
pub mod host;
pub mod notify;
pub mod nss;
pub mod users;
