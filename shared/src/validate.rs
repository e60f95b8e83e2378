//! Input rules shared by the API and the CLI.

use std::sync::LazyLock;

static LOGIN: LazyLock<regex::Regex> =
    LazyLock::new(|| regex::Regex::new(r"^[A-Za-z0-9_.@-]{1,64}$").expect("static regex"));
static SERVER_NAME: LazyLock<regex::Regex> =
    LazyLock::new(|| regex::Regex::new(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$").expect("static regex"));
static HOSTNAME: LazyLock<regex::Regex> = LazyLock::new(|| {
    regex::Regex::new(r"^[A-Za-z0-9_]([A-Za-z0-9_-]{0,62})(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,62}))*\.?$")
        .expect("static regex")
});
static SSH_USER: LazyLock<regex::Regex> =
    LazyLock::new(|| regex::Regex::new(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$").expect("static regex"));

/// A monitored server's name (it appears in URL paths).
pub fn check_server_name(name: &str) -> Result<(), String> {
    if SERVER_NAME.is_match(name) {
        Ok(())
    } else {
        Err("name must match ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$".into())
    }
}

/// A host name or an IP address: no spaces, `=`, `/` or anything else a connection string would read.
pub fn check_host(field: &str, host: &str) -> Result<(), String> {
    let ip = host.parse::<std::net::IpAddr>().is_ok();
    if ip || (host.len() <= 253 && HOSTNAME.is_match(host)) {
        Ok(())
    } else {
        Err(format!("{field} must be a host name or an IP address"))
    }
}

pub fn check_port(field: &str, port: i64) -> Result<i32, String> {
    match i32::try_from(port) {
        Ok(p) if (1..=65535).contains(&p) => Ok(p),
        _ => Err(format!("{field} must be between 1 and 65535")),
    }
}

/// Free text that ends up in a connection's startup packet or a log line: bounded, no control chars.
pub fn check_text(field: &str, value: &str, max: usize, allow_empty: bool) -> Result<(), String> {
    if !allow_empty && value.is_empty() {
        return Err(format!("{field} must not be empty"));
    }
    if value.len() > max {
        return Err(format!("{field} must be at most {max} bytes"));
    }
    if value.chars().any(char::is_control) {
        return Err(format!("{field} must not contain control characters"));
    }
    Ok(())
}

/// A password or passphrase: bounded, no NUL (the wire protocol ends strings with it).
pub fn check_secret(field: &str, value: &str) -> Result<(), String> {
    if value.len() > 1024 {
        return Err(format!("{field} must be at most 1024 bytes"));
    }
    if value.contains('\0') {
        return Err(format!("{field} must not contain NUL"));
    }
    Ok(())
}

/// A login name on an SSH host.
pub fn check_ssh_user(user: &str) -> Result<(), String> {
    if SSH_USER.is_match(user) {
        Ok(())
    } else {
        Err("ssh_user must match ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$".into())
    }
}

/// The directory whose file system `df` measures over SSH.
pub fn check_data_path(path: &str) -> Result<(), String> {
    check_text("ssh_data_path", path, 4096, false)?;
    if path.starts_with('/') {
        Ok(())
    } else {
        Err("ssh_data_path must be an absolute path".into())
    }
}

pub fn is_valid_login(login: &str) -> bool {
    LOGIN.is_match(login)
}

/// bcrypt reads at most 72 bytes and silently drops the rest, so longer passwords are refused.
pub fn check_password(password: &str) -> Result<(), &'static str> {
    match password.len() {
        n if n < 8 => Err("password must be at least 8 bytes long"),
        n if n > 72 => Err("password must be at most 72 bytes long (bcrypt ignores the rest)"),
        _ => Ok(()),
    }
}

/// The three roles, in increasing power.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    // Declaration order is the order of power: `Ord` is derived.
    Viewer,
    Operator,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "viewer" => Ok(Role::Viewer),
            "operator" => Ok(Role::Operator),
            "admin" => Ok(Role::Admin),
            other => Err(format!(
                "unknown role {other:?}: expected admin, operator or viewer"
            )),
        }
    }
}
