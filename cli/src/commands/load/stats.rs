//! What a load run measured, as numbers and as a picture: percentiles, a latency histogram, errors
//! by kind, and the knee of a ramp.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::output::{Exit, Report};

/// Upper edges of the histogram's buckets, in milliseconds (the last bucket has none).
const EDGES_MS: [f64; 12] = [
    1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0,
];

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Latency {
    /// Notes measured.
    pub count: usize,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
    pub histogram: Vec<Bucket>,
}

/// Notes whose latency was at least `from_ms` and below `below_ms`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Bucket {
    pub from_ms: f64,
    /// The bucket's upper edge; none for the last one.
    pub below_ms: Option<f64>,
    pub count: usize,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The value at `p` percent of sorted samples (nearest rank).
fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    ms(sorted[rank.clamp(1, sorted.len()) - 1])
}

impl Latency {
    pub fn of(mut samples: Vec<Duration>) -> Latency {
        samples.sort();
        let mut histogram: Vec<Bucket> = std::iter::once(0.0)
            .chain(EDGES_MS)
            .zip(EDGES_MS.iter().map(|e| Some(*e)).chain([None]))
            .map(|(from_ms, below_ms)| Bucket {
                from_ms,
                below_ms,
                count: 0,
            })
            .collect();
        for s in &samples {
            let v = ms(*s);
            let i = EDGES_MS
                .iter()
                .position(|e| v < *e)
                .unwrap_or(EDGES_MS.len());
            histogram[i].count += 1;
        }
        // Trim empty buckets at both ends, so the picture shows where the notes are.
        let first = histogram.iter().position(|b| b.count > 0).unwrap_or(0);
        let last = histogram.iter().rposition(|b| b.count > 0).unwrap_or(0);
        let histogram = histogram[first..=last.max(first)].to_vec();
        Latency {
            count: samples.len(),
            p50: percentile(&samples, 50.0),
            p90: percentile(&samples, 90.0),
            p99: percentile(&samples, 99.0),
            max: samples.last().map(|d| ms(*d)).unwrap_or(0.0),
            histogram,
        }
    }

    /// The histogram as bars, one line per bucket.
    pub fn draw(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let widest = self.histogram.iter().map(|b| b.count).max().unwrap_or(0);
        for b in &self.histogram {
            let label = match b.below_ms {
                Some(edge) => format!("{:>6} – {:<6}", short_ms(b.from_ms), short_ms(edge)),
                None => format!("{:>6} and more  ", short_ms(b.from_ms)),
            };
            let width = if widest == 0 {
                0
            } else {
                (b.count * 40).div_ceil(widest)
            };
            writeln!(f, "  {label} {:<40} {}", "█".repeat(width), b.count)?;
        }
        Ok(())
    }
}

fn short_ms(v: f64) -> String {
    if v >= 1000.0 {
        format!("{}s", v / 1000.0)
    } else {
        format!("{v}ms")
    }
}

/// One run at one offered rate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Step {
    /// Notes per second the generator meant to send.
    pub target_rate: f64,
    /// Notes per second it sent (POSTs started over the sending window).
    pub offered_rate: f64,
    /// Notes per second saved (answered 202 and seen as `note-saved` on the author's socket).
    pub sustained_rate: f64,
    pub sent: usize,
    pub accepted: usize,
    pub saved: usize,
    pub public: usize,
    /// POST sent → `note-saved` on the author's socket.
    pub saved_latency: Latency,
    /// POST sent → `note-saved` on the last of every socket (public notes only).
    pub fanout_latency: Latency,
    /// Failures by kind (`HTTP 503`, `not saved within 30s`, …) and how many.
    pub errors: BTreeMap<String, usize>,
    pub seconds: f64,
}

impl Step {
    pub fn error_count(&self) -> usize {
        self.errors.values().sum()
    }

    /// Whether this step met the objective: no failures, and p99 within it.
    pub fn meets(&self, slo: Option<Duration>) -> bool {
        self.error_count() == 0 && slo.is_none_or(|s| self.saved_latency.p99 <= ms(s))
    }
}

/// The highest rate of a ramp that met the objective.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Knee {
    pub rate: f64,
    pub p99_ms: f64,
    /// Why the next step did not (p99 past the objective, failures, or the ramp's --max-rate).
    pub next: String,
}

/// Notes the run left behind, and why.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Cleanup {
    pub deleted: usize,
    /// Notes not deleted (with --keep, every note; else failed deletes and notes not yet stored).
    pub left: usize,
    /// Why deletes failed, and how often (a 404: the note was not stored, or not yet).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub failures: BTreeMap<String, usize>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LoadReport {
    pub api_url: String,
    pub users: usize,
    pub sockets: usize,
    pub public_ratio: f64,
    /// The objective for p99 of POST → `note-saved`, in milliseconds.
    pub slo_ms: Option<f64>,
    /// One step, or a ramp's steps in order.
    pub steps: Vec<Step>,
    /// With --ramp: the highest rate that met the objective; none when the first step did not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub knee: Option<Knee>,
    pub ramp: bool,
    pub cleanup: Cleanup,
    /// With --cost: what each note made the app do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<super::Cost>,
    /// What the run noticed about itself: e.g. that it came near `notesctl dev`'s connection cap.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// Why the run counts as failed, if it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

impl Report for LoadReport {
    fn exit(&self) -> Exit {
        Exit::problem_if(self.problem.is_some())
    }
}

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} users, {} sockets, {:.0}% public, against {}",
            self.users,
            self.sockets,
            self.public_ratio * 100.0,
            self.api_url
        )?;
        writeln!(
            f,
            "{:>9} {:>9} {:>9}  {:>8} {:>8} {:>8} {:>8}  {:>12}  errors",
            "offered", "sustained", "saved", "p50", "p90", "p99", "max", "fan-out p99"
        )?;
        for s in &self.steps {
            let fanout = if s.fanout_latency.count == 0 {
                "–".to_owned()
            } else {
                format!("{:.1} ms", s.fanout_latency.p99)
            };
            writeln!(
                f,
                "{:>7.0}/s {:>7.0}/s {:>9}  {:>5.1} ms {:>5.1} ms {:>5.1} ms {:>5.0} ms  {:>12}  {}",
                s.offered_rate,
                s.sustained_rate,
                s.saved,
                s.saved_latency.p50,
                s.saved_latency.p90,
                s.saved_latency.p99,
                s.saved_latency.max,
                fanout,
                s.error_count()
            )?;
        }
        if let Some(last) = self.steps.last() {
            writeln!(
                f,
                "\nPOST → note-saved at {:.0}/s ({} notes):",
                last.offered_rate, last.saved_latency.count
            )?;
            last.saved_latency.draw(f)?;
            if last.fanout_latency.count > 0 {
                writeln!(
                    f,
                    "POST → note-saved on all {} sockets ({} public notes):",
                    self.sockets, last.fanout_latency.count
                )?;
                last.fanout_latency.draw(f)?;
            }
            for (kind, n) in &last.errors {
                writeln!(f, "  {n} × {kind}")?;
            }
        }
        if self.ramp {
            match &self.knee {
                Some(k) => writeln!(
                    f,
                    "knee: {:.0} notes/s with p99 {:.1} ms; the next step: {}",
                    k.rate, k.p99_ms, k.next
                )?,
                None => writeln!(f, "no knee: the first step already missed the objective")?,
            }
        }
        if let Some(cost) = &self.cost {
            writeln!(f, "{cost}")?;
        }
        write!(
            f,
            "cleanup: {} notes deleted, {} left",
            self.cleanup.deleted, self.cleanup.left
        )?;
        for (why, n) in &self.cleanup.failures {
            write!(f, "\n  {n} not deleted: {why}")?;
        }
        for n in &self.notes {
            write!(f, "\nnote: {n}")?;
        }
        if let Some(p) = &self.problem {
            write!(f, "\nproblem: {p}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_histogram_count_every_sample() {
        let samples: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        let l = Latency::of(samples);
        assert_eq!(
            (l.count, l.p50, l.p90, l.p99, l.max),
            (100, 50.0, 90.0, 99.0, 100.0)
        );
        assert_eq!(l.histogram.iter().map(|b| b.count).sum::<usize>(), 100);
        assert_eq!(
            (l.histogram[0].from_ms, l.histogram[0].below_ms),
            (1.0, Some(2.0)),
            "empty buckets trimmed"
        );
        assert_eq!(l.histogram.last().unwrap().below_ms, Some(200.0));
        let empty = Latency::of(Vec::new());
        assert_eq!((empty.count, empty.p99), (0, 0.0));
    }

    #[test]
    fn a_step_meets_the_objective_only_without_failures() {
        let mut step = Step {
            target_rate: 100.0,
            offered_rate: 100.0,
            sustained_rate: 100.0,
            sent: 10,
            accepted: 10,
            saved: 10,
            public: 0,
            saved_latency: Latency::of(vec![Duration::from_millis(5); 10]),
            fanout_latency: Latency::default(),
            errors: BTreeMap::new(),
            seconds: 1.0,
        };
        assert!(step.meets(Some(Duration::from_millis(20))));
        assert!(!step.meets(Some(Duration::from_millis(4))));
        step.errors.insert("HTTP 503".into(), 1);
        assert!(!step.meets(None));
    }
}
