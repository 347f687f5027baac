//! Server certificates that psql (libpq + OpenSSL) accepts and webpki does
//! not: X.509 **v1** certificates (the PostgreSQL docs' `openssl req -x509`
//! recipe can make them), and a self-signed **CA certificate used as its own
//! root** (`sslrootcert=server.crt`). webpki rejects both before it looks at
//! the chain, so for exactly these refusals (`CertificateError::Other`) the
//! chain is checked here instead, the way OpenSSL checks it:
//!
//! - the certificate is within its validity period, and
//! - it is byte for byte one of the trusted roots, or its issuer is a
//!   trusted root whose key verifies its signature (no intermediates);
//! - for `verify-full`, the host name matches: a subjectAltName DNS or IP
//!   entry if there are any, else the subject's Common Name (as libpq does;
//!   a leading `*.` matches one label).
//!
//! Every other refusal (expired, unknown issuer, bad signature, wrong name)
//! stands as webpki gave it.

use std::net::IpAddr;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, Error as TlsError};
use x509_cert::der::oid::db::{rfc4519, rfc5280};
use x509_cert::der::{self as der, Decode, Encode};
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::SubjectAltName;
use x509_cert::spki::AlgorithmIdentifierOwned;
use x509_cert::Certificate;

/// Whether webpki's refusal is one this module re-checks.
pub(super) fn may_recheck(error: &TlsError) -> bool {
    matches!(
        error,
        TlsError::InvalidCertificate(CertificateError::Other(_))
    )
}

/// Checks `end_entity` against `roots` as OpenSSL would; the host name too
/// when `name` is given (verify-full).
pub(super) fn verify(
    end_entity: &CertificateDer<'_>,
    roots: &[CertificateDer<'static>],
    name: Option<&ServerName<'_>>,
    now: UnixTime,
    provider: &Arc<CryptoProvider>,
) -> Result<ServerCertVerified, TlsError> {
    let bad = |e: CertificateError| TlsError::InvalidCertificate(e);
    let cert = Certificate::from_der(end_entity).map_err(|_| bad(CertificateError::BadEncoding))?;
    let tbs = &cert.tbs_certificate;
    let now = now.as_secs();
    if now < tbs.validity.not_before.to_unix_duration().as_secs() {
        return Err(bad(CertificateError::NotValidYet));
    }
    if now > tbs.validity.not_after.to_unix_duration().as_secs() {
        return Err(bad(CertificateError::Expired));
    }
    let trusted_as_is = roots.iter().any(|r| r.as_ref() == end_entity.as_ref());
    if !trusted_as_is && !signed_by_a_root(&cert, roots, provider)? {
        return Err(bad(CertificateError::UnknownIssuer));
    }
    if let Some(name) = name {
        if !matches_name(&cert, name) {
            return Err(bad(CertificateError::NotValidForName));
        }
    }
    Ok(ServerCertVerified::assertion())
}

/// Whether a root whose subject is `cert`'s issuer verifies its signature.
fn signed_by_a_root(
    cert: &Certificate,
    roots: &[CertificateDer<'static>],
    provider: &Arc<CryptoProvider>,
) -> Result<bool, TlsError> {
    let encoding = |_| TlsError::InvalidCertificate(CertificateError::BadEncoding);
    let issuer = cert.tbs_certificate.issuer.to_der().map_err(encoding)?;
    let message = cert.tbs_certificate.to_der().map_err(encoding)?;
    let signature_alg = inner_der(&cert.signature_algorithm)?;
    for root in roots {
        let Ok(root) = Certificate::from_der(root) else {
            continue;
        };
        if root.tbs_certificate.subject.to_der().map_err(encoding)? != issuer {
            continue;
        }
        let spki = &root.tbs_certificate.subject_public_key_info;
        let key_alg = inner_der(&spki.algorithm)?;
        let verified = provider
            .signature_verification_algorithms
            .all
            .iter()
            .filter(|alg| {
                alg.public_key_alg_id().as_ref() == key_alg.as_slice()
                    && alg.signature_alg_id().as_ref() == signature_alg.as_slice()
            })
            .any(|alg| {
                alg.verify_signature(
                    spki.subject_public_key.raw_bytes(),
                    &message,
                    cert.signature.raw_bytes(),
                )
                .is_ok()
            });
        if verified {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The handshake signature made with `cert`'s key, for a certificate rustls
/// cannot parse (v1): the key is read here and the signature checked with
/// the provider's algorithms for the scheme.
pub(super) fn verify_handshake(
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
    provider: &Arc<CryptoProvider>,
) -> Result<HandshakeSignatureValid, TlsError> {
    let cert = Certificate::from_der(cert)
        .map_err(|_| TlsError::InvalidCertificate(CertificateError::BadEncoding))?;
    let spki = &cert.tbs_certificate.subject_public_key_info;
    let key_alg = inner_der(&spki.algorithm)?;
    let verified = provider
        .signature_verification_algorithms
        .mapping
        .iter()
        .filter(|(scheme, _)| *scheme == dss.scheme)
        .flat_map(|(_, algs)| algs.iter())
        .filter(|alg| alg.public_key_alg_id().as_ref() == key_alg.as_slice())
        .any(|alg| {
            alg.verify_signature(
                spki.subject_public_key.raw_bytes(),
                message,
                dss.signature(),
            )
            .is_ok()
        });
    if verified {
        Ok(HandshakeSignatureValid::assertion())
    } else {
        Err(TlsError::InvalidCertificate(CertificateError::BadSignature))
    }
}

/// An AlgorithmIdentifier's DER without its outer SEQUENCE, as rustls names algorithms.
fn inner_der(alg: &AlgorithmIdentifierOwned) -> Result<Vec<u8>, TlsError> {
    let der = alg
        .to_der()
        .map_err(|_| TlsError::InvalidCertificate(CertificateError::BadEncoding))?;
    der::asn1::AnyRef::from_der(&der)
        .map(|any| any.value().to_vec())
        .map_err(|_| TlsError::InvalidCertificate(CertificateError::BadEncoding))
}

/// libpq's host name check: subjectAltName DNS/IP entries if present, else the Common Name.
fn matches_name(cert: &Certificate, name: &ServerName<'_>) -> bool {
    let (host, ip): (String, Option<IpAddr>) = match name {
        ServerName::DnsName(d) => (d.as_ref().to_ascii_lowercase(), None),
        ServerName::IpAddress(a) => {
            let ip = IpAddr::from(*a);
            (ip.to_string(), Some(ip))
        }
        _ => return false,
    };
    let alt_names: Vec<GeneralName> = cert
        .tbs_certificate
        .extensions
        .iter()
        .flatten()
        .filter(|e| e.extn_id == rfc5280::ID_CE_SUBJECT_ALT_NAME)
        .filter_map(|e| SubjectAltName::from_der(e.extn_value.as_bytes()).ok())
        .flat_map(|san| san.0)
        .collect();
    let has_alt_names = alt_names
        .iter()
        .any(|n| matches!(n, GeneralName::DnsName(_) | GeneralName::IpAddress(_)));
    if has_alt_names {
        return alt_names.iter().any(|n| match n {
            GeneralName::DnsName(d) => host_matches(d.as_str(), &host),
            GeneralName::IpAddress(bytes) => ip.is_some_and(|ip| ip_bytes(ip) == bytes.as_bytes()),
            _ => false,
        });
    }
    cert.tbs_certificate
        .subject
        .0
        .iter()
        .flat_map(|rdn| rdn.0.iter())
        .filter(|atv| atv.oid == rfc4519::CN)
        .filter_map(|atv| std::str::from_utf8(atv.value.value()).ok())
        .any(|cn| host_matches(cn, &host))
}

fn ip_bytes(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    }
}

/// `pattern` (from the certificate) against `host` (lower case): exact, or
/// `*.rest` matching one leading label.
fn host_matches(pattern: &str, host: &str) -> bool {
    let pattern = pattern.to_ascii_lowercase();
    match pattern.strip_prefix("*.") {
        Some(rest) => host
            .split_once('.')
            .is_some_and(|(label, tail)| !label.is_empty() && tail == rest),
        None => pattern == host,
    }
}

#[cfg(test)]
mod tests {
    use super::host_matches;

    #[test]
    fn wildcards_match_one_label() {
        assert!(host_matches("db.example.com", "db.example.com"));
        assert!(host_matches("DB.example.com", "db.example.com"));
        assert!(host_matches("*.example.com", "db.example.com"));
        assert!(!host_matches("*.example.com", "a.db.example.com"));
        assert!(!host_matches("*.example.com", "example.com"));
        assert!(!host_matches("db.example.com", "other.example.com"));
    }
}
