//! Trust anchors for the server's outgoing TLS (the sign-up adapters): [`load_ca_file`] reads
//! the PEM file of `social.adapter_ca_file`. Called by `ServerConfig::validate` (so a bad file
//! stops start-up with a message naming the key) and by [`crate::adapters::AdapterClient::new`];
//! it sits below both, so the configuration does not depend on the adapters.

use std::path::Path;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::RootCertStore;

use crate::error::Error;

/// The configuration key whose file [`load_ca_file`] reads; every error names it.
const CA_FILE_KEY: &str = "social.adapter_ca_file";

/// The trust anchors in the PEM file of `social.adapter_ca_file`. Every error names the key and
/// the path: unreadable, not PEM, no `CERTIFICATE` block, or a certificate rustls cannot use as a
/// trust anchor.
pub fn load_ca_file(path: &Path) -> Result<RootCertStore, Error> {
    let pem = std::fs::read(path).map_err(|e| ca_file_error(path, e))?;
    let mut roots = RootCertStore::empty();
    for certificate in CertificateDer::pem_slice_iter(&pem) {
        let certificate = certificate.map_err(|e| ca_file_error(path, e))?;
        roots.add(certificate).map_err(|e| ca_file_error(path, e))?;
    }
    if roots.is_empty() {
        return Err(ca_file_error(path, "no PEM CERTIFICATE block found"));
    }
    Ok(roots)
}

fn ca_file_error(path: &Path, cause: impl std::fmt::Display) -> Error {
    Error::Config(format!("key `{CA_FILE_KEY}`: {}: {cause}", path.display()))
}
