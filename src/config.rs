//! The one configuration struct, read once at start-up from flags and the
//! environment (clap does both, and `crm --help` lists every variable).
//! Nothing else reads the environment.
use clap::{Args, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Args, Debug, Clone)]
pub struct Config {
    /// HTTP address to listen on.
    #[arg(
        long,
        env = "CRM_ADDR",
        value_name = "CRM_ADDR",
        default_value = "127.0.0.1:8080",
        global = true
    )]
    pub addr: SocketAddr,
    /// Data directory of the embedded mode (SQLite files, photos, signing key).
    #[arg(
        long,
        env = "CRM_DATA_DIR",
        value_name = "CRM_DATA_DIR",
        default_value = "./data",
        global = true
    )]
    pub data_dir: PathBuf,
    /// Postgres URL of the event store and read models; unset = embedded SQLite.
    #[arg(
        long,
        env = "DATABASE_URL",
        value_name = "DATABASE_URL",
        global = true,
        hide_env_values = true
    )]
    pub database_url: Option<String>,
    /// NATS URL (JetStream), or the comma-separated URLs of a cluster's servers; unset = in-process bus.
    #[arg(long, env = "NATS_URL", value_name = "NATS_URL", global = true)]
    pub nats_url: Option<String>,
    /// Replicas of the JetStream stream and consumers: 1 on a single server, 3 on a 3-node cluster.
    #[arg(
        long,
        env = "CRM_NATS_REPLICAS",
        value_name = "CRM_NATS_REPLICAS",
        default_value_t = 1,
        global = true
    )]
    pub nats_replicas: usize,
    /// JetStream stream that carries the events.
    #[arg(
        long,
        env = "CRM_NATS_STREAM",
        value_name = "CRM_NATS_STREAM",
        default_value = "CRM_EVENTS",
        global = true
    )]
    pub nats_stream: String,
    /// Subject prefix of the events (`<prefix>.<company>.<aggregate>.<id>`).
    #[arg(
        long,
        env = "CRM_NATS_SUBJECT_PREFIX",
        value_name = "CRM_NATS_SUBJECT_PREFIX",
        default_value = "crm.events",
        global = true
    )]
    pub nats_subject_prefix: String,
    /// S3/MinIO endpoint for photos, e.g. http://minio:9000; unset = files in the data dir.
    #[arg(long, env = "S3_ENDPOINT", value_name = "S3_ENDPOINT", global = true)]
    pub s3_endpoint: Option<String>,
    #[arg(
        long,
        env = "S3_ACCESS_KEY",
        value_name = "S3_ACCESS_KEY",
        global = true,
        hide_env_values = true
    )]
    pub s3_access_key: Option<String>,
    #[arg(
        long,
        env = "S3_SECRET_KEY",
        value_name = "S3_SECRET_KEY",
        global = true,
        hide_env_values = true
    )]
    pub s3_secret_key: Option<String>,
    #[arg(
        long,
        env = "S3_BUCKET",
        value_name = "S3_BUCKET",
        default_value = "crm-photos",
        global = true
    )]
    pub s3_bucket: String,
    #[arg(
        long,
        env = "S3_REGION",
        value_name = "S3_REGION",
        default_value = "us-east-1",
        global = true
    )]
    pub s3_region: String,
    /// Secret that signs access tokens, at least 32 bytes; required with DATABASE_URL.
    #[arg(
        long,
        env = "CRM_JWT_SECRET",
        value_name = "CRM_JWT_SECRET",
        global = true,
        hide_env_values = true
    )]
    pub jwt_secret: Option<String>,
    /// Comma-separated browser origins allowed by CORS
    /// (`http://localhost:5173,https://app.example.com`), or `*` for any.
    #[arg(
        long,
        env = "CRM_CORS_ORIGINS",
        value_name = "CRM_CORS_ORIGINS",
        default_value = "",
        global = true
    )]
    pub cors_origins: String,
    /// Log format.
    #[arg(
        long,
        env = "CRM_LOG_FORMAT",
        value_name = "CRM_LOG_FORMAT",
        value_enum,
        default_value = "text",
        global = true
    )]
    pub log_format: LogFormat,
    /// Whether `POST /v1/signup` is open.
    #[arg(long, env = "CRM_SIGNUP_ENABLED", value_name = "CRM_SIGNUP_ENABLED", default_value_t = true, action = clap::ArgAction::Set, global = true)]
    pub signup_enabled: bool,
    /// Largest photo upload in bytes.
    #[arg(long, env = "CRM_MAX_UPLOAD_BYTES", value_name = "CRM_MAX_UPLOAD_BYTES", default_value_t = 5 * 1024 * 1024, global = true)]
    pub max_upload_bytes: usize,
    /// Lifetime of access tokens in seconds.
    #[arg(
        long,
        env = "CRM_TOKEN_TTL_SECS",
        value_name = "CRM_TOKEN_TTL_SECS",
        default_value_t = 900,
        global = true
    )]
    pub token_ttl_secs: u64,
    /// Lifetime of a login's refresh tokens in seconds (each refresh rotates
    /// the token; the chain ends at logout or on reuse of a spent token).
    #[arg(
        long,
        env = "CRM_REFRESH_TTL_SECS",
        value_name = "CRM_REFRESH_TTL_SECS",
        default_value_t = 30 * 86_400,
        global = true
    )]
    pub refresh_ttl_secs: u64,
    /// Requests a bearer credential (access token or API key) may make per
    /// minute in each API process; past it, `429` with `Retry-After`. 0 turns
    /// the limit off.
    #[arg(
        long,
        env = "CRM_RATE_LIMIT_PER_MINUTE",
        value_name = "CRM_RATE_LIMIT_PER_MINUTE",
        default_value_t = 60_000,
        global = true
    )]
    pub rate_limit_per_minute: u32,
    /// Database connections per process.
    #[arg(
        long,
        env = "CRM_DB_POOL_SIZE",
        value_name = "CRM_DB_POOL_SIZE",
        default_value_t = 16,
        global = true
    )]
    pub db_pool_size: u32,
    /// Writes answer 503 while any view is more than this many events behind.
    #[arg(
        long,
        env = "CRM_LAG_BOUND_EVENTS",
        value_name = "CRM_LAG_BOUND_EVENTS",
        default_value_t = 100_000,
        global = true
    )]
    pub lag_bound_events: u64,
    /// Writes answer 503 while any view's oldest unapplied event is older than this (seconds).
    #[arg(
        long,
        env = "CRM_LAG_BOUND_SECS",
        value_name = "CRM_LAG_BOUND_SECS",
        default_value_t = 10.0,
        global = true
    )]
    pub lag_bound_secs: f64,
    /// Lets webhooks target loopback, private and link-local addresses (tests, closed networks).
    #[arg(long, env = "CRM_WEBHOOKS_ALLOW_PRIVATE", value_name = "CRM_WEBHOOKS_ALLOW_PRIVATE", default_value_t = false, action = clap::ArgAction::Set, global = true)]
    pub webhooks_allow_private: bool,
    /// Lets webhooks use http:// URLs; default: as CRM_WEBHOOKS_ALLOW_PRIVATE.
    #[arg(long, env = "CRM_WEBHOOKS_ALLOW_HTTP", value_name = "CRM_WEBHOOKS_ALLOW_HTTP", action = clap::ArgAction::Set, global = true)]
    pub webhooks_allow_http: Option<bool>,
    /// Multiplies the webhook retry schedule (5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h).
    #[arg(
        long,
        env = "CRM_WEBHOOKS_RETRY_SCALE",
        value_name = "CRM_WEBHOOKS_RETRY_SCALE",
        default_value_t = 1.0,
        global = true
    )]
    pub webhooks_retry_scale: f64,
}

/// `Config` alone as a command, for [`Config::from_vars`].
#[derive(clap::Parser)]
struct FlagsOnly {
    #[command(flatten)]
    config: Config,
}

/// A configuration value that cannot be used; the message names the variable.
#[derive(Debug, thiserror::Error)]
#[error("{variable}: {problem}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub problem: String,
}

fn bad(variable: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        variable,
        problem: problem.into(),
    }
}

/// S3 settings when photos live in MinIO/S3.
pub struct S3Settings {
    pub endpoint: String,
    pub access_key: String,
    pub secret_key: String,
}

impl Config {
    /// The configuration that these variables (as `crm --help` names them)
    /// make, with every other setting at its default: the process's own
    /// environment is not read. For starting the application in process.
    pub fn from_vars<'a>(
        vars: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, clap::Error> {
        use clap::{CommandFactory, FromArgMatches};
        let mut flags = std::collections::HashMap::new();
        let command = FlagsOnly::command().mut_args(|arg| {
            if let (Some(variable), Some(long)) = (arg.get_env(), arg.get_long()) {
                flags.insert(variable.to_string_lossy().into_owned(), long.to_owned());
            }
            arg.env(None::<&str>)
        });
        let mut args = vec!["crm".to_owned()];
        for (variable, value) in vars {
            let Some(long) = flags.get(variable) else {
                return Err(clap::Error::raw(
                    clap::error::ErrorKind::UnknownArgument,
                    format!("{variable} is not a setting of crm\n"),
                ));
            };
            args.push(format!("--{long}={value}"));
        }
        let matches = command.try_get_matches_from(args)?;
        Config::from_arg_matches(&matches)
    }

    /// Checks what clap cannot: combinations and lengths.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(url) = &self.database_url {
            if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                return Err(bad("DATABASE_URL", "must be a postgres:// URL"));
            }
            if self.jwt_secret.is_none() {
                return Err(bad(
                    "CRM_JWT_SECRET",
                    "is required when DATABASE_URL is set (at least 32 bytes)",
                ));
            }
        }
        if let Some(secret) = &self.jwt_secret {
            if secret.len() < 32 {
                return Err(bad("CRM_JWT_SECRET", "must be at least 32 bytes"));
            }
        }
        if let Some(urls) = &self.nats_url {
            let servers = projections::feed::relay::server_urls(urls);
            let valid = |url: &&str| {
                url.starts_with("nats://") || url.starts_with("tls://") || !url.contains("://")
            };
            if servers.is_empty() || !servers.iter().all(valid) {
                return Err(bad(
                    "NATS_URL",
                    "must be a nats:// URL, or several separated by commas",
                ));
            }
        }
        // JetStream allows at most 5 replicas.
        if !(1..=5).contains(&self.nats_replicas) {
            return Err(bad("CRM_NATS_REPLICAS", "must be between 1 and 5"));
        }
        if self.max_upload_bytes < 1024 {
            return Err(bad("CRM_MAX_UPLOAD_BYTES", "must be at least 1024"));
        }
        if !(60..=86_400).contains(&self.token_ttl_secs) {
            return Err(bad("CRM_TOKEN_TTL_SECS", "must be between 60 and 86400"));
        }
        if !(60..=365 * 86_400).contains(&self.refresh_ttl_secs) {
            return Err(bad(
                "CRM_REFRESH_TTL_SECS",
                "must be between 60 and 31536000",
            ));
        }
        if self.lag_bound_events == 0 {
            return Err(bad("CRM_LAG_BOUND_EVENTS", "must be at least 1"));
        }
        if !(self.lag_bound_secs.is_finite() && self.lag_bound_secs > 0.0) {
            return Err(bad(
                "CRM_LAG_BOUND_SECS",
                "must be a positive number of seconds",
            ));
        }
        if !(self.webhooks_retry_scale.is_finite() && self.webhooks_retry_scale > 0.0) {
            return Err(bad(
                "CRM_WEBHOOKS_RETRY_SCALE",
                "must be a positive number (1 = the standard schedule)",
            ));
        }
        self.s3()?;
        self.cors_origins()?;
        Ok(())
    }

    /// Which webhook targets the operator allows.
    pub fn webhook_targets(&self) -> projections::webhooks::TargetPolicy {
        projections::webhooks::TargetPolicy {
            allow_private: self.webhooks_allow_private,
            allow_http: self
                .webhooks_allow_http
                .unwrap_or(self.webhooks_allow_private),
        }
    }

    pub fn s3(&self) -> Result<Option<S3Settings>, ConfigError> {
        let Some(endpoint) = &self.s3_endpoint else {
            return Ok(None);
        };
        if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
            return Err(bad("S3_ENDPOINT", "must be an http:// or https:// URL"));
        }
        let access_key = self
            .s3_access_key
            .clone()
            .ok_or_else(|| bad("S3_ACCESS_KEY", "is required when S3_ENDPOINT is set"))?;
        let secret_key = self
            .s3_secret_key
            .clone()
            .ok_or_else(|| bad("S3_SECRET_KEY", "is required when S3_ENDPOINT is set"))?;
        Ok(Some(S3Settings {
            endpoint: endpoint.clone(),
            access_key,
            secret_key,
        }))
    }

    pub fn cors_origins(&self) -> Result<api::cors::CorsOrigins, ConfigError> {
        api::cors::parse_origins(&self.cors_origins).map_err(|why| bad("CRM_CORS_ORIGINS", why))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        config: Config,
    }

    fn check(args: &[&str]) -> Result<(), &'static str> {
        let secret = "a-test-secret-of-at-least-32-bytes";
        let head = ["crm", "--jwt-secret", secret];
        let cli = Cli::try_parse_from(head.iter().chain(args)).expect("flags parse");
        cli.config.validate().map_err(|e| e.variable)
    }

    #[test]
    fn a_cluster_is_several_nats_urls_and_a_replica_count() {
        let cluster = "nats://n1:4222, nats://n2:4222,nats://n3:4222";
        assert_eq!(
            check(&["--nats-url", cluster, "--nats-replicas", "3"]),
            Ok(())
        );
        assert_eq!(
            check(&["--nats-url", "nats://n1:4222,http://n2"]),
            Err("NATS_URL")
        );
        assert_eq!(check(&["--nats-url", " , "]), Err("NATS_URL"));
        assert_eq!(check(&["--nats-replicas", "0"]), Err("CRM_NATS_REPLICAS"));
        assert_eq!(check(&["--nats-replicas", "6"]), Err("CRM_NATS_REPLICAS"));
    }

    #[test]
    fn settings_by_variable_ignore_the_environment() {
        // Only this test reads or writes this variable.
        std::env::set_var("CRM_NATS_SUBJECT_PREFIX", "from.the.environment");
        let config = Config::from_vars([
            ("CRM_ADDR", "127.0.0.1:0"),
            ("CRM_SIGNUP_ENABLED", "false"),
            ("CRM_LAG_BOUND_EVENTS", "7"),
        ])
        .expect("known variables");
        assert_eq!(config.addr.port(), 0);
        assert!(!config.signup_enabled);
        assert_eq!(config.lag_bound_events, 7);
        assert_eq!(config.nats_stream, "CRM_EVENTS");
        assert_ne!(config.nats_subject_prefix, "from.the.environment");
        assert!(Config::from_vars([("CRM_NO_SUCH_THING", "1")]).is_err());
        assert!(Config::from_vars([("CRM_NATS_REPLICAS", "many")]).is_err());
    }
}
