//! `/ssh-keys`: keys pgmon logs in to monitored hosts with (admin, operator; listing which servers use
//! a key is open to every role, downloading the public key needs admin, as in the original).
//!
//! Private keys are stored as Fernet tokens of unencrypted OpenSSH text and returned by no endpoint.
//! An encrypted key is decrypted with its passphrase at import; the passphrase is not kept.
//! `generate` accepts a `passphrase` for compatibility with the original's clients but does not use
//! it: the private key never leaves pgmon, so a passphrase would protect nothing the Fernet key does
//! not, and pgmon would have to store it next to the key to log in unattended.

use super::Message;
use super::auth::{actor, record};
use crate::auth::Auth;
use crate::error::{ApiError, ApiResult};
use crate::payload::JsonBody;
use crate::state::AppState;
use chrono::{DateTime, Utc};
use pgmon_shared::ssh::{self, KeyError, KeyKind, KeyMaterial};
use pgmon_shared::store::StoreError;
use pgmon_shared::store::audit::event;
use pgmon_shared::store::servers;
use pgmon_shared::store::ssh_keys::{self, NewSshKey, SshKeyRow};
use poem::Request;
use poem::web::Data;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::types::multipart::Upload;
use poem_openapi::{Enum, Multipart, Object, OpenApi, Tags};
use uuid::Uuid;

/// The largest key file `import-file` reads (an RSA 16384 key in PEM is about 13 KiB).
pub const MAX_KEY_FILE: usize = 1024 * 1024;

#[derive(Tags)]
enum Tag {
    /// SSH keys for reaching monitored hosts.
    SshKeys,
}

#[derive(Debug, Clone, Copy, Enum, PartialEq, Eq, serde::Deserialize)]
#[oai(rename_all = "lowercase")]
#[serde(rename_all = "lowercase")]
pub enum KeyType {
    Ed25519,
    Rsa,
}

#[derive(Debug, Object, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenerateIn {
    /// Unique; it names the download, so no `/`, `\`, `"` or control characters.
    #[oai(validator(pattern = r#"^[^/\\"\x00-\x1f\x7f-\x9f]{1,64}$"#))]
    pub name: String,
    pub key_type: KeyType,
    /// RSA only: 2048, 3072 (default) or 4096; ignored for ed25519.
    #[oai(validator(minimum(value = "2048"), maximum(value = "4096"), multiple_of = "1024"))]
    pub key_size: Option<u32>,
    /// Accepted and not used: see the module documentation (the key is stored Fernet-encrypted).
    #[oai(write_only, validator(max_length = 1024, pattern = r"^[^\x00]*$"))]
    pub passphrase: Option<String>,
    #[oai(validator(max_length = 1000))]
    pub description: Option<String>,
    /// Ends the public key line; default `pgmon@<name>`.
    #[oai(validator(max_length = 256, pattern = r"^[^\x00-\x1f\x7f-\x9f]*$"))]
    pub comment: Option<String>,
}

#[derive(Debug, Object, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportIn {
    /// As for `generate`.
    #[oai(validator(pattern = r#"^[^/\\"\x00-\x1f\x7f-\x9f]{1,64}$"#))]
    pub name: String,
    /// OpenSSH, PEM PKCS#1 or PKCS#8; plain or encrypted. Text that is no such key is a 400.
    #[oai(write_only)]
    pub private_key: String,
    /// Needed for an encrypted key; not stored.
    #[oai(write_only, validator(max_length = 1024, pattern = r"^[^\x00]*$"))]
    pub passphrase: Option<String>,
    #[oai(validator(max_length = 1000))]
    pub description: Option<String>,
    /// Default: the comment inside the key, if any.
    #[oai(validator(max_length = 256, pattern = r"^[^\x00-\x1f\x7f-\x9f]*$"))]
    pub comment: Option<String>,
}

#[derive(Debug, Multipart)]
pub struct ImportFileIn {
    /// The private key file, at most 1 MiB.
    pub file: Upload,
    pub name: String,
    pub passphrase: Option<String>,
    pub description: Option<String>,
    pub comment: Option<String>,
}

#[derive(Debug, Object, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateIn {
    #[oai(validator(pattern = r#"^[^/\\"\x00-\x1f\x7f-\x9f]{1,64}$"#))]
    pub name: Option<String>,
    /// `""` removes it.
    #[oai(validator(max_length = 1000))]
    pub description: Option<String>,
}

#[derive(Debug, Object)]
pub struct SshKeyOut {
    pub id: Uuid,
    pub name: String,
    /// `SHA256:...`, as `ssh-keygen -l -E sha256` prints it.
    pub fingerprint: String,
    /// `ed25519`, `rsa` or `ecdsa`.
    pub key_type: String,
    pub created_at: DateTime<Utc>,
    pub created_by: Option<String>,
    /// One OpenSSH line, for `authorized_keys`.
    pub public_key: String,
    /// Always false: pgmon stores keys without a passphrase (it must log in unattended).
    pub has_passphrase: bool,
    /// Servers that log in with this key; a key in use cannot be deleted.
    pub servers_count: i64,
    pub description: Option<String>,
    pub bits: Option<i32>,
    /// The comment at the end of the public key line.
    pub comment: String,
}

impl From<SshKeyRow> for SshKeyOut {
    fn from(k: SshKeyRow) -> Self {
        Self {
            id: k.id,
            name: k.name,
            fingerprint: k.fingerprint,
            key_type: k.key_type,
            created_at: k.created_at,
            created_by: k.created_by,
            public_key: k.public_key,
            has_passphrase: false,
            servers_count: k.servers_count,
            description: k.description,
            bits: k.bits,
            comment: k.comment,
        }
    }
}

/// The public key as the original's clients download it.
#[derive(Debug, Object)]
pub struct PublicKeyFile {
    /// `<name>_id_<key_type>.pub`
    pub filename: String,
    pub content: String,
    /// `text/plain`
    pub content_type: String,
}

pub struct SshKeysApi;

#[OpenApi(tag = "Tag::SshKeys")]
impl SshKeysApi {
    /// All keys, without private parts (admin, operator).
    #[oai(path = "/ssh-keys", method = "get")]
    async fn list(&self, state: Data<&AppState>, auth: Auth) -> ApiResult<Json<Vec<SshKeyOut>>> {
        auth.operator()?;
        let rows = ssh_keys::list(&state.pool).await?;
        Ok(Json(rows.into_iter().map(SshKeyOut::from).collect()))
    }

    /// Generate a key pair (admin, operator). Runs on the blocking pool: RSA 4096 takes seconds.
    #[oai(path = "/ssh-keys/generate", method = "post")]
    async fn generate(
        &self,
        state: Data<&AppState>,
        req: &Request,
        auth: Auth,
        body: JsonBody<GenerateIn>,
    ) -> ApiResult<Json<SshKeyOut>> {
        let me = auth.operator()?;
        let JsonBody(body) = body;
        check_name(&body.name)?;
        check_description(body.description.as_deref())?;
        let comment = body.comment.unwrap_or_else(|| format!("pgmon@{}", body.name));
        check_comment(&comment)?;
        check_passphrase(body.passphrase.as_deref())?;
        let kind = match (body.key_type, body.key_size) {
            (KeyType::Ed25519, _) => KeyKind::Ed25519,
            (KeyType::Rsa, None) => KeyKind::Rsa { bits: 3072 },
            (KeyType::Rsa, Some(bits @ (2048 | 3072 | 4096))) => KeyKind::Rsa { bits: bits as usize },
            (KeyType::Rsa, Some(_)) => {
                return Err(ApiError::bad_request("key_size must be 2048, 3072 or 4096"));
            }
        };
        let material = tokio::task::spawn_blocking(move || ssh::generate_key(kind, &comment))
            .await
            .map_err(ApiError::internal)?
            .map_err(ApiError::internal)?;
        store(
            &state,
            req,
            &me.login,
            body.name,
            body.description,
            material,
            "generated",
        )
        .await
    }

    /// Import a private key given as text (admin, operator). 400 says whether the key is unreadable,
    /// needs a passphrase or the passphrase is wrong; 409 when the same key is stored already.
    #[oai(path = "/ssh-keys/import", method = "post")]
    async fn import(
        &self,
        state: Data<&AppState>,
        req: &Request,
        auth: Auth,
        body: JsonBody<ImportIn>,
    ) -> ApiResult<Json<SshKeyOut>> {
        let me = auth.operator()?;
        let JsonBody(body) = body;
        check_description(body.description.as_deref())?;
        check_passphrase(body.passphrase.as_deref())?;
        let material = parse(&body.name, &body.private_key, body.passphrase, body.comment)?;
        store(
            &state,
            req,
            &me.login,
            body.name,
            body.description,
            material,
            "imported",
        )
        .await
    }

    /// Import a private key file (multipart fields `file`, `name`, `passphrase`, `description`;
    /// admin, operator). A file over 1 MiB is refused with 413.
    #[oai(path = "/ssh-keys/import-file", method = "post")]
    async fn import_file(
        &self,
        state: Data<&AppState>,
        req: &Request,
        auth: Auth,
        form: ImportFileIn,
    ) -> ApiResult<Json<SshKeyOut>> {
        let me = auth.operator()?;
        if form.file.size() > MAX_KEY_FILE {
            return Err(ApiError::too_large(format!(
                "the key file is larger than {MAX_KEY_FILE} bytes"
            )));
        }
        check_description(form.description.as_deref())?;
        let bytes = form.file.into_vec().await.map_err(ApiError::internal)?;
        if bytes.len() > MAX_KEY_FILE {
            return Err(ApiError::too_large(format!(
                "the key file is larger than {MAX_KEY_FILE} bytes"
            )));
        }
        let text =
            String::from_utf8(bytes).map_err(|_| ApiError::bad_request(KeyError::NotAKey.to_string()))?;
        let material = parse(&form.name, &text, form.passphrase, form.comment)?;
        store(
            &state,
            req,
            &me.login,
            form.name,
            form.description,
            material,
            "imported from a file",
        )
        .await
    }

    /// One key (admin, operator).
    #[oai(path = "/ssh-keys/:id", method = "get")]
    async fn get(&self, state: Data<&AppState>, auth: Auth, id: Path<String>) -> ApiResult<Json<SshKeyOut>> {
        auth.operator()?;
        Ok(Json(load(&state, &id).await?.into()))
    }

    /// Rename a key or change its description (admin, operator). The public key line keeps the
    /// comment it was created with, since that line is what hosts have in `authorized_keys`.
    #[oai(path = "/ssh-keys/:id", method = "put")]
    async fn update(
        &self,
        state: Data<&AppState>,
        req: &Request,
        auth: Auth,
        id: Path<String>,
        body: JsonBody<UpdateIn>,
    ) -> ApiResult<Json<SshKeyOut>> {
        let me = auth.operator()?;
        let JsonBody(body) = body;
        let before = load(&state, &id).await?;
        if let Some(n) = &body.name {
            check_name(n)?;
        }
        check_description(body.description.as_deref())?;
        let row = ssh_keys::update(
            &state.pool,
            before.id,
            body.name.as_deref(),
            body.description.as_deref(),
        )
        .await
        .map_err(|e| not_found_as(e, &id))?;
        let mut changes = Vec::new();
        if row.name != before.name {
            changes.push(format!("name {} -> {}", before.name, row.name));
        }
        if row.description != before.description {
            changes.push("description changed".to_string());
        }
        let details = format!(
            "key {} ({}): {}",
            row.name,
            row.fingerprint,
            if changes.is_empty() {
                "nothing changed".to_string()
            } else {
                changes.join(", ")
            }
        );
        record(
            &state,
            event::SSH_KEY_UPDATE,
            &actor(req, Some(&me.login)),
            Some(&details),
        )
        .await;
        Ok(Json(row.into()))
    }

    /// Delete a key (admin, operator); 409 while a server uses it.
    #[oai(path = "/ssh-keys/:id", method = "delete")]
    async fn delete(
        &self,
        state: Data<&AppState>,
        req: &Request,
        auth: Auth,
        id: Path<String>,
    ) -> ApiResult<Json<Message>> {
        let me = auth.operator()?;
        let key = load(&state, &id).await?;
        ssh_keys::delete(&state.pool, key.id)
            .await
            .map_err(|e| not_found_as(e, &id))?;
        let details = format!("key {} ({}, {})", key.name, key.key_type, key.fingerprint);
        record(
            &state,
            event::SSH_KEY_DELETE,
            &actor(req, Some(&me.login)),
            Some(&details),
        )
        .await;
        Ok(Json(Message {
            message: format!("SSH key {} deleted", key.name),
        }))
    }

    /// Names of the servers that log in with this key (any role).
    #[oai(path = "/ssh-keys/:id/servers", method = "get")]
    async fn servers(
        &self,
        state: Data<&AppState>,
        _auth: Auth,
        id: Path<String>,
    ) -> ApiResult<Json<Vec<String>>> {
        let key = load(&state, &id).await?;
        Ok(Json(servers::names_using_key(&state.pool, key.id).await?))
    }

    /// The public key, as the original's clients download it (admin).
    #[oai(path = "/ssh-keys/:id/download-public", method = "get")]
    async fn download_public(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        id: Path<String>,
    ) -> ApiResult<Json<PublicKeyFile>> {
        auth.admin()?;
        let key = load(&state, &id).await?;
        Ok(Json(PublicKeyFile {
            filename: format!("{}_id_{}.pub", key.name, key.key_type),
            content: key.public_key,
            content_type: "text/plain".into(),
        }))
    }
}

/// Key names also name the downloaded file: bounded, one line, no path or quoting characters.
fn check_name(name: &str) -> ApiResult<()> {
    let n = name.chars().count();
    if n == 0 || n > 64 {
        return Err(ApiError::bad_request("name must be 1 to 64 characters"));
    }
    if name
        .chars()
        .any(|c| c.is_control() || matches!(c, '/' | '\\' | '"'))
    {
        return Err(ApiError::bad_request(
            "name must not contain /, \\, \" or control characters",
        ));
    }
    Ok(())
}

fn check_passphrase(p: Option<&str>) -> ApiResult<()> {
    match p {
        Some(p) if p.chars().count() > 1024 => Err(ApiError::bad_request(
            "passphrase must be at most 1024 characters",
        )),
        Some(p) if p.contains('\0') => Err(ApiError::bad_request("passphrase must not contain NUL")),
        _ => Ok(()),
    }
}

fn check_description(d: Option<&str>) -> ApiResult<()> {
    match d {
        Some(d) if d.chars().count() > 1000 => Err(ApiError::bad_request(
            "description must be at most 1000 characters",
        )),
        _ => Ok(()),
    }
}

/// The comment ends the public key line: one line, bounded.
fn check_comment(c: &str) -> ApiResult<()> {
    if c.chars().count() > 256 || c.chars().any(char::is_control) {
        Err(ApiError::bad_request(
            "comment must be at most 256 bytes without control characters",
        ))
    } else {
        Ok(())
    }
}

fn parse(
    name: &str,
    text: &str,
    passphrase: Option<String>,
    comment: Option<String>,
) -> ApiResult<KeyMaterial> {
    check_name(name)?;
    if let Some(c) = &comment {
        check_comment(c)?;
    }
    let mut material = ssh::import_private_key(text, passphrase.as_deref())
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    if let Some(c) = comment {
        material = ssh::with_comment(material, &c).map_err(ApiError::internal)?;
    } else if material.comment.chars().any(char::is_control) || material.comment.len() > 256 {
        material = ssh::with_comment(material, "").map_err(ApiError::internal)?;
    }
    Ok(material)
}

async fn store(
    state: &AppState,
    req: &Request,
    login: &str,
    name: String,
    description: Option<String>,
    m: KeyMaterial,
    how: &str,
) -> ApiResult<Json<SshKeyOut>> {
    if let Some(same) = ssh_keys::by_fingerprint(&state.pool, &m.fingerprint).await? {
        return Err(ApiError::conflict(format!(
            "this key is stored already as {:?} (fingerprint {})",
            same.name, same.fingerprint
        )));
    }
    let new = NewSshKey {
        id: None,
        created_at: None,
        name,
        key_type: m.key_type,
        bits: m.bits,
        fingerprint: m.fingerprint,
        public_key: m.public_openssh,
        private_key_enc: state.crypto.encrypt(&m.private_openssh),
        comment: m.comment,
        description: description.filter(|d| !d.is_empty()),
        created_by: Some(login.to_string()),
    };
    let row = ssh_keys::create(&state.pool, &new).await?;
    let details = format!("key {} ({}, {how}, {})", row.name, row.key_type, row.fingerprint);
    record(
        state,
        event::SSH_KEY_CREATE,
        &actor(req, Some(login)),
        Some(&details),
    )
    .await;
    Ok(Json(row.into()))
}

/// A key by the id in the path; an id that is no UUID names no key (404, as any unknown id).
async fn load(state: &AppState, id: &str) -> ApiResult<SshKeyRow> {
    let not_found = || ApiError::not_found(format!("SSH key {id} not found"));
    let uuid = Uuid::parse_str(id).map_err(|_| not_found())?;
    ssh_keys::get(&state.pool, uuid).await?.ok_or_else(not_found)
}

fn not_found_as(e: StoreError, id: &str) -> ApiError {
    match e {
        StoreError::NotFound => ApiError::not_found(format!("SSH key {id} not found")),
        e => e.into(),
    }
}
