//! ONNX Runtime, loaded once per process from a shared library at run time (ort's
//! `load-dynamic`): the binary links no ONNX Runtime and downloads nothing, and a box
//! without the library still runs every other agent.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ort::environment::Environment;
use ort::session::Session;
use thiserror::Error;

/// Where `bash scripts/models.sh` links the library, relative to the working directory.
pub const DEFAULT_LIBRARY: &str = ".models/libonnxruntime.so";

/// The environment variable ort itself reads; honoured so existing deployments keep
/// working.
pub const LIBRARY_ENV: &str = "ORT_DYLIB_PATH";

/// ONNX Runtime could not be loaded.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum LoadRuntimeError {
    /// No file at the configured path.
    #[error(
        "ONNX Runtime library not found at `{path}`: run `bash scripts/models.sh` (links \
         .models/libonnxruntime.so), or `pip install onnxruntime==1.31.1` and set \
         `[inference] library` (or ORT_DYLIB_PATH) to its capi/libonnxruntime.so.1.31.1"
    )]
    Missing {
        /// The path looked at.
        path: String,
    },
    /// The file exists but is not a usable ONNX Runtime (wrong file, wrong version).
    #[error(
        "ONNX Runtime library at `{path}` could not be loaded: {reason} (expected the \
         onnxruntime 1.31.1 wheel's capi/libonnxruntime.so.1.31.1; `bash scripts/models.sh` \
         installs it)"
    )]
    Unusable {
        /// The path loaded.
        path: String,
        /// What ort reported.
        reason: String,
    },
}

/// The library to load: `configured`, else `ORT_DYLIB_PATH`, else [`DEFAULT_LIBRARY`].
pub fn library_path(configured: Option<&str>) -> PathBuf {
    configured
        .map(PathBuf::from)
        .or_else(|| std::env::var_os(LIBRARY_ENV).map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_LIBRARY))
}

static ENVIRONMENT: OnceLock<Result<Environment, LoadRuntimeError>> = OnceLock::new();

/// Checks `path` and loads ONNX Runtime from it, once per process (ONNX Runtime allows
/// one environment per process; later calls return the first outcome whatever their
/// path).
pub fn environment(path: &Path) -> Result<&'static Environment, LoadRuntimeError> {
    ENVIRONMENT
        .get_or_init(|| load(path))
        .as_ref()
        .map_err(Clone::clone)
}

fn load(path: &Path) -> Result<Environment, LoadRuntimeError> {
    // A relative path is relative to the working directory (ort would try the
    // executable's directory first, which surprises operators).
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|dir| dir.join(path))
            .unwrap_or_else(|_| path.to_path_buf())
    };
    let shown = absolute.display().to_string();
    if !absolute.exists() {
        return Err(LoadRuntimeError::Missing { path: shown });
    }
    let unusable = |reason: String| LoadRuntimeError::Unusable {
        path: shown.clone(),
        reason,
    };
    let builder = ort::init_from(&absolute).map_err(|e| unusable(e.to_string()))?;
    builder
        .with_name("agentlog")
        .build()
        .map_err(|e| unusable(e.to_string()))
}

/// Builds a session from model bytes with `intra_op_threads` threads (0: ONNX Runtime
/// picks). Errors are text: ort's builder error is not `Send` and callers cross awaits.
pub fn session_from_bytes(
    environment: &Environment,
    bytes: &[u8],
    intra_op_threads: usize,
) -> Result<Session, String> {
    let mut builder = Session::builder(environment)
        .map_err(|e| e.to_string())?
        .with_intra_threads(intra_op_threads)
        .map_err(|e| e.to_string())?
        // The batcher thread calls in with work ready; spinning would only burn the
        // cores the broker and other agents share.
        .with_intra_op_spinning(false)
        .map_err(|e| e.to_string())?;
    builder.commit_from_memory(bytes).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_library_names_the_path_and_the_fix() {
        let error = load(Path::new("/nonexistent/libonnxruntime.so")).unwrap_err();
        let text = error.to_string();
        assert!(matches!(error, LoadRuntimeError::Missing { .. }));
        assert!(text.contains("/nonexistent/libonnxruntime.so"), "{text}");
        assert!(text.contains("bash scripts/models.sh"), "{text}");
        assert!(text.contains("pip install onnxruntime==1.31.1"), "{text}");
        assert!(text.contains("[inference] library"), "{text}");
    }

    #[test]
    fn a_file_that_is_not_onnx_runtime_is_unusable() {
        let dir = tempfile::tempdir().unwrap();
        let bogus = dir.path().join("libonnxruntime.so");
        std::fs::write(&bogus, b"not a library").unwrap();
        let error = load(&bogus).unwrap_err();
        assert!(
            matches!(error, LoadRuntimeError::Unusable { .. }),
            "{error}"
        );
        assert!(error.to_string().contains("scripts/models.sh"));
    }

    #[test]
    fn configured_path_wins() {
        assert_eq!(library_path(Some("/x.so")), PathBuf::from("/x.so"));
    }
}
