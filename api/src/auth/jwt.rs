//! JWT issue and verification. HS256 only; access and refresh tokens carry a `kind` claim and are
//! never accepted in each other's place.

use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Clock skew tolerated on `exp`, in seconds.
pub const LEEWAY_SECS: u64 = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenKind {
    Access,
    Refresh,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub role: String,
    pub iat: i64,
    pub exp: i64,
    pub jti: Uuid,
    pub kind: TokenKind,
    /// The refresh family this token belongs to: logout and refresh reuse revoke it as a whole.
    pub fam: Uuid,
    /// The user's `token_version` at issue; bumped by a password change, disabling or a role change.
    pub ver: i32,
}

impl Claims {
    pub fn expires_at(&self) -> DateTime<Utc> {
        DateTime::from_timestamp(self.exp, 0).unwrap_or_else(Utc::now)
    }
}

pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    /// The same checks without expiry: logout revokes what an expired token still names.
    any_time: Validation,
}

impl JwtKeys {
    pub fn new(secret: &[u8]) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = LEEWAY_SECS;
        validation.set_required_spec_claims(&["exp", "iat", "sub", "jti"]);
        validation.validate_exp = true;
        let mut any_time = validation.clone();
        any_time.validate_exp = false;
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            any_time,
        }
    }

    pub fn issue(&self, claims: &Claims) -> Result<String, jsonwebtoken::errors::Error> {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
    }

    /// Verifies signature, algorithm, expiry and kind.
    pub fn verify(&self, token: &str, kind: TokenKind) -> Option<Claims> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation).ok()?;
        (data.claims.kind == kind).then_some(data.claims)
    }

    /// Verifies signature, algorithm and kind, whether or not the token has expired.
    pub fn verify_any_time(&self, token: &str, kind: TokenKind) -> Option<Claims> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.any_time).ok()?;
        (data.claims.kind == kind).then_some(data.claims)
    }
}
