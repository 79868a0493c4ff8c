//! Any string into the topic parsers (UNS topics, topic filters, locations, Sparkplug topics):
//! they never panic, and a topic that parses prints back to a string that parses to the same.
//! The broker's access control reads Sparkplug topics with a grammar of its own
//! (`uns_model::owner::SparkplugRoute`, since uns-model does not depend on uns-sparkplug): every
//! topic the host's parser accepts must be classified by it the same way (group, message type).
#![no_main]

use std::str::FromStr;

use libfuzzer_sys::fuzz_target;
use uns_model::owner::SparkplugRoute;
use uns_model::topic::{Location, TopicFilter, UnsTopic};
use uns_sparkplug::topic::SparkplugTopic;

fn round_trip<T>(text: &str)
where
    T: FromStr + ToString + PartialEq + std::fmt::Debug,
{
    if let Ok(parsed) = text.parse::<T>() {
        let printed = parsed.to_string();
        match printed.parse::<T>() {
            Ok(again) => assert_eq!(parsed, again, "{text:?} printed as {printed:?}"),
            Err(_) => panic!("{text:?} parsed, but its print {printed:?} does not"),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    round_trip::<UnsTopic>(text);
    round_trip::<TopicFilter>(text);
    round_trip::<Location>(text);
    round_trip::<SparkplugTopic>(text);
    if let Ok(topic) = text.parse::<SparkplugTopic>() {
        let route = SparkplugRoute::parse(text);
        let same = match (&topic, route) {
            (SparkplugTopic::State { host_id }, Some(SparkplugRoute::State { host_id: h })) => {
                host_id == h
            }
            (
                SparkplugTopic::Node { group, kind, .. },
                Some(SparkplugRoute::Node { group: g, kind: k }),
            ) => group == g && kind.as_str() == k.as_str(),
            (
                SparkplugTopic::Device { group, kind, .. },
                Some(SparkplugRoute::Node { group: g, kind: k }),
            ) => group == g && kind.as_str() == k.as_str(),
            _ => false,
        };
        assert!(
            same,
            "{text:?}: the host reads {topic:?}, the access control {route:?}"
        );
    }
});
