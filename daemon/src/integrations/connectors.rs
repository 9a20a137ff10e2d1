//! Runtime connectors: a validated source becomes a kloset [`Importer`], a
//! destination that is not a local directory a kloset [`Exporter`]. This is
//! the one place where an integration name turns into code; secrets are
//! read here, at use, and never leave the connector.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use kloset::bucket::{BucketExporter, BucketImporter};
use kloset::command::{CommandExporter, CommandFile, CommandImporter, CommandSpec};
use kloset::export::Exporter;
use kloset::import::{FsImporter, Importer};
use kloset::sftp::{SftpConfig, SftpExporter, SftpImporter};
use kloset::{Location, Storage};
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::{BackoffConfig, ClientConfigKey, RetryConfig};

use super::postgresql::{self, PgConnection};
use crate::config::desired::{Endpoint, SourceDef};

/// Where a restore goes.
pub enum RestoreTarget {
    /// A local directory (the engine's own restore path: sparse files,
    /// owners, modes, times, read-back verification).
    Local(PathBuf),
    /// Anything else.
    Exporter(Box<dyn Exporter>),
}

impl std::fmt::Debug for RestoreTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RestoreTarget::Local(p) => write!(f, "Local({})", p.display()),
            RestoreTarget::Exporter(x) => write!(f, "Exporter({})", x.target()),
        }
    }
}

/// Opens object storage for an S3 endpoint with its credentials.
pub fn object_storage(endpoint: &Endpoint) -> Result<Storage, String> {
    let location = Location::parse(&endpoint.location).map_err(|e| e.to_string())?;
    let options = endpoint.backend_options()?;
    Storage::open(&location, &options, false).map_err(|e| e.to_string())
}

/// How long a connection test's S3 request may take to connect, and in all.
pub const TEST_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// See [`TEST_CONNECT_TIMEOUT`].
pub const TEST_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Object storage for a connection test: like [`object_storage`], but with
/// short timeouts and no retry once [`TEST_REQUEST_TIMEOUT`] has passed, so
/// an endpoint that accepts connections and never answers is reported
/// `Unreachable` after about 10 s, not after object_store's default 3 minutes
/// of retries (backups and restores keep those).
pub fn object_storage_for_test(endpoint: &Endpoint) -> Result<Storage, String> {
    let location = Location::parse(&endpoint.location).map_err(|e| e.to_string())?;
    let Location::S3 { bucket, prefix } = &location else {
        return object_storage(endpoint);
    };
    let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
    for (key, value) in endpoint.backend_options()? {
        let parsed: AmazonS3ConfigKey = key
            .parse()
            .map_err(|_| format!("unknown S3 option {key:?}"))?;
        builder = builder.with_config(parsed, value);
    }
    let secs = |d: Duration| format!("{}s", d.as_secs());
    let s3 = builder
        .with_config(
            AmazonS3ConfigKey::Client(ClientConfigKey::ConnectTimeout),
            secs(TEST_CONNECT_TIMEOUT),
        )
        .with_config(
            AmazonS3ConfigKey::Client(ClientConfigKey::Timeout),
            secs(TEST_REQUEST_TIMEOUT),
        )
        .with_retry(RetryConfig {
            backoff: BackoffConfig::default(),
            max_retries: 1,
            retry_timeout: TEST_REQUEST_TIMEOUT,
        })
        .build()
        .map_err(|e| format!("configuring S3 bucket {bucket}: {e}"))?;
    Storage::from_object_store(Arc::new(s3), prefix, &location.to_string(), None)
        .map_err(|e| e.to_string())
}

/// The importer that reads `source`.
pub fn importer(source: &SourceDef) -> Result<Box<dyn Importer>, String> {
    let e = &source.endpoint;
    match e.integration {
        "fs" => Ok(Box::new(FsImporter::new(&e.location))),
        "s3" => Ok(Box::new(BucketImporter::new(object_storage(e)?))),
        "sftp" => Ok(Box::new(
            SftpImporter::connect(sftp_config(e)?).map_err(|e| e.to_string())?,
        )),
        "exec" => Ok(Box::new(exec_importer(source)?)),
        "postgresql" if e.protocol == "pg_dumpall" => {
            Ok(Box::new(postgresql::cluster_importer(&pg_connection(e)?)))
        }
        "postgresql" => Ok(Box::new(
            postgresql::importer(&pg_connection(e)?).map_err(|e| e.to_string())?,
        )),
        other => Err(not_built(other, "source")),
    }
}

/// Where a restore into `endpoint` writes, `subdir` (a restore test's
/// per-snapshot directory) appended when given.
pub fn restore_target(endpoint: &Endpoint, subdir: Option<&str>) -> Result<RestoreTarget, String> {
    let joined = |base: &str| match subdir {
        Some(d) => format!("{}/{d}", base.trim_end_matches('/')),
        None => base.to_string(),
    };
    match endpoint.integration {
        "fs" => Ok(RestoreTarget::Local(PathBuf::from(joined(
            &endpoint.location,
        )))),
        "s3" => {
            let mut e = endpoint.clone();
            e.location = joined(&endpoint.location);
            Ok(RestoreTarget::Exporter(Box::new(BucketExporter::new(
                object_storage(&e)?,
            ))))
        }
        "sftp" => {
            let mut e = endpoint.clone();
            e.location = joined(&endpoint.location);
            Ok(RestoreTarget::Exporter(Box::new(
                SftpExporter::connect(sftp_config(&e)?).map_err(|e| e.to_string())?,
            )))
        }
        "postgresql" if endpoint.protocol == "pg_dumpall" => Ok(RestoreTarget::Exporter(Box::new(
            postgresql::cluster_exporter(&pg_connection(endpoint)?),
        ))),
        "postgresql" => Ok(RestoreTarget::Exporter(Box::new(
            postgresql::exporter(
                &pg_connection(endpoint)?,
                endpoint.option("clean") == Some("true"),
            )
            .map_err(|e| e.to_string())?,
        ))),
        "exec" => Ok(RestoreTarget::Exporter(Box::new(CommandExporter::new(
            endpoint.location.clone(),
            command_spec(&endpoint.command)?,
        )))),
        other => Err(not_built(other, "destination")),
    }
}

/// SFTP settings with their credentials.
pub fn sftp_config(endpoint: &Endpoint) -> Result<SftpConfig, String> {
    let location = Location::parse(&endpoint.location).map_err(|e| e.to_string())?;
    let options = endpoint.backend_options()?;
    SftpConfig::from_location(&location, &options).map_err(|e| e.to_string())
}

fn command_spec(argv: &[String]) -> Result<CommandSpec, String> {
    let (program, args) = argv.split_first().ok_or("no command")?;
    Ok(CommandSpec::new(program).args(args.iter().cloned()))
}

/// PostgreSQL connection settings with the password read.
pub fn pg_connection(endpoint: &Endpoint) -> Result<PgConnection, String> {
    let port = endpoint.option("port").unwrap_or("5432");
    let password = match endpoint.credentials.iter().find(|(k, _)| k == "password") {
        Some((_, secret)) => {
            let bytes = secret.read().map_err(|e| format!("password: {e}"))?;
            let text =
                std::str::from_utf8(&bytes).map_err(|_| "password: the secret is not UTF-8")?;
            Some(zeroize::Zeroizing::new(text.to_string()))
        }
        None => None,
    };
    Ok(PgConnection {
        host: endpoint.option("host").unwrap_or("localhost").to_string(),
        port: port
            .parse()
            .map_err(|_| format!("port {port:?} is not a number"))?,
        user: endpoint.option("user").unwrap_or("postgres").to_string(),
        database: endpoint.option("database").map(str::to_string),
        password,
        bin_dir: None,
    })
}

fn exec_importer(source: &SourceDef) -> Result<CommandImporter, String> {
    let e = &source.endpoint;
    let name = e.option("file").unwrap_or("stdout").to_string();
    Ok(CommandImporter::new(
        e.location.clone(),
        vec![CommandFile {
            name,
            command: command_spec(&e.command)?,
        }],
    ))
}

fn not_built(integration: &str, role: &str) -> String {
    format!("the {integration} integration has no {role} connector in this build")
}
