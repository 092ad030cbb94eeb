//! Why a function did not answer: the error the proxy turns into a 500, 503 or 504 (`crate::errors`),
//! in a module of its own so that the error surface does not depend on the function runtime.

use crate::filter::FilterError;

/// Why a function did not answer.
#[derive(Debug, thiserror::Error)]
pub enum FunctionError {
    /// The route's function was never attached (the Wasm services did not start).
    #[error("function `{0}` is not loaded")]
    NotLoaded(String),
    /// Every slot was busy for the whole queue timeout.
    #[error(
        "function `{function}` has {concurrency} requests in flight and the queue timeout passed"
    )]
    Busy {
        /// The function.
        function: String,
        /// Its concurrency limit.
        concurrency: u32,
    },
    /// The guest failed (trap, CPU or memory limit) or could not be instantiated.
    #[error("function `{function}`: {error}")]
    Failed {
        /// The function.
        function: String,
        /// What happened.
        error: FilterError,
    },
    /// The guest returned without setting a response.
    #[error("function `{0}` returned without a response")]
    NoResponse(String),
    /// The guest answered with a `wasi:http` error code instead of a response.
    #[error("function `{function}` answered with an error: {code}")]
    ErrorCode {
        /// The function.
        function: String,
        /// The code, as wasmtime-wasi-http prints it.
        code: String,
    },
    /// No response head within the function's timeout.
    #[error("function `{function}` timed out after {after_ms} ms")]
    Timeout {
        /// The function.
        function: String,
        /// Elapsed time.
        after_ms: u64,
    },
}

impl FunctionError {
    /// Whether the failure is a limit (503) rather than a fault (500).
    pub fn is_limit(&self) -> bool {
        match self {
            FunctionError::Busy { .. } | FunctionError::NotLoaded(_) => true,
            FunctionError::Failed { error, .. } => matches!(
                error,
                FilterError::CpuLimit | FilterError::MemoryLimit | FilterError::Unavailable(_)
            ),
            _ => false,
        }
    }
}
