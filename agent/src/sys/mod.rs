//! The host the agent runs on, as other modules need it: its identity and
//! clocks ([`host`]), users and groups ([`users`]), the process
//! environment ([`env`]) and the service manager ([`notify`]).

pub mod env;
pub mod host;
pub mod notify;
pub mod users;
