//! Errors of the adapter.

/// What can go wrong in the adapter.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdapterError {
    /// A libzmq call failed.
    #[error("zmq {what}: {source}")]
    Zmq {
        /// The operation, with its argument where useful.
        what: String,
        /// libzmq's error.
        #[source]
        source: zmq::Error,
    },
    /// The configuration was rejected.
    #[error("invalid configuration: {0}")]
    Config(#[from] mdp_core::ConfigError),
    /// A CURVE key could not be read, written or used.
    #[error(transparent)]
    Key(#[from] crate::curve::KeyError),
    /// A list of broker endpoints was empty.
    #[error("no broker endpoint given")]
    NoEndpoint,
    /// A handler panicked; the worker that ran it stopped.
    #[error("a worker's handler panicked")]
    HandlerPanicked,
    /// An async client or worker was made or run outside a tokio runtime,
    /// in one built without IO or time (`Builder::enable_all` turns both
    /// on), or its runtime shut down while a request waited.
    #[cfg(all(feature = "tokio", unix))]
    #[error("no usable tokio runtime: call this inside a tokio runtime built with IO and time enabled (Builder::enable_all), and keep that runtime running")]
    NoRuntime,
    /// A thread could not be started.
    #[error("cannot start the {what} thread: {source}")]
    Thread {
        /// Which thread.
        what: &'static str,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
}

impl AdapterError {
    pub(crate) fn zmq(what: impl Into<String>) -> impl FnOnce(zmq::Error) -> AdapterError {
        let what = what.into();
        move |source| AdapterError::Zmq { what, source }
    }
}
