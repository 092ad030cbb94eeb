//! The host side of the WIT `consumers` interface (0.1.1): lookups in the registry of the request's
//! config (of the config being loaded, during `init`), and the request's authenticated consumer.
//! Everything but `current` and `get` needs the plugin's `capabilities.consumers` grant.

use super::bindings::gateway::filter::consumers as wit;
use super::bindings::gateway::filter::types::HostError;
use super::state::CompState;
use crate::consumers::{Consumer, HmacAlgorithm, Registry};
use crate::host::Phase;

fn consumer(c: &Consumer) -> wit::Consumer {
    wit::Consumer {
        name: c.name.to_string(),
        groups: c.groups.clone(),
    }
}

impl CompState {
    /// The registry credential lookups go to, when the plugin is granted them (`what` it asked, for
    /// the log of a denial).
    fn granted(&self, what: &str) -> Option<&Registry> {
        self.ctx.consumers_allowed(what).then(|| self.registry())?
    }

    /// The registry lookups go to: during a request, that of the request's config (none when it has
    /// no consumers); during `init`, that of the config being loaded.
    fn registry(&self) -> Option<&Registry> {
        match &self.info {
            Some(info) => info.identity.as_deref().map(|i| &**i.registry()),
            None => Some(&self.registry),
        }
    }
}

impl wit::Host for CompState {
    fn current(&mut self) -> Option<wit::Consumer> {
        let identity = self.info.as_ref()?.identity.as_ref()?;
        identity.current().as_deref().map(consumer)
    }

    fn authenticate(&mut self, name: String) -> Result<(), HostError> {
        let request_phase = matches!(
            self.data.phase,
            Phase::RequestHeaders | Phase::RequestBody | Phase::RequestTrailers
        );
        if !self.ctx.consumers_allowed("authenticate") {
            return Err(HostError::Denied(
                "authenticating needs `capabilities.consumers: true`".into(),
            ));
        }
        if !request_phase {
            return Err(HostError::WrongPhase(
                "a request is authenticated only in its request phases".into(),
            ));
        }
        let identity = self.info.as_ref().and_then(|i| i.identity.as_ref());
        match identity {
            Some(id) if id.authenticate(&name) => Ok(()),
            _ => Err(HostError::Invalid(format!(
                "no consumer is called `{name}`"
            ))),
        }
    }

    fn get(&mut self, name: String) -> Option<wit::Consumer> {
        self.registry()?.get(&name).map(|c| consumer(c))
    }

    fn find_by_key(&mut self, kind: String, key: String) -> Option<wit::Consumer> {
        self.granted("find-by-key")?
            .find_by_key(&kind, &key)
            .map(|c| consumer(c))
    }

    fn check_secret(&mut self, kind: String, id: String, secret: String) -> Option<wit::Consumer> {
        self.granted("check-secret")?
            .check_secret(&kind, &id, &secret)
            .map(|c| consumer(c))
    }

    fn find_credential(&mut self, kind: String, id: String) -> Option<wit::Credential> {
        let c = self.granted("find-credential")?.credential(&kind, &id)?;
        Some(wit::Credential {
            consumer: consumer(&c.consumer),
            id: c.id,
            attributes: c.attributes,
        })
    }

    fn verify_hmac(
        &mut self,
        kind: String,
        id: String,
        algorithm: wit::HmacAlgorithm,
        message: Vec<u8>,
        mac: Vec<u8>,
    ) -> Option<wit::Consumer> {
        let algorithm = match algorithm {
            wit::HmacAlgorithm::Sha256 => HmacAlgorithm::Sha256,
            wit::HmacAlgorithm::Sha384 => HmacAlgorithm::Sha384,
            wit::HmacAlgorithm::Sha512 => HmacAlgorithm::Sha512,
        };
        self.granted("verify-hmac")?
            .verify_hmac(&kind, &id, algorithm, &message, &mac)
            .map(|c| consumer(c))
    }
}
