//! The server side of a SCRAM-SHA-256 exchange (RFC 5802 section 5), without I/O: each step
//! takes the client's bytes and returns the next state plus the text to send. The steps are
//! separate types, so a message can only be fed to the state that expects it.

use std::fmt;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use rand::RngCore;
use subtle::{Choice, ConstantTimeEq};

use super::message::{is_nonce, ClientFinalMessage, ClientFirstMessage};
use super::{h, hmac, hmac_parts, Key, ScramCredential, ScramError, DEFAULT_ITERATIONS, SALT_LEN};

/// Random bytes in a server nonce (base64: 32 characters).
const SERVER_NONCE_BYTES: usize = 24;
/// Longest server nonce accepted from [`ClientFirst::respond_with_nonce`].
pub const MAX_SERVER_NONCE_LEN: usize = 256;

/// The secret from which made-up credentials for unknown users are derived, so that the same
/// unknown name always gets the same salt and probing cannot tell it from a real one. Give all
/// replicas the same key (and keep it across restarts), or a name's salt changing between
/// connections gives away that it is not real.
#[derive(Clone)]
pub struct UnknownUserKey(Key);

impl UnknownUserKey {
    /// Derives the key from configured secret material of any length.
    pub fn from_secret(secret: &[u8]) -> UnknownUserKey {
        UnknownUserKey(hmac(secret, b"postbay scram unknown-user key"))
    }

    /// A key for this process only: fine for one replica, see the type's note otherwise.
    pub fn random() -> UnknownUserKey {
        let mut key = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut key);
        UnknownUserKey(key)
    }

    /// The made-up credential for `username`: salt and keys are HMACs of the name, so
    /// they are stable per name and nobody can compute a proof for them.
    fn credential_for(&self, username: &str) -> (Vec<u8>, Key, Key) {
        let part = |label: &[u8]| hmac_parts(&self.0, &[label, b"\0", username.as_bytes()]);
        let salt = part(b"salt")[..SALT_LEN].to_vec();
        (salt, part(b"stored-key"), part(b"server-key"))
    }
}

impl fmt::Debug for UnknownUserKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("UnknownUserKey(..)")
    }
}

/// A parsed client-first message: the first step, which names the user to look up.
#[derive(Debug)]
pub struct ClientFirst {
    message: ClientFirstMessage,
}

impl ClientFirst {
    /// Parses `client-first-message` (RFC 5802 section 7). Accepts the gs2 flags `n` and `y`,
    /// refuses `p=` (we offer no -PLUS mechanism), and requires an authzid, if any, to equal
    /// the username.
    pub fn parse(message: &[u8]) -> Result<ClientFirst, ScramError> {
        ClientFirstMessage::parse(message).map(|message| ClientFirst { message })
    }

    /// The authentication identity, `=2C`/`=3D` decoded (RFC 5802 section 5.1). Not
    /// SASLprep-normalised: looked up as sent, like a LOGIN name.
    pub fn username(&self) -> &str {
        &self.message.username
    }

    /// Builds the server-first message with a random server nonce. Pass `None` for a user
    /// that does not exist or has no SCRAM credential: the reply looks the same, and the
    /// exchange fails at the proof (RFC 5802 section 5.1 suggests this against enumeration).
    pub fn respond(
        self,
        credential: Option<&ScramCredential>,
        key: &UnknownUserKey,
    ) -> (ServerFirst, String) {
        let mut nonce = [0u8; SERVER_NONCE_BYTES];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        self.respond_with_nonce(credential, key, &B64.encode(nonce))
            .expect("base64 is a valid server nonce")
    }

    /// [`respond`](Self::respond) with a given server nonce, for tests and known vectors.
    /// The nonce must be RFC 5802 `printable` (ASCII 0x21..0x7E without ',').
    pub fn respond_with_nonce(
        self,
        credential: Option<&ScramCredential>,
        key: &UnknownUserKey,
        server_nonce: &str,
    ) -> Result<(ServerFirst, String), ScramError> {
        if !is_nonce(server_nonce, MAX_SERVER_NONCE_LEN) {
            return Err(ScramError::InvalidServerNonce {
                limit: MAX_SERVER_NONCE_LEN,
            });
        }
        let (salt, iterations, stored_key, server_key, known) = match credential {
            Some(c) => (
                c.salt().to_vec(),
                c.iterations(),
                *c.stored_key(),
                *c.server_key(),
                true,
            ),
            None => {
                let (salt, stored_key, server_key) = key.credential_for(&self.message.username);
                (salt, DEFAULT_ITERATIONS, stored_key, server_key, false)
            }
        };
        let nonce = format!("{}{server_nonce}", self.message.client_nonce);
        // server-first-message = nonce "," salt "," iteration-count  (RFC 5802 section 7)
        let server_first = format!("r={nonce},s={},i={iterations}", B64.encode(&salt));
        let state = ServerFirst {
            client_first: self.message,
            server_first: server_first.clone(),
            nonce,
            stored_key,
            server_key,
            known: Choice::from(u8::from(known)),
        };
        Ok((state, server_first))
    }
}

/// The server-first message has been sent; waiting for client-final.
pub struct ServerFirst {
    client_first: ClientFirstMessage,
    server_first: String,
    nonce: String,
    stored_key: Key,
    server_key: Key,
    known: Choice,
}

impl fmt::Debug for ServerFirst {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerFirst")
            .field("username", &self.client_first.username)
            .finish_non_exhaustive()
    }
}

impl ServerFirst {
    /// The authentication identity from the client-first message.
    pub fn username(&self) -> &str {
        &self.client_first.username
    }

    /// Checks `client-final-message` (RFC 5802 sections 3 and 5.1): channel binding echoes
    /// the gs2 header, the nonce is ours, and the proof fits StoredKey. On success, returns
    /// the server-final message, which the client uses to authenticate us.
    pub fn finish(self, client_final: &[u8]) -> Result<ServerFinal, ScramError> {
        let message = ClientFinalMessage::parse(client_final)?;
        // Without channel binding, c= is the base64 of the gs2 header: "biws" for "n,,",
        // "eSws" for "y,," (RFC 5802 section 7, cbind-input).
        if message.channel_binding != self.client_first.gs2_header.as_bytes() {
            return Err(ScramError::ChannelBindingMismatch);
        }
        if message.nonce != self.nonce {
            return Err(ScramError::NonceMismatch);
        }
        // AuthMessage = client-first-message-bare "," server-first-message ","
        //               client-final-message-without-proof
        let auth_message: [&[u8]; 5] = [
            self.client_first.bare.as_bytes(),
            b",",
            self.server_first.as_bytes(),
            b",",
            message.without_proof.as_bytes(),
        ];
        // ClientKey = ClientProof XOR HMAC(StoredKey, AuthMessage); valid if H(ClientKey)
        // is StoredKey. The same work is done for made-up credentials, which never pass.
        let client_signature = hmac_parts(&self.stored_key, &auth_message);
        let mut client_key = message.proof;
        client_key
            .iter_mut()
            .zip(client_signature.iter())
            .for_each(|(k, s)| *k ^= s);
        let valid = h(&client_key).ct_eq(&self.stored_key) & self.known;
        if !bool::from(valid) {
            return Err(ScramError::InvalidProof);
        }
        // ServerSignature = HMAC(ServerKey, AuthMessage); server-final = "v=" base64.
        let server_signature = hmac_parts(&self.server_key, &auth_message);
        Ok(ServerFinal {
            username: self.client_first.username,
            message: format!("v={}", B64.encode(server_signature)),
        })
    }
}

/// A successful exchange: the user is authenticated once `message` is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerFinal {
    username: String,
    message: String,
}

impl ServerFinal {
    /// Who authenticated.
    pub fn username(&self) -> &str {
        &self.username
    }

    /// `server-final-message`, `v=<ServerSignature>`, to send to the client.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Both parts, owned.
    pub fn into_parts(self) -> (String, String) {
        (self.username, self.message)
    }
}
