//! TLS to PostgreSQL with rustls, for managed servers: on with `sslmode=require` in the URL
//! (or a CA file), verifying the server's certificate against the system's roots and the CA
//! file's certificates. Without either the connection is plain (a local or private server).

use std::path::Path;
use std::sync::Arc;

use deadpool_postgres::{Manager, ManagerConfig, RecyclingMethod};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tokio_postgres::config::SslMode;

use crate::agent::StoreError;

/// The pool's connection maker for `config`: TLS or not, as the URL and the CA file say.
pub(super) fn manager(
    config: tokio_postgres::Config,
    ca_file: Option<&Path>,
) -> Result<(Manager, bool), StoreError> {
    let recycling = ManagerConfig {
        recycling_method: RecyclingMethod::Fast,
    };
    let tls = config.get_ssl_mode() == SslMode::Require || ca_file.is_some();
    if !tls {
        return Ok((
            Manager::from_config(config, tokio_postgres::NoTls, recycling),
            false,
        ));
    }
    let connector = tokio_postgres_rustls::MakeRustlsConnect::new(client_config(ca_file)?);
    Ok((Manager::from_config(config, connector, recycling), true))
}

fn client_config(ca_file: Option<&Path>) -> Result<rustls::ClientConfig, StoreError> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(native.certs);
    if let Some(path) = ca_file {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
            .map_err(|e| StoreError::Failed(format!("--database-ca-file {}: {e}", path.display())))?
            .collect::<Result<_, _>>()
            .map_err(|e| {
                StoreError::Failed(format!("--database-ca-file {}: {e}", path.display()))
            })?;
        if certs.is_empty() {
            return Err(StoreError::Failed(format!(
                "--database-ca-file {}: no PEM certificate in it",
                path.display()
            )));
        }
        for cert in certs {
            roots.add(cert).map_err(|e| {
                StoreError::Failed(format!("--database-ca-file {}: {e}", path.display()))
            })?;
        }
    }
    if roots.is_empty() {
        return Err(StoreError::Failed(
            "TLS to PostgreSQL needs root certificates: none were found on this system; pass --database-ca-file".into(),
        ));
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| StoreError::Failed(format!("TLS set-up: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}
