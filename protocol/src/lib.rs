//! What the broker (`bridge`) and the browser client (`client-wasm`) share.
//!
//! * [`codec`]: the one adapter over the wire codec (`mqttbytes-ng`). Nothing else in the
//!   workspace touches the codec crate directly.
//! * [`topic`]: topic name / filter validation and matching, owned here because the codec's
//!   own matcher is wrong for `$` topics.
//!
//! This crate has no async runtime so that it compiles for `wasm32-unknown-unknown`.

pub mod codec;
pub mod topic;

pub use codec::*;
pub mod reason;
