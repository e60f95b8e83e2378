//! Input rules shared by the API and the CLI.

use std::sync::LazyLock;

static LOGIN: LazyLock<regex::Regex> =
    LazyLock::new(|| regex::Regex::new(LOGIN_PATTERN).expect("static regex"));
static SERVER_NAME: LazyLock<regex::Regex> =
    LazyLock::new(|| regex::Regex::new(SERVER_NAME_PATTERN).expect("static regex"));
static HOST: LazyLock<regex::Regex> =
    LazyLock::new(|| regex::Regex::new(HOST_PATTERN).expect("static regex"));
static SSH_USER: LazyLock<regex::Regex> =
    LazyLock::new(|| regex::Regex::new(SSH_USER_PATTERN).expect("static regex"));

/// What [`check_server_name`] admits, for the OpenAPI document.
pub const SERVER_NAME_PATTERN: &str = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$";
/// What [`check_ssh_user`] admits, for the OpenAPI document.
pub const SSH_USER_PATTERN: &str = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$";
/// What [`is_valid_login`] admits, for the OpenAPI document.
pub const LOGIN_PATTERN: &str = r"^[A-Za-z0-9_.@-]{1,64}$";
/// One line of text: no control characters.
pub const LINE_PATTERN: &str = r"^[^\x00-\x1f\x7f-\x9f]*$";
/// An absolute path without control characters.
pub const PATH_PATTERN: &str = r"^/[^\x00-\x1f\x7f-\x9f]*$";
/// No NUL.
pub const NO_NUL_PATTERN: &str = r"^[^\x00]*$";

/// A monitored server's name (it appears in URL paths).
pub fn check_server_name(name: &str) -> Result<(), String> {
    if SERVER_NAME.is_match(name) {
        Ok(())
    } else {
        Err(format!("name must match {SERVER_NAME_PATTERN}"))
    }
}

/// What [`check_host`] admits, for the OpenAPI document.
pub const HOST_PATTERN: &str = r"^[A-Za-z0-9_.:-]{1,253}$";

/// A host name or an IP address: letters, digits and `_.:-` only, so no space, `=`, `/` or anything
/// else a connection string or a shell would read. What is not a real host fails to connect.
pub fn check_host(field: &str, host: &str) -> Result<(), String> {
    if HOST.is_match(host) {
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

/// Free text that ends up in a connection's startup packet or a log line: at most `max` characters,
/// no control characters.
pub fn check_text(field: &str, value: &str, max: usize, allow_empty: bool) -> Result<(), String> {
    if !allow_empty && value.is_empty() {
        return Err(format!("{field} must not be empty"));
    }
    if value.chars().count() > max {
        return Err(format!("{field} must be at most {max} characters"));
    }
    if value.chars().any(char::is_control) {
        return Err(format!("{field} must not contain control characters"));
    }
    Ok(())
}

/// A password or passphrase: at most 1024 characters, no NUL (the wire protocol ends strings with it).
pub fn check_secret(field: &str, value: &str) -> Result<(), String> {
    if value.chars().count() > 1024 {
        return Err(format!("{field} must be at most 1024 characters"));
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
        Err(format!("ssh_user must match {SSH_USER_PATTERN}"))
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

/// 8 to 1024 characters (pgmon-api hashes every one of them, also past bcrypt's 72 bytes).
pub fn check_password(password: &str) -> Result<(), &'static str> {
    match password.chars().count() {
        n if n < 8 => Err("password must be at least 8 characters long"),
        n if n > 1024 => Err("password must be at most 1024 characters long"),
        _ if password.contains('\0') => Err("password must not contain NUL"),
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
