//! Runs one test body against SQLite (a fresh file in a fresh directory) and PostgreSQL (a fresh database
//! on the server named by `CONCORDAT_TEST_PG_URL`, default `postgres://postgres:postgres@127.0.0.1:5432/postgres`),
//! and removes both afterwards. A PostgreSQL that cannot be reached fails the test: nothing is skipped.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;

use chrono::{DateTime, TimeZone, Utc};
use concordat_episode::{CrisisEvent, Identifier, NonEmptyString, event_from_value};
use concordat_store::{Backend, Store};
use futures_util::FutureExt;
use serde_json::json;
use sqlx::Connection;
use sqlx::postgres::PgConnection;
use sqlx::sqlite::SqliteConnection;
use uuid::Uuid;

const DEFAULT_PG_URL: &str = "postgres://postgres:postgres@127.0.0.1:5432/postgres";

/// One test database and the store on it.
#[derive(Debug, Clone)]
pub struct TestDb {
    pub store: Store,
    pub url: String,
}

enum Cleanup {
    Dir(PathBuf),
    Database { admin_url: String, name: String },
}

fn pg_admin_url() -> String {
    std::env::var("CONCORDAT_TEST_PG_URL").unwrap_or_else(|_| DEFAULT_PG_URL.to_owned())
}

/// The admin URL with its database replaced by `name`.
fn with_database(admin_url: &str, name: &str) -> String {
    let (base, query) = admin_url.split_once('?').map_or((admin_url, None), |(base, query)| (base, Some(query)));
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[authority_start..].find('/').map_or(base.len(), |i| authority_start + i);
    let mut url = format!("{}/{name}", &base[..path_start]);
    if let Some(query) = query {
        url.push('?');
        url.push_str(query);
    }
    url
}

async fn create(backend: Backend) -> (String, Cleanup) {
    let unique = Uuid::new_v4().simple().to_string();
    match backend {
        Backend::Sqlite => {
            let dir = std::env::temp_dir().join(format!("concordat_test_{unique}"));
            // A nested path checks that connect creates missing parent directories.
            let file = dir.join("nested").join("concordat.db");
            (format!("sqlite://{}", file.display()), Cleanup::Dir(dir))
        }
        Backend::Postgres => {
            let admin_url = pg_admin_url();
            let name = format!("concordat_test_{unique}");
            let mut admin = PgConnection::connect(&admin_url)
                .await
                .unwrap_or_else(|error| panic!("PostgreSQL at CONCORDAT_TEST_PG_URL is needed: {error}"));
            sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut admin).await.unwrap();
            admin.close().await.unwrap();
            (with_database(&admin_url, &name), Cleanup::Database { admin_url, name })
        }
    }
}

async fn remove(cleanup: Cleanup) {
    match cleanup {
        Cleanup::Dir(dir) => {
            let _ = std::fs::remove_dir_all(dir);
        }
        Cleanup::Database { admin_url, name } => {
            let mut admin = PgConnection::connect(&admin_url).await.unwrap();
            sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&mut admin).await.unwrap();
            admin.close().await.unwrap();
        }
    }
}

/// Creates a database, connects a store, runs `body`, and removes the database whatever the outcome, a
/// failed assertion included.
pub async fn run<F, Fut>(backend: Backend, body: F)
where
    F: FnOnce(TestDb) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let (url, cleanup) = create(backend).await;
    let outcome = match Store::connect(&url).await {
        Ok(store) => {
            assert_eq!(store.backend(), backend);
            let db = TestDb { store: store.clone(), url };
            // A failed assertion unwinds through here; catch it so that the database is still removed.
            let result = AssertUnwindSafe(body(db)).catch_unwind().await;
            store.close().await;
            match result {
                Ok(result) => result,
                Err(panic) => {
                    remove(cleanup).await;
                    std::panic::resume_unwind(panic);
                }
            }
        }
        Err(error) => Err(error.into()),
    };
    remove(cleanup).await;
    if let Err(error) = outcome {
        panic!("{backend}: {error:?}");
    }
}

impl TestDb {
    /// Runs raw SQL on a separate connection, as an intruder or an operator would.
    pub async fn raw(&self, sql: &str) -> anyhow::Result<()> {
        match self.store.backend() {
            Backend::Sqlite => {
                let mut c = SqliteConnection::connect(&self.url).await?;
                sqlx::raw_sql(sql).execute(&mut c).await?;
                c.close().await?;
            }
            Backend::Postgres => {
                let mut c = PgConnection::connect(&self.url).await?;
                sqlx::raw_sql(sql).execute(&mut c).await?;
                c.close().await?;
            }
        }
        Ok(())
    }

    /// One integer from raw SQL (`SELECT CAST(... AS BIGINT)`).
    pub async fn count(&self, sql: &str) -> anyhow::Result<i64> {
        Ok(match self.store.backend() {
            Backend::Sqlite => {
                let mut c = SqliteConnection::connect(&self.url).await?;
                let n: i64 = sqlx::query_scalar(sql).fetch_one(&mut c).await?;
                c.close().await?;
                n
            }
            Backend::Postgres => {
                let mut c = PgConnection::connect(&self.url).await?;
                let n: i64 = sqlx::query_scalar(sql).fetch_one(&mut c).await?;
                c.close().await?;
                n
            }
        })
    }

    /// Drops the append-only triggers, so a test can tamper with the audit log as an intruder with
    /// database access could.
    pub async fn allow_audit_tampering(&self) -> anyhow::Result<()> {
        match self.store.backend() {
            Backend::Sqlite => self.raw("DROP TRIGGER audit_log_no_update; DROP TRIGGER audit_log_no_delete;").await,
            Backend::Postgres => {
                self.raw(
                    "DROP TRIGGER audit_log_no_update ON audit_log; DROP TRIGGER audit_log_no_delete ON audit_log;",
                )
                .await
            }
        }
    }
}

/// Generates `sqlite::<name>` and `postgres::<name>` tests running the same body.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    $crate::common::run(concordat_store::Backend::Sqlite, super::$name).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    $crate::common::run(concordat_store::Backend::Postgres, super::$name).await;
                }
            )*
        }
    };
}

/// 2026-03-01 22:00 UTC plus `minutes`: the night of the sample scenario.
pub fn at(minutes: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 22, 0, 0).unwrap() + chrono::Duration::minutes(minutes)
}

pub fn ident(system: &str, value: &str) -> Identifier {
    Identifier { system: NonEmptyString::new(system).unwrap(), value: NonEmptyString::new(value).unwrap() }
}

/// What a test event is about.
#[derive(Debug, Clone, Copy)]
pub struct Spec<'a> {
    pub agency: &'a str,
    pub agency_kind: &'a str,
    pub kind: &'a str,
    pub record_ref: &'a str,
    pub nhs_number: Option<&'a str>,
    pub refs: &'a [(&'a str, &'a str)],
    pub received_minute: i64,
}

/// A schema-valid canonical event with a deterministic id, fictional Northvale data and a note, so that
/// payloads carry something personal to purge.
pub fn event(spec: Spec<'_>) -> CrisisEvent {
    let payload_sha256 = concordat_episode::Sha256Hex::digest(spec.record_ref.as_bytes());
    let agency = concordat_episode::AgencyId::new(spec.agency).unwrap();
    let event_id = concordat_episode::EventId::derive(&agency, spec.record_ref, &payload_sha256);
    let refs: Vec<_> = spec.refs.iter().map(|(system, value)| json!({"system": system, "value": value})).collect();
    let mut subject = json!({"name": {"given": "Alex", "family": "Testperson"}, "birth_date": "1990-04-01"});
    if let Some(number) = spec.nhs_number {
        subject["nhs_number"] = json!(number);
    }
    let received = at(spec.received_minute).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let value = json!({
        "event_id": event_id,
        "kind": spec.kind,
        "occurred_at": received,
        "recorded_at": received,
        "source": {"agency": spec.agency, "agency_kind": spec.agency_kind, "system": "test", "record_ref": spec.record_ref},
        "episode": {"episode_id": null, "refs": refs},
        "subject": subject,
        "consent": {"status": "not_sought"},
        "details": {"notes": "Fictional note about the person, which is personal data."},
        "provenance": {
            "adapter": "test",
            "adapter_version": "0.1.0",
            "format": "test",
            "payload_sha256": payload_sha256,
            "received_at": received
        }
    });
    event_from_value(value).unwrap()
}

#[test]
fn database_urls_are_rewritten() {
    assert_eq!(
        with_database("postgres://postgres:postgres@127.0.0.1:5432/postgres", "x"),
        "postgres://postgres:postgres@127.0.0.1:5432/x"
    );
    assert_eq!(with_database("postgres://h:5432?sslmode=disable", "x"), "postgres://h:5432/x?sslmode=disable");
}
