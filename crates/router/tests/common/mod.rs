//! What the router's integration suites share.

use concordat_bus::BusConfig;

/// The bus configuration the suites use: the defaults, with `CONCORDAT_AMQP_URL` when it is set.
pub fn bus() -> BusConfig {
    let mut config: BusConfig = serde_json::from_str("{}").expect("the defaults parse");
    if let Ok(url) = std::env::var("CONCORDAT_AMQP_URL") {
        config.amqp_url = url;
    }
    config
}
