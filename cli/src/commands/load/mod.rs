//! `notesctl load [--local]`: offered load on `dev` or a deployed stage, as users make it. Load users
//! sign up (or log in), open WebSockets (one per user, the rest extra subscribers), then POST notes
//! open-loop — each on its own task at its tick, so a slow server does not slow the offered rate —
//! and every `note-saved` is timed as it arrives on each socket: POST → the author's socket, and for
//! public notes POST → the last socket. `--ramp` steps the rate up until p99 passes `--slo` or
//! notes fail, and reports the knee. Afterwards the notes are deleted (unless `--keep`), and on Ctrl-C
//! too: an interrupted run stops sending, waits for the notes in flight, deletes them and exits 1.
//!
//! The users are the stage's own, `notesctl-load-{16 hex digits}-{i}`, derived from the stage and the
//! password (on `dev` without one, its runbook token; see [`crate::names::check_user`]).

mod cost;
mod stats;
mod step;
mod users;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;

use crate::app_client::{Api, DevConnections, Endpoints, connect, endpoints, tls_config};
use crate::context::{Context, LocalArg, dev_token, parse_duration};
pub use cost::{Cost, PerNote, PhaseCost, counts_time};
pub use stats::{Bucket, Cleanup, Knee, Latency, LoadReport, Step};
use step::{Ledger, Seen, one_step, settle};
use users::{User, clean_up, open_sockets};

const LOCAL_PASSWORD: &str = "notesctl-load-local";

#[derive(Debug, Clone, clap::Args)]
pub struct LoadArgs {
    #[command(flatten)]
    pub local: LocalArg,
    /// Notes per second to offer (open loop). With --ramp, the first step's rate.
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,
    /// How long a run (or each ramp step) sends notes (10s, 1m).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Send exactly this many notes instead of running for --duration.
    #[arg(long, conflicts_with = "ramp")]
    pub total: Option<usize>,
    /// Users that post, round-robin (each signs up on the first run, then logs in).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub users: u32,
    /// WebSocket clients in all: one per user, the rest extra subscribers spread over the users.
    /// Every socket receives each public note.
    #[arg(long, default_value_t = 100)]
    pub sockets: usize,
    /// Share of the notes posted public (0 to 1).
    #[arg(long, default_value_t = 0.1)]
    pub public_ratio: f64,
    /// Step the rate up by --ramp-factor until p99 of POST → note-saved passes --slo or notes
    /// fail, and report the knee: the highest rate that met it.
    #[arg(long)]
    pub ramp: bool,
    /// Each ramp step's rate over the one before.
    #[arg(long, default_value_t = 1.5)]
    pub ramp_factor: f64,
    /// The highest rate a ramp tries.
    #[arg(long, default_value_t = 50_000.0)]
    pub max_rate: f64,
    /// The objective for p99 of POST → note-saved (20ms, 1s): a run past it exits 1; a ramp stops
    /// there. Default with --ramp: 20ms.
    #[arg(long, value_parser = parse_duration)]
    pub slo: Option<Duration>,
    /// The load users are `{prefix}-0`, `{prefix}-1`, … (one per `--users`). Default: the stage's
    /// own, `notesctl-load-` and 16 hex digits derived from the stage and the password (on `dev`
    /// without one, from its runbook token), which nobody without them can take first.
    #[arg(long)]
    pub user_prefix: Option<String>,
    /// The load users' password (at least 8 characters). Required for a deployed stage; `dev` has a
    /// fixed default. Best given in the environment.
    #[arg(long, env = "NOTESCTL_LOAD_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
    /// How long to wait after the last POST for notes still on their way.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub drain: Duration,
    /// Leave the notes in place instead of deleting them afterwards.
    #[arg(long)]
    pub keep: bool,
    /// Run against a deployed stage (it costs requests and creates the load users).
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// With --yes, offer load to a protected stage too (prod, production, prd or live between its
    /// hyphens): its users share the app with yours.
    #[arg(long, requires = "yes")]
    pub force: bool,
    /// Count what each note makes the app do — store reads and writes, events, queue operations,
    /// WebSocket posts, invocations — from `notesctl dev`'s counters (needs --local). The private
    /// notes are sent first, then the public ones, each counted on its own.
    #[arg(long, requires = "local", conflicts_with = "ramp")]
    pub cost: bool,
}

/// The connections a run opens at least (each user's HTTP connection, and the sockets) against dev's
/// cap: a warning from 80% of it, naming the flag that raises it.
fn near_cap(max: u64, wanted: usize) -> Option<String> {
    let wanted = wanted as u64;
    (wanted * 10 >= max * 8).then(|| {
        format!(
            "this run opens at least {wanted} connections (users and sockets) and dev serves {max} at once (--max-connections): past it dev answers 503 and notes fail. Restart it with `notesctl dev --max-connections {}`",
            higher_cap(max, wanted)
        )
    })
}

/// The connections dev refused past its cap since `before` was read with the runbook token (0 when
/// it cannot say).
async fn refused_since(api: &Api, before: &Option<(String, DevConnections)>) -> u64 {
    let Some((token, before)) = before else {
        return 0;
    };
    match api.dev_connections(token).await {
        Ok(Some(after)) => after.refused.saturating_sub(before.refused),
        _ => 0,
    }
}

/// What dev refusing connections during the run means, as one sentence.
fn refused_past_cap(refused: u64, max: u64, wanted: usize) -> String {
    format!(
        "dev refused {refused} connections past its --max-connections ({max}), so the figures are dev's cap, not the app's: start it with a higher cap (`notesctl dev --max-connections {}`)",
        higher_cap(max, wanted as u64)
    )
}

/// A cap with room: the next power of two at least twice what the run opens, and above today's.
fn higher_cap(max: u64, wanted: u64) -> u64 {
    (wanted * 2).max(max + 1).next_power_of_two()
}

/// The load users' name prefix: `--user-prefix`, else derived from the stage and the password, or on
/// `dev` without one from its runbook token (read only then).
fn user_prefix(
    args: &LoadArgs,
    stage: &str,
    runbook_token: impl FnOnce() -> anyhow::Result<String>,
) -> anyhow::Result<String> {
    if let Some(prefix) = &args.user_prefix {
        return Ok(prefix.clone());
    }
    let secret = match &args.password {
        Some(p) => p.clone(),
        None => runbook_token()?,
    };
    Ok(crate::names::check_user("load", stage, &secret))
}

pub async fn run(ctx: &Context, args: LoadArgs) -> anyhow::Result<LoadReport> {
    anyhow::ensure!(
        (0.0..=1.0).contains(&args.public_ratio),
        "--public-ratio {} is not between 0 and 1",
        args.public_ratio
    );
    anyhow::ensure!(
        args.rate > 0.0 && args.rate.is_finite(),
        "--rate must be above 0"
    );
    anyhow::ensure!(
        !args.ramp || args.ramp_factor > 1.0,
        "--ramp-factor must be above 1"
    );
    let users = args.users as usize;
    anyhow::ensure!(
        args.sockets >= users,
        "--sockets {} is fewer than --users {users}: each user needs its own socket to see its notes saved",
        args.sockets
    );
    let stage = match &args.local.local {
        Some(_) => ctx.stage(),
        None => ctx.explicit_stage()?,
    };
    let password = match (&args.local.local, &args.password) {
        (_, Some(p)) => p.clone(),
        (Some(_), None) => LOCAL_PASSWORD.to_owned(),
        (None, None) => anyhow::bail!(
            "load needs the load users' password for a deployed stage: set NOTESCTL_LOAD_PASSWORD (at least 8 characters)"
        ),
    };
    if args.local.local.is_none() && !args.yes {
        anyhow::bail!(
            "load on the deployed stage {stage} sends real requests (they cost money) and creates {users} users: pass --yes"
        );
    }
    if args.local.local.is_none() && crate::context::protected(stage) && !args.force {
        anyhow::bail!(
            "refusing to load {stage:?}, a protected stage (its name has prod, production, prd or live between hyphens): its users would share the app with {users} load users. Load a staging stage, or pass --force beside --yes"
        );
    }
    let prefix = user_prefix(&args, stage, dev_token)?;
    let target = endpoints(ctx, &args.local).await?;
    let tls = tls_config(target.secure())?;
    let api = Arc::new(Api::new(&target.api, &tls));
    if args.cost {
        // Before anything is sent: the counters must be readable.
        api.dev_counters().await?;
    }
    // dev's connection cap, when it says: a run near it measures the cap, not the app.
    let cap_before = match &args.local.local {
        // Without the runbook token, or from a dev that refuses it, the run goes on unwarned; a dev
        // that does not answer at all ends it here, as the sign-ins would.
        Some(_) => match dev_token() {
            Ok(token) => match api.dev_connections(&token).await {
                Ok(cap) => cap.map(|cap| (token, cap)),
                Err(e) if e.downcast_ref::<crate::patience::NoAnswer>().is_some() => return Err(e),
                Err(_) => None,
            },
            Err(_) => None,
        },
        None => None,
    };
    let mut notes = Vec::new();
    if let Some((_, cap)) = &cap_before
        && let Some(warning) = near_cap(cap.max, users + args.sockets)
    {
        ctx.say(format!("warning: {warning}"));
        notes.push(warning);
    }

    ctx.say(format!("signing in {users} load users"));
    let mut signed = Vec::with_capacity(users);
    let names: Vec<String> = (0..users).map(|i| format!("{prefix}-{i}")).collect();
    let mut ins = futures::stream::iter(names.iter().map(|name| {
        let (api, password) = (api.clone(), password.clone());
        async move {
            api.sign_in(
                name,
                &password,
                "NOTESCTL_LOAD_PASSWORD, or another --user-prefix",
            )
            .await
        }
    }))
    .buffered(16);
    while let Some(r) = ins.next().await {
        signed.push(User { token: r?.0 });
    }
    drop(ins);

    ctx.say(format!("opening {} WebSockets", args.sockets));
    let seen: Seen = Arc::default();
    let sockets = match open_sockets(&target, &tls, &names, &signed, args.sockets, &seen).await {
        Ok(sockets) => sockets,
        // A socket dev refused past its cap is dev's limit, not the app's: say which flag.
        Err(e) => match (&cap_before, refused_since(&api, &cap_before).await) {
            (Some((_, cap)), refused) if refused > 0 => {
                anyhow::bail!(
                    "{}",
                    refused_past_cap(refused, cap.max, users + args.sockets)
                )
            }
            (Some(_), _) if format!("{e:#}").contains("429") => anyhow::bail!(
                "{e:#}: dev refused a socket past its --max-sockets-per-user (a quarter of --max-connections, at most 50, by default): pass more --users for {} sockets, or restart dev with a higher --max-sockets-per-user",
                args.sockets
            ),
            _ => return Err(e),
        },
    };

    let slo = args.slo.or(args.ramp.then_some(Duration::from_millis(20)));
    let mut report = LoadReport {
        api_url: target.api.clone(),
        users,
        sockets: args.sockets,
        public_ratio: args.public_ratio,
        slo_ms: slo.map(|s| s.as_secs_f64() * 1000.0),
        steps: Vec::new(),
        knee: None,
        ramp: args.ramp,
        cleanup: Cleanup::default(),
        cost: None,
        notes,
        problem: None,
    };
    let ledger: Arc<Ledger> = Arc::default();
    // Ctrl-C while notes go out stops the sending; the notes made so far are still deleted.
    let interrupted = {
        let offered = offer(ctx, &api, &signed, &seen, &args, slo, &mut report, &ledger);
        tokio::select! {
            done = offered => {
                done?;
                false
            }
            _ = tokio::signal::ctrl_c() => true,
        }
    };
    if interrupted {
        ctx.say("interrupted: waiting for the notes on their way, then deleting them");
        settle(&ledger, &seen, args.drain).await;
    }
    for socket in sockets {
        socket.abort();
    }

    let accepted = std::mem::take(&mut *ledger.accepted.lock().unwrap());
    report.cleanup = if args.keep {
        Cleanup {
            left: accepted.len(),
            ..Cleanup::default()
        }
    } else {
        ctx.say(format!("deleting {} notes", accepted.len()));
        clean_up(&api, &signed, &accepted).await
    };
    let failed: usize = report.steps.iter().map(Step::error_count).sum();
    let worst_p99 = report
        .steps
        .iter()
        .map(|s| s.saved_latency.p99)
        .fold(0.0, f64::max);
    let refused = refused_since(&api, &cap_before).await;
    report.problem = if let (Some((_, cap)), true) = (&cap_before, refused > 0) {
        // Whatever else went wrong, the run measured dev's cap rather than the app.
        Some(refused_past_cap(refused, cap.max, users + args.sockets))
    } else if interrupted {
        Some(format!(
            "interrupted (Ctrl-C) after {} notes; {} deleted, {} left",
            accepted.len(),
            report.cleanup.deleted,
            report.cleanup.left
        ))
    } else if args.ramp {
        report
            .knee
            .is_none()
            .then(|| "the first step already missed the objective".to_owned())
    } else if failed > 0 {
        Some(format!("{failed} notes failed"))
    } else if !report.steps.iter().all(|s| s.meets(slo)) {
        Some(format!(
            "p99 {worst_p99:.1} ms is past --slo {:.1} ms",
            report.slo_ms.unwrap_or_default()
        ))
    } else {
        None
    };
    Ok(report)
}

/// Sends the notes — one run, the ramp's steps, or `--cost`'s two phases — recording each step in
/// `report` and each accepted note in `ledger`.
#[allow(clippy::too_many_arguments)]
async fn offer(
    ctx: &Context,
    api: &Arc<Api>,
    signed: &[User],
    seen: &Seen,
    args: &LoadArgs,
    slo: Option<Duration>,
    report: &mut LoadReport,
    ledger: &Arc<Ledger>,
) -> anyhow::Result<()> {
    let mut rate = args.rate;
    if !args.cost {
        loop {
            let count = args
                .total
                .unwrap_or_else(|| (rate * args.duration.as_secs_f64()).ceil().max(1.0) as usize);
            let step = one_step(ctx, api, signed, seen, rate, count, args, ledger).await;
            match ramp_on(report, step, rate, args, slo) {
                Some(next) => rate = next,
                None => break,
            }
        }
    }
    if args.cost {
        // Private notes, then public ones, each phase between two readings of dev's counters.
        let total = args
            .total
            .unwrap_or_else(|| (rate * args.duration.as_secs_f64()).ceil().max(1.0) as usize);
        let publics = ((total as f64) * args.public_ratio).round() as usize;
        let mut cost = Cost {
            sockets: args.sockets,
            private: None,
            public: None,
        };
        for (public, count) in [(false, total - publics), (true, publics)] {
            if count == 0 {
                continue;
            }
            let before = cost::settled(api).await?;
            let phase = LoadArgs {
                public_ratio: if public { 1.0 } else { 0.0 },
                ..args.clone()
            };
            let step = one_step(ctx, api, signed, seen, rate, count, &phase, ledger).await;
            let counted = PhaseCost::of(&cost::settled(api).await?.since(&before), step.accepted);
            *if public {
                &mut cost.public
            } else {
                &mut cost.private
            } = Some(counted);
            report.steps.push(step);
        }
        report.cost = Some(cost);
    }
    Ok(())
}

/// Records one step run at `rate` and finds the knee as a ramp climbs: the rate of the next step,
/// or `None` when the run stops here (no ramp; this step missed the objective — the knee stays the
/// step before, told why the next did not meet it —; or the next rate is past `--max-rate`).
fn ramp_on(
    report: &mut LoadReport,
    step: Step,
    rate: f64,
    args: &LoadArgs,
    slo: Option<Duration>,
) -> Option<f64> {
    let met = step.meets(slo);
    let p99 = step.saved_latency.p99;
    let why_not = if step.error_count() > 0 {
        format!(
            "{} notes failed at {:.0}/s",
            step.error_count(),
            step.offered_rate
        )
    } else {
        format!("p99 {p99:.1} ms at {:.0}/s", step.offered_rate)
    };
    report.steps.push(step);
    if !args.ramp {
        return None;
    }
    if !met {
        if let Some(k) = &mut report.knee {
            k.next = why_not;
        }
        return None;
    }
    report.knee = Some(Knee {
        rate: report.steps.last().map_or(rate, |s| s.offered_rate),
        p99_ms: p99,
        next: String::new(),
    });
    let next = rate * args.ramp_factor;
    if next > args.max_rate {
        if let Some(k) = &mut report.knee {
            k.next = format!("not tried: {next:.0}/s is past --max-rate");
        }
        return None;
    }
    Some(next)
}

#[cfg(test)]
mod cap_tests {
    use super::*;

    /// The warning starts at 80% of dev's cap and names a cap with room for the run.
    #[test]
    fn a_run_near_devs_cap_is_warned_with_the_flag_that_raises_it() {
        assert_eq!(near_cap(1024, 800), None);
        let near = near_cap(1024, 2000).unwrap();
        assert!(
            near.contains("at least 2000 connections")
                && near.contains("dev serves 1024")
                && near.ends_with("`notesctl dev --max-connections 4096`"),
            "{near}"
        );
        assert!(near_cap(1024, 820).is_some());
        assert_eq!(higher_cap(1024, 100), 2048, "always above today's cap");
        let refused = refused_past_cap(1818, 1024, 2000);
        assert!(
            refused.starts_with("dev refused 1818 connections past its --max-connections (1024)")
                && refused.contains("--max-connections 4096"),
            "{refused}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(argv: &[&str]) -> LoadArgs {
        use clap::Parser;
        let mut all = vec!["notesctl", "load"];
        all.extend_from_slice(argv);
        match crate::Cli::try_parse_from(all).expect("parses").command {
            crate::Command::Load(a) => a,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_load_users_are_the_stages_own_unless_named() {
        let no_token = || anyhow::bail!("not read when a password is given");
        let given = args(&["--password", "a long secret"]);
        let prefix = user_prefix(&given, "dev", no_token).unwrap();
        assert_eq!(
            prefix,
            crate::names::check_user("load", "dev", "a long secret")
        );
        assert_ne!(prefix, "notesctl-load");
        assert_ne!(prefix, user_prefix(&given, "prod", no_token).unwrap());
        let local = args(&["--local"]);
        assert_eq!(
            user_prefix(&local, "dev", || Ok("token".into())).unwrap(),
            crate::names::check_user("load", "dev", "token")
        );
        let named = args(&["--user-prefix", "mine", "--password", "a long secret"]);
        assert_eq!(user_prefix(&named, "dev", no_token).unwrap(), "mine");
    }

    /// A step at `rate` whose every note took `p99_ms`.
    fn step_at(rate: f64, p99_ms: u64) -> Step {
        Step {
            target_rate: rate,
            offered_rate: rate,
            sustained_rate: rate,
            sent: 100,
            accepted: 100,
            saved: 100,
            public: 0,
            saved_latency: Latency::of(vec![Duration::from_millis(p99_ms); 100]),
            fanout_latency: Latency::default(),
            errors: Default::default(),
            seconds: 1.0,
        }
    }

    fn empty_report() -> LoadReport {
        LoadReport {
            api_url: "http://x".into(),
            users: 1,
            sockets: 1,
            public_ratio: 0.0,
            slo_ms: Some(20.0),
            steps: Vec::new(),
            knee: None,
            ramp: true,
            cleanup: Cleanup::default(),
            cost: None,
            notes: Vec::new(),
            problem: None,
        }
    }

    /// Steps whose p99 crosses `--slo` in the middle of a ramp: the ramp climbs by `--ramp-factor`
    /// while p99 stays under it, stops at the first step past it, and the knee is the last step
    /// under it — with why the next step missed.
    #[test]
    fn the_knee_is_the_last_step_under_the_slo() {
        let ramp = args(&["--local", "--ramp", "--rate", "10", "--ramp-factor", "2"]);
        let slo = Some(Duration::from_millis(20));
        // p99 at 10, 20, 40, 80 and 160 notes/s: the objective is missed from 80/s on.
        let p99s = [(10.0, 5), (20.0, 8), (40.0, 15), (80.0, 30), (160.0, 60)];
        let mut report = empty_report();
        let mut rate = 10.0;
        let mut tried = Vec::new();
        for (at, p99) in p99s {
            assert_eq!(rate, at, "each step the rate of the one before times 2");
            tried.push(rate);
            match ramp_on(&mut report, step_at(rate, p99), rate, &ramp, slo) {
                Some(next) => rate = next,
                None => break,
            }
        }
        assert_eq!(
            tried,
            [10.0, 20.0, 40.0, 80.0],
            "stops at the first step past --slo"
        );
        assert_eq!(report.steps.len(), 4);
        let knee = report.knee.clone().expect("a knee");
        assert_eq!((knee.rate, knee.p99_ms), (40.0, 15.0), "{knee:?}");
        assert_eq!(knee.next, "p99 30.0 ms at 80/s");
        assert!(
            report
                .to_string()
                .contains("knee: 40 notes/s with p99 15.0 ms; the next step: p99 30.0 ms at 80/s"),
            "{report}"
        );

        // Failures stop the ramp as a missed p99 does; the knee is the step before them.
        let mut report = empty_report();
        assert_eq!(
            ramp_on(&mut report, step_at(10.0, 5), 10.0, &ramp, slo),
            Some(20.0)
        );
        let mut failing = step_at(20.0, 5);
        failing.errors.insert("HTTP 503".into(), 3);
        assert_eq!(ramp_on(&mut report, failing, 20.0, &ramp, slo), None);
        let knee = report.knee.expect("a knee");
        assert_eq!(
            (knee.rate, knee.next.as_str()),
            (10.0, "3 notes failed at 20/s")
        );

        // Without --ramp, one step and no knee.
        let mut report = empty_report();
        let once = args(&["--local", "--rate", "10"]);
        assert_eq!(
            ramp_on(&mut report, step_at(10.0, 5), 10.0, &once, slo),
            None
        );
        assert!(report.knee.is_none());
    }
}
