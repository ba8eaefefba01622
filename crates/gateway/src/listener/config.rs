//! The `[listeners]` section: limits every HTTP listener applies to its connections.
//!
//! It only describes settings and checks that they can work; [`super::serve`] applies them.

use std::time::Duration;

use serde::Deserialize;

/// How long a connection may take and how many may be open, on each listener.
///
/// Every field has a default, so an empty section (or none) is valid.
///
/// ```toml
/// [listeners]
/// header_read_timeout_ms = 10000
/// idle_timeout_ms = 60000
/// max_connections = 512
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    /// How long a client has to complete the TLS handshake, and then to send each request's headers, in
    /// milliseconds; past it the connection is closed without an answer. The clock for a request's headers
    /// starts when the server waits for them, so a kept-alive connection with no next request is closed
    /// after this long too. Default 10000: a system on a slow link sends a few hundred bytes of headers in
    /// well under a second, and a client that sends nothing (or half a header) frees its slot after 10 s.
    #[serde(default = "default_header_read_timeout_ms")]
    pub header_read_timeout_ms: u64,

    /// How long a connection may pass no byte either way (a body that stalls, an answer nobody reads), in
    /// milliseconds. Once idle this long, the connection finishes the request in hand and closes; if it is
    /// still idle as long again, it is dropped. Default 60000: above `[gateway] request_timeout_ms`, so that
    /// a slow broker is reported as such rather than as a closed connection.
    #[serde(default = "default_idle_timeout_ms")]
    pub idle_timeout_ms: u64,

    /// How many connections each listener holds open at once. At the cap, new connections wait in the
    /// operating system's accept queue until one closes. Default 512: far more than an area's agencies
    /// need, and few enough that file descriptors and memory stay bounded.
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
}

/// Why a `[listeners]` section cannot work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ListenerConfigError {
    /// `header_read_timeout_ms` is zero.
    #[error("listeners.header_read_timeout_ms must be at least 1")]
    ZeroHeaderReadTimeout,
    /// `idle_timeout_ms` is zero.
    #[error("listeners.idle_timeout_ms must be at least 1")]
    ZeroIdleTimeout,
    /// `max_connections` is zero.
    #[error("listeners.max_connections must be at least 1")]
    ZeroMaxConnections,
}

fn default_header_read_timeout_ms() -> u64 {
    10_000
}

fn default_idle_timeout_ms() -> u64 {
    60_000
}

fn default_max_connections() -> u32 {
    512
}

impl Default for ListenerConfig {
    /// The documented defaults.
    fn default() -> Self {
        Self {
            header_read_timeout_ms: default_header_read_timeout_ms(),
            idle_timeout_ms: default_idle_timeout_ms(),
            max_connections: default_max_connections(),
        }
    }
}

impl ListenerConfig {
    /// Checks that every limit can be met.
    ///
    /// # Errors
    /// The first limit that is zero.
    pub fn validate(&self) -> Result<(), ListenerConfigError> {
        if self.header_read_timeout_ms == 0 {
            return Err(ListenerConfigError::ZeroHeaderReadTimeout);
        }
        if self.idle_timeout_ms == 0 {
            return Err(ListenerConfigError::ZeroIdleTimeout);
        }
        if self.max_connections == 0 {
            return Err(ListenerConfigError::ZeroMaxConnections);
        }
        Ok(())
    }

    /// `header_read_timeout_ms` as a duration.
    pub fn header_read_timeout(&self) -> Duration {
        Duration::from_millis(self.header_read_timeout_ms)
    }

    /// `idle_timeout_ms` as a duration.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.idle_timeout_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_section_takes_the_documented_defaults() {
        let config: ListenerConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(config, ListenerConfig::default());
        assert_eq!(config.header_read_timeout(), Duration::from_secs(10));
        assert_eq!(config.idle_timeout(), Duration::from_secs(60));
        assert_eq!(config.max_connections, 512);
        assert_eq!(config.validate(), Ok(()));
    }

    #[test]
    fn limits_that_cannot_work_are_refused() {
        let zero = |config: ListenerConfig| config.validate().unwrap_err();
        let base = ListenerConfig::default();
        assert_eq!(
            zero(ListenerConfig { header_read_timeout_ms: 0, ..base }),
            ListenerConfigError::ZeroHeaderReadTimeout
        );
        assert_eq!(zero(ListenerConfig { idle_timeout_ms: 0, ..base }), ListenerConfigError::ZeroIdleTimeout);
        assert_eq!(zero(ListenerConfig { max_connections: 0, ..base }), ListenerConfigError::ZeroMaxConnections);
        assert!(serde_json::from_str::<ListenerConfig>(r#"{"header_timeout_ms": 5}"#).is_err(), "unknown keys");
    }
}
