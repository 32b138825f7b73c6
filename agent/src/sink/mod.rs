//! Where records go. [`delivery`] is the stage the driver uses: it seals
//! each record, keeps it in the durable spool until it is delivered, and
//! writes it to the local sinks (stdout, [`file`], [`journal`]) and to
//! NATS JetStream ([`nats`]). Stdout and the file write the sealed JSON or,
//! with `format = "ecs"`, ECS documents ([`ecs`]).

pub mod delivery;
pub mod ecs;
pub mod file;
pub mod journal;
pub mod nats;

pub use delivery::{Delivery, DeliveryConfig, DeliveryError, SIGN_INTERVAL};
