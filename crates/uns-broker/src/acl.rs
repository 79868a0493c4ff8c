//! Per-account access rules: which topics an account may publish to and subscribe to.
//!
//! An account's rules are tried in order and the first whose action and filter match decides
//! (allow or deny). An account without rules may do everything (the behaviour before rules
//! existed); an account with rules is denied what no rule allows. `%u` in a rule's filter stands
//! for the account's username and `%c` for the client id, each as one whole topic level.

use serde::Deserialize;

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
    /// PUBLISH (and the Will, which is checked when it is published).
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

/// Whether `rules` allow `access` on `topic` (a topic name for publish, a topic filter for
/// subscribe: the subscription must lie wholly inside an allowing rule's filter).
pub(crate) fn allowed(rules: &[AclRule], who: &Requester<'_>, access: Access, topic: &str) -> bool {
    if rules.is_empty() {
        return true;
    }
    for rule in rules {
        if rule.access != Access::All && rule.access != access {
            continue;
        }
        if covers(&rule.filter, who, topic) {
            return rule.permission == Permission::Allow;
        }
    }
    false
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

    #[test]
    fn first_match_wins_and_unmatched_is_denied() {
        let rules = vec![
            rule(Permission::Deny, Access::Publish, "spBv1.0/STATE/#"),
            rule(Permission::Allow, Access::Publish, "spBv1.0/%u/#"),
            rule(Permission::Allow, Access::Subscribe, "#"),
        ];
        assert!(allowed(
            &rules,
            &WHO,
            Access::Publish,
            "spBv1.0/edge-a/NDATA/n1"
        ));
        assert!(!allowed(
            &rules,
            &WHO,
            Access::Publish,
            "spBv1.0/edge-b/NDATA/n1"
        ));
        assert!(!allowed(
            &rules,
            &WHO,
            Access::Publish,
            "spBv1.0/STATE/scada-bridge"
        ));
        assert!(!allowed(&rules, &WHO, Access::Publish, "uns/v1/acme/_meta"));
        assert!(allowed(&rules, &WHO, Access::Subscribe, "uns/v1/#"));
        // `#` at the first level does not cover `$SYS` (MQTT-4.7.2-1).
        assert!(!allowed(
            &rules,
            &WHO,
            Access::Subscribe,
            "$SYS/broker/uptime"
        ));
        assert!(allowed(&[], &WHO, Access::Publish, "anything"));
    }

    #[test]
    fn subscriptions_must_lie_inside_the_rule() {
        let rules = vec![rule(Permission::Allow, Access::All, "spBv1.0/+/NCMD/%c")];
        assert!(allowed(
            &rules,
            &WHO,
            Access::Subscribe,
            "spBv1.0/g/NCMD/c1"
        ));
        assert!(allowed(
            &rules,
            &WHO,
            Access::Subscribe,
            "spBv1.0/+/NCMD/c1"
        ));
        assert!(!allowed(
            &rules,
            &WHO,
            Access::Subscribe,
            "spBv1.0/g/NCMD/+"
        ));
        assert!(!allowed(&rules, &WHO, Access::Subscribe, "spBv1.0/#"));
        assert!(!allowed(
            &rules,
            &WHO,
            Access::Subscribe,
            "spBv1.0/g/NCMD/c1/extra"
        ));
    }

    #[test]
    fn bad_filters_are_reported() {
        assert!(rule_problem(&rule(Permission::Allow, Access::All, "a/#/b")).is_some());
        assert!(rule_problem(&rule(Permission::Allow, Access::All, "a/b+")).is_some());
        assert!(rule_problem(&rule(Permission::Allow, Access::All, "")).is_some());
        assert!(rule_problem(&rule(Permission::Allow, Access::All, "a/+/%u/#")).is_none());
    }
}
