//! One module per verb.

pub mod alarms;
pub mod deploy;
pub mod dev;
pub mod invalidate;
pub mod package;
pub mod queue_depth;
pub mod redrive;
pub mod stackops;
pub mod sync_frontend;
pub mod tail;
