//! Share fetch sessions (KIP-932): a member's `ShareFetch` requests name the partitions
//! to fetch once (epoch 0) and then only the changes, with an epoch that counts each
//! request; `ShareAcknowledge` moves the same epoch. Epoch -1 closes the session.

use std::collections::HashMap;
use std::sync::Mutex;

use thiserror::Error;
use uuid::Uuid;

/// The epoch that opens a session.
pub const INITIAL_EPOCH: i32 = 0;
/// The epoch that closes one.
pub const FINAL_EPOCH: i32 = -1;

/// A session request was refused (Kafka's error for each).
#[derive(Debug, Error, PartialEq, Eq)]
pub enum SessionError {
    /// No session for this member (`SHARE_SESSION_NOT_FOUND`).
    #[error("no share session for this member")]
    NotFound,
    /// The epoch is not the next one (`INVALID_SHARE_SESSION_EPOCH`).
    #[error("share session epoch {sent} is not the expected {expected}")]
    Epoch {
        /// What the client sent.
        sent: i32,
        /// What the session expects.
        expected: i32,
    },
    /// A request the protocol does not allow (`INVALID_REQUEST`): acknowledgements in
    /// a session-opening fetch, partitions to fetch in a closing one.
    #[error("{0}")]
    Invalid(&'static str),
}

#[derive(Debug, Clone)]
struct Session {
    epoch: i32,
    partitions: Vec<(Uuid, i32)>,
}

/// Every open share session, by (group, member).
#[derive(Debug, Default)]
pub struct Sessions {
    open: Mutex<HashMap<(String, String), Session>>,
}

/// What a fetch's session step decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchSession {
    /// The partitions to fetch from.
    pub partitions: Vec<(Uuid, i32)>,
    /// A new session: answer every partition, not only those with news.
    pub full: bool,
    /// The closing request: acknowledge, release the rest, fetch nothing.
    pub closing: bool,
}

fn next_epoch(epoch: i32) -> i32 {
    if epoch == i32::MAX {
        1
    } else {
        epoch + 1
    }
}

/// The open session of `key`, if `sent` is the epoch it expects next.
fn current<'a>(
    open: &'a mut HashMap<(String, String), Session>,
    key: &(String, String),
    sent: i32,
) -> Result<&'a mut Session, SessionError> {
    let session = open.get_mut(key).ok_or(SessionError::NotFound)?;
    if session.epoch != sent {
        return Err(SessionError::Epoch {
            sent,
            expected: session.epoch,
        });
    }
    Ok(session)
}

impl Sessions {
    /// Applies a `ShareFetch`'s epoch, partitions to add and partitions to forget.
    pub fn fetch(
        &self,
        group: &str,
        member: &str,
        epoch: i32,
        add: &[(Uuid, i32)],
        forget: &[(Uuid, i32)],
        has_acks: bool,
    ) -> Result<FetchSession, SessionError> {
        let key = (group.to_string(), member.to_string());
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        match epoch {
            INITIAL_EPOCH => {
                if has_acks {
                    return Err(SessionError::Invalid(
                        "acknowledgements in a share fetch that opens a session",
                    ));
                }
                let mut partitions = Vec::new();
                for p in add {
                    if !partitions.contains(p) {
                        partitions.push(*p);
                    }
                }
                open.insert(
                    key,
                    Session {
                        epoch: next_epoch(INITIAL_EPOCH),
                        partitions: partitions.clone(),
                    },
                );
                Ok(FetchSession {
                    partitions,
                    full: true,
                    closing: false,
                })
            }
            FINAL_EPOCH => {
                if !add.is_empty() {
                    return Err(SessionError::Invalid(
                        "partitions to fetch in a share fetch that closes the session",
                    ));
                }
                let session = open.remove(&key).ok_or(SessionError::NotFound)?;
                Ok(FetchSession {
                    partitions: session.partitions,
                    full: false,
                    closing: true,
                })
            }
            sent => {
                let session = current(&mut open, &key, sent)?;
                session.partitions.retain(|p| !forget.contains(p));
                for p in add {
                    if !session.partitions.contains(p) {
                        session.partitions.push(*p);
                    }
                }
                session.epoch = next_epoch(session.epoch);
                Ok(FetchSession {
                    partitions: session.partitions.clone(),
                    full: false,
                    closing: false,
                })
            }
        }
    }

    /// Applies a `ShareAcknowledge`'s epoch; returns the session's partitions when the
    /// request closes it (the caller releases what the member still holds there).
    pub fn acknowledge(
        &self,
        group: &str,
        member: &str,
        epoch: i32,
    ) -> Result<Option<Vec<(Uuid, i32)>>, SessionError> {
        let key = (group.to_string(), member.to_string());
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        match epoch {
            INITIAL_EPOCH => Err(SessionError::Epoch {
                sent: INITIAL_EPOCH,
                expected: open.get(&key).map_or(1, |s| s.epoch),
            }),
            FINAL_EPOCH => {
                let session = open.remove(&key).ok_or(SessionError::NotFound)?;
                Ok(Some(session.partitions))
            }
            sent => {
                let session = current(&mut open, &key, sent)?;
                session.epoch = next_epoch(session.epoch);
                Ok(None)
            }
        }
    }

    /// Ends a member's session (it left the group).
    pub fn remove(&self, group: &str, member: &str) {
        self.open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&(group.to_string(), member.to_string()));
    }
}
