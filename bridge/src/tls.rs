//! TLS for the `tls` (MQTT over TLS) and `wss` (MQTT over WebSocket over TLS) listeners,
//! with rustls and its `ring` provider.
//!
//! * [`load`] reads `[tls]`: the server's certificate chain and key (PEM), and optionally
//!   the CAs that sign client certificates (`ca`), whether a client certificate is
//!   required (`require_client_cert`), and whether its subject CN becomes the MQTT user
//!   name (`use_identity_as_username`).
//! * [`TlsListener`] holds the rustls configuration in force (replaced on SIGHUP by
//!   [`TlsListener::reload`]) and runs handshakes with a 10 s limit.
//! * With `use_identity_as_username`, [`TlsListener::accept`] returns the verified
//!   certificate's subject CN beside the stream; the connection takes it as the client's
//!   user name (whatever its CONNECT says) and tells the access policy that the certificate
//!   vouches for it. This module neither reads nor writes MQTT.

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::config;

/// A client must finish the TLS handshake within this time.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the TLS configuration cannot be used; one line naming the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TlsError(pub String);

fn read_pem(key: &str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| {
        TlsError(format!(
            "tls.{key} file {}: cannot read: {e}",
            path.display()
        ))
    })
}

/// Builds the rustls server configuration from `[tls]` (cert and key must be set).
pub fn load(settings: &config::Tls) -> Result<Arc<ServerConfig>, TlsError> {
    let (Some(cert_path), Some(key_path)) = (&settings.cert, &settings.key) else {
        return Err(TlsError("[tls] cert and key are not configured".to_owned()));
    };
    let pem = read_pem("cert", cert_path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            TlsError(format!(
                "tls.cert file {}: bad PEM: {e}",
                cert_path.display()
            ))
        })?;
    if certs.is_empty() {
        return Err(TlsError(format!(
            "tls.cert file {}: no CERTIFICATE in it",
            cert_path.display()
        )));
    }
    let pem = read_pem("key", key_path)?;
    let key = PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
        TlsError(format!(
            "tls.key file {}: no usable private key (PKCS#8, PKCS#1 or SEC1 PEM): {e}",
            key_path.display()
        ))
    })?;

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError(format!("TLS: {e}")))?;
    let builder = match &settings.ca {
        Some(ca_path) => {
            let pem = read_pem("ca", ca_path)?;
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(&pem) {
                let cert = cert.map_err(|e| {
                    TlsError(format!("tls.ca file {}: bad PEM: {e}", ca_path.display()))
                })?;
                roots.add(cert).map_err(|e| {
                    TlsError(format!(
                        "tls.ca file {}: unusable CA certificate: {e}",
                        ca_path.display()
                    ))
                })?;
            }
            if roots.is_empty() {
                return Err(TlsError(format!(
                    "tls.ca file {}: no CERTIFICATE in it",
                    ca_path.display()
                )));
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if settings.require_client_cert {
                verifier
            } else {
                verifier.allow_unauthenticated()
            };
            let verifier = verifier
                .build()
                .map_err(|e| TlsError(format!("tls.ca file {}: {e}", ca_path.display())))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let config = builder.with_single_cert(certs, key).map_err(|e| {
        TlsError(format!(
            "tls.cert {} and tls.key {}: {e}",
            cert_path.display(),
            key_path.display()
        ))
    })?;
    Ok(Arc::new(config))
}

/// The TLS side of the `tls` and `wss` listeners: the configuration in force and what to
/// do with client certificates.
pub struct TlsListener {
    config: RwLock<Arc<ServerConfig>>,
    settings: config::Tls,
}

/// An accepted TLS connection and the identity its verified certificate gives, if any.
pub struct Accepted {
    pub stream: TlsStream<TcpStream>,
    /// With `use_identity_as_username`: the client certificate's subject CN, verified
    /// against `[tls] ca` by the handshake. It is the client's user name, in place of
    /// whatever its CONNECT says, and needs no password. `None` otherwise.
    pub identity: Option<String>,
}

impl TlsListener {
    /// Loads `[tls]`.
    pub fn new(settings: &config::Tls) -> Result<TlsListener, TlsError> {
        Ok(TlsListener {
            config: RwLock::new(load(settings)?),
            settings: settings.clone(),
        })
    }

    /// Re-reads the certificate, key and CA files (SIGHUP). On error the old configuration
    /// stays in force. Connections already established keep their session.
    pub fn reload(&self) -> Result<(), TlsError> {
        let config = load(&self.settings)?;
        *self.config.write() = config;
        Ok(())
    }

    /// Runs the server side of the handshake, within [`HANDSHAKE_TIMEOUT`].
    ///
    /// With `use_identity_as_username`, the result carries the certificate's identity
    /// ([`Accepted::identity`]), and a client certificate without a usable CN is an error
    /// too (Mosquitto refuses such clients as well).
    pub async fn accept(&self, tcp: TcpStream) -> io::Result<Accepted> {
        let acceptor = TlsAcceptor::from(self.config.read().clone());
        let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
            Ok(result) => result?,
            Err(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "TLS handshake timed out",
                ))
            }
        };
        let identity = if self.settings.use_identity_as_username {
            let cert = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|certs| certs.first())
                .ok_or_else(|| {
                    io::Error::new(io::ErrorKind::PermissionDenied, "no client certificate")
                })?;
            let name = common_name(cert).ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    "client certificate has no usable subject CN for use_identity_as_username",
                )
            })?;
            Some(name)
        } else {
            None
        };
        Ok(Accepted { stream, identity })
    }
}

// ---------------------------------------------------------------------------------------
// The user name from a client certificate.

/// The first subject CN (OID 2.5.4.3) of a DER certificate, as Mosquitto's
/// `use_identity_as_username` takes it. `None` if there is none, or it is not a usable MQTT
/// user name (empty, over 65535 bytes, or holding U+0000).
pub fn common_name(cert: &[u8]) -> Option<String> {
    const SEQUENCE: u8 = 0x30;
    const SET: u8 = 0x31;
    const OID: u8 = 0x06;
    const CN: &[u8] = &[0x55, 0x04, 0x03];

    let (tag, certificate, _) = der(cert)?;
    if tag != SEQUENCE {
        return None;
    }
    let (tag, tbs, _) = der(certificate)?;
    if tag != SEQUENCE {
        return None;
    }
    let mut rest = tbs;
    // version [0] EXPLICIT, optional.
    if rest.first() == Some(&0xA0) {
        rest = der(rest)?.2;
    }
    // serialNumber, signature, issuer, validity.
    for _ in 0..4 {
        rest = der(rest)?.2;
    }
    let (tag, mut subject, _) = der(rest)?;
    if tag != SEQUENCE {
        return None;
    }
    while !subject.is_empty() {
        let (tag, mut rdn, next) = der(subject)?;
        subject = next;
        if tag != SET {
            return None;
        }
        while !rdn.is_empty() {
            let (tag, attribute, next) = der(rdn)?;
            rdn = next;
            if tag != SEQUENCE {
                return None;
            }
            let (tag, oid, value) = der(attribute)?;
            if tag == OID && oid == CN {
                let (tag, value, _) = der(value)?;
                return directory_string(tag, value).filter(|name| {
                    !name.is_empty() && name.len() <= 65_535 && !name.contains('\0')
                });
            }
        }
    }
    None
}

/// One DER element: `(tag, content, rest)`. Single-byte tags only, which is all X.509
/// names use.
fn der(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, input) = input.split_first()?;
    let (&first, mut input) = input.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let count = usize::from(first & 0x7F);
        if count == 0 || count > 4 || input.len() < count {
            return None;
        }
        let mut len = 0usize;
        for &byte in &input[..count] {
            len = (len << 8) | usize::from(byte);
        }
        input = &input[count..];
        len
    };
    if input.len() < len {
        return None;
    }
    Some((tag, &input[..len], &input[len..]))
}

/// The string types X.509 uses for names.
fn directory_string(tag: u8, value: &[u8]) -> Option<String> {
    match tag {
        // UTF8String, PrintableString, IA5String.
        0x0C | 0x13 | 0x16 => String::from_utf8(value.to_vec()).ok(),
        // TeletexString: in practice Latin-1.
        0x14 => Some(value.iter().map(|&b| char::from(b)).collect()),
        // BMPString: UTF-16BE.
        0x1E => {
            if !value.len().is_multiple_of(2) {
                return None;
            }
            let units: Vec<u16> = value
                .chunks_exact(2)
                .map(|pair| u16::from_be_bytes([pair[0], pair[1]]))
                .collect();
            String::from_utf16(&units).ok()
        }
        // UniversalString: UTF-32BE.
        0x1C => {
            if !value.len().is_multiple_of(4) {
                return None;
            }
            value
                .chunks_exact(4)
                .map(|quad| {
                    char::from_u32(u32::from_be_bytes([quad[0], quad[1], quad[2], quad[3]]))
                })
                .collect()
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    };
    use rustls::pki_types::ServerName;
    use rustls::ClientConfig;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;
    use tokio_rustls::TlsConnector;

    /// A CA, a server certificate for 127.0.0.1 and a client certificate with CN `cn`, as
    /// PEM files in a fresh directory.
    struct Pki {
        dir: std::path::PathBuf,
        ca_pem: String,
        client_cert: String,
        client_key: String,
    }

    fn pki(name: &str, cn: Option<&str>) -> Pki {
        let dir = std::env::temp_dir().join(format!("bridge-tls-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();

        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "bridge test CA");
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);

        let server_key = KeyPair::generate().unwrap();
        let server_params =
            CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
        let server_cert = server_params.signed_by(&server_key, &issuer).unwrap();

        let client_key = KeyPair::generate().unwrap();
        let mut client_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        client_params.distinguished_name = rcgen::DistinguishedName::new();
        client_params
            .distinguished_name
            .push(DnType::OrganizationName, "Bridge Tests");
        if let Some(cn) = cn {
            client_params
                .distinguished_name
                .push(DnType::CommonName, cn);
        }
        client_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let client_cert = client_params.signed_by(&client_key, &issuer).unwrap();

        std::fs::write(dir.join("ca.pem"), ca_cert.pem()).unwrap();
        std::fs::write(dir.join("server.pem"), server_cert.pem()).unwrap();
        std::fs::write(dir.join("server-key.pem"), server_key.serialize_pem()).unwrap();
        Pki {
            dir,
            ca_pem: ca_cert.pem(),
            client_cert: client_cert.pem(),
            client_key: client_key.serialize_pem(),
        }
    }

    impl Pki {
        fn settings(&self, client_certs: bool, identity: bool) -> config::Tls {
            config::Tls {
                cert: Some(self.dir.join("server.pem")),
                key: Some(self.dir.join("server-key.pem")),
                ca: client_certs.then(|| self.dir.join("ca.pem")),
                require_client_cert: client_certs,
                use_identity_as_username: identity,
            }
        }

        fn client(&self, with_cert: bool) -> TlsConnector {
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(self.ca_pem.as_bytes()) {
                roots.add(cert.unwrap()).unwrap();
            }
            let builder = ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
            let config = if with_cert {
                let chain = CertificateDer::pem_slice_iter(self.client_cert.as_bytes())
                    .collect::<Result<Vec<_>, _>>()
                    .unwrap();
                let key = PrivateKeyDer::from_pem_slice(self.client_key.as_bytes()).unwrap();
                builder.with_client_auth_cert(chain, key).unwrap()
            } else {
                builder.with_no_client_auth()
            };
            TlsConnector::from(Arc::new(config))
        }
    }

    impl Drop for Pki {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    #[test]
    fn common_name_of_generated_certificates() {
        for cn in ["device-7", "Jürgen's sensor", "a b"] {
            let key = KeyPair::generate().unwrap();
            let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
            params.distinguished_name.push(DnType::CountryName, "DE");
            params.distinguished_name.push(DnType::CommonName, cn);
            let cert = params.self_signed(&key).unwrap();
            assert_eq!(common_name(cert.der()).as_deref(), Some(cn));
        }
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::OrganizationName, "no CN");
        let cert = params.self_signed(&key).unwrap();
        assert_eq!(common_name(cert.der()), None);
        assert_eq!(common_name(b"not DER"), None);
        assert_eq!(common_name(&[]), None);
    }

    #[test]
    fn load_errors_name_the_file() {
        let certs = pki("errors", Some("x"));
        let mut settings = certs.settings(false, false);
        assert!(load(&settings).is_ok());
        settings.key = Some(certs.dir.join("missing.pem"));
        let e = load(&settings).unwrap_err().0;
        assert!(e.contains("tls.key") && e.contains("missing.pem"), "{e}");
        // A certificate where the key should be.
        settings.key = Some(certs.dir.join("ca.pem"));
        let e = load(&settings).unwrap_err().0;
        assert!(e.contains("tls.key"), "{e}");
        // A key where the certificate should be.
        let mut settings = certs.settings(false, false);
        settings.cert = Some(certs.dir.join("server-key.pem"));
        let e = load(&settings).unwrap_err().0;
        assert!(
            e.contains("tls.cert") && e.contains("no CERTIFICATE"),
            "{e}"
        );
        // The key of another certificate.
        let other = pki("errors-other", Some("y"));
        let mut settings = certs.settings(false, false);
        settings.key = Some(other.dir.join("server-key.pem"));
        assert!(load(&settings).is_err());
        let mut settings = certs.settings(true, false);
        settings.ca = Some(certs.dir.join("server-key.pem"));
        let e = load(&settings).unwrap_err().0;
        assert!(e.contains("tls.ca"), "{e}");
    }

    async fn handshake(
        listener: &TlsListener,
        connector: TlsConnector,
    ) -> (io::Result<Accepted>, io::Result<()>) {
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        let client = tokio::spawn(async move {
            let stream = TcpStream::connect(addr).await?;
            let name = ServerName::try_from("127.0.0.1").unwrap();
            let mut tls = connector.connect(name, stream).await?;
            // TLS 1.3 reports a refused client certificate only on the first read.
            tls.write_all(b"x").await?;
            let mut byte = [0u8; 1];
            match tls.read(&mut byte).await? {
                1 => Ok(()),
                _ => Err(io::Error::from(io::ErrorKind::UnexpectedEof)),
            }
        });
        let (socket, _) = tcp.accept().await.unwrap();
        let accepted = listener.accept(socket).await;
        let accepted = match accepted {
            Ok(mut accepted) => {
                let mut byte = [0u8; 1];
                accepted.stream.read_exact(&mut byte).await.unwrap();
                accepted.stream.write_all(b"y").await.unwrap();
                accepted.stream.flush().await.unwrap();
                Ok(accepted)
            }
            Err(e) => Err(e),
        };
        let client = client.await.unwrap();
        (accepted, client)
    }

    #[tokio::test]
    async fn handshakes_with_and_without_client_certificates() {
        let pki = pki("handshake", Some("device-7"));

        // Server certificate only.
        let plain = TlsListener::new(&pki.settings(false, false)).unwrap();
        let (server, client) = handshake(&plain, pki.client(false)).await;
        client.unwrap();
        assert_eq!(server.unwrap().identity, None);

        // Client certificate required: refused without one.
        let strict = TlsListener::new(&pki.settings(true, true)).unwrap();
        let (server, client) = handshake(&strict, pki.client(false)).await;
        assert!(server.is_err());
        assert!(client.is_err());

        // With one, its CN is the identity.
        let (server, client) = handshake(&strict, pki.client(true)).await;
        client.unwrap();
        assert_eq!(server.unwrap().identity.as_deref(), Some("device-7"));

        // A verified certificate without use_identity_as_username gives no identity.
        let mutual = TlsListener::new(&pki.settings(true, false)).unwrap();
        let (server, client) = handshake(&mutual, pki.client(true)).await;
        client.unwrap();
        assert_eq!(server.unwrap().identity, None);

        // Reloading keeps working (and a broken file keeps the old configuration).
        strict.reload().unwrap();
        let (server, _) = handshake(&strict, pki.client(true)).await;
        assert!(server.is_ok());
    }

    #[tokio::test]
    async fn a_certificate_without_cn_is_refused_for_identity() {
        let pki = pki("no-cn", None);
        let strict = TlsListener::new(&pki.settings(true, true)).unwrap();
        let (server, _) = handshake(&strict, pki.client(true)).await;
        let error = server.err().expect("refused");
        assert_eq!(error.kind(), io::ErrorKind::PermissionDenied);
        // Without use_identity_as_username the same certificate is fine.
        let lenient = TlsListener::new(&pki.settings(true, false)).unwrap();
        let (server, client) = handshake(&lenient, pki.client(true)).await;
        assert!(server.is_ok());
        client.unwrap();
    }
}
