//! Who may serve, and who may call, which services: the broker's
//! authorization, as data.

use std::fmt;

use bytes::Bytes;

use crate::Found;

/// What a peer asks to do with a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Access {
    /// Register as a worker for it (READY).
    Serve,
    /// Send it requests (REQUEST), and learn from `mmi.service` whether it
    /// has workers.
    Call,
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Access::Serve => "serve",
            Access::Call => "call",
        })
    }
}

/// Which peers a [`Grant`] is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerPattern {
    /// Every peer, with a name or without one.
    Any,
    /// The peer with exactly this authenticated name.
    Named(Bytes),
}

/// Which services a [`Grant`] covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServicePattern {
    /// The service with exactly this name.
    Exact(Bytes),
    /// Every service whose name starts with these bytes (the empty prefix:
    /// every service).
    Prefix(Bytes),
}

impl ServicePattern {
    /// `text` as a pattern: a prefix if it ends in `*`, else an exact name.
    pub fn parse(text: &str) -> ServicePattern {
        match text.strip_suffix('*') {
            Some(prefix) => ServicePattern::Prefix(Bytes::copy_from_slice(prefix.as_bytes())),
            None => ServicePattern::Exact(Bytes::copy_from_slice(text.as_bytes())),
        }
    }

    /// Whether `service` is covered.
    pub fn matches(&self, service: &[u8]) -> bool {
        match self {
            ServicePattern::Exact(name) => name.as_ref() == service,
            ServicePattern::Prefix(prefix) => service.starts_with(prefix),
        }
    }
}

/// One permission: `peer` may `access` the services `services` covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// Who.
    pub peer: PeerPattern,
    /// To do what.
    pub access: Access,
    /// With which services.
    pub services: ServicePattern,
}

/// Which peers may serve and call which services.
///
/// A policy only grants: what no [`Grant`] allows is refused. It is data,
/// not a callback, so a broker's decisions are deterministic and can be
/// tested under virtual time. The peer's name is the one the transport
/// authenticated (over ZeroMQ, the ZAP User-Id; see
/// [`Broker::handle_authenticated`](crate::Broker::handle_authenticated)).
/// A peer without a name gets only what is granted to every peer
/// ([`PeerPattern::Any`]). MMI queries and heartbeats need no grant, but
/// `mmi.service` answers 404 for a service the asking peer may not call, so
/// a client learns nothing of services it may not use.
///
/// Without a policy ([`BrokerConfig::policy`](crate::BrokerConfig::policy)
/// `None`, the default) every peer may do everything, as in plain MDP.
///
/// Checking a request scans the grants in order, so a policy of a few
/// hundred lines costs a few hundred comparisons per request.
///
/// # The text form
///
/// One grant per line; `#` starts a comment; blank lines are ignored:
///
/// ```text
/// line    = ("serve" | "call") SP peer 1*(SP service) | "" ; then an optional "# ..."
/// peer    = name | "*"            ; "*": every peer
/// service = name | prefix "*"     ; "*" alone: every service
/// ```
///
/// Names are any run of non-blank characters.
///
/// ```
/// use mdp_core::{Access, Policy};
///
/// let policy: Policy = "
///     serve payments-worker payments
///     call  shop payments shop.*   # shop may call payments and shop.anything
///     call  *    echo
/// "
/// .parse()?;
/// assert!(policy.allows(Some(b"payments-worker"), Access::Serve, b"payments"));
/// assert!(!policy.allows(Some(b"shop"), Access::Serve, b"payments"));
/// assert!(policy.allows(Some(b"shop"), Access::Call, b"shop.cart"));
/// assert!(policy.allows(None, Access::Call, b"echo"));
/// assert!(!policy.allows(None, Access::Call, b"payments"));
/// # Ok::<(), mdp_core::PolicyError>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    grants: Vec<Grant>,
}

impl Policy {
    /// A policy that grants nothing yet.
    pub fn new() -> Self {
        Policy::default()
    }

    /// This policy with one more grant.
    pub fn grant(mut self, peer: PeerPattern, access: Access, services: ServicePattern) -> Self {
        self.grants.push(Grant { peer, access, services });
        self
    }

    /// The grants, in order.
    pub fn grants(&self) -> &[Grant] {
        &self.grants
    }

    /// Whether the peer named `name` (`None`: not authenticated) may
    /// `access` `service`.
    pub fn allows(&self, name: Option<&[u8]>, access: Access, service: &[u8]) -> bool {
        self.grants.iter().any(|g| {
            let peer = match &g.peer {
                PeerPattern::Any => true,
                PeerPattern::Named(n) => name == Some(n.as_ref()),
            };
            peer && g.access == access && g.services.matches(service)
        })
    }
}

impl std::str::FromStr for Policy {
    type Err = PolicyError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut policy = Policy::new();
        for (index, raw) in text.lines().enumerate() {
            let line = raw.split('#').next().unwrap_or("");
            let mut words = line.split_whitespace();
            let Some(verb) = words.next() else { continue };
            let at = |kind| PolicyError { line: index + 1, kind };
            let access = match verb {
                "serve" => Access::Serve,
                "call" => Access::Call,
                other => return Err(at(PolicyErrorKind::UnknownVerb(Found(Bytes::copy_from_slice(other.as_bytes()))))),
            };
            let peer = match words.next() {
                None => return Err(at(PolicyErrorKind::MissingPeer)),
                Some("*") => PeerPattern::Any,
                Some(name) => PeerPattern::Named(Bytes::copy_from_slice(name.as_bytes())),
            };
            let mut services = words.peekable();
            if services.peek().is_none() {
                return Err(at(PolicyErrorKind::MissingService));
            }
            for service in services {
                policy = policy.grant(peer.clone(), access, ServicePattern::parse(service));
            }
        }
        Ok(policy)
    }
}

/// A line of a policy's text form that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("policy line {line}: {kind}")]
pub struct PolicyError {
    /// The line, counting from 1.
    pub line: usize,
    /// What is wrong with it.
    pub kind: PolicyErrorKind,
}

/// What is wrong with a policy line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyErrorKind {
    /// The first word is neither `serve` nor `call`.
    #[error("{0} is not a verb: expected serve or call")]
    UnknownVerb(Found),
    /// The line ends after the verb.
    #[error("no peer after the verb: expected a name or *")]
    MissingPeer,
    /// The line ends after the peer.
    #[error("no service after the peer: expected a name or a prefix ending in *")]
    MissingService,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_exact_names_and_prefixes() {
        assert!(ServicePattern::parse("echo").matches(b"echo"));
        assert!(!ServicePattern::parse("echo").matches(b"echo2"));
        assert!(ServicePattern::parse("shop.*").matches(b"shop.cart"));
        assert!(!ServicePattern::parse("shop.*").matches(b"shop"));
        assert!(ServicePattern::parse("*").matches(b"anything"));
    }

    #[test]
    fn a_grant_is_for_one_access_only() {
        let p = Policy::new().grant(
            PeerPattern::Named(Bytes::from_static(b"w")),
            Access::Serve,
            ServicePattern::parse("a"),
        );
        assert!(p.allows(Some(b"w"), Access::Serve, b"a"));
        assert!(!p.allows(Some(b"w"), Access::Call, b"a"));
        assert!(!p.allows(None, Access::Serve, b"a"), "an unnamed peer gets only what * gets");
        assert!(!Policy::new().allows(Some(b"w"), Access::Call, b"a"), "an empty policy refuses all");
    }

    #[test]
    fn bad_lines_are_reported_by_number() {
        let err = |text: &str| text.parse::<Policy>().unwrap_err();
        assert_eq!(err("call * echo\nread * echo").line, 2);
        assert_eq!(err("\n\n serve").kind, PolicyErrorKind::MissingPeer);
        assert_eq!(err("call bob # no service").kind, PolicyErrorKind::MissingService);
        assert_eq!(
            err("call bob # no service").to_string(),
            "policy line 1: no service after the peer: expected a name or a prefix ending in *"
        );
        assert_eq!("# only comments\n\n".parse::<Policy>(), Ok(Policy::new()));
    }
}
