//! The authorizer applied to requests, as Kafka's `KafkaApis` applies it: before a
//! handler runs, what the caller may not touch is taken out of the request (or the
//! whole request is refused); after it ran, the refused parts are put back into the
//! response with their authorization error, and listings drop what the caller may not
//! see. Handlers themselves know nothing of ACLs.
//!
//! Which operation each API needs is Kafka's (`KafkaApis`, `AuthHelper`); the README's
//! ACL section has the table.

mod admin;
mod groups;
mod topics;
mod txn;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{RequestKind, ResponseKind};

use super::acl::CLUSTER_NAME;
use super::{Authorizer, Operation, ResourceType, Session};
use crate::broker::Broker;

/// What to do with a request after the authorization checks.
pub enum Gate {
    /// Run the (possibly narrowed) request, then apply the fix-up to its response.
    Proceed(Fixup),
    /// Do not run it; answer this instead (`None`: no answer, as for acks=0).
    Refuse(Option<Box<ResponseKind>>),
}

/// A check's outcome: go on (with a fix-up), or refuse the whole request.
type Refused = Result<Fixup, Option<Box<ResponseKind>>>;

type Patch = Box<dyn FnOnce(&Broker, &mut ResponseKind) + Send>;

/// Changes to make to a handler's response: refused items put back with their error,
/// hidden items removed, authorized-operation bitfields filled in.
#[derive(Default)]
pub struct Fixup(Vec<Patch>);

impl Fixup {
    /// Nothing to change.
    pub fn none() -> Self {
        Fixup(Vec::new())
    }

    /// Whether there is nothing to change (so a pending response need not be wrapped).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Adds a change.
    fn and(mut self, patch: impl FnOnce(&Broker, &mut ResponseKind) + Send + 'static) -> Self {
        self.0.push(Box::new(patch));
        self
    }

    /// Applies every change to a response.
    pub fn apply(self, broker: &Broker, response: &mut ResponseKind) {
        for patch in self.0 {
            patch(broker, response);
        }
    }
}

/// Checks `request` for `session`; `None` is an in-process caller, trusted as the
/// broker itself. With the authorizer off only the authorized-operations bitfields
/// are filled in (every operation, as Kafka without an authorizer reports).
pub fn gate(
    broker: &Broker,
    session: Option<&Session>,
    request: &mut RequestKind,
    version: i16,
) -> Gate {
    let enforced = session.filter(|_| broker.authorizer.enabled());
    let fixup = admin::operations_fixup(request, enforced.cloned());
    let Some(session) = enforced else {
        return Gate::Proceed(fixup);
    };
    let check = Check {
        authz: &broker.authorizer,
        session,
    };
    let outcome = match request {
        RequestKind::Metadata(req) => Ok(topics::metadata(&check, broker, req)),
        RequestKind::Produce(req) => topics::produce(&check, req),
        RequestKind::Fetch(req) => Ok(topics::fetch(&check, broker, req)),
        RequestKind::ListOffsets(req) => Ok(topics::list_offsets(&check, req)),
        RequestKind::CreateTopics(req) => Ok(topics::create_topics(&check, req)),
        RequestKind::DeleteTopics(req) => Ok(topics::delete_topics(&check, broker, req)),
        RequestKind::CreatePartitions(req) => Ok(topics::create_partitions(&check, req)),
        RequestKind::DeleteRecords(req) => Ok(topics::delete_records(&check, req)),
        RequestKind::DescribeConfigs(req) => Ok(admin::describe_configs(&check, req)),
        RequestKind::AlterConfigs(req) => Ok(admin::alter_configs(&check, req)),
        RequestKind::IncrementalAlterConfigs(req) => {
            Ok(admin::incremental_alter_configs(&check, req))
        }
        RequestKind::DescribeCluster(_) => admin::describe_cluster(&check),
        RequestKind::DescribeUserScramCredentials(_) => admin::describe_scram(&check),
        RequestKind::AlterUserScramCredentials(req) => admin::alter_scram(&check, req),
        RequestKind::FindCoordinator(req) => Ok(groups::find_coordinator(&check, req, version)),
        RequestKind::JoinGroup(req) => groups::join_group(&check, req, version),
        RequestKind::SyncGroup(req) => groups::sync_group(&check, req),
        RequestKind::Heartbeat(req) => groups::heartbeat(&check, req),
        RequestKind::LeaveGroup(req) => groups::leave_group(&check, req),
        RequestKind::OffsetCommit(req) => groups::offset_commit(&check, req),
        RequestKind::OffsetFetch(req) => groups::offset_fetch(&check, req, version),
        RequestKind::OffsetDelete(req) => groups::offset_delete(&check, req),
        RequestKind::DescribeGroups(req) => Ok(groups::describe_groups(&check, req)),
        RequestKind::ListGroups(_) => Ok(groups::list_groups(&check)),
        RequestKind::DeleteGroups(req) => Ok(groups::delete_groups(&check, req)),
        RequestKind::InitProducerId(req) => txn::init_producer_id(&check, req),
        RequestKind::AddPartitionsToTxn(req) => txn::add_partitions(&check, req),
        RequestKind::AddOffsetsToTxn(req) => txn::add_offsets(&check, req),
        RequestKind::EndTxn(req) => txn::end_txn(&check, req),
        RequestKind::TxnOffsetCommit(req) => txn::txn_offset_commit(&check, req),
        RequestKind::DescribeTransactions(req) => Ok(txn::describe_transactions(&check, req)),
        RequestKind::ListTransactions(_) => Ok(txn::list_transactions(&check)),
        RequestKind::DescribeProducers(req) => Ok(txn::describe_producers(&check, req)),
        // ApiVersions and SASL need no authorization; the ACL APIs check their own
        // (they answer SECURITY_DISABLED when the authorizer is off).
        _ => Ok(Fixup::none()),
    };
    match outcome {
        Ok(more) => Gate::Proceed(Fixup(fixup.0.into_iter().chain(more.0).collect())),
        Err(refusal) => Gate::Refuse(refusal),
    }
}

/// One request's checks: the authorizer and who is asking.
pub(crate) struct Check<'a> {
    authz: &'a Authorizer,
    session: &'a Session,
}

impl Check<'_> {
    /// Whether the caller may `op` the resource; a denial is logged (as Kafka's
    /// authorizer logger does) because the client will see an error for it.
    fn allowed(&self, op: Operation, kind: ResourceType, name: &str) -> bool {
        let ok = self.visible(op, kind, name);
        if !ok {
            tracing::info!(
                principal = %self.session.principal,
                host = %self.session.host,
                operation = op.name(),
                resource = %format_args!("{}:{name}", kind.name()),
                "authorization denied"
            );
        }
        ok
    }

    /// [`Self::allowed`] without the log line, for listings that silently drop what
    /// the caller may not see.
    fn visible(&self, op: Operation, kind: ResourceType, name: &str) -> bool {
        self.authz.authorize(self.session, op, kind, name)
    }

    fn topic(&self, op: Operation, name: &str) -> bool {
        self.allowed(op, ResourceType::Topic, name)
    }

    fn group(&self, op: Operation, name: &str) -> bool {
        self.allowed(op, ResourceType::Group, name)
    }

    fn cluster(&self, op: Operation) -> bool {
        self.allowed(op, ResourceType::Cluster, CLUSTER_NAME)
    }

    fn transactional_id(&self, op: Operation, name: &str) -> bool {
        self.allowed(op, ResourceType::TransactionalId, name)
    }
}

/// Moves the items `allowed` refuses out of `items` (keeping the order of both).
fn split_off<T>(items: &mut Vec<T>, mut allowed: impl FnMut(&T) -> bool) -> Vec<T> {
    let (keep, refused): (Vec<T>, Vec<T>) = std::mem::take(items)
        .into_iter()
        .partition(|item| allowed(item));
    *items = keep;
    refused
}

const TOPIC_DENIED: i16 = ResponseError::TopicAuthorizationFailed.code();
const GROUP_DENIED: i16 = ResponseError::GroupAuthorizationFailed.code();
const CLUSTER_DENIED: i16 = ResponseError::ClusterAuthorizationFailed.code();
const TXN_DENIED: i16 = ResponseError::TransactionalIdAuthorizationFailed.code();
