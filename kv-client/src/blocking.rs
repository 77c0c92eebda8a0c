//! A blocking [`Client`](crate::Client), for programs without an async runtime.

use std::net::SocketAddr;

use kv_service::{NodeId, NodeStatus};
use raft_transport_quic::pki::ClientTls;

use crate::client::{ClientError, ClientOptions, ConnectError};

/// The async [`Client`](crate::Client) behind a runtime of its own: every method blocks until
/// the operation ends. Not for use inside an async runtime (it would block its thread).
///
/// ```no_run
/// # fn example() -> Result<(), Box<dyn std::error::Error>> {
/// use kv_client::blocking::Client;
/// use raft_transport_quic::pki::ClientTls;
/// let tls = ClientTls::read_from("cluster-data/certs/client".as_ref())?;
/// let client = Client::connect(vec![(1, "127.0.0.1:7101".parse()?)], &tls)?;
/// client.put("k", "v")?;
/// assert_eq!(client.get("k")?, Some(b"v".to_vec()));
/// # Ok(()) }
/// ```
pub struct Client {
    runtime: tokio::runtime::Runtime,
    inner: crate::Client,
}

impl Client {
    /// A client of the nodes at `endpoints`, presenting `tls`, with the default options.
    pub fn connect(
        endpoints: Vec<(NodeId, SocketAddr)>,
        tls: &ClientTls,
    ) -> Result<Self, ConnectError> {
        Self::with_options(endpoints, tls, ClientOptions::default())
    }

    /// A client with `options`.
    pub fn with_options(
        endpoints: Vec<(NodeId, SocketAddr)>,
        tls: &ClientTls,
        options: ClientOptions,
    ) -> Result<Self, ConnectError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .map_err(ConnectError::Runtime)?;
        let inner = {
            let _guard = runtime.enter();
            crate::Client::with_options(endpoints, tls, options)?
        };
        Ok(Self { runtime, inner })
    }

    /// See [`crate::Client::get`].
    pub fn get(&self, key: impl Into<Vec<u8>>) -> Result<Option<Vec<u8>>, ClientError> {
        self.runtime.block_on(self.inner.get(key))
    }

    /// See [`crate::Client::put`].
    pub fn put(
        &self,
        key: impl Into<Vec<u8>>,
        value: impl Into<Vec<u8>>,
    ) -> Result<(), ClientError> {
        self.runtime.block_on(self.inner.put(key, value))
    }

    /// See [`crate::Client::append`].
    pub fn append(
        &self,
        key: impl Into<Vec<u8>>,
        value: impl Into<Vec<u8>>,
    ) -> Result<(), ClientError> {
        self.runtime.block_on(self.inner.append(key, value))
    }

    /// See [`crate::Client::delete`].
    pub fn delete(&self, key: impl Into<Vec<u8>>) -> Result<bool, ClientError> {
        self.runtime.block_on(self.inner.delete(key))
    }

    /// See [`crate::Client::compare_and_swap`].
    pub fn compare_and_swap(
        &self,
        key: impl Into<Vec<u8>>,
        expected: Option<Vec<u8>>,
        new: impl Into<Vec<u8>>,
    ) -> Result<(bool, Option<Vec<u8>>), ClientError> {
        self.runtime
            .block_on(self.inner.compare_and_swap(key, expected, new))
    }

    /// See [`crate::Client::status`].
    pub fn status(&self, addr: SocketAddr) -> Result<NodeStatus, ClientError> {
        self.runtime.block_on(self.inner.status(addr))
    }

    /// The async client inside.
    pub fn as_async(&self) -> &crate::Client {
        &self.inner
    }
}

impl Drop for Client {
    /// Closes the connections, so that the nodes free this client's places at once (see
    /// [`crate::Client::close`]).
    fn drop(&mut self) {
        // Blocking on the client's own runtime is only possible outside any runtime; inside
        // one (a misuse the type's docs warn of) the connections are left to time out.
        if tokio::runtime::Handle::try_current().is_err() {
            self.runtime.block_on(self.inner.close());
        }
    }
}
