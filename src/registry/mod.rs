//! The registry protocol, in one place: sessions (scheme, auth, retries),
//! the distribution API calls, credentials and upload bodies.

pub mod api;
pub mod credentials;
pub mod error_chain;
pub mod rate;
pub mod referrers;
pub mod retry;
pub mod sending;
pub mod session;
pub mod storage;
pub mod tls;
pub mod token;
pub mod upload;

pub use session::{ClientOptions, RegistryClient, DEFAULT_MAX_TRANSFERS};
pub use upload::BlobSource;

/// Installs rustls' ring provider once per process (the TLS stack is built
/// without a default provider).
pub fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}
