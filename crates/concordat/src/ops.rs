//! Commands an operator runs against the store of a configured broker, without starting it.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, anyhow};
use concordat_store::StoreError;

use crate::Failure;
use crate::config::Config;
use crate::run::connect_store;

/// `concordat audit verify`: walks the audit chain of the configured store. Prints how many records verified
/// and the head hash on stdout (exit 0); a broken chain names the first broken record's sequence number and
/// what is wrong with it (exit 1); an unreachable database exits 3.
///
/// # Errors
/// See above.
pub fn audit_verify(config_file: Option<&Path>, env: &[(String, String)]) -> Result<(), Failure> {
    let (config, _) = Config::load(config_file, env).map_err(|error| Failure::Input(error.into()))?;
    // Opening a SQLite store creates it: a mistyped path would verify an empty chain. Refuse instead.
    require_existing_store(&config.store_url, "nothing to verify")?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
        .map_err(Failure::Service)?;
    runtime.block_on(async {
        let store = connect_store(&config.store_url).await?;
        let verified = store.audit_verify().await;
        store.close().await;
        match verified {
            Ok(verified) => {
                println!("audit chain verified: {} records, head {}", verified.records, verified.head_hash);
                Ok(())
            }
            Err(error @ StoreError::AuditBroken { .. }) => Err(Failure::Input(error.into())),
            Err(error) if error.is_transient() => Err(Failure::Service(error.into())),
            Err(error) => Err(Failure::Input(error.into())),
        }
    })
}

/// Refuses a SQLite store whose file does not exist (exit 1): opening it would create an empty store, and
/// a command that only reads it would report on nothing. `consequence` ends the message ("nothing to
/// verify"). Other stores pass.
///
/// # Errors
/// [`Failure::Input`] naming the missing file.
pub(crate) fn require_existing_store(store_url: &str, consequence: &str) -> Result<(), Failure> {
    match sqlite_file(store_url) {
        Some(path) if !path.exists() => Err(Failure::Input(anyhow!(
            "there is no store at {} (store_url {store_url}): {consequence}",
            path.display()
        ))),
        _ => Ok(()),
    }
}

/// The file of a `sqlite:` store URL (`sqlite://data/concordat.db?mode=rwc` is `data/concordat.db`); `None`
/// for other stores and in-memory databases.
fn sqlite_file(url: &str) -> Option<PathBuf> {
    let rest = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or_default();
    (!path.is_empty() && path != ":memory:").then(|| PathBuf::from(path))
}
