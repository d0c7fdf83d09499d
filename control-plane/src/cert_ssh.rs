//! Certificates with only the OpenSSH client (`[ca] ssh_listen`, off by default):
//!
//! ```text
//! ssh -p 2022 cert@signoff.example.com < ~/.ssh/id_ed25519.pub > ~/.ssh/id_ed25519-cert.pub
//! ```
//!
//! A person logs in as `cert` with one of their registered keys (a FIDO2 `sk-` key too:
//! its private half never leaves the token, only its signature comes here), sends a public
//! key on stdin — the one they logged in with or another registered key of theirs — and
//! gets its certificate on stdout. The rule is the service's, the same as the API's and the
//! CLI's ([`Service::issue_certificate_to_key_holder`]); this module only speaks SSH
//! (russh) and turns answers into what a shell user sees:
//!
//! | exit | stdout | stderr |
//! | --- | --- | --- |
//! | 0 | the certificate, one line | nothing |
//! | 1 | nothing | `signoff: refused: WHY` (a refusal, audited) |
//! | 2 | nothing | `signoff: WHAT WAS WRONG` (not a public key, a bad `ttl=`) |
//! | 3 | nothing | `signoff: the server cannot issue right now; try again` |
//!
//! A key registered to nobody cannot log in at all: it is refused at authentication, so
//! that ssh offers the person's next key, and when none is left the client prints why
//! (the instruction of a keyboard-interactive round with no prompt) and exits 255 with
//! "Permission denied". Nothing unauthenticated is audited: anyone may knock.
//!
//! An optional command sets the validity: `ssh … cert@HOST ttl=1h < KEY.pub`.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use russh::server::{Auth, Msg, PublicKeyOffer, Session, VerifiedPublicKey};
use russh::{Channel, ChannelId, MethodKind, MethodSet};
use tokio::net::TcpListener;
use tracing::{debug, info, warn};

use crate::model::MAX_PUBLIC_KEY;
use crate::service::{IssueError, IssueRequest, Service};

/// The only user name the listener answers.
pub const LOGIN: &str = "cert";
/// The most a client may send on stdin: one public key line.
const MAX_INPUT: usize = MAX_PUBLIC_KEY + 1024;
/// A connection that sends nothing for this long is closed.
const INACTIVITY: Duration = Duration::from_secs(30);
/// A rejected authentication answers after this long (russh makes it constant).
const REJECTION_TIME: Duration = Duration::from_millis(200);

/// Why the listener cannot start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CertSshError {
    /// The host key cannot be handed to the SSH library.
    #[error("cannot load the certificate listener's host key")]
    HostKey(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// The SSH server configuration: Ed25519 host key, public key authentication (and a
/// keyboard-interactive round with no prompt, only to tell a refused person why).
pub fn server_config(
    host_key: &ssh_key::PrivateKey,
) -> Result<russh::server::Config, CertSshError> {
    let pem = host_key
        .to_openssh(ssh_key::LineEnding::LF)
        .map_err(|e| CertSshError::HostKey(Box::new(e)))?;
    let key = russh::keys::PrivateKey::from_openssh(pem.as_bytes())
        .map_err(|e| CertSshError::HostKey(Box::new(e)))?;
    Ok(russh::server::Config {
        methods: MethodSet::from(&[MethodKind::PublicKey, MethodKind::KeyboardInteractive][..]),
        auth_rejection_time: REJECTION_TIME,
        auth_rejection_time_initial: Some(Duration::ZERO),
        inactivity_timeout: Some(INACTIVITY),
        keys: vec![key],
        nodelay: true,
        ..Default::default()
    })
}

/// Serves certificates on `listener` until `stop` completes.
pub async fn serve(
    listener: TcpListener,
    config: Arc<russh::server::Config>,
    service: Service,
    stop: impl Future<Output = ()> + Send,
) {
    let mut server = CertServer { service };
    let running = russh::server::Server::run_on_socket(&mut server, config, &listener);
    let handle = running.handle();
    tokio::select! {
        res = running => {
            if let Err(e) = res {
                warn!(error = %e, "the certificate listener stopped");
            }
        }
        () = stop => handle.shutdown("the server is stopping".to_owned()),
    }
}

struct CertServer {
    service: Service,
}

impl russh::server::Server for CertServer {
    type Handler = Connection;

    fn new_client(&mut self, peer: Option<SocketAddr>) -> Connection {
        Connection {
            service: self.service.clone(),
            peer,
            offered_unregistered: Vec::new(),
            wrong_login: None,
            told: false,
            authenticated: None,
            channel: None,
            started: false,
            answered: false,
            ttl: None,
            command_error: None,
            input: Vec::new(),
        }
    }

    fn handle_session_error(&mut self, error: russh::Error) {
        debug!(error = %error, "certificate listener connection ended with an error");
    }
}

/// One client connection.
struct Connection {
    service: Service,
    peer: Option<SocketAddr>,
    /// Fingerprints of offered keys registered to nobody, to tell the person.
    offered_unregistered: Vec<String>,
    /// A user name other than [`LOGIN`].
    wrong_login: Option<String>,
    /// Whether the keyboard-interactive explanation was sent.
    told: bool,
    /// `SHA256:` of the registered key the client proved it holds.
    authenticated: Option<String>,
    channel: Option<ChannelId>,
    /// A shell or exec request came: stdin is the request.
    started: bool,
    /// The answer was sent; anything more is ignored.
    answered: bool,
    ttl: Option<u64>,
    command_error: Option<String>,
    input: Vec<u8>,
}

impl Connection {
    async fn registered(&self, fingerprint: &str) -> Result<bool, russh::Error> {
        match self.service.key_owner(fingerprint).await {
            Ok(owner) => Ok(owner.is_some()),
            Err(e) => {
                warn!(error = %e, "certificate listener: cannot read the store");
                Err(russh::Error::Disconnect)
            }
        }
    }

    /// Why authentication failed, as the client will print it.
    fn explanation(&self) -> String {
        if let Some(user) = &self.wrong_login {
            return format!(
                "signoff: log in as {LOGIN}, not {user:?}: ssh -p PORT {LOGIN}@HOST < ~/.ssh/id_ed25519.pub"
            );
        }
        if self.offered_unregistered.is_empty() {
            return "signoff: no certificate: offer a key registered to you (ssh -i ~/.ssh/id_ed25519 …)"
                .to_owned();
        }
        format!(
            "signoff: no certificate: the key{} you offered ({}) {} registered to nobody; ask an administrator to register your public key",
            if self.offered_unregistered.len() == 1 {
                ""
            } else {
                "s"
            },
            self.offered_unregistered.join(", "),
            if self.offered_unregistered.len() == 1 {
                "is"
            } else {
                "are"
            },
        )
    }

    /// Sends the answer to what the client sent, and ends the channel.
    async fn answer(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), russh::Error> {
        if self.answered {
            return Ok(());
        }
        self.answered = true;
        let (status, out, err) = self.decide().await;
        if !out.is_empty() {
            session.data(channel, out.into_bytes())?;
        }
        if !err.is_empty() {
            session.extended_data(channel, 1, err.into_bytes())?;
        }
        session.exit_status_request(channel, status)?;
        session.eof(channel)?;
        session.close(channel)?;
        Ok(())
    }

    /// Exit status, stdout, stderr.
    async fn decide(&self) -> (u32, String, String) {
        if let Some(e) = &self.command_error {
            return (2, String::new(), format!("signoff: {e}\n"));
        }
        if self.input.len() > MAX_INPUT {
            return (
                2,
                String::new(),
                "signoff: send one public key line on stdin (at most 16 KiB)\n".to_owned(),
            );
        }
        let Some(authenticated) = &self.authenticated else {
            return (3, String::new(), "signoff: not authenticated\n".to_owned());
        };
        let text = String::from_utf8_lossy(&self.input);
        let line = text.trim();
        if line.is_empty() {
            return (
                2,
                String::new(),
                format!(
                    "signoff: send the public key to certify on stdin: ssh -p PORT {LOGIN}@HOST < ~/.ssh/id_ed25519.pub\n"
                ),
            );
        }
        let request = IssueRequest {
            public_key: line.to_owned(),
            ttl: self.ttl,
            source_address: None,
        };
        match self
            .service
            .issue_certificate_to_key_holder(authenticated, &request)
            .await
        {
            Ok(issued) => {
                info!(
                    user = %issued.user,
                    serial = issued.serial,
                    key = %issued.key_fingerprint,
                    peer = ?self.peer,
                    "certificate issued over SSH"
                );
                (0, format!("{}\n", issued.certificate), String::new())
            }
            Err(IssueError::Refused(r)) => {
                info!(refusal = r.code(), peer = ?self.peer, "certificate refused over SSH");
                (1, String::new(), format!("signoff: refused: {r}\n"))
            }
            Err(IssueError::Service(crate::service::ServiceError::Invalid(e))) => {
                (2, String::new(), format!("signoff: {}\n", e.message))
            }
            Err(e) => {
                warn!(error = ?e, "certificate listener: issuance failed");
                (
                    3,
                    String::new(),
                    "signoff: the server cannot issue right now; try again\n".to_owned(),
                )
            }
        }
    }
}

/// `ttl=DURATION`, or nothing.
fn parse_command(command: &[u8]) -> Result<Option<u64>, String> {
    let command = String::from_utf8_lossy(command);
    let command = command.trim();
    if command.is_empty() {
        return Ok(None);
    }
    let Some(value) = command.strip_prefix("ttl=") else {
        return Err(format!(
            "unknown command {command:?}; the only one is ttl=DURATION (e.g. ttl=8h), or none"
        ));
    };
    match signoff_core::duration::parse(value) {
        Ok(d) if d.as_secs() > 0 => Ok(Some(d.as_secs())),
        Ok(_) => Err("ttl=0 issues nothing; give e.g. ttl=8h".to_owned()),
        Err(e) => Err(format!("ttl={value}: {e}")),
    }
}

impl russh::server::Handler for Connection {
    type Error = russh::Error;

    async fn auth_none(&mut self, user: &str) -> Result<Auth, Self::Error> {
        if user != LOGIN {
            self.wrong_login = Some(user.to_owned());
        }
        Ok(Auth::reject())
    }

    async fn auth_publickey_offered(
        &mut self,
        user: &str,
        offer: PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        if user != LOGIN {
            self.wrong_login = Some(user.to_owned());
            return Ok(Auth::reject());
        }
        let fp = offer
            .public_key
            .fingerprint(russh::keys::HashAlg::Sha256)
            .to_string();
        if self.registered(&fp).await? {
            return Ok(Auth::Accept);
        }
        if !self.offered_unregistered.contains(&fp) {
            self.offered_unregistered.push(fp);
        }
        Ok(Auth::reject())
    }

    async fn auth_publickey(
        &mut self,
        user: &str,
        key: VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        let fp = key
            .public_key
            .fingerprint(russh::keys::HashAlg::Sha256)
            .to_string();
        if user != LOGIN || !self.registered(&fp).await? {
            return Ok(Auth::reject());
        }
        self.authenticated = Some(fp);
        Ok(Auth::Accept)
    }

    async fn auth_keyboard_interactive<'a>(
        &'a mut self,
        _user: &str,
        _submethods: &str,
        _response: Option<russh::server::Response<'a>>,
    ) -> Result<Auth, Self::Error> {
        // Only publickey logs in. This round exists to tell the person why not: OpenSSH
        // prints a keyboard-interactive instruction to stderr. Once, then publickey only,
        // so the client does not ask again.
        if self.told {
            return Ok(Auth::Reject {
                proceed_with_methods: Some(MethodSet::from(&[MethodKind::PublicKey][..])),
                partial_success: false,
            });
        }
        self.told = true;
        Ok(Auth::Partial {
            name: Cow::Borrowed(""),
            instructions: Cow::Owned(self.explanation()),
            prompts: Cow::Borrowed(&[]),
        })
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: russh::server::ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        // One request per connection.
        if self.channel.is_some() {
            reply
                .reject(russh::ChannelOpenFailure::AdministrativelyProhibited)
                .await;
            return Ok(());
        }
        self.channel = Some(channel.id());
        reply.accept().await;
        Ok(())
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.started = true;
        session.channel_success(channel)
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.started = true;
        match parse_command(data) {
            Ok(ttl) => self.ttl = ttl,
            Err(e) => self.command_error = Some(e),
        }
        session.channel_success(channel)?;
        if self.command_error.is_some() {
            self.answer(channel, session).await?;
        }
        Ok(())
    }

    async fn data(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        if self.answered || Some(channel) != self.channel {
            return Ok(());
        }
        self.input.extend_from_slice(data);
        if self.input.len() > MAX_INPUT {
            self.answer(channel, session).await?;
        }
        Ok(())
    }

    async fn channel_eof(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        if Some(channel) != self.channel || !self.started {
            return Ok(());
        }
        self.answer(channel, session).await
    }
}

#[cfg(test)]
mod tests {
    use super::parse_command;

    #[test]
    fn the_command_sets_the_validity_or_is_refused() {
        assert_eq!(parse_command(b""), Ok(None));
        assert_eq!(parse_command(b"ttl=1h"), Ok(Some(3600)));
        assert!(
            parse_command(b"ttl=0s")
                .unwrap_err()
                .contains("issues nothing")
        );
        assert!(
            parse_command(b"ttl=soon")
                .unwrap_err()
                .starts_with("ttl=soon: ")
        );
        assert!(
            parse_command(b"rm -rf /")
                .unwrap_err()
                .contains("unknown command")
        );
    }
}
