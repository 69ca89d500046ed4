//! Group commit for issuance.
//!
//! Every issued certificate must be durable before it is handed out, and
//! a durable commit waits for the disk (SQLite with `synchronous=FULL`
//! fsyncs the WAL; PostgreSQL flushes its WAL). One commit per certificate
//! caps issuance at the disk's flush rate. Instead, one writer task takes
//! whatever issuance requests are waiting (up to [`MAX_BATCH`]) and records
//! them in one transaction: each request in its own savepoint, so a refused
//! one (a replayed token, a duplicate serial) is undone alone, and one
//! commit makes the whole batch durable. Every caller is answered only
//! after that commit; if it fails, every request in the batch fails and its
//! caller receives no certificate. (A commit whose acknowledgement was lost
//! on the way back may still have recorded the batch: recorded and never
//! handed out, which is the safe side.) With no concurrency a batch is one
//! request, so a lone issuance waits no longer than before.

use sqlx::{AnyConnection, AnyPool};
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};

use crate::records::{CertificateRecord, Redeemed};
use crate::store::{Backend, begin_write, issue_item, redeem_item};
use crate::{Audit, StoreError};

/// Requests recorded in one transaction at most.
pub(crate) const MAX_BATCH: usize = 64;

/// An audit record's owned parts (requests cross into the writer task).
#[derive(Debug)]
pub(crate) struct OwnedAudit {
    pub actor: String,
    pub action: String,
}

impl OwnedAudit {
    pub fn new(a: Audit<'_>) -> OwnedAudit {
        OwnedAudit {
            actor: a.actor.to_string(),
            action: a.action.to_string(),
        }
    }

    fn borrow(&self) -> Audit<'_> {
        Audit {
            actor: &self.actor,
            action: &self.action,
        }
    }
}

#[derive(Debug)]
pub(crate) enum Job {
    Issue {
        rec: CertificateRecord,
        audit: OwnedAudit,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    Redeem {
        token: String,
        now: OffsetDateTime,
        rec: CertificateRecord,
        audit: OwnedAudit,
        reply: oneshot::Sender<Result<Redeemed, StoreError>>,
    },
}

/// A request's outcome before the commit: `keep` says whether its writes
/// stay in the transaction.
enum Outcome {
    Issue(Result<(), StoreError>),
    Redeem(Result<Redeemed, StoreError>),
}

impl Outcome {
    fn keep(&self) -> bool {
        matches!(
            self,
            Outcome::Issue(Ok(())) | Outcome::Redeem(Ok(Redeemed::Recorded))
        )
    }
}

/// The writer task's handle to the database.
#[derive(Debug, Clone)]
pub(crate) struct Writer {
    pub pool: AnyPool,
    pub backend: Backend,
    pub location: String,
}

/// Starts the writer; it ends when every sender (every `Store` clone) is
/// gone.
pub(crate) fn spawn(writer: Writer) -> mpsc::UnboundedSender<Job> {
    let (tx, mut rx) = mpsc::unbounded_channel::<Job>();
    tokio::spawn(async move {
        while let Some(first) = rx.recv().await {
            let mut jobs = vec![first];
            while jobs.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(j) => jobs.push(j),
                    Err(_) => break,
                }
            }
            writer.commit(jobs).await;
        }
    });
    tx
}

impl Writer {
    fn failed(&self, problem: &str) -> StoreError {
        StoreError::Failed {
            location: self.location.clone(),
            problem: problem.to_string(),
        }
    }

    async fn commit(&self, jobs: Vec<Job>) {
        let mut tx = match begin_write(&self.pool, self.backend, &self.location).await {
            Ok(tx) => tx,
            Err(e) => {
                let problem = e.to_string();
                for job in jobs {
                    job.answer(Outcome::Issue(Err(self.failed(&problem))), self);
                }
                return;
            }
        };
        // The audit chain's end is read once (and on PostgreSQL locked) for
        // the whole batch, advanced in memory per kept request, and saved
        // once before the commit.
        let mut head = match crate::audit::head(&mut tx, self.backend).await {
            Ok(h) => h,
            Err(e) => {
                let problem = e.to_string();
                let _ = tx.rollback().await;
                for job in jobs {
                    job.answer(Outcome::Issue(Err(self.failed(&problem))), self);
                }
                return;
            }
        };
        let mut outcomes = Vec::with_capacity(jobs.len());
        for job in &jobs {
            let outcome = match self.item(&mut tx, &mut head, job).await {
                Ok(o) => o,
                // The savepoint itself failed: the transaction is unusable.
                Err(e) => {
                    let problem = e.to_string();
                    let _ = tx.rollback().await;
                    for job in jobs {
                        job.answer(Outcome::Issue(Err(self.failed(&problem))), self);
                    }
                    return;
                }
            };
            outcomes.push(outcome);
        }
        let committed = if outcomes.iter().any(Outcome::keep) {
            match crate::audit::save_head(&mut tx, self.backend, &head).await {
                Ok(()) => tx.commit().await,
                Err(e) => {
                    let _ = tx.rollback().await;
                    Err(e)
                }
            }
        } else {
            tx.rollback().await
        };
        let commit_error = committed.err().map(|e| e.to_string());
        for (job, outcome) in jobs.into_iter().zip(outcomes) {
            match (&commit_error, outcome.keep()) {
                // A failed commit hands out nothing: a request that would
                // have been kept fails; refusals stand as they are.
                (Some(problem), true) => {
                    job.answer(Outcome::Issue(Err(self.failed(problem))), self)
                }
                _ => job.answer(outcome, self),
            }
        }
    }

    /// One request inside its own savepoint, undone unless it is kept.
    async fn item(
        &self,
        conn: &mut AnyConnection,
        head: &mut crate::audit::Head,
        job: &Job,
    ) -> Result<Outcome, sqlx::Error> {
        sqlx::query("SAVEPOINT issue_item")
            .execute(&mut *conn)
            .await?;
        let before = head.clone();
        let outcome = match job {
            Job::Issue { rec, audit, .. } => Outcome::Issue(
                issue_item(
                    conn,
                    self.backend,
                    &self.location,
                    head,
                    rec,
                    audit.borrow(),
                )
                .await,
            ),
            Job::Redeem {
                token,
                now,
                rec,
                audit,
                ..
            } => Outcome::Redeem(
                redeem_item(
                    conn,
                    self.backend,
                    &self.location,
                    head,
                    token,
                    *now,
                    rec,
                    audit.borrow(),
                )
                .await,
            ),
        };
        let end = if outcome.keep() {
            "RELEASE SAVEPOINT issue_item"
        } else {
            "ROLLBACK TO SAVEPOINT issue_item"
        };
        sqlx::query(end).execute(&mut *conn).await?;
        if !outcome.keep() {
            // Its audit record was undone with it.
            *head = before;
            // SQLite and PostgreSQL keep a savepoint after rolling back to
            // it; release it so savepoints do not pile up in the batch.
            sqlx::query("RELEASE SAVEPOINT issue_item")
                .execute(&mut *conn)
                .await?;
        }
        Ok(outcome)
    }
}

impl Job {
    fn answer(self, outcome: Outcome, w: &Writer) {
        // A caller that gave up (its request was cancelled) is not waiting.
        match (self, outcome) {
            (Job::Issue { reply, .. }, Outcome::Issue(r)) => {
                let _ = reply.send(r);
            }
            (Job::Redeem { reply, .. }, Outcome::Redeem(r)) => {
                let _ = reply.send(r);
            }
            (Job::Issue { reply, .. }, Outcome::Redeem(r)) => {
                let _ = reply.send(r.map(|_| ()));
            }
            (Job::Redeem { reply, .. }, Outcome::Issue(r)) => {
                let _ = reply.send(r.and_then(|()| Err(w.failed("internal: mismatched outcome"))));
            }
        }
    }
}
