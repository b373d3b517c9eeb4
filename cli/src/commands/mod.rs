//! One module per verb.

pub mod alarms;
pub mod dev;
pub mod queue_depth;
pub mod redrive;
pub mod tail;
