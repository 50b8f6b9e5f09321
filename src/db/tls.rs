//! TLS through rustls, with libpq's sslmode semantics: `require` encrypts without verifying
//! (as libpq does without a root certificate), `verify-ca` checks the chain, `verify-full`
//! also checks the host name. No system OpenSSL is needed.

use super::env::Env;
use anyhow::{bail, Context, Result};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio_postgres_rustls::MakeRustlsConnect;

/// libpq's sslmode values.
#[derive(Debug, Clone)]
pub enum TlsMode {
    Disable,
    Prefer,
    Require,
    VerifyCa(PathBuf),
    VerifyFull(PathBuf),
}

impl TlsMode {
    /// From `sslmode` and `sslrootcert` (default `~/.postgresql/root.crt`).
    pub fn from_settings(
        mode: Option<&str>,
        root: Option<PathBuf>,
        env: &dyn Env,
    ) -> Result<TlsMode> {
        let root = || -> Result<PathBuf> {
            let path = root.clone().or_else(|| {
                env.var("HOME")
                    .map(|h| Path::new(&h).join(".postgresql/root.crt"))
            });
            match path {
                Some(p) if p.exists() => Ok(p),
                Some(p) => bail!(
                    "sslmode={} needs the server's root certificate, and {} does not exist: set sslrootcert in the URL or PGSSLROOTCERT",
                    mode.unwrap_or_default(),
                    p.display()
                ),
                None => bail!("sslmode={} needs sslrootcert or PGSSLROOTCERT", mode.unwrap_or_default()),
            }
        };
        Ok(match mode.unwrap_or("prefer") {
            "disable" => TlsMode::Disable,
            "allow" | "prefer" => TlsMode::Prefer,
            "require" => TlsMode::Require,
            "verify-ca" => TlsMode::VerifyCa(root()?),
            "verify-full" => TlsMode::VerifyFull(root()?),
            other => bail!(
                "unknown sslmode '{other}' (use disable, prefer, require, verify-ca or verify-full)"
            ),
        })
    }

    pub fn postgres_mode(&self) -> tokio_postgres::config::SslMode {
        use tokio_postgres::config::SslMode;
        match self {
            TlsMode::Disable => SslMode::Disable,
            TlsMode::Prefer => SslMode::Prefer,
            _ => SslMode::Require,
        }
    }

    /// The connector for this mode.
    pub fn connector(&self) -> Result<MakeRustlsConnect> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .context("TLS setup")?;
        let config = match self {
            TlsMode::Disable | TlsMode::Prefer | TlsMode::Require => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(EncryptOnly { provider }))
                .with_no_client_auth(),
            TlsMode::VerifyFull(root) => builder
                .with_root_certificates(load_roots(root)?)
                .with_no_client_auth(),
            TlsMode::VerifyCa(root) => {
                let inner = WebPkiServerVerifier::builder_with_provider(
                    Arc::new(load_roots(root)?),
                    provider,
                )
                .build()
                .context("TLS verifier")?;
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(ChainOnly { inner }))
                    .with_no_client_auth()
            }
        };
        Ok(MakeRustlsConnect::new(config))
    }
}

fn load_roots(path: &Path) -> Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(path)
        .with_context(|| format!("cannot read root certificate {}", path.display()))?;
    for cert in certs {
        let cert = cert.with_context(|| format!("bad certificate in {}", path.display()))?;
        roots
            .add(cert)
            .with_context(|| format!("unusable certificate in {}", path.display()))?;
    }
    Ok(roots)
}

/// sslmode=require: encrypt, check the handshake signatures, trust any certificate.
#[derive(Debug)]
struct EncryptOnly {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for EncryptOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
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
        rustls::crypto::verify_tls13_signature(
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

/// sslmode=verify-ca: the chain must lead to the root; the host name is not checked.
#[derive(Debug)]
struct ChainOnly {
    inner: Arc<WebPkiServerVerifier>,
}

impl ServerCertVerifier for ChainOnly {
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
            Err(rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName))
            | Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
