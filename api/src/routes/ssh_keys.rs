//! `/ssh-keys`: keys pgmon logs in to monitored hosts with (admin, operator; listing which servers use
//! a key is open to every role, downloading the public key needs admin, as in the original).
//!
//! Private keys are stored as Fernet tokens of unencrypted OpenSSH text and returned by no endpoint.
//! An encrypted key is decrypted with its passphrase at import; the passphrase is not kept.
//! `generate` accepts a `passphrase` for compatibility with the original's clients but does not use
//! it: the private key never leaves pgmon, so a passphrase would protect nothing the Fernet key does
//! not, and pgmon would have to store it next to the key to log in unattended.

use super::auth::{actor, record};
use crate::auth::Auth;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use chrono::{DateTime, Utc};
use pgmon_shared::ssh::{self, KeyError, KeyKind, KeyMaterial};
use pgmon_shared::store::StoreError;
use pgmon_shared::store::servers;
use pgmon_shared::store::ssh_keys::{self, NewSshKey, SshKeyRow};
use poem::Request;
use poem::web::Data;
use poem_openapi::param::Path;
use poem_openapi::payload::{Json, PlainText};
use poem_openapi::types::multipart::Upload;
use poem_openapi::{ApiResponse, Enum, Multipart, Object, OpenApi, Tags};
use serde_json::json;
use std::sync::LazyLock;
use uuid::Uuid;

mod event {
    pub const SSH_KEY_CREATED: &str = "ssh_key_created";
    pub const SSH_KEY_UPDATED: &str = "ssh_key_updated";
    pub const SSH_KEY_DELETED: &str = "ssh_key_deleted";
}

/// The largest key file `import-file` reads (an RSA 16384 key in PEM is about 13 KiB).
pub const MAX_KEY_FILE: usize = 1024 * 1024;

#[derive(Tags)]
enum Tag {
    /// SSH keys for reaching monitored hosts.
    SshKeys,
}

static NAME: LazyLock<regex::Regex> =
    LazyLock::new(|| regex::Regex::new(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$").expect("static regex"));

#[derive(Debug, Clone, Copy, Enum, PartialEq, Eq)]
#[oai(rename_all = "lowercase")]
pub enum KeyType {
    Ed25519,
    Rsa,
}

#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
pub struct GenerateIn {
    /// `^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`, unique; also the download's file name.
    pub name: String,
    #[oai(rename = "type")]
    pub key_type: KeyType,
    /// RSA only: 3072 (default) or 4096.
    pub bits: Option<u32>,
    /// Ends the public key line; default `pgmon@<name>`.
    pub comment: Option<String>,
    /// Accepted and not used: see the module documentation (the key is stored Fernet-encrypted).
    #[oai(write_only)]
    pub passphrase: Option<String>,
}

#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
pub struct ImportIn {
    pub name: String,
    /// OpenSSH, PEM PKCS#1 or PKCS#8; plain or encrypted.
    #[oai(write_only)]
    pub private_key: String,
    /// Needed for an encrypted key; not stored.
    #[oai(write_only)]
    pub passphrase: Option<String>,
    /// Default: the comment inside the key, if any.
    pub comment: Option<String>,
}

#[derive(Debug, Multipart)]
pub struct ImportFileIn {
    /// The private key file, at most 1 MiB.
    pub file: Upload,
    pub name: String,
    pub passphrase: Option<String>,
    pub comment: Option<String>,
}

#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
pub struct UpdateIn {
    pub name: Option<String>,
    pub comment: Option<String>,
}

#[derive(Debug, Object)]
pub struct SshKeyOut {
    pub id: Uuid,
    pub name: String,
    /// `ed25519`, `rsa` or `ecdsa`.
    #[oai(rename = "type")]
    pub key_type: String,
    pub bits: Option<i32>,
    /// `SHA256:...`, as `ssh-keygen -l -E sha256` prints it.
    pub fingerprint: String,
    /// One OpenSSH line, for `authorized_keys`.
    pub public_key: String,
    pub comment: String,
    pub created_at: DateTime<Utc>,
    pub created_by: Option<String>,
}

impl From<SshKeyRow> for SshKeyOut {
    fn from(k: SshKeyRow) -> Self {
        Self {
            id: k.id,
            name: k.name,
            key_type: k.key_type,
            bits: k.bits,
            fingerprint: k.fingerprint,
            public_key: k.public_key,
            comment: k.comment,
            created_at: k.created_at,
            created_by: k.created_by,
        }
    }
}

#[derive(ApiResponse)]
pub enum Created {
    #[oai(status = 201)]
    Created(Json<SshKeyOut>),
}

#[derive(ApiResponse)]
pub enum Deleted {
    #[oai(status = 204)]
    Deleted,
}

#[derive(ApiResponse)]
pub enum PublicKeyFile {
    /// The public key line, as a `<name>.pub` attachment.
    #[oai(status = 200, content_type = "text/plain; charset=utf-8")]
    Ok(PlainText<String>, #[oai(header = "Content-Disposition")] String),
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
        body: Json<GenerateIn>,
    ) -> ApiResult<Created> {
        let me = auth.operator()?;
        let Json(body) = body;
        check_name(&body.name)?;
        let comment = body.comment.unwrap_or_else(|| format!("pgmon@{}", body.name));
        check_comment(&comment)?;
        if body.passphrase.as_ref().is_some_and(|p| p.len() > 1024) {
            return Err(ApiError::bad_request("passphrase must be at most 1024 bytes"));
        }
        let kind = match (body.key_type, body.bits) {
            (KeyType::Ed25519, None | Some(256)) => KeyKind::Ed25519,
            (KeyType::Ed25519, Some(_)) => {
                return Err(ApiError::bad_request("bits applies to rsa keys only"));
            }
            (KeyType::Rsa, None | Some(3072)) => KeyKind::Rsa { bits: 3072 },
            (KeyType::Rsa, Some(4096)) => KeyKind::Rsa { bits: 4096 },
            (KeyType::Rsa, Some(_)) => return Err(ApiError::bad_request("bits must be 3072 or 4096")),
        };
        let material = tokio::task::spawn_blocking(move || ssh::generate_key(kind, &comment))
            .await
            .map_err(ApiError::internal)?
            .map_err(ApiError::internal)?;
        store(&state, req, &me.login, body.name, material, "generate").await
    }

    /// Import a private key given as text (admin, operator). 400 says whether the key is unreadable,
    /// needs a passphrase or the passphrase is wrong.
    #[oai(path = "/ssh-keys/import", method = "post")]
    async fn import(
        &self,
        state: Data<&AppState>,
        req: &Request,
        auth: Auth,
        body: Json<ImportIn>,
    ) -> ApiResult<Created> {
        let me = auth.operator()?;
        let Json(body) = body;
        let material = parse(&body.name, &body.private_key, body.passphrase, body.comment)?;
        store(&state, req, &me.login, body.name, material, "import").await
    }

    /// Import a private key file (multipart fields `file`, `name`, `passphrase`; admin, operator).
    /// A file over 1 MiB is refused with 413.
    #[oai(path = "/ssh-keys/import-file", method = "post")]
    async fn import_file(
        &self,
        state: Data<&AppState>,
        req: &Request,
        auth: Auth,
        form: ImportFileIn,
    ) -> ApiResult<Created> {
        let me = auth.operator()?;
        if form.file.size() > MAX_KEY_FILE {
            return Err(ApiError::too_large(format!(
                "the key file is larger than {MAX_KEY_FILE} bytes"
            )));
        }
        let bytes = form.file.into_vec().await.map_err(ApiError::internal)?;
        if bytes.len() > MAX_KEY_FILE {
            return Err(ApiError::too_large(format!(
                "the key file is larger than {MAX_KEY_FILE} bytes"
            )));
        }
        let text =
            String::from_utf8(bytes).map_err(|_| ApiError::bad_request(KeyError::NotAKey.to_string()))?;
        let material = parse(&form.name, &text, form.passphrase, form.comment)?;
        store(&state, req, &me.login, form.name, material, "import-file").await
    }

    /// One key (admin, operator).
    #[oai(path = "/ssh-keys/:id", method = "get")]
    async fn get(&self, state: Data<&AppState>, auth: Auth, id: Path<Uuid>) -> ApiResult<Json<SshKeyOut>> {
        auth.operator()?;
        Ok(Json(load(&state, id.0).await?.into()))
    }

    /// Rename a key or change its comment (admin, operator). The public key line keeps the comment it
    /// was created with, since that line is what hosts have in `authorized_keys`.
    #[oai(path = "/ssh-keys/:id", method = "put")]
    async fn update(
        &self,
        state: Data<&AppState>,
        req: &Request,
        auth: Auth,
        id: Path<Uuid>,
        body: Json<UpdateIn>,
    ) -> ApiResult<Json<SshKeyOut>> {
        let me = auth.operator()?;
        let Json(body) = body;
        if let Some(n) = &body.name {
            check_name(n)?;
        }
        if let Some(c) = &body.comment {
            check_comment(c)?;
        }
        let row = ssh_keys::update(&state.pool, id.0, body.name.as_deref(), body.comment.as_deref())
            .await
            .map_err(|e| not_found_as(e, id.0))?;
        record(
            &state,
            event::SSH_KEY_UPDATED,
            &actor(req, Some(&me.login)),
            json!({ "key_id": row.id, "name": row.name }),
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
        id: Path<Uuid>,
    ) -> ApiResult<Deleted> {
        let me = auth.operator()?;
        let key = load(&state, id.0).await?;
        ssh_keys::delete(&state.pool, id.0)
            .await
            .map_err(|e| not_found_as(e, id.0))?;
        record(
            &state,
            event::SSH_KEY_DELETED,
            &actor(req, Some(&me.login)),
            json!({ "key_id": key.id, "name": key.name, "fingerprint": key.fingerprint }),
        )
        .await;
        Ok(Deleted::Deleted)
    }

    /// Names of the servers that log in with this key (any role).
    #[oai(path = "/ssh-keys/:id/servers", method = "get")]
    async fn servers(
        &self,
        state: Data<&AppState>,
        _auth: Auth,
        id: Path<Uuid>,
    ) -> ApiResult<Json<Vec<String>>> {
        load(&state, id.0).await?;
        Ok(Json(servers::names_using_key(&state.pool, id.0).await?))
    }

    /// The public key as a `<name>.pub` file (admin).
    #[oai(path = "/ssh-keys/:id/download-public", method = "get")]
    async fn download_public(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        id: Path<Uuid>,
    ) -> ApiResult<PublicKeyFile> {
        auth.admin()?;
        let key = load(&state, id.0).await?;
        // The name matches NAME, so it needs no quoting inside the header.
        let disposition = format!("attachment; filename=\"{}.pub\"", key.name);
        Ok(PublicKeyFile::Ok(
            PlainText(format!("{}\n", key.public_key)),
            disposition,
        ))
    }
}

fn check_name(name: &str) -> ApiResult<()> {
    if NAME.is_match(name) {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "name must match ^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$",
        ))
    }
}

/// The comment ends the public key line: one line, bounded.
fn check_comment(c: &str) -> ApiResult<()> {
    if c.len() > 256 || c.chars().any(char::is_control) {
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
    m: KeyMaterial,
    how: &str,
) -> ApiResult<Created> {
    let new = NewSshKey {
        name,
        key_type: m.key_type,
        bits: m.bits,
        fingerprint: m.fingerprint,
        public_key: m.public_openssh,
        private_key_enc: state.crypto.encrypt(&m.private_openssh),
        comment: m.comment,
        created_by: Some(login.to_string()),
    };
    let row = ssh_keys::create(&state.pool, &new).await?;
    record(
        state,
        event::SSH_KEY_CREATED,
        &actor(req, Some(login)),
        json!({ "key_id": row.id, "name": row.name, "type": row.key_type, "fingerprint": row.fingerprint, "how": how }),
    )
    .await;
    Ok(Created::Created(Json(row.into())))
}

async fn load(state: &AppState, id: Uuid) -> ApiResult<SshKeyRow> {
    ssh_keys::get(&state.pool, id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("SSH key {id} not found")))
}

fn not_found_as(e: StoreError, id: Uuid) -> ApiError {
    match e {
        StoreError::NotFound => ApiError::not_found(format!("SSH key {id} not found")),
        e => e.into(),
    }
}
