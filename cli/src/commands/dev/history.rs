//! dev's counters over time: a snapshot of every port's counters every ten seconds, the last three
//! hours kept in memory, for `notesctl metrics --local` to draw series from.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use notes_handlers::metering::{Counts, Meter};

/// The operation that reads dev's counters (`notesctl load --cost`): JSON in, `{"Counts": {name:
/// {calls, items, bytes}}, "Connections": {"Max": --max-connections, "Refused": since the start}}`
/// out, signed like the runbook API's other operations.
pub const GET_COUNTERS: &str = "NotesctlDev.GetCounters";
/// The counters over time (`notesctl metrics --local`): `{"Since": epoch seconds}` in,
/// `{"Snapshots": [{"Time": epoch seconds, "Counts": {…}}, …]}` out, the last one taken now.
pub const GET_COUNTER_HISTORY: &str = "NotesctlDev.GetCounterHistory";

/// Answers one of dev's own operations: the answer, or the error's code and message.
pub fn serve(
    counters: Option<&DevCounters>,
    target: &str,
    input: &serde_json::Value,
) -> Result<serde_json::Value, (&'static str, String)> {
    use serde_json::json;
    match target {
        GET_COUNTERS => Ok(json!({
            "Counts": counters.map(|c| c.meter.snapshot()).unwrap_or_default(),
            "Connections": counters.map(|c| json!({
                "Max": c.max_connections,
                "Refused": c.refused.load(std::sync::atomic::Ordering::Relaxed),
            })),
        })),
        GET_COUNTER_HISTORY => {
            let since = input["Since"].as_i64().unwrap_or(0);
            let snapshots: Vec<serde_json::Value> = counters
                .map(|c| c.since(since))
                .unwrap_or_default()
                .into_iter()
                .map(|(t, counts)| json!({"Time": t, "Counts": counts}))
                .collect();
            Ok(json!({ "Snapshots": snapshots }))
        }
        other => Err((
            "UnsupportedOperation",
            format!("{other} is not an operation of this notesctl dev server"),
        )),
    }
}

/// How often the counters are sampled.
pub const EVERY: Duration = Duration::from_secs(10);
/// Samples kept: three hours' worth.
const KEEP: usize = 3 * 3600 / 10;

pub struct DevCounters {
    pub meter: Arc<Meter>,
    /// `--max-connections`, and the connections refused past it since the start.
    pub max_connections: usize,
    pub refused: Arc<std::sync::atomic::AtomicU64>,
    history: Mutex<VecDeque<(i64, Counts)>>,
}

fn now_secs() -> i64 {
    notes_handlers::domain::clock::now_millis() / 1000
}

impl DevCounters {
    pub fn new(meter: Arc<Meter>, max_connections: usize) -> Arc<DevCounters> {
        let counters = Arc::new(DevCounters {
            meter,
            max_connections,
            refused: Arc::default(),
            history: Mutex::default(),
        });
        counters.sample();
        counters
    }

    fn sample(&self) {
        let snapshot = (now_secs(), self.meter.snapshot());
        let mut history = self.history.lock().unwrap_or_else(|p| p.into_inner());
        if history.len() == KEEP {
            history.pop_front();
        }
        history.push_back(snapshot);
    }

    /// The samples taken at or after `since` (epoch seconds), and the counters now.
    pub fn since(&self, since: i64) -> Vec<(i64, Counts)> {
        let history = self.history.lock().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<(i64, Counts)> = history
            .iter()
            .filter(|(t, _)| *t >= since)
            .cloned()
            .collect();
        out.push((now_secs(), self.meter.snapshot()));
        out
    }

    /// Samples every [`EVERY`] until the process ends.
    pub fn spawn_sampler(self: &Arc<Self>) {
        let counters = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(EVERY);
            tick.tick().await;
            loop {
                tick.tick().await;
                counters.sample();
            }
        });
    }
}
