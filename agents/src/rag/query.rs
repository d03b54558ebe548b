//! Searching the indexes of a process: the registry the agents, the `search` tool and
//! `POST /v1/search` share, and the one parser of search requests and filters they all
//! use, so a bad filter gets the same clear error everywhere.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use thiserror::Error;

use super::index::{Filter, Hit};
use super::live::{IndexStats, LiveIndex, QueryError};

/// Most hits one search returns.
pub const MAX_K: usize = 100;

/// Hits a search returns when it does not say.
pub const DEFAULT_K: usize = 10;

/// A search request could not be served.
#[derive(Debug, Error)]
pub enum SearchRequestError {
    /// No index of that name runs in this process.
    #[error("no index `{0}` (declare it in a [rag.<name>] table)")]
    UnknownIndex(String),
    /// The request names no index and the process has none or several.
    #[error("name the index: this process has {0}")]
    WhichIndex(String),
    /// The request is malformed (the caller's fault).
    #[error("{0}")]
    Invalid(String),
    /// The index failed to answer.
    #[error(transparent)]
    Query(#[from] QueryError),
}

impl SearchRequestError {
    /// Whether the caller's request is at fault (HTTP 4xx) rather than the server.
    pub fn is_client_error(&self) -> bool {
        !matches!(
            self,
            SearchRequestError::Query(QueryError::Embed(_) | QueryError::Task(_))
        )
    }
}

/// A search, as `POST /v1/search` takes it: a query text or a vector, `k`, and
/// exact-match metadata filters.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchRequest {
    /// The index (optional when the process has exactly one).
    pub index: Option<String>,
    /// Text to embed with the index's encoder.
    pub query: Option<String>,
    /// A query vector, instead of `query`.
    pub vector: Option<Vec<f32>>,
    /// Hits wanted (default 10, at most 100).
    pub k: Option<usize>,
    /// `{field: value}` conditions on chunk metadata, all of which must hold.
    pub filter: Option<Value>,
}

/// The answer to a [`SearchRequest`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SearchResponse {
    /// The index searched.
    pub index: String,
    /// Best first.
    pub hits: Vec<Hit>,
}

/// Reads a filter: an object whose values are strings, numbers, booleans or null.
pub fn parse_filter(value: Option<&Value>) -> Result<Filter, SearchRequestError> {
    let invalid = |reason: String| SearchRequestError::Invalid(format!("filter: {reason}"));
    match value {
        None | Some(Value::Null) => Ok(Filter::new()),
        Some(Value::Object(fields)) => fields
            .iter()
            .map(|(field, value)| match value {
                Value::Array(_) | Value::Object(_) => Err(invalid(format!(
                    "`{field}` must be a string, number, boolean or null (exact match)"
                ))),
                scalar => Ok((field.clone(), scalar.clone())),
            })
            .collect(),
        Some(other) => Err(invalid(format!(
            "must be an object of field = value, not {other}"
        ))),
    }
}

/// The indexes running in one process, by name.
#[derive(Debug, Default)]
pub struct Indexes {
    by_name: RwLock<BTreeMap<String, Arc<LiveIndex>>>,
}

impl Indexes {
    /// Makes `index` reachable by its name.
    pub fn insert(&self, index: Arc<LiveIndex>) {
        let mut by_name = self.by_name.write().unwrap_or_else(|p| p.into_inner());
        by_name.insert(index.name().to_string(), index);
    }

    /// The index called `name`.
    pub fn get(&self, name: &str) -> Option<Arc<LiveIndex>> {
        let by_name = self.by_name.read().unwrap_or_else(|p| p.into_inner());
        by_name.get(name).cloned()
    }

    /// Every index's stats, by name.
    pub fn stats(&self) -> BTreeMap<String, IndexStats> {
        let by_name = self.by_name.read().unwrap_or_else(|p| p.into_inner());
        by_name
            .iter()
            .map(|(name, index)| (name.clone(), index.stats()))
            .collect()
    }

    /// The index `name` names, or the only one.
    fn resolve(&self, name: Option<&str>) -> Result<Arc<LiveIndex>, SearchRequestError> {
        if let Some(name) = name {
            return self
                .get(name)
                .ok_or_else(|| SearchRequestError::UnknownIndex(name.to_string()));
        }
        let by_name = self.by_name.read().unwrap_or_else(|p| p.into_inner());
        match by_name.values().next() {
            Some(only) if by_name.len() == 1 => Ok(only.clone()),
            _ => Err(SearchRequestError::WhichIndex(if by_name.is_empty() {
                "no index".to_string()
            } else {
                format!("{} indexes", by_name.len())
            })),
        }
    }

    /// Serves one search request.
    pub async fn search(
        &self,
        request: &SearchRequest,
    ) -> Result<SearchResponse, SearchRequestError> {
        let index = self.resolve(request.index.as_deref())?;
        let filter = parse_filter(request.filter.as_ref())?;
        let k = request.k.unwrap_or(DEFAULT_K);
        if k == 0 || k > MAX_K {
            return Err(SearchRequestError::Invalid(format!(
                "k must be 1 to {MAX_K}, not {k}"
            )));
        }
        let hits = match (&request.query, &request.vector) {
            (Some(text), None) if !text.trim().is_empty() => {
                index.search_text(text, k, &filter).await?
            }
            (None, Some(vector)) => index.search(vector, k, &filter).map_err(QueryError::from)?,
            _ => {
                return Err(SearchRequestError::Invalid(
                    "give either a non-empty `query` text or a `vector`".to_string(),
                ))
            }
        };
        Ok(SearchResponse {
            index: index.name().to_string(),
            hits,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn filters_are_objects_of_scalars() {
        let filter = parse_filter(Some(&json!({"lang": "en", "year": 2020}))).unwrap();
        assert_eq!(filter.len(), 2);
        assert!(parse_filter(None).unwrap().is_empty());
        for bad in [json!("lang=en"), json!({"tags": ["a"]}), json!([1])] {
            let error = parse_filter(Some(&bad)).unwrap_err();
            assert!(error.is_client_error());
            assert!(error.to_string().starts_with("filter:"), "{error}");
        }
    }

    #[tokio::test]
    async fn requests_name_an_index_and_one_query() {
        let indexes = Indexes::default();
        let error = indexes.search(&SearchRequest::default()).await.unwrap_err();
        assert!(error.to_string().contains("no index"), "{error}");
        let request = SearchRequest {
            index: Some("nope".to_string()),
            ..SearchRequest::default()
        };
        let error = indexes.search(&request).await.unwrap_err();
        assert!(matches!(error, SearchRequestError::UnknownIndex(_)));
    }
}
