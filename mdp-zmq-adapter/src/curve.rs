//! CURVE encryption (RFC 26) and ZAP authentication (RFC 27): keys, the
//! broker's list of admitted keys, and the ZAP handler that names peers.
//!
//! The adapter only finds out who a peer is; what that peer may do is the
//! core's decision ([`mdp_core::BrokerConfig::policy`]).

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::once::Once;
use crate::ratelimit::{LogKind, LogLimit};
use crate::AdapterError;

/// Whether the libzmq this crate is linked with has CURVE (RFC 26): only
/// when it was built with libsodium, as this workspace's patched zmq-sys
/// does and crates.io's zmq-sys 0.12 does not (see the README, "How CURVE
/// gets into the build"). Without it, every CURVE setting here is refused with
/// [`KeyError::NoCurve`].
///
/// ```
/// if !mdp_zmq_adapter::curve_available() {
///     assert!(mdp_zmq_adapter::KeyPair::generate().is_err());
/// }
/// ```
pub fn curve_available() -> bool {
    // zmq 0.10 always returns `Some`; `None` would mean "cannot tell".
    zmq::has("curve").unwrap_or(false)
}

/// What can go wrong with keys.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// A key file or the keys directory could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A key file does not hold one Z85-encoded 32-byte key (40 characters).
    #[error("{}: not a CURVE key (expected 40 Z85 characters on one line)", path.display())]
    NotAKey {
        /// The file.
        path: PathBuf,
    },
    /// libzmq was built without CURVE.
    #[error("this libzmq was built without libsodium, so it has no CURVE: build in the mdp-rs workspace, or add its [patch.crates-io] for zmq-sys to yours (README, \"How CURVE gets into the build\")")]
    NoCurve,
}

/// One 32-byte CURVE key, public or secret.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key([u8; 32]);

impl Key {
    /// The key from its 40-character Z85 text.
    pub fn from_z85(text: &str) -> Option<Key> {
        let bytes = zmq::z85_decode(text.trim()).ok()?;
        Some(Key(bytes.try_into().ok()?))
    }

    /// The key as 40 characters of Z85.
    pub fn to_z85(&self) -> String {
        // 32 bytes are a multiple of 4, the one thing Z85 asks.
        zmq::z85_encode(&self.0).unwrap_or_default()
    }

    /// The key's 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Reads a key file: one Z85 key on one line, as `mdp keygen`,
    /// `zmq_curve_keypair` and pyzmq's `zmq.curve_keypair()` write them.
    pub fn read(path: &Path) -> Result<Key, KeyError> {
        let text = std::fs::read_to_string(path).map_err(|source| KeyError::Io { path: path.into(), source })?;
        Key::from_z85(&text).ok_or_else(|| KeyError::NotAKey { path: path.into() })
    }
}

/// Shows only the start of the Z85 text, so a secret key in a log line
/// gives nothing away and a public one can still be recognised.
impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({}…)", &self.to_z85()[..8])
    }
}

/// A public key and its secret key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyPair {
    /// The public key: give it to the peers.
    pub public: Key,
    /// The secret key: keep it.
    pub secret: Key,
}

impl KeyPair {
    /// A new key pair from libzmq's generator.
    pub fn generate() -> Result<KeyPair, KeyError> {
        if !curve_available() {
            return Err(KeyError::NoCurve);
        }
        let pair = zmq::CurveKeyPair::new().map_err(|_| KeyError::NoCurve)?;
        Ok(KeyPair { public: Key(pair.public_key), secret: Key(pair.secret_key) })
    }

    /// Reads the secret key at `secret` (a `NAME.key` file) and the public
    /// key beside it (`NAME.pub`), as [`write`](Self::write) leaves them.
    pub fn read(secret: &Path) -> Result<KeyPair, KeyError> {
        Ok(KeyPair { public: Key::read(&secret.with_extension("pub"))?, secret: Key::read(secret)? })
    }

    /// Writes `NAME.pub` (the public key) and `NAME.key` (the secret key,
    /// readable by its owner only) for `name` = `path/NAME`; returns both
    /// paths. Refuses to overwrite either.
    pub fn write(&self, name: &Path) -> Result<(PathBuf, PathBuf), KeyError> {
        let (public, secret) = (name.with_extension("pub"), name.with_extension("key"));
        write_new(&secret, &self.secret, 0o600)?;
        write_new(&public, &self.public, 0o644)?;
        Ok((public, secret))
    }
}

/// Creates `path` (it must not exist) with `key` on one line.
fn write_new(path: &Path, key: &Key, mode: u32) -> Result<(), KeyError> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
    #[cfg(not(unix))]
    let _ = mode;
    let io = |source| KeyError::Io { path: path.into(), source };
    let mut file = options.open(path).map_err(io)?;
    writeln!(file, "{}", key.to_z85()).map_err(io)
}

/// The public keys a broker admits, each with the name its peers get: the
/// stem of the `*.pub` file it came from (`alice.pub` names `alice`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList {
    names: HashMap<Key, String>,
}

impl AllowList {
    /// Every `*.pub` file in `dir`. A file that holds no key is an error,
    /// so that a typo does not lock a peer out unnoticed.
    pub fn read_dir(dir: &Path) -> Result<AllowList, KeyError> {
        let io = |source| KeyError::Io { path: dir.into(), source };
        let mut list = AllowList::default();
        for entry in std::fs::read_dir(dir).map_err(io)? {
            let path = entry.map_err(io)?.path();
            let Some(stem) = path.file_stem().and_then(|s| s.to_str()) else { continue };
            if path.extension().is_some_and(|e| e == "pub") {
                list.names.insert(Key::read(&path)?, stem.to_owned());
            }
        }
        Ok(list)
    }

    /// Admits `key` under `name`.
    pub fn insert(&mut self, key: Key, name: impl Into<String>) {
        self.names.insert(key, name.into());
    }

    /// The name of `key`, if it is admitted.
    pub fn name_of(&self, key: &[u8]) -> Option<&str> {
        let key = Key(key.try_into().ok()?);
        self.names.get(&key).map(String::as_str)
    }

    /// How many keys are admitted.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether no key is admitted.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

/// A broker's CURVE settings: its own secret key, and whom it admits.
#[derive(Debug, Clone)]
pub struct CurveServer {
    /// The broker's secret key. Its public key is what clients and workers
    /// are given (`--curve-server`).
    pub secret: Key,
    /// `None`: every peer that knows the broker's public key may connect,
    /// unnamed (encryption only). `Some`: only these keys, each peer named
    /// after its key ([`mdp_core::Broker::handle_authenticated`]).
    pub allowed: Option<AllowList>,
}

/// A client's or a worker's CURVE settings.
#[derive(Debug, Clone, Copy)]
pub struct CurveClient {
    /// The broker's public key.
    pub server: Key,
    /// Our own keys.
    pub own: KeyPair,
}

impl CurveServer {
    /// Makes `socket` a CURVE server: plaintext peers are refused.
    pub(crate) fn apply(&self, socket: &zmq::Socket) -> Result<(), AdapterError> {
        if !curve_available() {
            return Err(KeyError::NoCurve.into());
        }
        socket.set_curve_server(true).map_err(AdapterError::zmq("set CURVE_SERVER"))?;
        socket.set_curve_secretkey(self.secret.as_bytes()).map_err(AdapterError::zmq("set CURVE_SECRETKEY"))
    }
}

impl CurveClient {
    /// Makes `socket` a CURVE client of the broker.
    pub(crate) fn apply(&self, socket: &zmq::Socket) -> Result<(), AdapterError> {
        if !curve_available() {
            return Err(KeyError::NoCurve.into());
        }
        socket.set_curve_serverkey(self.server.as_bytes()).map_err(AdapterError::zmq("set CURVE_SERVERKEY"))?;
        socket.set_curve_publickey(self.own.public.as_bytes()).map_err(AdapterError::zmq("set CURVE_PUBLICKEY"))?;
        socket.set_curve_secretkey(self.own.secret.as_bytes()).map_err(AdapterError::zmq("set CURVE_SECRETKEY"))
    }
}

/// Where libzmq asks who a peer is (RFC 27).
const ZAP_ENDPOINT: &str = "inproc://zeromq.zap.01";

/// The ZAP handler: answers libzmq's authentication requests for one
/// context from an [`AllowList`]. It is polled in the broker's own loop, so
/// it needs no thread; libzmq holds a connecting peer's handshake until
/// it answers.
pub(crate) struct Zap {
    socket: zmq::Socket,
    allowed: AllowList,
    /// Keys refused so far, to log each once.
    refused: Once<Vec<u8>>,
}

impl Zap {
    /// Binds the handler in `ctx`; do it before any CURVE socket binds.
    pub(crate) fn bind(ctx: &zmq::Context, allowed: AllowList) -> Result<Zap, AdapterError> {
        let socket = ctx.socket(zmq::REP).map_err(AdapterError::zmq("socket(REP) for ZAP"))?;
        socket.set_linger(0).map_err(AdapterError::zmq("set LINGER"))?;
        socket.bind(ZAP_ENDPOINT).map_err(AdapterError::zmq(format!("bind {ZAP_ENDPOINT}")))?;
        Ok(Zap { socket, allowed, refused: Default::default() })
    }

    pub(crate) fn poll_item(&self) -> zmq::PollItem<'_> {
        self.socket.as_poll_item(zmq::POLLIN)
    }

    /// Answers every request waiting, without blocking; refusals are
    /// logged within `log_limit`'s budget.
    pub(crate) fn serve(&mut self, log_limit: &mut LogLimit) -> Result<(), AdapterError> {
        loop {
            let request = match self.socket.recv_multipart(zmq::DONTWAIT) {
                Ok(request) => request,
                Err(zmq::Error::EAGAIN) | Err(zmq::Error::EINTR) => return Ok(()),
                Err(e) => return Err(AdapterError::zmq("recv ZAP request")(e)),
            };
            let reply = self.answer(&request, log_limit);
            self.socket.send_multipart(reply, 0).map_err(AdapterError::zmq("send ZAP reply"))?;
        }
    }

    /// The reply to one request: `version, request id, domain, address,
    /// identity, mechanism, credentials…` in; `version, request id, status
    /// code, status text, user id, metadata` out.
    fn answer(&mut self, request: &[Vec<u8>], log_limit: &mut LogLimit) -> Vec<Vec<u8>> {
        let id = request.get(1).cloned().unwrap_or_default();
        let reply = |code: &str, text: &str, user: &str| {
            vec![b"1.0".to_vec(), id.clone(), code.into(), text.into(), user.into(), Vec::new()]
        };
        if request.first().map(Vec::as_slice) != Some(b"1.0") {
            return reply("500", "unsupported ZAP version", "");
        }
        let (mechanism, key) = (request.get(5).map(Vec::as_slice), request.get(6));
        match (mechanism, key) {
            (Some(b"CURVE"), Some(key)) => match self.allowed.name_of(key) {
                Some(name) => reply("200", "OK", name),
                None => {
                    self.log_refusal(key, request.get(3), log_limit);
                    reply("400", "key not allowed", "")
                }
            },
            _ => reply("400", "CURVE only", ""),
        }
    }

    /// Logs a refused key the first time it is seen (a flood of new keys:
    /// within the budget of [`LogKind::KeyRefused`]).
    fn log_refusal(&mut self, key: &[u8], address: Option<&Vec<u8>>, log_limit: &mut LogLimit) {
        if self.refused.first(key.to_vec()) && log_limit.allow(LogKind::KeyRefused, Instant::now()) {
            let key = key.try_into().map(|k: [u8; 32]| Key(k).to_z85()).unwrap_or_default();
            let address = address.map(|a| String::from_utf8_lossy(a).into_owned()).unwrap_or_default();
            tracing::warn!(%key, %address, "CURVE key not in the allowed keys; connection refused");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The test vector of RFC 32 (Z85): these 8 bytes are "HelloWorld".
    #[test]
    fn keys_round_trip_through_z85() {
        assert_eq!(zmq::z85_encode(&[0x86, 0x4F, 0xD2, 0x6F, 0xB5, 0x59, 0xF7, 0x5B]).unwrap(), "HelloWorld");
        let key = Key([7; 32]);
        let text = key.to_z85();
        assert_eq!(text.len(), 40);
        assert_eq!(Key::from_z85(&format!("{text}\n")), Some(key));
        assert_eq!(Key::from_z85("HelloWorld"), None, "8 bytes are not a key");
        assert!(!format!("{key:?}").contains(&text), "Debug shows only the start");
    }

    #[test]
    fn the_allow_list_names_keys_after_their_files() {
        let dir = std::env::temp_dir().join(format!("mdp-allow-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("alice.pub"), format!("{}\n", Key([1; 32]).to_z85())).unwrap();
        std::fs::write(dir.join("notes.txt"), "not a key").unwrap();
        let list = AllowList::read_dir(&dir).unwrap();
        assert_eq!((list.len(), list.name_of(&[1; 32]), list.name_of(&[2; 32])), (1, Some("alice"), None));
        std::fs::write(dir.join("bad.pub"), "nope").unwrap();
        assert!(matches!(AllowList::read_dir(&dir), Err(KeyError::NotAKey { .. })));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_zap_handler_names_allowed_keys_and_refuses_others() {
        let ctx = zmq::Context::new();
        let mut allowed = AllowList::default();
        allowed.insert(Key([1; 32]), "alice");
        let mut zap = Zap::bind(&ctx, allowed).unwrap();
        let request = |key: &[u8]| -> Vec<Vec<u8>> {
            [b"1.0".as_slice(), b"7", b"", b"127.0.0.1", b"", b"CURVE", key].iter().map(|f| f.to_vec()).collect()
        };
        let mut log = LogLimit::default();
        let ok = zap.answer(&request(&[1; 32]), &mut log);
        assert_eq!((ok[1].as_slice(), ok[2].as_slice(), ok[4].as_slice()), (&b"7"[..], &b"200"[..], &b"alice"[..]));
        assert_eq!(zap.answer(&request(&[2; 32]), &mut log)[2], b"400");
        let mut plain = request(&[1; 32]);
        plain[5] = b"NULL".to_vec();
        assert_eq!(zap.answer(&plain, &mut log)[2], b"400");
    }
}
