//! One module per family of subcommands.

pub mod layers;
pub mod volumes;
