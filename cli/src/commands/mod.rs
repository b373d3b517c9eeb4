//! One module per verb. Each exposes `run(&Context, Args) -> Result<Report>` and depends only on the
//! context and the shared AWS helpers below it; `deploy --frontend` calls `sync_frontend::run` and
//! `invalidate::run` and runs `validate::run` first; `diff` reads its inputs, and makes change sets,
//! the way `deploy` does (`deploy::Inputs`, `deploy::change_set`); `history` reads the releases deploy
//! records (`deploy::releases`) and `rollback` deploys one again through `deploy::run`; `smoke` and
//! `load` meet the app through `crate::app_client`, as a browser would, and `metrics --local` reads
//! dev's counters through it too (with `dev::history`'s sampling period); `status` and `doctor` read
//! what `metrics` reads; nothing else crosses between verbs.

pub mod alarms;
pub mod deploy;
pub mod destroy;
pub mod dev;
pub mod diff;
pub mod doctor;
pub mod invalidate;
pub mod load;
pub mod metrics;
pub mod migrate;
pub mod outputs;
pub mod package;
pub mod queue_depth;
pub mod redrive;
pub mod release;
pub mod smoke;
pub mod status;
pub mod sync_frontend;
pub mod tail;
pub mod validate;
