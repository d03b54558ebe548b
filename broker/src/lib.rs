//! agentlog's broker: storage, topics, coordinators and the tokio server.

pub mod storage;
