//! `gateway.tls`: the certificate chain and private key the listener serves HTTPS with, read
//! from their PEM files at startup and again at each reload, so that a renewed certificate
//! (certbot's, then `kill -HUP`) is what the connections after the reload get.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;
use tokio_rustls::TlsAcceptor;

use crate::config::ConfigError;

/// The protocols offered to clients by ALPN, the preferred first: HTTP/2, which browsers and
/// curl then speak, and HTTP/1.1 for the others.
const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "an object such as {\"cert\": \"fullchain.pem\", \"key\": \"privkey.pem\"}"
)]
pub(in crate::gateway) struct TlsSpec {
    cert: String,
    key: String,
}

/// One of the two files, read whole.
struct PemFile {
    field: &'static str,
    /// How errors name it: as written, and where it was looked for.
    shown: String,
    bytes: Vec<u8>,
}

impl TlsSpec {
    /// The acceptor of the certificate chain and key the files hold now, their relative
    /// paths taken from `base_dir`; an error names the field and the file and says what is
    /// wrong with it.
    pub(in crate::gateway) fn acceptor(
        &self,
        base_dir: Option<&Path>,
    ) -> Result<TlsAcceptor, ConfigError> {
        let cert = PemFile::read("gateway.tls.cert", &self.cert, base_dir)?;
        let key = PemFile::read("gateway.tls.key", &self.key, base_dir)?;
        let chain = cert.chain()?;
        let private = key.private_key()?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| ConfigError::new("gateway.tls", e.to_string()))?;
        let mut config = builder
            .with_no_client_auth()
            .with_single_cert(chain, private)
            .map_err(|e| unusable(&cert, &key, &e))?;
        config.alpn_protocols = ALPN.iter().map(|protocol| protocol.to_vec()).collect();
        Ok(TlsAcceptor::from(Arc::new(config)))
    }
}

impl PemFile {
    fn read(
        field: &'static str,
        written: &str,
        base_dir: Option<&Path>,
    ) -> Result<Self, ConfigError> {
        let (path, shown) = crate::config::paths::locate(base_dir, written);
        let bytes = std::fs::read(&path)
            .map_err(|e| ConfigError::new(field, format!("cannot read {shown}: {e}")))?;
        Ok(Self {
            field,
            shown,
            bytes,
        })
    }

    fn error(&self, what: impl std::fmt::Display) -> ConfigError {
        ConfigError::new(self.field, what.to_string())
    }

    /// The certificates of the file, in its order: the server's own first, then its chain.
    fn chain(&self) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
        let chain = CertificateDer::pem_slice_iter(&self.bytes)
            .collect::<Result<Vec<_>, pem::Error>>()
            .map_err(|e| self.error(format_args!("{} is not valid PEM: {e}", self.shown)))?;
        if chain.is_empty() {
            let swapped = match PrivateKeyDer::from_pem_slice(&self.bytes) {
                Ok(_) => "; it holds a private key: are `cert` and `key` swapped?",
                Err(_) => "",
            };
            return Err(self.error(format_args!(
                "no certificate in {}: expected PEM \"-----BEGIN CERTIFICATE-----\" sections, \
                 the server's own first, then its chain, as in certbot's fullchain.pem{swapped}",
                self.shown
            )));
        }
        Ok(chain)
    }

    /// The file's first private key: PKCS#8, PKCS#1 (RSA) or SEC1 (EC).
    fn private_key(&self) -> Result<PrivateKeyDer<'static>, ConfigError> {
        match PrivateKeyDer::from_pem_slice(&self.bytes) {
            Ok(key) => Ok(key),
            Err(pem::Error::NoItemsFound) => {
                let hint = if self.bytes.windows(9).any(|w| w == b"ENCRYPTED") {
                    "; it holds an encrypted key, which the gateway has no password for: \
                     decrypt it (`openssl pkey -in KEY -out PLAIN`)"
                } else if CertificateDer::from_pem_slice(&self.bytes).is_ok() {
                    "; it holds a certificate: `key` names the private key's file, such as \
                     certbot's privkey.pem"
                } else {
                    ""
                };
                Err(self.error(format_args!(
                    "no private key in {}: expected a PEM section \"-----BEGIN PRIVATE \
                     KEY-----\" (PKCS#8), \"RSA PRIVATE KEY\" (PKCS#1) or \"EC PRIVATE KEY\" \
                     (SEC1){hint}",
                    self.shown
                )))
            }
            Err(e) => Err(self.error(format_args!("{} is not valid PEM: {e}", self.shown))),
        }
    }
}

/// What is wrong with a chain and a key rustls refused together, said of the file at fault.
fn unusable(cert: &PemFile, key: &PemFile, error: &rustls::Error) -> ConfigError {
    match error {
        rustls::Error::InconsistentKeys(_) => key.error(format_args!(
            "the private key in {} does not match the certificate in {}: give the key that \
             certificate was issued for, and the server's own certificate first in its file",
            key.shown, cert.shown
        )),
        rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented => cert
            .error(format_args!(
                "the first certificate in {} cannot be used: {error}",
                cert.shown
            )),
        _ => key.error(format_args!(
            "cannot use the private key in {}: {error}",
            key.shown
        )),
    }
}
