//! Topic parsing and printing: tables of good topics (which round-trip) and bad ones (with their error).

use uns_sparkplug::topic::{self, IdKind};
use uns_sparkplug::{DeviceMessageKind, NodeMessageKind, SparkplugTopic, TopicError};

fn node(group: &str, kind: NodeMessageKind, edge: &str) -> SparkplugTopic {
    SparkplugTopic::Node {
        group: group.to_owned(),
        kind,
        edge: edge.to_owned(),
    }
}

fn device(group: &str, kind: DeviceMessageKind, edge: &str, device: &str) -> SparkplugTopic {
    SparkplugTopic::Device {
        group: group.to_owned(),
        kind,
        edge: edge.to_owned(),
        device: device.to_owned(),
    }
}

#[test]
fn good_topics_parse_and_round_trip() {
    fn check(text: &str, expected: SparkplugTopic) {
        let parsed: SparkplugTopic = text
            .parse()
            .unwrap_or_else(|error| panic!("{text}: {error}"));
        assert_eq!(parsed, expected, "{text}");
        assert_eq!(parsed.to_string(), text, "display of {text}");
    }
    use DeviceMessageKind::*;
    use NodeMessageKind::*;
    check("spBv1.0/g/NBIRTH/e", node("g", NBirth, "e"));
    check("spBv1.0/g/NDATA/e", node("g", NData, "e"));
    check("spBv1.0/g/NDEATH/e", node("g", NDeath, "e"));
    check("spBv1.0/g/NCMD/e", node("g", NCmd, "e"));
    check("spBv1.0/g/DBIRTH/e/d", device("g", DBirth, "e", "d"));
    check("spBv1.0/g/DDATA/e/d", device("g", DData, "e", "d"));
    check("spBv1.0/g/DDEATH/e/d", device("g", DDeath, "e", "d"));
    check("spBv1.0/g/DCMD/e/d", device("g", DCmd, "e", "d"));
    check(
        "spBv1.0/STATE/scada-host",
        SparkplugTopic::State {
            host_id: "scada-host".to_owned(),
        },
    );
    // Any UTF-8 except / + # is allowed, spaces and dots included (the spec's own example group).
    check(
        "spBv1.0/Sparkplug B Devices/NBIRTH/Raspberry Pi",
        node("Sparkplug B Devices", NBirth, "Raspberry Pi"),
    );
    check(
        "spBv1.0/Größe.1/DDATA/émetteur/Gerät 7",
        device("Größe.1", DData, "émetteur", "Gerät 7"),
    );
    // Message types are case sensitive words only in their level; a group may look like one.
    check("spBv1.0/NBIRTH/NDATA/DDATA", node("NBIRTH", NData, "DDATA"));
}

#[test]
fn bad_topics_are_rejected_with_their_cause() {
    fn check(text: &str, expected: TopicError) {
        assert_eq!(text.parse::<SparkplugTopic>(), Err(expected), "{text}");
    }
    let levels = |message_type, expected, found| TopicError::WrongLevelCount {
        message_type,
        expected,
        found,
    };
    check(
        "",
        TopicError::WrongNamespace {
            found: String::new(),
        },
    );
    check(
        "spAv1.0/g/NBIRTH/e",
        TopicError::WrongNamespace {
            found: "spAv1.0".to_owned(),
        },
    );
    check(
        "spbv1.0/g/NBIRTH/e",
        TopicError::WrongNamespace {
            found: "spbv1.0".to_owned(),
        },
    );
    check(
        "uns/v1/acme/_meta",
        TopicError::WrongNamespace {
            found: "uns".to_owned(),
        },
    );
    // The Sparkplug 2.2 STATE topic had no namespace.
    check(
        "STATE/host",
        TopicError::WrongNamespace {
            found: "STATE".to_owned(),
        },
    );
    check("spBv1.0", levels("Sparkplug", 4, 1));
    check("spBv1.0/g", levels("Sparkplug", 4, 2));
    check("spBv1.0/g/NBIRTH", levels("NBIRTH", 4, 3));
    check("spBv1.0/g/NBIRTH/e/d", levels("NBIRTH", 4, 5));
    check("spBv1.0/g/NDATA/e/", levels("NDATA", 4, 5));
    check("spBv1.0/g/DDATA/e", levels("DDATA", 5, 4));
    check("spBv1.0/g/DCMD/e/d/x", levels("DCMD", 5, 6));
    check("spBv1.0/STATE", levels("STATE", 3, 2));
    check("spBv1.0/STATE/a/b", levels("STATE", 3, 4));
    check(
        "spBv1.0/g/nbirth/e",
        TopicError::UnknownMessageType {
            found: "nbirth".to_owned(),
        },
    );
    check(
        "spBv1.0/g/NBIRTHX/e",
        TopicError::UnknownMessageType {
            found: "NBIRTHX".to_owned(),
        },
    );
    check(
        "spBv1.0/g//e",
        TopicError::UnknownMessageType {
            found: String::new(),
        },
    );
    check(
        "spBv1.0//NBIRTH/e",
        TopicError::EmptyId {
            kind: IdKind::Group,
        },
    );
    check(
        "spBv1.0/g/NBIRTH/",
        TopicError::EmptyId { kind: IdKind::Edge },
    );
    check(
        "spBv1.0/g/DBIRTH/e/",
        TopicError::EmptyId {
            kind: IdKind::Device,
        },
    );
    check(
        "spBv1.0/g/DBIRTH//d",
        TopicError::EmptyId { kind: IdKind::Edge },
    );
    check(
        "spBv1.0/STATE/",
        TopicError::EmptyId {
            kind: IdKind::HostId,
        },
    );
    let reserved = |kind, id: &str, character| TopicError::ReservedCharacter {
        kind,
        id: id.to_owned(),
        character,
    };
    check("spBv1.0/+/NBIRTH/e", reserved(IdKind::Group, "+", '+'));
    check("spBv1.0/g/NDATA/e#", reserved(IdKind::Edge, "e#", '#'));
    check(
        "spBv1.0/g/DDATA/e/d+1",
        reserved(IdKind::Device, "d+1", '+'),
    );
    check("spBv1.0/STATE/#", reserved(IdKind::HostId, "#", '#'));
}

#[test]
fn built_topics_are_validated() {
    let bad = node("line/1", NodeMessageKind::NData, "e");
    assert_eq!(
        bad.validate(),
        Err(TopicError::ReservedCharacter {
            kind: IdKind::Group,
            id: "line/1".to_owned(),
            character: '/',
        })
    );
    let good = device("g", DeviceMessageKind::DData, "e", "d");
    assert_eq!(good.validate(), Ok(()));
    assert_eq!(good.group(), Some("g"));
    assert_eq!(good.edge(), Some("e"));
}

#[test]
fn filters_and_state_topics() {
    assert_eq!(topic::ALL_FILTER, "spBv1.0/#");
    assert_eq!(
        topic::group_filter("line-1").as_deref(),
        Ok("spBv1.0/line-1/#")
    );
    assert_eq!(
        topic::group_filter(""),
        Err(TopicError::EmptyId {
            kind: IdKind::Group
        })
    );
    let state = topic::state_topic("scada").unwrap_or_default();
    assert_eq!(state, "spBv1.0/STATE/scada");
    assert_eq!(
        state.parse::<SparkplugTopic>(),
        Ok(SparkplugTopic::State {
            host_id: "scada".to_owned()
        })
    );
    assert!(topic::state_topic("a+b").is_err());
}
