//! `load --cost`: what one note made each port of `notesctl dev` do — store reads and writes, events
//! put, queue sends, receives and deletes, WebSocket posts, function invocations — read from dev's
//! counters before and after each phase (private notes, then public ones) and divided by the notes.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

use notes_handlers::metering::Counts;
use serde::{Deserialize, Serialize};

use crate::app_client::Api;

/// Whether a counter's bytes are microseconds of time (a function's run time, the save latency).
pub fn counts_time(name: &str) -> bool {
    name.starts_with("function.") || name == "metric.SaveLatency"
}

/// One counter, per note.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PerNote {
    /// Calls (for a function: invocations).
    pub calls: f64,
    /// Records carried (notes, events, messages, connections).
    pub items: f64,
    /// Their bytes as JSON; for a function's run time and the save latency, microseconds.
    pub bytes: f64,
}

/// What one kind of note cost, per note.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PhaseCost {
    /// Notes the phase counted (those accepted).
    pub notes: usize,
    /// Counter name (`notes.save_if_absent`, `queue.send`, `function.notes-save`…) → per note.
    pub per_note: BTreeMap<String, PerNote>,
}

impl PhaseCost {
    pub fn of(counts: &Counts, notes: usize) -> PhaseCost {
        let n = notes.max(1) as f64;
        PhaseCost {
            notes,
            per_note: counts
                .0
                .iter()
                .map(|(name, t)| {
                    let per = PerNote {
                        calls: t.calls as f64 / n,
                        items: t.items as f64 / n,
                        bytes: t.bytes as f64 / n,
                    };
                    (name.clone(), per)
                })
                .collect(),
        }
    }
}

/// `load --cost`: per-note counts for private and for public notes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Cost {
    /// Sockets open while public notes were counted: each public note is posted to every one.
    pub sockets: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private: Option<PhaseCost>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public: Option<PhaseCost>,
}

/// dev's counters once they have stopped moving (the last notify and queue delete of a phase land
/// a little after its notes are seen saved): two equal readings 200 ms apart, or the last after 10 s.
pub async fn settled(api: &Api) -> anyhow::Result<Counts> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = api.dev_counters().await?;
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = api.dev_counters().await?;
        if now == last || Instant::now() >= deadline {
            return Ok(now);
        }
        last = now;
    }
}

impl fmt::Display for Cost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let phases = [("private", &self.private), ("public", &self.public)];
        let names: std::collections::BTreeSet<&String> = phases
            .iter()
            .filter_map(|(_, p)| p.as_ref())
            .flat_map(|p| p.per_note.keys())
            .collect();
        write!(f, "per note, as counted by notesctl dev's ports (")?;
        let shown: Vec<String> = phases
            .iter()
            .filter_map(|(kind, p)| p.as_ref().map(|p| format!("{} {kind}", p.notes)))
            .collect();
        writeln!(f, "{}; {} sockets):", shown.join(", "), self.sockets)?;
        write!(f, "  {:<32}", "operation")?;
        for (kind, p) in &phases {
            if p.is_some() {
                write!(f, " {:>24}", format!("{kind}: calls · items · size"))?;
            }
        }
        writeln!(f)?;
        for name in names {
            write!(f, "  {name:<32}")?;
            for (_, p) in &phases {
                let Some(p) = p else { continue };
                let cell = match p.per_note.get(name) {
                    None => "–".to_owned(),
                    Some(c) if counts_time(name) => {
                        format!("{:.2} · {:.2} ms", c.calls, c.bytes / 1000.0)
                    }
                    Some(c) => format!("{:.2} · {:.2} · {:.0} B", c.calls, c.items, c.bytes),
                };
                write!(f, " {cell:>24}")?;
            }
            writeln!(f)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use notes_handlers::metering::Tally;

    #[test]
    fn counts_are_divided_by_the_notes_and_drawn_per_kind() {
        let mut counts = Counts::default();
        counts.0.insert(
            "notifier.post".into(),
            Tally {
                calls: 40,
                items: 40,
                bytes: 4000,
            },
        );
        counts.0.insert(
            "function.notes-save".into(),
            Tally {
                calls: 4,
                items: 4,
                bytes: 8_000,
            },
        );
        let public = PhaseCost::of(&counts, 4);
        assert_eq!(
            public.per_note["notifier.post"],
            PerNote {
                calls: 10.0,
                items: 10.0,
                bytes: 1000.0
            }
        );
        let cost = Cost {
            sockets: 10,
            private: None,
            public: Some(public),
        };
        let text = cost.to_string();
        assert!(text.contains("4 public; 10 sockets"), "{text}");
        assert!(text.contains("10.00 · 10.00 · 1000 B"), "{text}");
        assert!(text.contains("1.00 · 2.00 ms"), "{text}");
        assert!(!text.contains("private:"), "{text}");
    }
}
