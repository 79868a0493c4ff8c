//! The one list of services this binary runs. Adding a service is its crate plus one line here:
//! `uns up` starts it, `uns {name}` runs it alone, `uns generate-config` documents its section (a test
//! checks `deploy/uns.toml` against its defaults).

use uns_service::{ServiceEntry, entry};

/// When `uns up` runs a service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum InUp {
    /// Always.
    Always,
    /// Only with `--demo` (the simulated plant).
    DemoOnly,
}

/// A service of the binary.
pub(crate) struct Listed {
    pub(crate) entry: ServiceEntry,
    pub(crate) in_up: InUp,
}

/// Every service, in start order; `uns up` stops them in reverse, so the simulator (last) stops
/// before the bridge and the bridge still sees the nodes' NDEATH and marks their tags stale, and
/// genealogy and OEE start before the work orders whose events they consume (and stop after).
pub(crate) const SERVICES: &[Listed] = &[
    Listed {
        entry: entry::<uns_meta::Meta>(),
        in_up: InUp::Always,
    },
    Listed {
        entry: entry::<uns_scada_bridge::ScadaBridge>(),
        in_up: InUp::Always,
    },
    Listed {
        entry: entry::<uns_genealogy::Genealogy>(),
        in_up: InUp::Always,
    },
    Listed {
        entry: entry::<uns_oee::Oee>(),
        in_up: InUp::Always,
    },
    Listed {
        entry: entry::<uns_workorders::WorkOrders>(),
        in_up: InUp::Always,
    },
    Listed {
        entry: entry::<uns_erp_bridge::ErpBridge>(),
        in_up: InUp::Always,
    },
    Listed {
        entry: entry::<uns_console::Console>(),
        in_up: InUp::Always,
    },
    Listed {
        entry: entry::<uns_sim::Sim>(),
        in_up: InUp::DemoOnly,
    },
];

/// The service named `name`.
pub(crate) fn find(name: &str) -> Option<&'static Listed> {
    SERVICES.iter().find(|listed| listed.entry.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_sections_are_unique() {
        for (idx, listed) in SERVICES.iter().enumerate() {
            for other in &SERVICES[idx + 1..] {
                assert_ne!(listed.entry.name, other.entry.name);
                assert_ne!(listed.entry.section, other.entry.section);
            }
            assert!(find(listed.entry.name).is_some());
            assert!(
                !listed.entry.about.is_empty(),
                "{} has no ABOUT",
                listed.entry.name
            );
        }
    }

    /// The broker's `service` role and reserved client ids come from the model's owner table
    /// (`uns_model::owner::ServiceName`): every service has a row there, and the client id its
    /// client uses by default is one the broker reserves for it.
    #[test]
    fn every_service_has_a_row_in_the_owner_table() {
        for listed in SERVICES {
            let name = listed.entry.name;
            let service: uns_model::owner::ServiceName = name.parse().expect("a known service");
            let options =
                uns_client::ClientOptions::new(uns_client::BrokerUrl::new("127.0.0.1", 1883), name)
                    .expect("a valid service name");
            assert!(
                service.owns_client_id(&options.client_id),
                "{name}: {}",
                options.client_id
            );
        }
    }
}
