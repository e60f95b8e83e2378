//! Input rules shared by the API and the CLI.

use std::sync::LazyLock;

static LOGIN: LazyLock<regex::Regex> =
    LazyLock::new(|| regex::Regex::new(r"^[A-Za-z0-9_.@-]{1,64}$").expect("static regex"));

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
