//! One module per verb.

pub mod dev;
