//! TLS for the `tls` (MQTT over TLS) and `wss` (MQTT over WebSocket over TLS) listeners,
//! with rustls and its `ring` provider.
//!
//! * [`load`] reads `[tls]`: the server's certificate chain and key (PEM), and optionally
//!   the CAs that sign client certificates (`ca`), whether a client certificate is
//!   required (`require_client_cert`), and whether its subject CN becomes the MQTT user
//!   name (`use_identity_as_username`).
//! * [`TlsListener`] holds the rustls configuration in force (replaced on SIGHUP by
//!   [`TlsListener::reload`]) and runs handshakes with a 10 s limit.
//! * With `use_identity_as_username`, [`with_identity`] rewrites the client's CONNECT before
//!   the connection code reads it: user name = certificate CN, password = the process's
//!   [`CertToken`], which the access policy accepts in place of a password. The
//!   connection code and the broker need not know about certificates at all.

use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use parking_lot::RwLock;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::auth::CertToken;
use crate::config;

/// A client must finish the TLS handshake within this time.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The CONNECT must follow the handshake within this time (the connection code allows the
/// same for a plain connection).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

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
    /// Set when `use_identity_as_username` is on.
    identity: Option<Arc<CertToken>>,
}

/// An accepted TLS connection and the user name its certificate gives, if any.
pub struct Accepted {
    pub stream: TlsStream<TcpStream>,
    /// The client certificate's subject CN, when `use_identity_as_username` is on.
    pub username: Option<String>,
}

impl TlsListener {
    /// Loads `[tls]`. `identity` is the token the access policy accepts for certificate
    /// users; pass it when `use_identity_as_username` is on.
    pub fn new(
        settings: &config::Tls,
        identity: Option<Arc<CertToken>>,
    ) -> Result<TlsListener, TlsError> {
        Ok(TlsListener {
            config: RwLock::new(load(settings)?),
            settings: settings.clone(),
            identity,
        })
    }

    /// Re-reads the certificate, key and CA files (SIGHUP). On error the old configuration
    /// stays in force. Connections already established keep their session.
    pub fn reload(&self) -> Result<(), TlsError> {
        let config = load(&self.settings)?;
        *self.config.write() = config;
        Ok(())
    }

    /// The token to put in CONNECTs of certificate users, if identities are used.
    pub fn identity(&self) -> Option<&Arc<CertToken>> {
        self.identity.as_ref()
    }

    /// Runs the server side of the handshake, within [`HANDSHAKE_TIMEOUT`].
    ///
    /// With `use_identity_as_username`, a client certificate without a usable CN is an
    /// error too (Mosquitto refuses such clients as well).
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
        let username = if self.identity.is_some() {
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
        Ok(Accepted { stream, username })
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

// ---------------------------------------------------------------------------------------
// Carrying the certificate's identity into CONNECT.

/// Reads the client's first packet and, if it is a CONNECT, rewrites its user name and
/// password to `username` and `token`; returns a stream that yields the (rewritten) bytes
/// first, then the rest of `stream`.
///
/// Anything else (another packet, a malformed or oversized one, the end of the stream) is
/// passed on unchanged for the connection code to refuse as usual. Fails only if nothing
/// arrives within the connect timeout or reading fails.
pub async fn with_identity<S>(
    mut stream: S,
    username: &str,
    token: &CertToken,
    max_packet_size: usize,
) -> io::Result<Prefixed<S>>
where
    S: AsyncRead + Unpin,
{
    let mut buf = Vec::with_capacity(256);
    let read = async {
        loop {
            match first_packet_len(&buf) {
                Header::Complete { total, .. } if buf.len() >= total => return Ok(Some(total)),
                Header::Complete { total, .. } if total > max_packet_size => return Ok(None),
                Header::Invalid => return Ok(None),
                _ => {}
            }
            if stream.read_buf(&mut buf).await? == 0 {
                return Ok::<_, io::Error>(None);
            }
        }
    };
    let complete = match tokio::time::timeout(CONNECT_TIMEOUT, read).await {
        Ok(result) => result?,
        Err(_) => {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "no CONNECT within the connect timeout",
            ))
        }
    };
    let prefix = match complete.and_then(|len| {
        rewrite_connect(&buf[..len], username, token.as_bytes()).map(|packet| (packet, len))
    }) {
        Some((mut packet, len)) => {
            packet.extend_from_slice(&buf[len..]);
            packet
        }
        None => buf,
    };
    Ok(Prefixed {
        prefix,
        position: 0,
        inner: stream,
    })
}

enum Header {
    /// The fixed header is not complete yet.
    Partial,
    /// The fixed header is `header` bytes, the whole packet `total`.
    Complete { header: usize, total: usize },
    /// The remaining length is malformed.
    Invalid,
}

fn first_packet_len(buf: &[u8]) -> Header {
    let mut value = 0usize;
    for i in 0..4 {
        let Some(&byte) = buf.get(1 + i) else {
            return Header::Partial;
        };
        value |= usize::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            let header = 1 + i + 1;
            return Header::Complete {
                header,
                total: header + value,
            };
        }
    }
    Header::Invalid
}

/// A CONNECT packet (3.1, 3.1.1 or 5.0) with its user name and password replaced, or
/// `None` if `packet` is not a well-formed CONNECT.
pub fn rewrite_connect(packet: &[u8], username: &str, password: &[u8]) -> Option<Vec<u8>> {
    const USERNAME: u8 = 0x80;
    const PASSWORD: u8 = 0x40;
    const WILL: u8 = 0x04;

    if packet.first() != Some(&0x10) || username.len() > 0xFFFF || password.len() > 0xFFFF {
        return None;
    }
    let header_len = match first_packet_len(packet) {
        Header::Complete { header, total } if total == packet.len() => header,
        _ => return None,
    };
    let body = &packet[header_len..];
    let mut at = 0usize;
    let skip_string = |at: &mut usize| -> Option<()> {
        let len = usize::from(u16::from_be_bytes([*body.get(*at)?, *body.get(*at + 1)?]));
        *at += 2 + len;
        (*at <= body.len()).then_some(())
    };
    let skip_properties = |at: &mut usize| -> Option<()> {
        let mut len = 0usize;
        for i in 0..4 {
            let byte = *body.get(*at)?;
            *at += 1;
            len |= usize::from(byte & 0x7F) << (7 * i);
            if byte & 0x80 == 0 {
                *at += len;
                return (*at <= body.len()).then_some(());
            }
        }
        None
    };
    skip_string(&mut at)?; // protocol name
    let level = *body.get(at)?;
    let flags_at = at + 1;
    let flags = *body.get(flags_at)?;
    at += 4; // level, flags, keep alive
    if at > body.len() {
        return None;
    }
    if level == 5 {
        skip_properties(&mut at)?;
    }
    skip_string(&mut at)?; // client identifier
    if flags & WILL != 0 {
        if level == 5 {
            skip_properties(&mut at)?;
        }
        skip_string(&mut at)?; // will topic
        skip_string(&mut at)?; // will payload
    }
    let kept = at;

    let mut new_body = Vec::with_capacity(kept + 4 + username.len() + password.len());
    new_body.extend_from_slice(&body[..kept]);
    new_body[flags_at] = flags | USERNAME | PASSWORD;
    new_body.extend_from_slice(&(username.len() as u16).to_be_bytes());
    new_body.extend_from_slice(username.as_bytes());
    new_body.extend_from_slice(&(password.len() as u16).to_be_bytes());
    new_body.extend_from_slice(password);

    let mut out = Vec::with_capacity(new_body.len() + 5);
    out.push(0x10);
    let mut len = new_body.len();
    loop {
        let mut byte = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if len == 0 {
            break;
        }
    }
    out.extend_from_slice(&new_body);
    Some(out)
}

/// A stream that yields `prefix` before the bytes of `inner`; writes go to `inner`.
pub struct Prefixed<S> {
    prefix: Vec<u8>,
    position: usize,
    inner: S,
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.position < this.prefix.len() {
            let left = &this.prefix[this.position..];
            let n = left.len().min(buf.remaining());
            buf.put_slice(&left[..n]);
            this.position += n;
            if this.position == this.prefix.len() {
                // The token is a secret: do not keep it around longer than needed.
                this.prefix = Vec::new();
                this.position = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use bytes::{Bytes, BytesMut};
    use protocol::{Connect, Decoder, Packet, Properties, ProtocolVersion, QoS, Will};
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

    fn connect_packet(version: ProtocolVersion, will: bool, credentials: bool) -> Connect {
        let mut properties = Properties::default();
        if version == ProtocolVersion::V5 {
            properties.session_expiry_interval = Some(60);
            properties.user_properties = vec![("k".to_owned(), "v".to_owned())];
        }
        Connect {
            version,
            client_id: "client-1".to_owned(),
            clean_session: true,
            keep_alive: 30,
            will: will.then(|| Will {
                topic: "wills/client-1".to_owned(),
                payload: Bytes::from_static(b"gone"),
                qos: QoS::AtLeastOnce,
                retain: true,
                properties: Properties::default(),
            }),
            username: credentials.then(|| "claimed".to_owned()),
            password: credentials.then(|| Bytes::from_static(b"claimed-password")),
            properties,
        }
    }

    fn encode(connect: &Connect) -> Vec<u8> {
        let mut buf = BytesMut::new();
        protocol::encode(
            &Packet::Connect(Box::new(connect.clone())),
            connect.version,
            &mut buf,
        )
        .unwrap();
        buf.to_vec()
    }

    fn decode(bytes: &[u8]) -> Connect {
        let mut buf = BytesMut::from(bytes);
        match Decoder::new(1 << 20).decode(&mut buf).unwrap() {
            Some(Packet::Connect(connect)) => *connect,
            other => panic!("not a CONNECT: {other:?}"),
        }
    }

    #[test]
    fn rewrite_replaces_only_the_credentials() {
        for version in [
            ProtocolVersion::V3_1,
            ProtocolVersion::V3_1_1,
            ProtocolVersion::V5,
        ] {
            for will in [false, true] {
                for credentials in [false, true] {
                    let original = connect_packet(version, will, credentials);
                    let rewritten =
                        rewrite_connect(&encode(&original), "device-7", b"token").unwrap();
                    let mut expected = original.clone();
                    expected.username = Some("device-7".to_owned());
                    expected.password = Some(Bytes::from_static(b"token"));
                    assert_eq!(decode(&rewritten), expected, "{version:?} will={will}");
                }
            }
        }
        // A long user name moves the remaining length to two bytes.
        let long = "x".repeat(300);
        let original = connect_packet(ProtocolVersion::V3_1_1, false, false);
        let rewritten = rewrite_connect(&encode(&original), &long, b"t").unwrap();
        assert_eq!(decode(&rewritten).username.as_deref(), Some(long.as_str()));
    }

    #[test]
    fn rewrite_refuses_what_is_not_a_connect() {
        let good = encode(&connect_packet(ProtocolVersion::V3_1_1, true, false));
        assert!(rewrite_connect(&[0xC0, 0x00], "u", b"p").is_none());
        assert!(rewrite_connect(&good[..good.len() - 1], "u", b"p").is_none());
        // Every truncation of the body, with a fixed-up length, is refused or parsed, never
        // a panic.
        for cut in 2..good.len() {
            let mut short = good[..cut].to_vec();
            short[1] = (cut - 2) as u8;
            let _ = rewrite_connect(&short, "u", b"p");
        }
    }

    #[tokio::test]
    async fn with_identity_rewrites_the_first_packet_and_keeps_the_rest() {
        let token = CertToken::generate();
        let connect = encode(&connect_packet(ProtocolVersion::V3_1_1, false, true));
        let pingreq = [0xC0u8, 0x00];
        let (mut client, server) = tokio::io::duplex(64);
        let writer = tokio::spawn(async move {
            // In small pieces, as a slow client would send it.
            for chunk in connect.chunks(3) {
                client.write_all(chunk).await.unwrap();
            }
            client.write_all(&pingreq).await.unwrap();
            client
        });
        let mut stream = with_identity(server, "device-7", &token, 1 << 20)
            .await
            .unwrap();
        let _client = writer.await.unwrap();
        let mut got = vec![0u8; 4096];
        let mut total = 0;
        let mut decoded = None;
        while decoded.is_none() {
            let n = stream.read(&mut got[total..]).await.unwrap();
            assert_ne!(n, 0);
            total += n;
            let mut buf = BytesMut::from(&got[..total]);
            if let Ok(Some(Packet::Connect(c))) = Decoder::new(1 << 20).decode(&mut buf) {
                decoded = Some((*c, buf.len()));
            }
        }
        let (connect, rest) = decoded.unwrap();
        assert_eq!(connect.username.as_deref(), Some("device-7"));
        assert_eq!(connect.password.as_deref(), Some(token.as_bytes()));
        let mut tail = vec![0u8; 2 - rest];
        stream.read_exact(&mut tail).await.unwrap();
    }

    #[tokio::test]
    async fn with_identity_passes_other_packets_through() {
        let token = CertToken::generate();
        let (mut client, server) = tokio::io::duplex(64);
        client.write_all(&[0xC0, 0x00]).await.unwrap();
        drop(client);
        let mut stream = with_identity(server, "u", &token, 1 << 20).await.unwrap();
        let mut all = Vec::new();
        stream.read_to_end(&mut all).await.unwrap();
        assert_eq!(all, [0xC0, 0x00]);
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
        let plain = TlsListener::new(&pki.settings(false, false), None).unwrap();
        let (server, client) = handshake(&plain, pki.client(false)).await;
        client.unwrap();
        assert_eq!(server.unwrap().username, None);

        // Client certificate required: refused without one.
        let token = CertToken::generate();
        let strict = TlsListener::new(&pki.settings(true, true), Some(token)).unwrap();
        let (server, client) = handshake(&strict, pki.client(false)).await;
        assert!(server.is_err());
        assert!(client.is_err());

        // With one, its CN is the user name.
        let (server, client) = handshake(&strict, pki.client(true)).await;
        client.unwrap();
        assert_eq!(server.unwrap().username.as_deref(), Some("device-7"));

        // Reloading keeps working (and a broken file keeps the old configuration).
        strict.reload().unwrap();
        let (server, _) = handshake(&strict, pki.client(true)).await;
        assert!(server.is_ok());
    }

    #[tokio::test]
    async fn a_certificate_without_cn_is_refused_for_identity() {
        let pki = pki("no-cn", None);
        let strict =
            TlsListener::new(&pki.settings(true, true), Some(CertToken::generate())).unwrap();
        let (server, _) = handshake(&strict, pki.client(true)).await;
        let error = server.err().expect("refused");
        assert_eq!(error.kind(), io::ErrorKind::PermissionDenied);
        // Without use_identity_as_username the same certificate is fine.
        let lenient = TlsListener::new(&pki.settings(true, false), None).unwrap();
        let (server, client) = handshake(&lenient, pki.client(true)).await;
        assert!(server.is_ok());
        client.unwrap();
    }
}
