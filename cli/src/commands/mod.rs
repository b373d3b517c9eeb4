//! One module per verb.

pub mod alarms;
pub mod dev;
pub mod invalidate;
pub mod queue_depth;
pub mod redrive;
pub mod sync_frontend;
pub mod tail;
