//! Any string into the topic parsers (UNS topics, topic filters, locations, Sparkplug topics):
//! they never panic, and a topic that parses prints back to a string that parses to the same.
#![no_main]

use std::str::FromStr;

use libfuzzer_sys::fuzz_target;
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
});
