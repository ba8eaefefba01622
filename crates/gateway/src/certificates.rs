//! Agency client certificates: which agency, if any, a certificate presented in the TLS handshake belongs
//! to, by the SHA-256 of its DER encoding (`[gateway.agencies.{id}] client_cert_sha256`).
//!
//! The listener refuses unpinned certificates in the handshake ([`crate::listener::ClientCertificates`],
//! built from this table); this module maps the one that got through to its agency. What the caller may do
//! (its own path only) is [`crate::http`]'s rule. Digests of certificates are not secrets, so lookups need
//! not run in constant time.

use std::collections::BTreeMap;

use concordat_episode::AgencyId;

use crate::listener::{ClientCertificate, ClientCertificates};

/// The pinned client certificates of every agency.
#[derive(Debug, Clone, Default)]
pub(crate) struct CertificateTable {
    by_digest: BTreeMap<[u8; 32], AgencyId>,
}

impl CertificateTable {
    /// Pins `digest` for `agency`; returns the agency it was already pinned for, if another.
    pub(crate) fn insert(&mut self, digest: [u8; 32], agency: &AgencyId) -> Option<AgencyId> {
        match self.by_digest.get(&digest) {
            Some(first) if first != agency => Some(first.clone()),
            _ => {
                self.by_digest.insert(digest, agency.clone());
                None
            }
        }
    }

    /// The agency `certificate` is pinned for.
    pub(crate) fn agency_of(&self, certificate: &ClientCertificate) -> Option<&AgencyId> {
        self.by_digest.get(certificate.sha256())
    }

    /// Whether `agency` has a pinned certificate.
    pub(crate) fn has_certificate(&self, agency: &AgencyId) -> bool {
        self.by_digest.values().any(|holder| holder == agency)
    }

    /// Every pinned certificate, for the listener's handshake.
    pub(crate) fn pins(&self) -> ClientCertificates {
        ClientCertificates::new(self.by_digest.keys().copied())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_certificate_finds_its_agency_only() {
        let police = AgencyId::new("northvale-police").unwrap();
        let haven = AgencyId::new("safe-haven").unwrap();
        let mut table = CertificateTable::default();
        assert_eq!(table.insert([1; 32], &police), None);
        assert_eq!(table.insert([1; 32], &police), None, "listed twice for one agency: harmless");
        assert_eq!(table.insert([2; 32], &haven), None);
        assert_eq!(table.insert([2; 32], &police), Some(haven.clone()), "one certificate, two agencies");
        let presented = ClientCertificate::of_der(b"a certificate");
        assert_eq!(table.agency_of(&presented), None);
        assert_eq!(table.insert(*presented.sha256(), &haven), None);
        assert_eq!(table.agency_of(&presented), Some(&haven));
        assert!(table.has_certificate(&police) && table.has_certificate(&haven));
        assert!(!table.has_certificate(&AgencyId::new("listening-line").unwrap()));
        assert!(table.pins().contains(&presented));
        assert!(!table.pins().contains(&ClientCertificate::of_der(b"another")));
    }
}
