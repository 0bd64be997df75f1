//! scrim: an egress privacy gateway.
//!
//! The library is the whole product; `main.rs` only parses the command line.
//! The data path is one straight line:
//!
//! * [`transform`]: the pure value transforms behind the generalising actions,
//!   whose option types the compiled policy holds;
//! * [`policy`]: rule files, raw TOML in, a validated [`policy::CompiledPolicy`] out;
//! * [`rewrite`]: the hot path, a single-pass, incremental JSON / NDJSON / form
//!   rewriter driven by a compiled policy (bytes in, bytes out, no I/O);
//! * [`pseudonym`]: the key ring, per-scope key derivation, HMAC and normalisation;
//! * [`selftest`]: a rule file's own `[[tests]]`, run through the engine;
//! * [`tools`]: `scrim diff` and `scrim inventory`, for rule authors and reviewers;
//! * [`cli`]: the `scrim` commands, one file each (`main.rs` parses and dispatches).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod aggregate;
mod chars;
pub mod cli;
pub mod config;
pub mod consent;
pub mod ops;
pub mod policy;
pub mod proxy;
pub mod pseudonym;
pub mod rewrite;
pub mod schema;
pub mod selftest;
pub mod store;
pub mod tools;
pub mod transform;
