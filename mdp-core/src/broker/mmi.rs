//! MMI (RFC 8): the `mmi.` services the broker answers itself.

use bytes::Bytes;

use super::{Access, Broker, Part};
use crate::{Dialect, Multipart, PeerId};

/// Services under this prefix are the broker's own (RFC 8).
pub(super) const MMI_PREFIX: &[u8] = b"mmi.";
const MMI_SERVICE: &[u8] = b"mmi.service";

impl Broker {
    /// Answers an MMI query: `mmi.service` with 200 if the service named in
    /// the body has a worker and the asking peer (`name`) may call it, 404
    /// if not; any other `mmi.` name with 501.
    pub(super) fn mmi(
        &mut self,
        client: PeerId,
        name: Option<&Bytes>,
        dialect: Dialect,
        service: Bytes,
        body: Multipart,
    ) {
        let code: &'static [u8] = if service.as_ref() == MMI_SERVICE {
            let asked = body.first().filter(|asked| self.may(name, Access::Call, asked));
            let known = asked.and_then(|asked| self.services.get(asked.as_ref())).is_some_and(|s| s.workers > 0);
            if known {
                b"200"
            } else {
                b"404"
            }
        } else {
            b"501"
        };
        self.stats.replies_sent += 1;
        self.send_client(client, dialect, &service, Part::Final, vec![Bytes::from_static(code)]);
    }
}
