//! TLS on 127.0.0.1: fresh self-signed certificates (for test servers, and as PEM files for the
//! gateway's listener), and clients that trust them.

use std::sync::Arc;

use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

/// An acceptor with a fresh self-signed certificate for "localhost", and that certificate's
/// PEM, for the client to trust.
pub fn self_signed_localhost() -> (TlsAcceptor, String) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let pem = cert.cert.pem();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.signing_key.serialize_der()));
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert.der().clone()], key)
        .unwrap();
    (TlsAcceptor::from(Arc::new(config)), pem)
}

/// A fresh self-signed certificate for 127.0.0.1 and "localhost", as PEM files hold it: the
/// certificate, and its private key (PKCS#8); and the SHA-256 of its public key (its
/// SubjectPublicKeyInfo), in base64, as Chromium's `--ignore-certificate-errors-spki-list`
/// takes it to trust this one certificate.
pub struct SelfSigned {
    pub cert: String,
    pub key: String,
    pub spki_sha256: String,
}

impl SelfSigned {
    pub fn new() -> Self {
        let names = vec!["127.0.0.1".to_string(), "localhost".to_string()];
        let made = rcgen::generate_simple_self_signed(names).unwrap();
        use rcgen::PublicKeyData;
        let spki = made.signing_key.subject_public_key_info();
        let suite = tokio_rustls::rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256;
        let sha256 = suite.tls13().unwrap().common.hash_provider.hash(&spki);
        Self {
            cert: made.cert.pem(),
            key: made.signing_key.serialize_pem(),
            spki_sha256: base64(sha256.as_ref()),
        }
    }
}

impl SelfSigned {
    /// An acceptor that serves this certificate, for a test's own TLS server.
    pub fn acceptor(&self) -> TlsAcceptor {
        use tokio_rustls::rustls::pki_types::CertificateDer;
        use tokio_rustls::rustls::pki_types::pem::PemObject;
        let cert = CertificateDer::from_pem_slice(self.cert.as_bytes()).unwrap();
        let key = PrivateKeyDer::from_pem_slice(self.key.as_bytes()).unwrap();
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert], key)
            .unwrap();
        TlsAcceptor::from(Arc::new(config))
    }
}

/// `bytes` in standard base64, padded.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut text = String::new();
    for chunk in bytes.chunks(3) {
        let word = chunk.iter().enumerate().fold(0u32, |word, (i, &byte)| {
            word | u32::from(byte) << (16 - 8 * i)
        });
        for i in 0..4 {
            text.push(match i <= chunk.len() {
                true => char::from(ALPHABET[(word >> (18 - 6 * i) & 63) as usize]),
                false => '=',
            });
        }
    }
    text
}

/// A TLS connection to `addr` (named 127.0.0.1), trusting only the certificate `trusted` (PEM)
/// and offering `alpn`; the handshake's error if it fails (bounded wait).
pub async fn tls_connect(
    addr: std::net::SocketAddr,
    trusted: &str,
    alpn: &[&[u8]],
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
    let mut roots = tokio_rustls::rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(trusted.as_bytes()).unwrap())
        .unwrap();
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let mut config = tokio_rustls::rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = ServerName::IpAddress(addr.ip().into());
    let connect = async {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        connector.connect(name, stream).await
    };
    tokio::time::timeout(std::time::Duration::from_secs(10), connect)
        .await
        .expect("the handshake ends in time")
}

/// A folder of its own for a configuration file and the PEM files it names (`cert.pem`,
/// `key.pem`); removed when dropped.
pub struct Folder(std::path::PathBuf);

impl Folder {
    pub fn new(tag: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("tower-monitor-tls-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    pub fn write(&self, name: &str, text: &str) {
        std::fs::write(self.0.join(name), text).unwrap();
    }

    pub fn certificate(&self, certificate: &SelfSigned) {
        self.write("cert.pem", &certificate.cert);
        self.write("key.pem", &certificate.key);
    }

    pub fn path(&self, name: &str) -> std::path::PathBuf {
        self.0.join(name)
    }
}

impl Drop for Folder {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The folder with `certificate` in `cert.pem` and `key.pem`, and a configuration of one
/// service, "app" on `backend`, whose `gateway` section has `fields` (each with a leading
/// comma) besides `"tls": { "cert": "cert.pem", "key": "key.pem" }`.
pub fn tls_folder(
    tag: &str,
    certificate: &SelfSigned,
    backend: std::net::SocketAddr,
    fields: &str,
) -> Folder {
    let folder = Folder::new(tag);
    folder.certificate(certificate);
    folder.write("gateway.json", &tls_config(backend, TLS, fields));
    folder
}

pub const TLS: &str = r#", "tls": { "cert": "cert.pem", "key": "key.pem" }"#;

/// A configuration of one service, "app" on `backend` (told both kinds of forwarded
/// headers), with `fields` in its `gateway` section.
pub fn tls_config(backend: std::net::SocketAddr, tls: &str, fields: &str) -> String {
    format!(
        r#"{{ "gateway": {{ "listen": "127.0.0.1:0", "routes": [ {{ "service": "app" }} ],
                           "services": {{ "app": {{ "forwarded": "both" }} }}{tls}{fields} }},
             "services": {{ "app": {{ "url": "http://{backend}/", "grace_period": "30s" }} }} }}"#
    )
}

/// `GET /` for host `app` over a TLS connection to `addr` trusting `trusted` (HTTP/1.1,
/// `connection: close`): the whole reply as text.
pub async fn https_get(addr: std::net::SocketAddr, trusted: &str) -> String {
    let mut tls = tls_connect(addr, trusted, &[b"http/1.1"])
        .await
        .expect("the handshake succeeds");
    let request = b"GET / HTTP/1.1\r\nhost: app\r\nconnection: close\r\n\r\n";
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    tls.write_all(request).await.unwrap();
    let mut reply = Vec::new();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        tls.read_to_end(&mut reply),
    )
    .await;
    read.expect("a reply in time")
        .expect("closed with close_notify");
    String::from_utf8_lossy(&reply).into_owned()
}
