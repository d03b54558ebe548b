//! The error codes JSON-RPC 2.0 itself defines, shared by the two JSON-RPC bindings on
//! topics (MCP in `mcp::binding`, A2A in `a2a::jsonrpc`), so the same fault gets the
//! same code whichever protocol a requester speaks.

/// The message is not valid JSON.
pub const PARSE_ERROR: i64 = -32700;
/// JSON, but not a valid request object.
pub const INVALID_REQUEST: i64 = -32600;
/// No such method.
pub const METHOD_NOT_FOUND: i64 = -32601;
/// The parameters do not fit the method.
pub const INVALID_PARAMS: i64 = -32602;
/// The receiver failed while handling a valid request.
pub const INTERNAL_ERROR: i64 = -32603;
