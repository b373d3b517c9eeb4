//! The manual path: receive from the DLQ, send to the queue keeping body and attributes (and FIFO
//! group and deduplication ids), and delete from the DLQ only what the queue accepted — a crash may
//! duplicate a batch, never lose a message.
//!
//! The run is bounded: it handles at most `--max` messages, or as many as the DLQ held when it
//! started, so messages that keep coming back cannot keep it going. A message the queue refuses is
//! sent again up to `--refusals` times (once, if SQS says the fault is the sender's), then left in
//! the DLQ and reported by id. A passing failure is retried within `--timeout`; a lasting one stops
//! the run, saying how far it got.

use std::collections::{HashSet, VecDeque};
use std::time::{Duration, Instant};

use aws_sdk_sqs::Client;
use aws_sdk_sqs::operation::send_message_batch::SendMessageBatchOutput;
use aws_sdk_sqs::types::{
    DeleteMessageBatchRequestEntry, Message, MessageSystemAttributeName,
    SendMessageBatchRequestEntry,
};
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use super::{RedriveArgs, RedriveReport, Refused};
use crate::aws::queues::Queues;
use crate::aws::{Failure, classify, explain, failure_of, is_transient, jittered, persist};
use crate::context::{Context, Deadline};

/// Moves messages by hand until the bound, the DLQ's end, or the deadline. A lasting failure is an
/// error naming how many messages had moved; a passing one that outlasts `--timeout` is the report's
/// problem (exit 1), like the deadline itself.
pub async fn run(
    ctx: &Context,
    sqs: &Client,
    queues: &Queues,
    args: &RedriveArgs,
    deadline: &Deadline,
    report: &mut RedriveReport,
) -> anyhow::Result<()> {
    let bound = args.max.unwrap_or(report.found);
    let mover = Mover {
        ctx,
        sqs,
        queues,
        args,
        deadline,
        fifo: queues.queue.url.ends_with(".fifo"),
        bound,
        bar: ctx.progress_enabled().then(|| {
            let bar = indicatif::ProgressBar::new(bound);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} moving {pos}/{len} [{bar:30}] {per_sec} {msg}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        }),
    };
    let result = mover.run(report).await;
    if let Some(bar) = &mover.bar {
        bar.finish_and_clear();
    }
    match result {
        Ok(()) => Ok(()),
        Err(e) if is_transient(&e) => {
            report.problem = Some(format!(
                "stopped at --timeout {} after moving {} of {}: {e:#}. Nothing was lost; run the command again (a batch in flight reappears after --visibility-timeout)",
                deadline.shown(),
                report.moved,
                report.found
            ));
            Ok(())
        }
        Err(e) => Err(e.context(format!(
            "redrive stopped after moving {} of {} messages; nothing was lost, run it again once this is fixed",
            report.moved, report.found
        ))),
    }
}

struct Mover<'a> {
    ctx: &'a Context,
    sqs: &'a Client,
    queues: &'a Queues,
    args: &'a RedriveArgs,
    deadline: &'a Deadline,
    fifo: bool,
    /// At most this many messages: `--max`, or the DLQ's depth when the run started.
    bound: u64,
    /// On a terminal: how far the run has got, in place of a line per batch.
    bar: Option<indicatif::ProgressBar>,
}

/// The most one SendMessageBatch may carry, bodies and attributes together. SQS documents 1 MiB
/// since 2025 (256 KiB before, and on emulators that follow the older quota); the smaller is used,
/// which costs only more requests for large messages.
pub const MAX_BATCH_BYTES: usize = 262_144;

/// SQS's answer to one part of a batch.
enum PartSent {
    Answered(SendMessageBatchOutput),
    /// The whole request refused for the sender's fault.
    Refused {
        code: String,
        reason: String,
    },
}

/// What a message weighs in a batch: its body, and each attribute's name, type and value.
fn payload_bytes(m: &Message) -> usize {
    let attributes: usize = m
        .message_attributes()
        .into_iter()
        .flatten()
        .map(|(name, v)| {
            name.len()
                + v.data_type().len()
                + v.string_value().map_or(0, str::len)
                + v.binary_value().map_or(0, |b| b.as_ref().len())
        })
        .sum();
    m.body().map_or(0, str::len) + attributes
}

/// Consecutive parts of at most ten entries and `limit` bytes (a message heavier than the limit
/// alone goes alone: SQS names it).
fn split_by_size(sizes: &[usize], limit: usize) -> Vec<Vec<usize>> {
    let mut parts: Vec<Vec<usize>> = Vec::new();
    let mut weight = 0;
    for (k, &size) in sizes.iter().enumerate() {
        match parts.last_mut() {
            Some(part) if part.len() < 10 && weight + size <= limit => {
                part.push(k);
                weight += size;
            }
            _ => {
                parts.push(vec![k]);
                weight = size;
            }
        }
    }
    parts
}

/// What became of one received batch.
#[derive(Default)]
struct Sent<'m> {
    accepted: Vec<&'m Message>,
    refused: Vec<Refused>,
}

impl Mover<'_> {
    async fn run(&self, report: &mut RedriveReport) -> anyhow::Result<()> {
        let bound = self.bound;
        let started = Instant::now();
        let mut given_up: HashSet<String> = HashSet::new();
        let mut empty_polls = 0;
        let mut waiting_since: Option<Instant> = None;
        while report.moved + report.failed < bound {
            if self.deadline.expired() {
                report.problem = Some(format!(
                    "--timeout {} came after moving {} of {}; the rest stay in {}: run the command again",
                    self.deadline.shown(),
                    report.moved,
                    report.found,
                    self.queues.dlq.name
                ));
                return Ok(());
            }
            let want = (bound - report.moved - report.failed).min(10) as i32;
            let received = self.receive(want, report.moved).await?;
            // One given up on earlier in this run is back after its visibility timeout: it stays.
            let messages: Vec<Message> = received
                .into_iter()
                .filter(|m| !given_up.contains(m.message_id().unwrap_or_default()))
                .collect();
            if messages.is_empty() {
                empty_polls += 1;
                if empty_polls < 2 {
                    continue;
                }
                // Messages hidden by an interrupted earlier run come back when their visibility
                // timeout ends: wait for them rather than stop short. Those that came back between
                // the last receive and this count are visible: the next receive takes them.
                let depth = persist(self.deadline, || self.queues.measure()).await?;
                let pending =
                    (depth.dlq.visible + depth.dlq.in_flight).saturating_sub(given_up.len() as u64);
                if pending == 0 {
                    break;
                }
                let waited = waiting_since.get_or_insert_with(Instant::now).elapsed();
                let patience = Duration::from_secs(u64::from(self.args.visibility_timeout) + 5);
                if waited > patience {
                    report.problem = Some(format!(
                        "{pending} messages were still hidden in {} after waiting {}s (longer than --visibility-timeout); they stay there: another consumer may hold them, run the command again later",
                        self.queues.dlq.name,
                        patience.as_secs()
                    ));
                    break;
                }
                let waiting = format!(
                    "{pending} messages are in flight in {} (an interrupted run?); waiting for them",
                    self.queues.dlq.name
                );
                match &self.bar {
                    Some(bar) => bar.set_message(waiting),
                    None => self.ctx.say(waiting),
                }
                continue;
            }
            empty_polls = 0;
            waiting_since = None;
            let sent = self.send(&messages).await?;
            for r in sent.refused {
                tracing::warn!(
                    message_id = r.message_id,
                    code = r.code,
                    reason = r.reason,
                    "the queue refused a message; it stays in the DLQ"
                );
                given_up.insert(r.message_id.clone());
                report.failed += 1;
                report.refused.push(r);
            }
            // Sent is moved: a message the DLQ keeps after this goes to the queue twice, never nowhere.
            report.moved += sent.accepted.len() as u64;
            let kept = self.delete(&sent.accepted).await?;
            if kept > 0 {
                let note = format!(
                    "{kept} moved messages could not be deleted from {}; the next run moves them again",
                    self.queues.dlq.name
                );
                report.problem = Some(match report.problem.take() {
                    Some(p) => format!("{p}; {note}"),
                    None => note,
                });
            }
            match &self.bar {
                Some(bar) => {
                    bar.set_position(report.moved + report.failed);
                    bar.set_message("");
                }
                None => self
                    .ctx
                    .say(format!("moved {} of {}", report.moved, report.found)),
            }
            if let Some(rate) = self.args.max_per_second.filter(|r| *r > 0) {
                let due = Duration::from_secs_f64(report.moved as f64 / f64::from(rate));
                if let Some(wait) = due.checked_sub(started.elapsed()) {
                    self.deadline.sleep(wait).await;
                }
            }
        }
        Ok(())
    }

    async fn receive(&self, want: i32, moved: u64) -> anyhow::Result<Vec<Message>> {
        let what = format!(
            "receiving from {} after moving {moved}",
            self.queues.dlq.name
        );
        let what = &what;
        let out = persist(self.deadline, || {
            let call = self
                .sqs
                .receive_message()
                .queue_url(&self.queues.dlq.url)
                .max_number_of_messages(want)
                .wait_time_seconds(1)
                .visibility_timeout(self.args.visibility_timeout as i32)
                .message_attribute_names("All")
                .message_system_attribute_names(MessageSystemAttributeName::All)
                .send();
            async move { call.await.map_err(|e| explain(what, &e)) }
        })
        .await?;
        Ok(out.messages.unwrap_or_default())
    }

    fn entry(&self, id: String, m: &Message) -> anyhow::Result<SendMessageBatchRequestEntry> {
        let sys = m.attributes();
        let system = |name: MessageSystemAttributeName| sys.and_then(|a| a.get(&name)).cloned();
        let mut entry = SendMessageBatchRequestEntry::builder()
            .id(id)
            .message_body(m.body().unwrap_or_default())
            .set_message_attributes(m.message_attributes().cloned());
        if self.fifo {
            entry = entry
                .set_message_group_id(system(MessageSystemAttributeName::MessageGroupId))
                .set_message_deduplication_id(system(
                    MessageSystemAttributeName::MessageDeduplicationId,
                ));
        }
        entry
            .build()
            .map_err(|e| anyhow::anyhow!("building a send entry: {e}"))
    }

    /// Sends the batch; what the queue refuses is sent again, up to `--refusals` times in all. The
    /// batch goes in parts of at most [`MAX_BATCH_BYTES`], and a part SQS refuses as a whole for the
    /// sender's fault (`BatchRequestTooLong`, or one message it cannot take, which fails every other
    /// entry with it) is halved until the message at fault stands alone: it is refused by id, and the
    /// rest move.
    async fn send<'m>(&self, messages: &'m [Message]) -> anyhow::Result<Sent<'m>> {
        let mut sent = Sent::default();
        let mut tries = vec![0u32; messages.len()];
        let mut pending: Vec<usize> = (0..messages.len()).collect();
        let mut delay = Duration::from_millis(200);
        while !pending.is_empty() {
            let sizes: Vec<usize> = pending
                .iter()
                .map(|&i| payload_bytes(&messages[i]))
                .collect();
            let mut parts: VecDeque<Vec<usize>> = split_by_size(&sizes, MAX_BATCH_BYTES)
                .into_iter()
                .map(|part| part.into_iter().map(|k| pending[k]).collect())
                .collect();
            let mut again = Vec::new();
            while let Some(part) = parts.pop_front() {
                match self.send_part(messages, &part).await? {
                    PartSent::Answered(out) => {
                        self.take_answer(messages, &out, &mut tries, &mut sent, &mut again)
                    }
                    PartSent::Refused { code, reason } if part.len() > 1 => {
                        tracing::debug!(
                            code,
                            reason,
                            n = part.len(),
                            "a batch refused as a whole: halving it"
                        );
                        let (a, b) = part.split_at(part.len() / 2);
                        parts.push_front(b.to_vec());
                        parts.push_front(a.to_vec());
                    }
                    PartSent::Refused { code, reason } => sent.refused.push(Refused {
                        message_id: messages[part[0]]
                            .message_id()
                            .unwrap_or_default()
                            .to_owned(),
                        code,
                        reason,
                    }),
                }
            }
            pending = again;
            if !pending.is_empty() && !self.deadline.sleep(jittered(delay)).await {
                // Out of time: the rest stay in the DLQ (hidden until --visibility-timeout) and the
                // run stops at the top of its loop.
                break;
            }
            delay = (delay * 2).min(Duration::from_secs(5));
        }
        Ok(sent)
    }

    /// One SendMessageBatch of `part`: SQS's answer per entry, or its refusal of the whole request
    /// for the sender's fault. Any other failure ends the run (after `persist`'s retries).
    async fn send_part(&self, messages: &[Message], part: &[usize]) -> anyhow::Result<PartSent> {
        let what = format!("sending to {}", self.queues.queue.name);
        let what = &what;
        let entries = part
            .iter()
            .map(|&i| self.entry(format!("m{i}"), &messages[i]))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let entries = &entries;
        let refusal: std::sync::Mutex<Option<(String, String)>> = Default::default();
        let refusal = &refusal;
        let answer = persist(self.deadline, || {
            let call = self
                .sqs
                .send_message_batch()
                .queue_url(&self.queues.queue.url)
                .set_entries(Some(entries.clone()))
                .send();
            async move {
                call.await.map_err(|e| {
                    if classify(&e) == Failure::Refused {
                        let code = e.code().unwrap_or("Refused").to_owned();
                        let reason = e.message().unwrap_or("no reason given").to_owned();
                        *refusal.lock().unwrap() = Some((code, reason));
                    }
                    explain(what, &e)
                })
            }
        })
        .await;
        match answer {
            Ok(out) => Ok(PartSent::Answered(out)),
            Err(e) if failure_of(&e) == Some(Failure::Refused) => {
                let (code, reason) = refusal
                    .lock()
                    .unwrap()
                    .take()
                    .unwrap_or_else(|| ("Refused".into(), format!("{e:#}")));
                Ok(PartSent::Refused { code, reason })
            }
            Err(e) => Err(e),
        }
    }

    /// Sorts SQS's answer to a batch: accepted, refused for good (the sender's fault, or
    /// `--refusals` reached), or to send again.
    fn take_answer<'m>(
        &self,
        messages: &'m [Message],
        out: &SendMessageBatchOutput,
        tries: &mut [u32],
        sent: &mut Sent<'m>,
        again: &mut Vec<usize>,
    ) {
        let index = |id: &str| id.strip_prefix('m').and_then(|n| n.parse::<usize>().ok());
        for ok in out.successful() {
            if let Some(i) = index(ok.id()).filter(|i| *i < messages.len()) {
                sent.accepted.push(&messages[i]);
            }
        }
        for f in out.failed() {
            let Some(i) = index(f.id()).filter(|i| *i < messages.len()) else {
                continue;
            };
            tries[i] += 1;
            if f.sender_fault() || tries[i] >= self.args.refusals {
                sent.refused.push(Refused {
                    message_id: messages[i].message_id().unwrap_or_default().to_owned(),
                    code: f.code().to_owned(),
                    reason: f.message().unwrap_or("no reason given").to_owned(),
                });
            } else {
                again.push(i);
            }
        }
    }

    /// Deletes what the queue accepted from the DLQ; how many could not be deleted.
    async fn delete(&self, accepted: &[&Message]) -> anyhow::Result<u64> {
        let what = format!(
            "deleting moved messages from {} (they were sent; a rerun may send them again)",
            self.queues.dlq.name
        );
        let what = &what;
        let mut pending: Vec<usize> = (0..accepted.len()).collect();
        // A receipt handle SQS no longer takes (the message's visibility ended): it stays in the DLQ.
        let mut kept = 0;
        let mut delay = Duration::from_millis(200);
        for attempt in 1..=self.args.refusals {
            if pending.is_empty() {
                break;
            }
            let entries = pending
                .iter()
                .map(|&i| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(format!("m{i}"))
                        .receipt_handle(accepted[i].receipt_handle().unwrap_or_default())
                        .build()
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| anyhow::anyhow!("building a delete entry: {e}"))?;
            let entries = &entries;
            let out = persist(self.deadline, || {
                let call = self
                    .sqs
                    .delete_message_batch()
                    .queue_url(&self.queues.dlq.url)
                    .set_entries(Some(entries.clone()))
                    .send();
                async move { call.await.map_err(|e| explain(what, &e)) }
            })
            .await?;
            kept += out.failed().iter().filter(|f| f.sender_fault()).count() as u64;
            pending = out
                .failed()
                .iter()
                .filter(|f| !f.sender_fault())
                .filter_map(|f| f.id().strip_prefix('m').and_then(|n| n.parse().ok()))
                .filter(|i: &usize| *i < accepted.len())
                .collect();
            if pending.is_empty()
                || attempt == self.args.refusals
                || !self.deadline.sleep(jittered(delay)).await
            {
                break;
            }
            delay *= 2;
        }
        Ok(kept + pending.len() as u64)
    }
}

#[cfg(test)]
mod tests {
    //! Refusals, bounds and lasting failures on recorded SQS answers; moving on moto is in
    //! tests/tests/ops_moto.rs.
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::commands::redrive::Method;
    use crate::commands::redrive::testing::{answer, args, ctx, queues, report};
    use aws_sdk_sqs::operation::delete_message_batch::DeleteMessageBatchOutput;
    use aws_sdk_sqs::operation::get_queue_attributes::GetQueueAttributesOutput;
    use aws_sdk_sqs::operation::receive_message::ReceiveMessageOutput;
    use aws_sdk_sqs::operation::send_message_batch::SendMessageBatchOutput;
    use aws_sdk_sqs::types::{
        BatchResultErrorEntry, DeleteMessageBatchResultEntry, QueueAttributeName,
        SendMessageBatchResultEntry,
    };
    use aws_smithy_mocks::{Rule, mock};

    fn message(id: &str) -> Message {
        Message::builder()
            .message_id(id)
            .receipt_handle(format!("r-{id}"))
            .body(format!(r#"{{"detail":{{"noteId":"{id}"}}}}"#))
            .build()
    }

    /// ReceiveMessage answering `batches` in turn, then nothing.
    fn receives(batches: &[&[&str]]) -> Rule {
        let mut rule = mock!(Client::receive_message).sequence();
        for batch in batches {
            let ids: Vec<String> = batch.iter().map(|s| s.to_string()).collect();
            rule = rule.output(move || {
                ReceiveMessageOutput::builder()
                    .set_messages(Some(ids.iter().map(|id| message(id)).collect()))
                    .build()
            });
        }
        rule.output(|| ReceiveMessageOutput::builder().build())
            .repeatedly()
            .build()
    }

    /// SendMessageBatch refusing the entries whose body names a note in `refuse` (with the sender
    /// at fault if `sender_fault`), accepting the rest; every body sent goes to `log`.
    fn sends(
        refuse: &'static [&'static str],
        sender_fault: bool,
        log: Arc<Mutex<Vec<String>>>,
    ) -> Rule {
        mock!(Client::send_message_batch).then_compute_output(move |req| {
            let (mut ok, mut failed) = (Vec::new(), Vec::new());
            for e in req.entries() {
                log.lock().unwrap().push(e.message_body().to_owned());
                if refuse
                    .iter()
                    .any(|r| e.message_body().contains(&format!("\"{r}\"")))
                {
                    failed.push(
                        BatchResultErrorEntry::builder()
                            .id(e.id())
                            .sender_fault(sender_fault)
                            .code("InternalError")
                            .message("try later")
                            .build()
                            .unwrap(),
                    );
                } else {
                    ok.push(
                        SendMessageBatchResultEntry::builder()
                            .id(e.id())
                            .message_id(format!("new-{}", e.id()))
                            .md5_of_message_body("x")
                            .build()
                            .unwrap(),
                    );
                }
            }
            SendMessageBatchOutput::builder()
                .set_successful(Some(ok))
                .set_failed(Some(failed))
                .build()
                .unwrap()
        })
    }

    /// DeleteMessageBatch deleting everything; every receipt handle goes to `log`.
    fn deletes(log: Arc<Mutex<Vec<String>>>) -> Rule {
        mock!(Client::delete_message_batch).then_compute_output(move |req| {
            let ok = req
                .entries()
                .iter()
                .map(|e| {
                    log.lock().unwrap().push(e.receipt_handle().to_owned());
                    DeleteMessageBatchResultEntry::builder()
                        .id(e.id())
                        .build()
                        .unwrap()
                })
                .collect();
            DeleteMessageBatchOutput::builder()
                .set_successful(Some(ok))
                .set_failed(Some(vec![]))
                .build()
                .unwrap()
        })
    }

    async fn manual(
        rules: &[&Rule],
        args: &RedriveArgs,
        found: u64,
    ) -> (anyhow::Result<()>, RedriveReport) {
        let q = queues(rules);
        let mut r = report(Method::Manual, found);
        let deadline = Deadline::after(args.timeout);
        let result = run(&ctx(), &q.sqs, &q, args, &deadline, &mut r).await;
        (result, r)
    }

    #[tokio::test]
    async fn a_message_the_queue_keeps_refusing_stays_in_the_dlq_and_is_named() {
        let (sent, deleted) = (Arc::default(), Arc::default());
        let receive = receives(&[&["a", "b"]]);
        let send = sends(&["b"], false, Arc::clone(&sent));
        let delete = deletes(Arc::clone(&deleted));
        let (result, r) = manual(&[&receive, &send, &delete], &args(), 2).await;
        result.unwrap();
        assert_eq!((r.moved, r.failed), (1, 1));
        assert_eq!(r.refused.len(), 1);
        assert_eq!(
            (r.refused[0].message_id.as_str(), r.refused[0].code.as_str()),
            ("b", "InternalError")
        );
        assert_eq!(
            send.num_calls(),
            3,
            "sent once and tried twice more (--refusals 3)"
        );
        let sent = sent.lock().unwrap().clone();
        assert_eq!(sent.iter().filter(|b| b.contains("\"a\"")).count(), 1);
        assert_eq!(sent.iter().filter(|b| b.contains("\"b\"")).count(), 3);
        assert_eq!(*deleted.lock().unwrap(), vec!["r-a".to_owned()], "b stays");
        assert_eq!(
            crate::output::Report::exit(&r),
            crate::output::Exit::Problem
        );
        assert!(r.to_string().contains("✗ b  InternalError"), "{r}");
    }

    #[test]
    fn batches_are_split_by_their_total_size_and_ten_at_most() {
        assert_eq!(
            split_by_size(&[1; 12], 100),
            [(0..10).collect::<Vec<_>>(), vec![10, 11]]
        );
        assert_eq!(
            split_by_size(&[60, 50, 40, 200, 10], 100),
            [vec![0], vec![1, 2], vec![3], vec![4]],
            "a message heavier than the limit goes alone"
        );
        let big = Message::builder()
            .message_id("x")
            .body("y".repeat(300))
            .build();
        assert_eq!(payload_bytes(&big), 300);
    }

    /// SendMessageBatch refusing the whole request (400, the sender's fault) whenever it carries a
    /// note in `poison`, as SQS does for `BatchRequestTooLong` and moto for one oversize message;
    /// accepting every entry otherwise. Every request's note ids go to `log`.
    fn refuses_whole_batches_with(poison: &'static str, log: Arc<Mutex<Vec<usize>>>) -> Rule {
        mock!(Client::send_message_batch)
            .match_requests(move |req| {
                log.lock().unwrap().push(req.entries().len());
                req.entries()
                    .iter()
                    .any(|e| e.message_body().contains(&format!("\"{poison}\"")))
            })
            .then_http_response(|| {
                aws_smithy_runtime_api::http::Response::new(
                    aws_smithy_runtime_api::http::StatusCode::try_from(400).unwrap(),
                    aws_smithy_types::body::SdkBody::from(
                        r#"{"__type":"com.amazonaws.sqs#InvalidParameterValue","message":"Message must be shorter than 1024 bytes."}"#,
                    ),
                )
            })
    }

    /// One message SQS cannot take makes it refuse the whole batch: the batch is halved until the
    /// message stands alone, the other nine move, and it stays in the DLQ, named by id.
    #[tokio::test]
    async fn a_batch_refused_as_a_whole_is_halved_until_the_poison_is_named() {
        let (sizes, sent, deleted) = (Arc::default(), Arc::default(), Arc::default());
        let ids = ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"];
        let receive = receives(&[&ids]);
        let refuse = refuses_whole_batches_with("g", Arc::clone(&sizes));
        let send = sends(&[], false, sent);
        let delete = deletes(Arc::clone(&deleted));
        let (result, r) = manual(&[&receive, &refuse, &send, &delete], &args(), 10).await;
        result.unwrap();
        assert_eq!((r.moved, r.failed), (9, 1), "{r:?}");
        assert_eq!(r.refused.len(), 1);
        assert_eq!(
            (r.refused[0].message_id.as_str(), r.refused[0].code.as_str()),
            ("g", "InvalidParameterValue")
        );
        assert!(r.refused[0].reason.contains("shorter than 1024"), "{r:?}");
        // 10 → 5 + 5 (f..j refused) → 2 + 3 (h..j refused: f,g) → 1 + 1 (g alone, refused).
        let refused_sizes: Vec<usize> = sizes.lock().unwrap().clone();
        assert!(
            refused_sizes.contains(&10) && refused_sizes.contains(&1),
            "{refused_sizes:?}"
        );
        assert_eq!(deleted.lock().unwrap().len(), 9, "g stays in the DLQ");
    }

    #[tokio::test]
    async fn a_refusal_that_is_the_senders_fault_is_not_sent_again() {
        let (sent, deleted) = (Arc::default(), Arc::default());
        let receive = receives(&[&["a", "b"]]);
        let send = sends(&["b"], true, sent);
        let delete = deletes(deleted);
        let (result, r) = manual(&[&receive, &send, &delete], &args(), 2).await;
        result.unwrap();
        assert_eq!(send.num_calls(), 1);
        assert_eq!((r.moved, r.failed, r.refused.len()), (1, 1, 1));
    }

    #[tokio::test]
    async fn without_max_the_run_ends_at_the_depth_it_started_with() {
        // A DLQ that never runs dry (new failures keep arriving): the run stops at what it found.
        let n = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&n);
        let receive = mock!(Client::receive_message).then_compute_output(move |req| {
            let want = req.max_number_of_messages().unwrap_or(1) as usize;
            let first = counter.fetch_add(want, Ordering::SeqCst);
            ReceiveMessageOutput::builder()
                .set_messages(Some(
                    (first..first + want)
                        .map(|i| message(&format!("n{i}")))
                        .collect(),
                ))
                .build()
        });
        let (send, delete) = (sends(&[], false, Arc::default()), deletes(Arc::default()));
        let (result, r) = manual(&[&receive, &send, &delete], &args(), 25).await;
        result.unwrap();
        assert_eq!((r.moved, r.failed, r.problem), (25, 0, None));
        assert_eq!(receive.num_calls(), 3);
        assert_eq!(
            n.load(Ordering::SeqCst),
            25,
            "the last receive asked for the 5 left"
        );

        let (receive2, send2, delete2) = (
            mock!(Client::receive_message).then_compute_output(|_| {
                ReceiveMessageOutput::builder()
                    .messages(message("again"))
                    .build()
            }),
            sends(&[], false, Arc::default()),
            deletes(Arc::default()),
        );
        let max = RedriveArgs {
            max: Some(4),
            ..args()
        };
        let (result, r) = manual(&[&receive2, &send2, &delete2], &max, 25).await;
        result.unwrap();
        assert_eq!(r.moved, 4, "--max bounds it tighter");
    }

    #[tokio::test]
    async fn a_lasting_failure_stops_with_how_far_it_got() {
        let receive = mock!(Client::receive_message)
            .sequence()
            .output(|| {
                ReceiveMessageOutput::builder()
                    .messages(message("a"))
                    .build()
            })
            .http_response(|| {
                answer(
                    400,
                    "application/x-amz-json-1.0",
                    r#"{"__type":"com.amazonaws.sqs#AccessDenied","message":"no"}"#,
                )
            })
            .build();
        let (send, delete) = (sends(&[], false, Arc::default()), deletes(Arc::default()));
        let (result, _) = manual(&[&receive, &send, &delete], &args(), 5).await;
        let e = format!("{:#}", result.expect_err("an error"));
        assert!(
            e.contains("after moving 1 of 5") && e.contains("AccessDenied") && !e.contains('\n'),
            "{e}"
        );
    }

    /// GetQueueAttributes answering the DLQ's depth as `(visible, in_flight)`, in turn.
    fn depths(seq: &[(u64, u64)]) -> Rule {
        let mut rule = mock!(Client::get_queue_attributes).sequence();
        for &(visible, in_flight) in seq {
            rule = rule.output(move || {
                GetQueueAttributesOutput::builder()
                    .attributes(
                        QueueAttributeName::ApproximateNumberOfMessages,
                        visible.to_string(),
                    )
                    .attributes(
                        QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
                        in_flight.to_string(),
                    )
                    .attributes(
                        QueueAttributeName::ApproximateNumberOfMessagesDelayed,
                        "0".to_owned(),
                    )
                    .build()
            });
        }
        rule.build()
    }

    #[tokio::test]
    async fn messages_back_from_flight_between_receive_and_count_are_moved_not_left() {
        // Two empty receives; by the time the DLQ is counted the two hidden messages are visible
        // again (in flight 0). The run must receive them, not stop.
        let receive = mock!(Client::receive_message)
            .sequence()
            .output(|| ReceiveMessageOutput::builder().build())
            .times(2)
            .output(|| {
                ReceiveMessageOutput::builder()
                    .messages(message("a"))
                    .messages(message("b"))
                    .build()
            })
            .build();
        // measure() counts both queues.
        let depth = depths(&[(2, 0), (2, 0)]);
        let (send, delete) = (sends(&[], false, Arc::default()), deletes(Arc::default()));
        let (result, r) = manual(&[&receive, &depth, &send, &delete], &args(), 2).await;
        result.unwrap();
        assert_eq!((r.moved, r.failed, r.problem), (2, 0, None));
    }

    #[tokio::test]
    async fn messages_hidden_longer_than_the_visibility_timeout_are_a_problem() {
        // Someone else holds one message for good: after --visibility-timeout and a margin the run
        // stops, and says so (exit 1) rather than reporting success with a message left behind.
        let receive =
            mock!(Client::receive_message).then_output(|| ReceiveMessageOutput::builder().build());
        let depth = mock!(Client::get_queue_attributes).then_compute_output(|_| {
            GetQueueAttributesOutput::builder()
                .attributes(QueueAttributeName::ApproximateNumberOfMessages, "0")
                .attributes(
                    QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
                    "1",
                )
                .attributes(QueueAttributeName::ApproximateNumberOfMessagesDelayed, "0")
                .build()
        });
        let (send, delete) = (sends(&[], false, Arc::default()), deletes(Arc::default()));
        let quick = RedriveArgs {
            visibility_timeout: 0,
            ..args()
        };
        let (result, r) = manual(&[&receive, &depth, &send, &delete], &quick, 1).await;
        result.unwrap();
        assert_eq!((r.moved, r.failed), (0, 0));
        let problem = r.problem.clone().expect("a problem");
        assert!(
            problem.contains("1 messages were still hidden in p-note-processing-dlq")
                && problem.contains("run the command again"),
            "{problem}"
        );
        assert_eq!(
            crate::output::Report::exit(&r),
            crate::output::Exit::Problem
        );
        assert_eq!(send.num_calls(), 0);
    }

    #[tokio::test]
    async fn a_passing_failure_is_retried_and_nothing_is_lost() {
        let (sent, deleted) = (Arc::default(), Arc::default());
        let receive = receives(&[&["a"], &["b"]]);
        let send_log = Arc::clone(&sent);
        let send = mock!(Client::send_message_batch)
            .sequence()
            .http_response(|| answer(503, "application/x-amz-json-1.0", "{}"))
            .build();
        let ok = sends(&[], false, send_log);
        let delete = deletes(Arc::clone(&deleted));
        let (result, r) = manual(&[&receive, &send, &ok, &delete], &args(), 2).await;
        result.unwrap();
        assert_eq!((r.moved, r.failed, r.problem), (2, 0, None));
        assert_eq!(send.num_calls(), 1, "one 503");
        assert_eq!(
            *deleted.lock().unwrap(),
            vec!["r-a".to_owned(), "r-b".to_owned()]
        );
    }
}
