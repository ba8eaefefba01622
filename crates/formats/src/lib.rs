//! The native formats Concordat speaks and the one place that picks an adapter for each: the gateway
//! ingests with it, the router renders with it, the CLI tries payloads with it.
//!
//! Pure, like the adapters it dispatches to: no I/O, no clock. It is not a plug-in system; a new format is a
//! new adapter crate and a new variant here.

use std::fmt;
use std::str::FromStr;

use concordat_episode::{
    AgencyKind, CrisisEvent, IngestContext, IngestError, Ingested, RenderContext, RenderError, Rendered,
};
use serde::Deserialize;

/// A native format, named as in configuration and on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// FHIR R4 (UK Core), for NHS systems: `adapters/nhs-fhir`.
    NhsFhir,
    /// The police-incident JSON in, police-notification JSON out: `adapters/police`.
    Police,
    /// The VCS contact JSON or CSV in, plain JSON out: `adapters/vcs`.
    Vcs,
}

impl Format {
    /// Every format.
    pub const ALL: &'static [Format] = &[Self::NhsFhir, Self::Police, Self::Vcs];

    /// The format an agency of `kind` speaks unless configured otherwise. Ambulance trusts are NHS bodies and
    /// speak FHIR; local authorities, like VCS services, get the deliberately simple format.
    pub const fn default_for(kind: AgencyKind) -> Self {
        match kind {
            AgencyKind::Nhs | AgencyKind::Ambulance => Self::NhsFhir,
            AgencyKind::Police => Self::Police,
            AgencyKind::Vcs | AgencyKind::LocalAuthority => Self::Vcs,
        }
    }

    /// The name used in configuration and on the command line.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::NhsFhir => "nhs-fhir",
            Self::Police => "police",
            Self::Vcs => "vcs",
        }
    }

    /// The media types the format's adapter reads.
    pub fn content_types(self) -> &'static [&'static str] {
        match self {
            Self::NhsFhir => concordat_nhs_fhir::CONTENT_TYPES,
            Self::Police => concordat_police::CONTENT_TYPES,
            Self::Vcs => concordat_vcs::CONTENT_TYPES,
        }
    }

    /// Translates a native payload into canonical events with this format's adapter, with what the adapter
    /// left out of them (only the NHS adapter reads messages that may carry entries with no event), and checks
    /// every event's times: implausible ones are refused, a record made before its event is flagged.
    ///
    /// # Errors
    /// The adapter's [`IngestError`], or [`IngestError::Invalid`] for implausible times.
    pub fn ingest(self, payload: &[u8], cx: &IngestContext, config: &AdapterConfigs) -> Result<Ingested, IngestError> {
        let mut ingested = match self {
            Self::NhsFhir => concordat_nhs_fhir::ingest(payload, cx, &config.nhs_fhir),
            Self::Police => concordat_police::ingest(payload, cx, &config.police).map(Ingested::events),
            Self::Vcs => concordat_vcs::ingest(payload, cx, &config.vcs).map(Ingested::events),
        }?;
        // One set of rules for every format's times (`concordat_episode::check_times`).
        concordat_episode::check_times(&mut ingested, cx.received_at)?;
        Ok(ingested)
    }

    /// Renders a recipient's view in this format.
    ///
    /// # Errors
    /// The adapter's [`RenderError`].
    pub fn render(self, view: &CrisisEvent, cx: &RenderContext) -> Result<Rendered, RenderError> {
        match self {
            Self::NhsFhir => concordat_nhs_fhir::render(view, cx),
            Self::Police => concordat_police::render(view, cx),
            Self::Vcs => concordat_vcs::render(view, cx),
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Format {
    type Err = UnknownFormat;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.iter().copied().find(|format| format.as_str() == s).ok_or(UnknownFormat)
    }
}

/// A name that is not `nhs-fhir`, `police` or `vcs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnknownFormat;

impl fmt::Display for UnknownFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("unknown format (expected nhs-fhir, police or vcs)")
    }
}

impl std::error::Error for UnknownFormat {}

/// Each adapter's tables (risk grades, code mappings), as the `[adapters]` section of `concordat.toml`.
/// Every sub-section is optional and defaults to the adapter's documented tables.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdapterConfigs {
    /// `[adapters.nhs-fhir]`.
    #[serde(rename = "nhs-fhir")]
    pub nhs_fhir: concordat_nhs_fhir::NhsFhirConfig,
    /// `[adapters.police]`.
    pub police: concordat_police::PoliceConfig,
    /// `[adapters.vcs]`.
    pub vcs: concordat_vcs::VcsConfig,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for format in Format::ALL {
            assert_eq!(format.as_str().parse::<Format>(), Ok(*format));
            let json = serde_json::to_string(format.as_str()).unwrap();
            assert_eq!(serde_json::from_str::<Format>(&json).unwrap(), *format);
        }
        assert_eq!("fhir".parse::<Format>(), Err(UnknownFormat));
    }

    #[test]
    fn every_kind_has_a_format_that_reads_json() {
        for kind in AgencyKind::ALL {
            let format = Format::default_for(*kind);
            assert!(format.content_types().iter().any(|content_type| content_type.ends_with("json")), "{kind}");
        }
    }

    #[test]
    fn an_empty_adapters_section_takes_the_documented_defaults() {
        let configs: AdapterConfigs = serde_json::from_str("{}").unwrap();
        assert_eq!(configs, AdapterConfigs::default());
    }
}
