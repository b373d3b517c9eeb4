//! One rate step of a load run: every POST on its own task at its tick, counted in the ledger while
//! on its way and once accepted; the sockets' arrivals measured into the step's latencies; and, after
//! Ctrl-C, the wait for what is still on its way.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

use super::*;

/// What the sockets saw of one note.
#[derive(Default)]
pub(super) struct Arrivals {
    /// `note-saved` on a socket of its author (the first).
    pub(super) author: Option<Instant>,
    /// Sockets that got its `note-saved`, and when the last did.
    pub(super) sockets: usize,
    pub(super) last: Option<Instant>,
    pub(super) failed: Option<String>,
}

pub(super) type Seen = Arc<Mutex<HashMap<String, Arrivals>>>;

/// Every note the run made, as it is accepted (author, note id), and the POSTs still on their way:
/// what a cleanup deletes, at the end or on Ctrl-C.
#[derive(Default)]
pub(super) struct Ledger {
    pub(super) accepted: Mutex<Vec<(usize, String)>>,
    pub(super) in_flight: AtomicUsize,
}

/// A POST on its way, counted in the ledger until it is dropped.
pub(super) struct InFlight(Arc<Ledger>);

impl InFlight {
    fn new(ledger: &Arc<Ledger>) -> InFlight {
        ledger.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(ledger.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// One POST the generator made.
pub(super) struct Posted {
    pub(super) note_id: String,
    pub(super) public: bool,
    pub(super) at: Instant,
}

/// After Ctrl-C: waits, up to `drain`, for the POSTs on their way to answer and for every accepted
/// note to be saved (a note still queued cannot be deleted yet); a second Ctrl-C stops waiting.
pub(super) async fn settle(ledger: &Ledger, seen: &Seen, drain: Duration) {
    let deadline = Instant::now() + drain;
    let waiting = async {
        loop {
            let settled = ledger.in_flight.load(Ordering::SeqCst) == 0 && {
                let seen = seen.lock().unwrap();
                ledger.accepted.lock().unwrap().iter().all(|(_, id)| {
                    seen.get(id)
                        .is_some_and(|a| a.author.is_some() || a.failed.is_some())
                })
            };
            if settled || Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::select! {
        () = waiting => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// Sends `count` notes at `rate`, each POST on its own task, then waits for them and measures. Each
/// accepted note goes into `ledger` as soon as it is, for the cleanup.
#[allow(clippy::too_many_arguments)]
pub(super) async fn one_step(
    ctx: &Context,
    api: &Arc<Api>,
    users: &[User],
    seen: &Seen,
    rate: f64,
    count: usize,
    args: &LoadArgs,
    ledger: &Arc<Ledger>,
) -> Step {
    let bar = ctx.progress_enabled().then(|| {
        let b = indicatif::ProgressBar::new(count as u64);
        b.set_style(
            indicatif::ProgressStyle::with_template("{prefix} {bar:30} {pos}/{len} sent {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b.set_prefix(format!("{rate:.0}/s"));
        b
    });
    if bar.is_none() {
        // Without a bar, one line marks where sending starts (what a log or a runner times from).
        ctx.say(format!("offering {rate:.0} notes/s: {count} notes"));
    }
    let errors: Arc<Mutex<BTreeMap<String, usize>>> = Arc::default();
    let posted: Arc<Mutex<Vec<Posted>>> = Arc::default();
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(count);
    let public_every = if args.public_ratio > 0.0 {
        Some(1.0 / args.public_ratio)
    } else {
        None
    };
    for i in 0..count {
        ticker.tick().await;
        let author = i % users.len();
        // Public notes spread evenly: note i is public when it crosses the next multiple.
        let public = public_every
            .is_some_and(|every| ((i + 1) as f64 / every).floor() > (i as f64 / every).floor());
        let (api, token) = (api.clone(), users[author].token.clone());
        let (task_errors, posted) = (errors.clone(), posted.clone());
        let in_flight = InFlight::new(ledger);
        tasks.push(tokio::spawn(async move {
            let in_flight = in_flight;
            let at = Instant::now();
            let body = json!({"content": format!("notesctl load note {i}"), "isPublic": public});
            let kind = match api
                .call(http::Method::POST, "/notes", Some(&token), Some(body))
                .await
            {
                Ok((202, v)) => match v["noteId"].as_str() {
                    Some(id) => {
                        in_flight
                            .0
                            .accepted
                            .lock()
                            .unwrap()
                            .push((author, id.to_owned()));
                        posted.lock().unwrap().push(Posted {
                            note_id: id.to_owned(),
                            public,
                            at,
                        });
                        return;
                    }
                    None => "202 without a noteId".to_owned(),
                },
                Ok((status, _)) => format!("HTTP {status}"),
                Err(e) => format!("{e:#}")
                    .split(": ")
                    .last()
                    .unwrap_or("request failed")
                    .to_owned(),
            };
            *task_errors.lock().unwrap().entry(kind).or_default() += 1;
        }));
        if let Some(b) = &bar
            && i % 16 == 0
        {
            b.set_position(i as u64);
            let failed: usize = errors.lock().unwrap().values().sum();
            b.set_message(format!("{failed} failed"));
        }
    }
    let send_window = started.elapsed();
    for t in tasks {
        let _ = t.await;
    }
    let posted = std::mem::take(&mut *posted.lock().unwrap());
    let publics = posted.iter().filter(|p| p.public).count();
    let sockets = args.sockets;
    // Wait for every accepted note's author, and every socket for public ones, up to --drain.
    let deadline = Instant::now() + args.drain;
    loop {
        let done = {
            let seen = seen.lock().unwrap();
            posted.iter().all(|p| {
                seen.get(&p.note_id).is_some_and(|a| {
                    a.failed.is_some()
                        || (a.author.is_some() && (!p.public || a.sockets >= sockets))
                })
            })
        };
        if done || Instant::now() >= deadline {
            break;
        }
        if let Some(b) = &bar {
            b.set_message("waiting for the last notes".to_owned());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let mut errors = std::mem::take(&mut *errors.lock().unwrap());
    let mut saved = Vec::new();
    let mut fanout = Vec::new();
    let mut last_saved = started;
    {
        let seen = seen.lock().unwrap();
        for p in &posted {
            let a = seen.get(&p.note_id);
            match a {
                Some(Arrivals {
                    failed: Some(why), ..
                }) => *errors.entry(format!("note-failed: {why}")).or_default() += 1,
                Some(Arrivals {
                    author: Some(t), ..
                }) => {
                    saved.push(t.duration_since(p.at));
                    last_saved = last_saved.max(*t);
                }
                _ => {
                    *errors
                        .entry(format!(
                            "not saved within --drain {}s",
                            args.drain.as_secs_f64()
                        ))
                        .or_default() += 1
                }
            }
            if p.public
                && let Some(a) = a
                && a.author.is_some()
            {
                match (a.sockets >= sockets, a.last) {
                    (true, Some(last)) => fanout.push(last.duration_since(p.at)),
                    _ => {
                        *errors
                            .entry("public note missed sockets".into())
                            .or_default() += 1
                    }
                }
            }
        }
    }
    let saved_count = saved.len();
    let span = last_saved.duration_since(started).as_secs_f64();
    let step = Step {
        target_rate: rate,
        offered_rate: count as f64 / send_window.as_secs_f64().max(1e-3),
        sustained_rate: if span > 0.0 {
            saved_count as f64 / span
        } else {
            0.0
        },
        sent: count,
        accepted: posted.len(),
        saved: saved_count,
        public: publics,
        saved_latency: Latency::of(saved),
        fanout_latency: Latency::of(fanout),
        errors,
        seconds: started.elapsed().as_secs_f64(),
    };
    let kinds: Vec<String> = step
        .errors
        .iter()
        .map(|(kind, n)| format!("{n} × {kind}"))
        .collect();
    ctx.say(format!(
        "{:.0}/s offered: {} saved, p99 {:.1} ms, {} failed{}",
        step.offered_rate,
        step.saved,
        step.saved_latency.p99,
        step.error_count(),
        if kinds.is_empty() {
            String::new()
        } else {
            format!(" ({})", kinds.join(", "))
        }
    ));
    step
}
