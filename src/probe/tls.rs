//! TLS for `https` URLs (the HTTP probe's and the webhook trigger's): rustls with the Mozilla
//! roots plus any the user adds.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use url::Url;

use super::tcp::means_unreachable;
use crate::BoxError;

/// The roots a probe or webhook trusts, and the client configuration made from them (built once).
#[derive(Clone)]
pub(crate) struct TlsRoots {
    extra: Vec<CertificateDer<'static>>,
    config: Arc<ClientConfig>,
}

impl Default for TlsRoots {
    fn default() -> Self {
        Self::build(Vec::new())
    }
}

impl TlsRoots {
    fn build(extra: Vec<CertificateDer<'static>>) -> Self {
        let mut roots = RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        // Certificates that rustls cannot use are skipped; `with_pem` checked they parse.
        let _ = roots.add_parsable_certificates(extra.iter().cloned());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring supports rustls's default protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        Self {
            extra,
            config: Arc::new(config),
        }
    }

    pub(crate) fn with_pem(mut self, pem: &[u8]) -> Result<Self, BoxError> {
        let certs = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("root certificate PEM: {e}"))?;
        if certs.is_empty() {
            return Err("root certificate PEM: no certificate found".into());
        }
        self.extra.extend(certs);
        Ok(Self::build(self.extra))
    }

    /// A connector trusting these roots.
    pub(crate) fn connector(&self) -> TlsConnector {
        TlsConnector::from(Arc::clone(&self.config))
    }

    /// `Ok(None)` when the connection breaks during the handshake (down); a certificate the
    /// probe does not trust is an error, not a down: it will not fix itself.
    pub(crate) async fn connect(
        &self,
        url: &Url,
        stream: TcpStream,
    ) -> Result<Option<TlsStream<TcpStream>>, BoxError> {
        let host = url
            .host_str()
            .unwrap_or_default()
            .trim_start_matches('[')
            .trim_end_matches(']');
        match self.connector().connect(server_name(host)?, stream).await {
            Ok(stream) => Ok(Some(stream)),
            Err(error)
                if means_unreachable(&error)
                    || error.kind() == std::io::ErrorKind::UnexpectedEof =>
            {
                tracing::debug!(%error, "probe: TLS handshake broke off");
                Ok(None)
            }
            Err(error) => Err(format!("TLS handshake with {host}: {error}").into()),
        }
    }
}

/// The name sent as SNI, which the certificate must carry: `host`, an IPv6 address without its
/// brackets.
pub(crate) fn server_name(host: &str) -> Result<ServerName<'static>, BoxError> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_string())
        .map_err(|e| format!("TLS server name {host:?}: {e}").into())
}
