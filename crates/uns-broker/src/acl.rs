//! Who may do what: accounts, their roles and their additional access rules.
//!
//! Every account has a [`Role`] (`viewer` when none is configured; an account named after a
//! service is that service's `service` account). Its `acl` rules are tried first, in order:
//! the first whose action and filter match decides (allow or deny). When no rule matches, the
//! role decides:
//!
//! | role | publish | subscribe |
//! |---|---|---|
//! | `admin` | everything | everything |
//! | `service` | what its service owns (DESIGN §2 owner column, `uns_model::owner`) | everything |
//! | `edge` | `spBv1.0/{group}/{N,D}{BIRTH,DATA,DEATH}/…` of its `groups` | its groups' NCMD/DCMD, `spBv1.0/STATE/#` |
//! | `operator` | `_cmd/…` requests, the operators' rows of the owner column (`_count/events`, `_genealogy/events`) and its own reply topic `uns/v1/_replies/{client id}` | everything |
//! | `viewer` | nothing | everything |
//!
//! `%u` in a rule's filter stands for the account's username and `%c` for the client id, each
//! as one whole topic level. Anonymous clients (when allowed) are administrators while no
//! account is configured (the loopback-only default, as before accounts existed) and viewers
//! otherwise. A service's client ids (`uns-{service}`, `uns-{service}-…`) are reserved for its
//! `service` account once such an account exists: anyone else using one is refused at CONNECT.

use std::collections::{HashMap, HashSet};

use serde::Deserialize;
use uns_model::owner::{Principal, ServiceName, edge_subscriptions, may_publish};
use uns_model::topic::UnsTopic;

use crate::config::{Secret, User};

/// An account's role (see the module docs for what each may do).
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything.
    Admin,
    /// One service: publishes what the service owns; the service is the account's `service`
    /// field, or its username.
    Service,
    /// A Sparkplug edge account of the account's `groups`.
    Edge,
    /// Reads everything, sends `_cmd` requests and operators' corrections.
    Operator,
    /// Reads everything, publishes nothing (the default).
    Viewer,
}

/// What a rule decides.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Permission {
    /// The operation is allowed.
    Allow,
    /// The operation is refused.
    Deny,
}

/// Which operations a rule covers.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Access {
    /// PUBLISH, and the Will (checked at CONNECT).
    Publish,
    /// SUBSCRIBE.
    Subscribe,
    /// Both.
    #[default]
    All,
}

/// One access rule. In a config file:
/// `{ permission = "allow", access = "publish", filter = "uns/v1/+/+/_tag/#" }`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AclRule {
    /// Allow or deny.
    pub permission: Permission,
    /// Publish, subscribe or both (default both).
    #[serde(default)]
    pub access: Access,
    /// An MQTT topic filter (`+`, `#`), with `%u` (username) and `%c` (client id) as whole levels.
    pub filter: String,
}

/// Who is asking, for `%u`/`%c`.
pub(crate) struct Requester<'a> {
    pub(crate) username: &'a str,
    pub(crate) client_id: &'a str,
}

/// A role with what it needs to decide: the service, the edge groups.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Grant {
    Admin,
    Service(ServiceName),
    Edge(Vec<String>),
    Operator,
    Viewer,
}

impl Grant {
    /// The role of `user` as configured (see [`Role`]), or why it is unusable.
    pub(crate) fn of(user: &User) -> Result<Grant, String> {
        if !user.groups.is_empty() && user.role != Some(Role::Edge) {
            return Err("`groups` is for role = \"edge\" only".into());
        }
        if user.service.is_some() && user.role != Some(Role::Service) {
            return Err("`service` is for role = \"service\" only".into());
        }
        let grant = match user.role {
            Some(Role::Admin) => Grant::Admin,
            Some(Role::Operator) => Grant::Operator,
            Some(Role::Viewer) => Grant::Viewer,
            Some(Role::Service) => {
                let name = user.service.as_deref().unwrap_or(&user.username);
                Grant::Service(
                    name.parse()
                        .map_err(|e| format!("role = \"service\": {e}"))?,
                )
            }
            Some(Role::Edge) => {
                if user.groups.is_empty() {
                    return Err("role = \"edge\" needs `groups = [\"...\"]`".into());
                }
                if let Some(bad) = user
                    .groups
                    .iter()
                    .find(|group| group.is_empty() || group.contains(['/', '+', '#']))
                {
                    return Err(format!("edge group {bad:?} is not a Sparkplug group id"));
                }
                Grant::Edge(user.groups.clone())
            }
            None => user.username.parse().map_or(Grant::Viewer, Grant::Service),
        };
        Ok(grant)
    }

    fn may_publish(&self, who: &Requester<'_>, topic: &str) -> bool {
        match self {
            Grant::Admin => true,
            Grant::Service(service) => may_publish(&Principal::Service(*service), topic),
            Grant::Edge(groups) => may_publish(&Principal::Edge { groups }, topic),
            Grant::Operator => {
                may_publish(&Principal::Operator, topic) || is_own_reply_topic(who, topic)
            }
            Grant::Viewer => false,
        }
    }

    fn may_subscribe(&self, who: &Requester<'_>, filter: &str) -> bool {
        match self {
            Grant::Edge(groups) => groups.iter().any(|group| {
                edge_subscriptions(group)
                    .iter()
                    .any(|allowed| covers(allowed, who, filter))
            }),
            Grant::Admin | Grant::Service(_) | Grant::Operator | Grant::Viewer => true,
        }
    }
}

/// One account, ready for checks.
pub(crate) struct Account {
    pub(crate) secret: Secret,
    pub(crate) grant: Grant,
    pub(crate) rules: Vec<AclRule>,
}

/// Every account (configured and internal), the anonymous role and the reserved client ids.
pub(crate) struct Accounts {
    by_name: HashMap<String, Account>,
    /// Whether any account was configured (internal ones do not count): without, a client
    /// with an unknown username is treated as anonymous.
    any_configured: bool,
    anonymous: Grant,
    /// Services with a `service` account: their client ids are reserved for it.
    reserved: HashSet<ServiceName>,
}

/// Why a CONNECT is refused after its credentials were checked.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ConnectRefusal {
    /// The client id belongs to another account's service.
    ReservedClientId(ServiceName),
    /// The account may not publish its Will topic.
    Will,
}

impl Accounts {
    /// From the validated config's users and internal users (a user whose role does not
    /// resolve gets `viewer`; `validate` refuses such configs before this runs).
    pub(crate) fn new(configured: &[User], internal: &[User]) -> Accounts {
        let mut by_name = HashMap::new();
        let mut reserved = HashSet::new();
        for user in configured.iter().chain(internal) {
            let grant = Grant::of(user).unwrap_or(Grant::Viewer);
            if let Grant::Service(service) = grant {
                reserved.insert(service);
            }
            by_name.insert(
                user.username.clone(),
                Account {
                    secret: user.secret.clone(),
                    grant,
                    rules: user.acl.clone(),
                },
            );
        }
        let any_configured = !configured.is_empty();
        Accounts {
            by_name,
            any_configured,
            anonymous: if any_configured {
                Grant::Viewer
            } else {
                Grant::Admin
            },
            reserved,
        }
    }

    /// The account a session's username stands for; `None`: anonymous.
    pub(crate) fn account(&self, username: Option<&str>) -> Option<&Account> {
        self.by_name.get(username?)
    }

    /// Whether a username must be checked against an account (an unknown one is anonymous
    /// while no account is configured).
    pub(crate) fn must_verify(&self, username: &str) -> bool {
        self.any_configured || self.by_name.contains_key(username)
    }

    /// The checks after the password: the client id and the Will topic.
    pub(crate) fn admit(
        &self,
        username: Option<&str>,
        client_id: &str,
        will_topic: Option<&str>,
    ) -> Result<(), ConnectRefusal> {
        let account = self.account(username);
        let grant = account.map_or(&self.anonymous, |account| &account.grant);
        if let Some(service) = ServiceName::owning_client_id(client_id)
            && self.reserved.contains(&service)
            && *grant != Grant::Service(service)
        {
            return Err(ConnectRefusal::ReservedClientId(service));
        }
        if let Some(topic) = will_topic
            && !self.allowed(username, client_id, Access::Publish, topic)
        {
            return Err(ConnectRefusal::Will);
        }
        Ok(())
    }

    /// Whether the session of `username` (`None`: anonymous) may publish to `topic` or
    /// subscribe to the filter `topic` (which must then lie wholly inside what is allowed).
    pub(crate) fn allowed(
        &self,
        username: Option<&str>,
        client_id: &str,
        access: Access,
        topic: &str,
    ) -> bool {
        let account = self.account(username);
        let who = Requester {
            username: username.unwrap_or_default(),
            client_id,
        };
        let (grant, rules) = match account {
            Some(account) => (&account.grant, account.rules.as_slice()),
            None => (&self.anonymous, &[][..]),
        };
        decide(grant, rules, &who, access, topic)
    }

    /// Whether every session may do everything (no check is needed at all).
    pub(crate) fn all_admin(&self) -> bool {
        self.anonymous == Grant::Admin
            && self
                .by_name
                .values()
                .all(|account| account.grant == Grant::Admin && account.rules.is_empty())
    }
}

/// The rules first (first match wins), then the role.
pub(crate) fn decide(
    grant: &Grant,
    rules: &[AclRule],
    who: &Requester<'_>,
    access: Access,
    topic: &str,
) -> bool {
    if let Some(permission) = first_match(rules, who, access, topic) {
        return permission == Permission::Allow;
    }
    match access {
        Access::Publish => grant.may_publish(who, topic),
        Access::Subscribe | Access::All => grant.may_subscribe(who, topic),
    }
}

/// Whether `topic` is `uns/v1/_replies/{client id}` of the session asking: an operator's tool
/// answering a request on its own reply topic (a service's replies are the owner column's).
fn is_own_reply_topic(who: &Requester<'_>, topic: &str) -> bool {
    matches!(
        topic.parse::<UnsTopic>(),
        Ok(UnsTopic::Reply { client }) if client.as_str() == who.client_id
    )
}

/// The permission of the first rule covering `access` on `topic`.
fn first_match(
    rules: &[AclRule],
    who: &Requester<'_>,
    access: Access,
    topic: &str,
) -> Option<Permission> {
    rules
        .iter()
        .filter(|rule| rule.access == Access::All || rule.access == access)
        .find(|rule| covers(&rule.filter, who, topic))
        .map(|rule| rule.permission)
}

/// Whether every topic `topic` (a name or a filter) can match is matched by `filter`.
fn covers(filter: &str, who: &Requester<'_>, topic: &str) -> bool {
    let mut rule_levels = filter.split('/');
    let mut levels = topic.split('/');
    // MQTT-4.7.2-1: wildcards at the first level do not match `$` topics.
    let dollar = topic.starts_with('$');
    let mut first = true;
    loop {
        match (rule_levels.next(), levels.next()) {
            (Some("#"), Some(_)) | (Some("#"), None) => return !(first && dollar),
            (Some("+"), Some(level)) => {
                if level == "#" || (first && dollar) {
                    return false;
                }
            }
            (Some("%u"), Some(level)) => {
                if level != who.username {
                    return false;
                }
            }
            (Some("%c"), Some(level)) => {
                if level != who.client_id {
                    return false;
                }
            }
            (Some(rule_level), Some(level)) => {
                if rule_level != level {
                    return false;
                }
            }
            (None, None) => return true,
            _ => return false,
        }
        first = false;
    }
}

/// Why a rule is unusable, for config validation.
pub(crate) fn rule_problem(rule: &AclRule) -> Option<String> {
    let levels: Vec<&str> = rule.filter.split('/').collect();
    if rule.filter.is_empty() {
        return Some("a rule's filter is empty".into());
    }
    for (i, level) in levels.iter().enumerate() {
        let wildcard_inside =
            *level != "#" && *level != "+" && (level.contains('#') || level.contains('+'));
        if wildcard_inside || (*level == "#" && i + 1 != levels.len()) {
            return Some(format!(
                "rule filter {:?} is not a valid MQTT topic filter",
                rule.filter
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(permission: Permission, access: Access, filter: &str) -> AclRule {
        AclRule {
            permission,
            access,
            filter: filter.into(),
        }
    }

    const WHO: Requester<'static> = Requester {
        username: "edge-a",
        client_id: "c1",
    };

    fn allowed(rules: &[AclRule], access: Access, topic: &str) -> bool {
        decide(&Grant::Viewer, rules, &WHO, access, topic)
    }

    #[test]
    fn first_match_wins_then_the_role_decides() {
        let rules = vec![
            rule(Permission::Deny, Access::Publish, "spBv1.0/STATE/#"),
            rule(Permission::Allow, Access::Publish, "spBv1.0/%u/#"),
            rule(Permission::Deny, Access::Subscribe, "$SYS/#"),
        ];
        assert!(allowed(&rules, Access::Publish, "spBv1.0/edge-a/NDATA/n1"));
        assert!(!allowed(&rules, Access::Publish, "spBv1.0/edge-b/NDATA/n1"));
        assert!(!allowed(
            &rules,
            Access::Publish,
            "spBv1.0/STATE/scada-bridge"
        ));
        // No rule: the viewer role reads everything, publishes nothing.
        assert!(!allowed(&rules, Access::Publish, "uns/v1/acme/_meta"));
        assert!(allowed(&rules, Access::Subscribe, "uns/v1/#"));
        assert!(!allowed(&rules, Access::Subscribe, "$SYS/broker/uptime"));
        assert!(allowed(&[], Access::Subscribe, "$SYS/broker/uptime"));
        // A rule's `#` at the first level does not cover `$SYS` (MQTT-4.7.2-1).
        let deny_all = vec![rule(Permission::Deny, Access::Subscribe, "#")];
        assert!(allowed(&deny_all, Access::Subscribe, "$SYS/broker/uptime"));
        assert!(!allowed(&deny_all, Access::Subscribe, "uns/v1/#"));
        // A rule may give a viewer more than its role.
        let extra = vec![rule(
            Permission::Allow,
            Access::Publish,
            "uns/v1/_replies/%c",
        )];
        assert!(allowed(&extra, Access::Publish, "uns/v1/_replies/c1"));
        assert!(!allowed(&extra, Access::Publish, "uns/v1/_replies/c2"));
    }

    #[test]
    fn subscriptions_must_lie_inside_the_rule() {
        let rules = vec![
            rule(Permission::Allow, Access::All, "spBv1.0/+/NCMD/%c"),
            rule(Permission::Deny, Access::All, "spBv1.0/#"),
        ];
        assert!(allowed(&rules, Access::Subscribe, "spBv1.0/g/NCMD/c1"));
        assert!(allowed(&rules, Access::Subscribe, "spBv1.0/+/NCMD/c1"));
        assert!(!allowed(&rules, Access::Subscribe, "spBv1.0/g/NCMD/+"));
        assert!(!allowed(&rules, Access::Subscribe, "spBv1.0/#"));
        assert!(!allowed(
            &rules,
            Access::Subscribe,
            "spBv1.0/g/NCMD/c1/extra"
        ));
    }

    fn user(username: &str, role: Option<Role>) -> User {
        User {
            role,
            ..User::new(username, Secret::Password("pw".into()))
        }
    }

    #[test]
    fn roles_resolve_and_service_accounts_are_named_after_their_service() {
        assert_eq!(
            Grant::of(&user("scada-bridge", None)),
            Ok(Grant::Service(ServiceName::ScadaBridge))
        );
        assert_eq!(Grant::of(&user("alice", None)), Ok(Grant::Viewer));
        assert_eq!(
            Grant::of(&user("scada-bridge", Some(Role::Admin))),
            Ok(Grant::Admin)
        );
        assert!(Grant::of(&user("alice", Some(Role::Service))).is_err());
        let bridge = User {
            service: Some("scada-bridge".into()),
            ..user("line-1-bridge", Some(Role::Service))
        };
        assert_eq!(
            Grant::of(&bridge),
            Ok(Grant::Service(ServiceName::ScadaBridge))
        );
        assert!(Grant::of(&user("edge", Some(Role::Edge))).is_err());
        let edge = User {
            groups: vec!["acme-berlin".into()],
            ..user("edge", Some(Role::Edge))
        };
        assert_eq!(
            Grant::of(&edge),
            Ok(Grant::Edge(vec!["acme-berlin".into()]))
        );
        let bad_group = User {
            groups: vec!["a/#".into()],
            ..user("edge", Some(Role::Edge))
        };
        assert!(Grant::of(&bad_group).is_err());
        let groups_for_viewer = User {
            groups: vec!["g".into()],
            ..user("v", None)
        };
        assert!(Grant::of(&groups_for_viewer).is_err());
    }

    #[test]
    fn edge_accounts_subscribe_to_their_commands_and_state() {
        let grant = Grant::Edge(vec!["g".into()]);
        let sub = |filter| decide(&grant, &[], &WHO, Access::Subscribe, filter);
        assert!(sub("spBv1.0/g/NCMD/e1"));
        assert!(sub("spBv1.0/g/DCMD/e1/+"));
        assert!(sub("spBv1.0/STATE/+"));
        assert!(!sub("spBv1.0/h/NCMD/e1"));
        assert!(!sub("spBv1.0/#"));
        assert!(!sub("uns/v1/#"));
    }

    #[test]
    fn client_ids_of_services_with_an_account_are_reserved() {
        let accounts = Accounts::new(
            &[user("scada-bridge", None), user("alice", Some(Role::Admin))],
            &[],
        );
        let bridge = Some("scada-bridge");
        assert_eq!(accounts.admit(bridge, "uns-scada-bridge", None), Ok(()));
        assert_eq!(
            accounts.admit(Some("alice"), "uns-scada-bridge-sparkplug", None),
            Err(ConnectRefusal::ReservedClientId(ServiceName::ScadaBridge))
        );
        assert_eq!(
            accounts.admit(None, "uns-scada-bridge", None),
            Err(ConnectRefusal::ReservedClientId(ServiceName::ScadaBridge))
        );
        // No account for the OEE service: its ids are not reserved.
        assert_eq!(accounts.admit(Some("alice"), "uns-oee", None), Ok(()));
        assert_eq!(
            accounts.admit(Some("alice"), "x", Some("spBv1.0/STATE/h")),
            Ok(())
        );
        assert_eq!(
            accounts.admit(bridge, "uns-scada-bridge", Some("uns/v1/_services/oee")),
            Err(ConnectRefusal::Will)
        );
    }

    #[test]
    fn anonymous_is_admin_only_while_no_account_is_configured() {
        let internal = [User {
            service: Some("meta".into()),
            ..user("uns-internal-meta", Some(Role::Service))
        }];
        let open = Accounts::new(&[], &internal);
        assert!(open.allowed(None, "x", Access::Publish, "anything"));
        assert!(!open.must_verify("someone"));
        assert!(open.must_verify("uns-internal-meta"));
        assert!(!open.allowed(
            Some("uns-internal-meta"),
            "uns-meta",
            Access::Publish,
            "anything"
        ));
        let closed = Accounts::new(&[user("alice", None)], &internal);
        assert!(!closed.allowed(None, "x", Access::Publish, "anything"));
        assert!(closed.allowed(None, "x", Access::Subscribe, "#"));
        assert!(closed.must_verify("someone"));
    }

    #[test]
    fn bad_filters_are_reported() {
        assert!(rule_problem(&rule(Permission::Allow, Access::All, "a/#/b")).is_some());
        assert!(rule_problem(&rule(Permission::Allow, Access::All, "a/b+")).is_some());
        assert!(rule_problem(&rule(Permission::Allow, Access::All, "")).is_some());
        assert!(rule_problem(&rule(Permission::Allow, Access::All, "a/+/%u/#")).is_none());
    }
}
