//! Sessions on monitored servers, which are somebody's production databases.
//!
//! Every session names its process (`application_name`), is read-only, carries `statement_timeout` and
//! `lock_timeout`, and runs under a client-side deadline: a half-open TCP connection ignores
//! `statement_timeout`, so only the client can give up on it. Connection settings are built field by
//! field from a [`Target`] (never a pasted connection string), so nothing from the `servers` table can
//! inject libpq keywords.
//!
//! TLS is rustls with ring. `sslmode` follows libpq: `prefer` and `require` encrypt without verifying
//! the certificate, `verify-ca` checks the chain only, `verify-full` the chain and the host name. Trust
//! anchors are, as libpq's `sslrootcert`, the file named by `$PGSSLROOTCERT` alone when it is set
//! (a private CA); otherwise the Mozilla roots (webpki-roots) plus the system bundle
//! (`/etc/ssl/certs/ca-certificates.crt`), as with libpq's `sslrootcert=system`.
//!
//! Every connect first resolves the host and checks every address against `servers.allowed_targets`
//! ([`crate::targets`]), then connects to those addresses (`hostaddr`), the name kept for TLS: what
//! was checked is what is reached.
//!
//! Errors are reduced to a class and a message written here: the message never carries the password
//! nor text chosen by the server (only its SQLSTATE), since a monitored server is not trusted.

use std::future::Future;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
use tokio_postgres::error::SqlState;
pub use tokio_postgres_rustls::MakeRustlsConnect;

/// libpq's `sslmode` values that pgmon accepts (`allow` is not offered: it never helps a monitor).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    pub const ALL: [SslMode; 5] = [
        SslMode::Disable,
        SslMode::Prefer,
        SslMode::Require,
        SslMode::VerifyCa,
        SslMode::VerifyFull,
    ];

    /// The libpq spelling, as stored in `servers.sslmode`.
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

impl std::fmt::Display for SslMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("sslmode must be one of disable, prefer, require, verify-ca, verify-full")]
pub struct BadSslMode;

impl FromStr for SslMode {
    type Err = BadSslMode;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SslMode::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or(BadSslMode)
    }
}

/// Where and as whom to connect; the password is already decrypted.
#[derive(Clone, PartialEq, Eq)]
pub struct Target {
    pub host: String,
    pub port: u16,
    pub dbname: String,
    pub user: String,
    pub password: Option<String>,
    pub sslmode: SslMode,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("dbname", &self.dbname)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("sslmode", &self.sslmode)
            .finish()
    }
}

impl Target {
    /// The same server, another database (the collector visits each database of a server).
    pub fn with_dbname(&self, dbname: &str) -> Target {
        Target {
            dbname: dbname.to_string(),
            ..self.clone()
        }
    }
}

/// Session limits. `connect_timeout` is also the client-side deadline of the whole connect (TCP, TLS,
/// authentication), not only of the TCP handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionOpts {
    pub application_name: &'static str,
    pub connect_timeout: Duration,
    pub statement_timeout: Duration,
    pub lock_timeout: Duration,
}

impl SessionOpts {
    /// The limits established monitors use: connect 5 s, statements 5 s, locks 100 ms.
    pub fn new(application_name: &'static str) -> Self {
        Self {
            application_name,
            connect_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(5),
            lock_timeout: Duration::from_millis(100),
        }
    }

    /// The deadline the client puts around one statement: the server's own limit plus a margin for the
    /// round trip, so that a server which honours `statement_timeout` reports it first.
    pub fn call_deadline(&self) -> Duration {
        self.statement_timeout + Duration::from_secs(2)
    }
}

/// The tokio-postgres settings of a session on `t`, reaching it at `addrs` (the checked result of
/// [`resolve`]; one `host`/`hostaddr` pair each, tried in order, the name used for TLS).
pub fn pg_config(t: &Target, opts: &SessionOpts, addrs: &[IpAddr]) -> tokio_postgres::Config {
    let mut c = tokio_postgres::Config::new();
    for a in addrs {
        c.host(&t.host).hostaddr(*a);
    }
    c.port(t.port)
        .dbname(&t.dbname)
        .user(&t.user)
        .application_name(opts.application_name)
        .connect_timeout(opts.connect_timeout)
        // Detects a peer that vanished while the session is idle between statements.
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(30))
        .ssl_mode(match t.sslmode {
            SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => {
                tokio_postgres::config::SslMode::Require
            }
        })
        .options(format!(
            "-c statement_timeout={} -c lock_timeout={} -c default_transaction_read_only=on",
            millis(opts.statement_timeout),
            millis(opts.lock_timeout)
        ));
    if let Some(pw) = &t.password {
        c.password(pw.as_bytes());
    }
    c
}

fn millis(d: Duration) -> u128 {
    // statement_timeout = 0 would mean "no limit": never send it.
    d.as_millis().max(1)
}

/// The TLS connector for `mode`. The rustls configurations are built once per mode and shared.
pub fn tls_connector(mode: SslMode) -> MakeRustlsConnect {
    static CONFIGS: OnceLock<[MakeRustlsConnect; 3]> = OnceLock::new();
    let [no_verify, chain, full] = CONFIGS.get_or_init(|| {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let roots = Arc::new(root_store());
        let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
            .build()
            .ok();
        let make = |v: Arc<dyn ServerCertVerifier>| {
            let cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .map(|b| {
                    b.dangerous()
                        .with_custom_certificate_verifier(v)
                        .with_no_client_auth()
                });
            MakeRustlsConnect::new(cfg.unwrap_or_else(|_| empty_config()))
        };
        let refuse: Arc<dyn ServerCertVerifier> = Arc::new(Refuse(provider.clone()));
        [
            make(Arc::new(AcceptAny(provider.clone()))),
            make(match &webpki {
                Some(w) => Arc::new(ChainOnly(w.clone())),
                None => refuse.clone(),
            }),
            make(match webpki {
                Some(w) => w,
                None => refuse,
            }),
        ]
    });
    match mode {
        SslMode::Disable | SslMode::Prefer | SslMode::Require => no_verify.clone(),
        SslMode::VerifyCa => chain.clone(),
        SslMode::VerifyFull => full.clone(),
    }
}

/// A configuration whose handshakes all fail; only reached if ring offers no TLS version at all.
fn empty_config() -> rustls::ClientConfig {
    rustls::ClientConfig::builder()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth()
}

fn root_store() -> rustls::RootCertStore {
    use rustls::pki_types::pem::PemObject;
    // Not PGMON_*: the config reads every PGMON_* variable as a key.
    let own = std::env::var("PGSSLROOTCERT")
        .ok()
        .filter(|p| !p.is_empty() && p != "system");
    let mut roots = rustls::RootCertStore::empty();
    if own.is_none() {
        roots.roots = webpki_roots::TLS_SERVER_ROOTS.to_vec();
    }
    let path = own.unwrap_or_else(|| "/etc/ssl/certs/ca-certificates.crt".to_string());
    match CertificateDer::pem_file_iter(&path) {
        Ok(iter) => {
            let (added, ignored) = roots.add_parsable_certificates(iter.flatten());
            tracing::debug!(path, added, ignored, "loaded TLS trust anchors");
        }
        Err(_) => tracing::warn!(path, "cannot read TLS trust anchors"),
    }
    roots
}

/// libpq's `require`: encrypt, accept any certificate; the handshake signature is still checked.
#[derive(Debug)]
struct AcceptAny(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Used when the trust store cannot be built: verification can only fail.
#[derive(Debug)]
struct Refuse(Arc<CryptoProvider>);

impl ServerCertVerifier for Refuse {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Err(rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// libpq's `verify-ca`: the chain must lead to a trusted root; the name in the certificate is not checked.
#[derive(Debug)]
struct ChainOnly(Arc<rustls::client::WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// Why a remote call failed, coarse enough to store and to show (`availability.error_class`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    AuthFailed,
    Timeout,
    Unreachable,
    Tls,
    /// Not tried: `servers.allowed_targets` refuses the address.
    Refused,
    Other,
}

impl ErrorClass {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::AuthFailed => "auth_failed",
            ErrorClass::Timeout => "timeout",
            ErrorClass::Unreachable => "unreachable",
            ErrorClass::Tls => "tls",
            ErrorClass::Refused => "refused",
            ErrorClass::Other => "other",
        }
    }
}

impl std::fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{class}: {message}")]
pub struct RemoteError {
    pub class: ErrorClass,
    pub message: String,
}

impl RemoteError {
    /// The message is cut to printable text: TLS errors name what the peer's certificate presents,
    /// and the message reaches answers and logs.
    pub fn new(class: ErrorClass, message: impl Into<String>) -> Self {
        Self {
            class,
            message: crate::redact::peer_text(&message.into(), 600),
        }
    }

    pub fn timeout(what: &str, after: Duration) -> Self {
        Self::new(
            ErrorClass::Timeout,
            format!("{what}: no answer within {:.1} s", after.as_secs_f64()),
        )
    }

    /// Classifies a tokio-postgres error. The text is built from the error's kind, the SQLSTATE and
    /// local I/O or TLS errors; the server's own message is left out.
    pub fn from_pg(e: &tokio_postgres::Error) -> Self {
        if let Some(db) = e.as_db_error() {
            return Self::from_sqlstate(db.code());
        }
        let kind = e.to_string();
        let (io, tls) = source_details(e);
        if kind.starts_with("error performing TLS handshake") {
            let why = tls.or(io).unwrap_or_else(|| "the server refused TLS".into());
            return Self::new(ErrorClass::Tls, format!("TLS handshake failed: {why}"));
        }
        // The reason of these two kinds is the error's source, a text of tokio-postgres itself
        // ("password missing", "unsupported SASL mechanism", ...): never the server's words.
        let reason = std::error::Error::source(e).map(|s| s.to_string());
        if kind.starts_with("invalid configuration") {
            return match reason.as_deref() {
                Some("password missing") => Self::new(
                    ErrorClass::AuthFailed,
                    "the server asks for a password and none is stored",
                ),
                Some(r) => Self::new(ErrorClass::Other, format!("invalid connection settings: {r}")),
                None => Self::new(ErrorClass::Other, "invalid connection settings"),
            };
        }
        if kind.starts_with("authentication error") {
            let why =
                reason.unwrap_or_else(|| "the server asked for a method the client cannot provide".into());
            return Self::new(ErrorClass::AuthFailed, format!("authentication failed: {why}"));
        }
        if kind.starts_with("error connecting to server") {
            let why = io.unwrap_or_else(|| "connection failed".into());
            return Self::new(ErrorClass::Unreachable, format!("cannot connect: {why}"));
        }
        if kind.starts_with("timeout waiting for server") {
            return Self::new(ErrorClass::Timeout, "connect timed out");
        }
        if kind.starts_with("error communicating with the server") || kind.starts_with("connection closed") {
            let why = io.unwrap_or_else(|| "connection closed".into());
            return Self::new(ErrorClass::Unreachable, format!("connection lost: {why}"));
        }
        // Kinds like "unexpected message from server" or a column type mismatch: our own fixed text.
        Self::new(ErrorClass::Other, kind)
    }

    fn from_sqlstate(code: &SqlState) -> Self {
        let (class, what) = match code.code() {
            "28P01" => (ErrorClass::AuthFailed, "password authentication failed"),
            "28000" => (ErrorClass::AuthFailed, "not authorized (pg_hba.conf or role)"),
            "3D000" => (ErrorClass::Other, "database does not exist"),
            "53300" => (ErrorClass::Unreachable, "too many connections"),
            "57P03" => (ErrorClass::Unreachable, "server is starting up or shutting down"),
            "57P01" | "57P02" => (ErrorClass::Unreachable, "server is shutting down"),
            "57014" => (ErrorClass::Timeout, "statement timed out on the server"),
            "55P03" => (ErrorClass::Timeout, "lock not available within lock_timeout"),
            "42501" => (ErrorClass::AuthFailed, "permission denied"),
            "25006" => (ErrorClass::Other, "read-only session refused a write"),
            _ => (ErrorClass::Other, "server error"),
        };
        Self::new(class, format!("{what} (SQLSTATE {})", code.code()))
    }
}

/// The local I/O error kind and rustls error under a tokio-postgres error, if any. Both are texts of
/// this process's libraries, never of the server.
fn source_details(e: &tokio_postgres::Error) -> (Option<String>, Option<String>) {
    let mut io = None;
    let mut tls = None;
    let mut cur: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(err) = cur {
        if let Some(r) = err.downcast_ref::<rustls::Error>() {
            tls = Some(r.to_string());
        } else if let Some(i) = err.downcast_ref::<std::io::Error>() {
            if let Some(r) = i
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            {
                tls = Some(r.to_string());
            } else if io.is_none() {
                io = Some(io_kind_text(i));
            }
        }
        cur = err.source();
    }
    (io, tls)
}

fn io_kind_text(e: &std::io::Error) -> String {
    use std::io::ErrorKind as K;
    match e.kind() {
        K::ConnectionRefused => "connection refused".into(),
        K::ConnectionReset => "connection reset".into(),
        K::ConnectionAborted => "connection aborted".into(),
        K::TimedOut => "timed out".into(),
        K::UnexpectedEof => "connection closed by the server".into(),
        K::NotFound => "host not found".into(),
        K::HostUnreachable => "host unreachable".into(),
        K::NetworkUnreachable => "network unreachable".into(),
        K::AddrNotAvailable => "address not available".into(),
        // Resolver failures arrive as Other/Uncategorized with the resolver's own (local) text.
        _ => match e.raw_os_error() {
            Some(_) => e.kind().to_string(),
            None => "host name could not be resolved or the connection failed".into(),
        },
    }
}

impl From<crate::targets::TargetError> for RemoteError {
    fn from(e: crate::targets::TargetError) -> Self {
        let class = if e.is_refused() {
            ErrorClass::Refused
        } else {
            ErrorClass::Unreachable
        };
        Self::new(class, e.to_string())
    }
}

/// The addresses of `t` that the process's `servers.allowed_targets` admits (all of them, or an error
/// naming the rule that refuses one).
pub async fn resolve(t: &Target) -> Result<Vec<IpAddr>, RemoteError> {
    let addrs = crate::targets::resolve(&t.host, t.port).await?;
    Ok(addrs.iter().map(|a| a.ip()).collect())
}

/// Opens a session on `t`: resolution and its check, TCP, TLS per `sslmode` and authentication, all
/// within `opts.connect_timeout`. The connection's driver task is spawned; dropping the client closes it.
pub async fn connect(t: &Target, opts: &SessionOpts) -> Result<tokio_postgres::Client, RemoteError> {
    let tls = tls_connector(t.sslmode);
    let attempt = async move {
        let cfg = pg_config(t, opts, &resolve(t).await?);
        let (client, connection) = cfg.connect(tls).await.map_err(|e| RemoteError::from_pg(&e))?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %RemoteError::from_pg(&e), "remote session ended");
            }
        });
        Ok(client)
    };
    match tokio::time::timeout(opts.connect_timeout, attempt).await {
        Ok(r) => r,
        Err(_) => Err(RemoteError::timeout("connect", opts.connect_timeout)),
    }
}

/// Runs one remote call under a client-side deadline, whatever the server's timeouts say.
pub async fn call<T>(
    deadline: Duration,
    fut: impl Future<Output = Result<T, tokio_postgres::Error>>,
) -> Result<T, RemoteError> {
    match tokio::time::timeout(deadline, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(RemoteError::from_pg(&e)),
        Err(_) => Err(RemoteError::timeout("query", deadline)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sslmode_round_trips_libpq_spellings() {
        for m in SslMode::ALL {
            assert_eq!(m.as_str().parse::<SslMode>(), Ok(m));
        }
        assert!("allow".parse::<SslMode>().is_err());
        assert!("VERIFY-FULL".parse::<SslMode>().is_err());
    }

    #[test]
    fn debug_hides_the_password_and_config_carries_limits() {
        let t = Target {
            host: "db.example".into(),
            port: 5433,
            dbname: "app".into(),
            user: "monitor".into(),
            password: Some("hunter2".into()),
            sslmode: SslMode::VerifyFull,
        };
        assert!(!format!("{t:?}").contains("hunter2"));
        let c = pg_config(
            &t,
            &SessionOpts::new("pgmon-test"),
            &["192.0.2.1".parse().expect("ip")],
        );
        assert_eq!(c.get_application_name(), Some("pgmon-test"));
        assert_eq!(c.get_ports(), &[5433]);
        // The checked address is what is reached; the name stays for TLS.
        assert_eq!(c.get_hostaddrs(), &["192.0.2.1".parse::<IpAddr>().expect("ip")]);
        assert_eq!(
            c.get_hosts(),
            &[tokio_postgres::config::Host::Tcp("db.example".into())]
        );
        assert_eq!(c.get_password(), Some(&b"hunter2"[..]));
        let o = c.get_options().unwrap_or_default();
        assert!(o.contains("statement_timeout=5000"), "{o}");
        assert!(o.contains("lock_timeout=100"), "{o}");
        assert!(o.contains("default_transaction_read_only=on"), "{o}");
        assert_eq!(c.get_ssl_mode(), tokio_postgres::config::SslMode::Require);
    }

    #[tokio::test]
    async fn refused_port_is_unreachable_and_silent_peer_times_out() {
        let opts = SessionOpts {
            connect_timeout: Duration::from_millis(500),
            ..SessionOpts::new("pgmon-test")
        };
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let t = Target {
            host: "127.0.0.1".into(),
            port,
            dbname: "x".into(),
            user: "x".into(),
            password: Some("pw".into()),
            sslmode: SslMode::Disable,
        };
        // Accepted by the kernel backlog, never answered: only the client deadline ends it.
        let e = connect(&t, &opts).await.expect_err("silent peer");
        assert_eq!(e.class, ErrorClass::Timeout, "{e}");
        drop(listener);
        let e = connect(&t, &opts).await.expect_err("closed port");
        assert_eq!(e.class, ErrorClass::Unreachable, "{e}");
        assert!(!e.message.contains("pw"));
    }
}
