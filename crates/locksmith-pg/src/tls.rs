//! TLS with rustls, following libpq's `sslmode` semantics.
//!
//! | sslmode | encrypts | checks the chain | checks the host name |
//! |---|---|---|---|
//! | `disable` | no | – | – |
//! | `allow`, `prefer` | if the server offers it | no | no |
//! | `require` | yes | only when a root certificate is given (as libpq) | no |
//! | `verify-ca` | yes | yes | no |
//! | `verify-full` | yes | yes | yes |
//!
//! Root certificates come from `sslrootcert` (a PEM file, or `system` for the
//! OS bundle), else `~/.postgresql/root.crt`, as libpq looks for them.
//! Certificates OpenSSL accepts and webpki refuses (X.509 v1, a self-signed
//! certificate as its own root) are checked by [`legacy`] instead.

mod legacy;

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::Error;

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// Never TLS.
    Disable,
    /// TLS if the server insists (treated as `prefer`).
    Allow,
    /// TLS if the server offers it (libpq's default).
    Prefer,
    /// TLS always; the certificate is not checked unless a root certificate is given.
    Require,
    /// TLS, certificate chain checked.
    VerifyCa,
    /// TLS, certificate chain and host name checked.
    VerifyFull,
}

impl FromStr for SslMode {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Ok(match s {
            "disable" => SslMode::Disable,
            "allow" => SslMode::Allow,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            other => {
                return Err(Error::BadUrl {
                    url: format!("sslmode={other}"),
                    reason:
                        "sslmode must be disable, allow, prefer, require, verify-ca or verify-full"
                            .into(),
                })
            }
        })
    }
}

impl std::fmt::Display for SslMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SslMode::Disable => "disable",
            SslMode::Allow => "allow",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        })
    }
}

/// Builds the rustls connector for `mode`.
pub(crate) fn connector(
    mode: SslMode,
    root_cert: Option<&Path>,
    client_cert: Option<&(PathBuf, PathBuf)>,
) -> Result<MakeRustlsConnect, Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls_error = |reason: String| Error::Tls { reason };
    let roots = match root_cert {
        Some(path) => Some(load_roots(path)?),
        None => None,
    };
    let verifier: Arc<dyn ServerCertVerifier> = match (mode, roots) {
        (SslMode::VerifyFull | SslMode::VerifyCa | SslMode::Require, Some((store, roots))) => {
            Arc::new(Verified {
                inner: webpki(Arc::new(store), &provider)?,
                roots,
                check_name: mode == SslMode::VerifyFull,
                provider: provider.clone(),
            })
        }
        (SslMode::VerifyCa | SslMode::VerifyFull, None) => {
            return Err(tls_error(format!(
                "sslmode={mode} needs a root certificate: set sslrootcert=/path/to/root.crt (or sslrootcert=system), or put it in ~/.postgresql/root.crt"
            )))
        }
        (_, _) => Arc::new(Unverified { provider: provider.clone() }),
    };
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let config = match client_cert {
        Some((cert, key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| tls_error(format!("reading sslcert {}: {e}", cert.display())))?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| tls_error(format!("reading sslkey {}: {e}", key.display())))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| tls_error(e.to_string()))?
        }
        None => builder.with_no_client_auth(),
    };
    Ok(MakeRustlsConnect::new(config))
}

fn webpki(
    roots: Arc<RootCertStore>,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<WebPkiServerVerifier>, Error> {
    WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
        .build()
        .map_err(|e| Error::Tls {
            reason: e.to_string(),
        })
}

/// The trusted roots, as a store for webpki and as DER for [`legacy`].
fn load_roots(path: &Path) -> Result<(RootCertStore, Vec<CertificateDer<'static>>), Error> {
    let path = if path == Path::new("system") {
        Path::new("/etc/ssl/certs/ca-certificates.crt")
    } else {
        path
    };
    let mut store = RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| Error::Tls {
            reason: format!("reading sslrootcert {}: {e}", path.display()),
        })?;
    let (added, _) = store.add_parsable_certificates(certs.iter().cloned());
    if added == 0 {
        return Err(Error::Tls {
            reason: format!("no certificate found in sslrootcert {}", path.display()),
        });
    }
    Ok((store, certs))
}

/// `verify-ca` and `verify-full` (and `require` with a root certificate): the
/// chain must lead to a trusted root; under `verify-full` the name must match.
#[derive(Debug)]
struct Verified {
    inner: Arc<WebPkiServerVerifier>,
    roots: Vec<CertificateDer<'static>>,
    check_name: bool,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Verified {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            // webpki checks the chain before the name, so a name error means the chain was fine.
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !self.check_name => Ok(ServerCertVerified::assertion()),
            Err(e) if legacy::may_recheck(&e) => legacy::verify(
                end_entity,
                &self.roots,
                self.check_name.then_some(server_name),
                now,
                &self.provider,
            ),
            other => other,
        }
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        match self.inner.verify_tls12_signature(message, cert, dss) {
            Err(e) if legacy::may_recheck(&e) => {
                legacy::verify_handshake(message, cert, dss, &self.provider)
            }
            other => other,
        }
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        match self.inner.verify_tls13_signature(message, cert, dss) {
            Err(e) if legacy::may_recheck(&e) => {
                legacy::verify_handshake(message, cert, dss, &self.provider)
            }
            other => other,
        }
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// `prefer`/`require` without a root certificate: encrypted, not authenticated,
/// exactly as libpq behaves. The handshake signature is still checked.
#[derive(Debug)]
struct Unverified {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
