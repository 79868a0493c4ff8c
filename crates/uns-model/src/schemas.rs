//! The JSON Schemas (draft 2020-12) of every payload, compiled into the crate from `schemas/` so the CLI can
//! print them (`uns schemas`) and services can publish them retained under `uns/v1/_schemas/{name}/v{N}`.
//!
//! The files are written by hand; the crate's `schema_drift` test checks each against its Rust type.

/// One schema file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchemaFile {
    /// The schema name, e.g. `work-order` (equal to the type's [`crate::payload::Document::SCHEMA_NAME`]).
    pub name: &'static str,
    /// The schema version.
    pub version: u32,
    /// The schema text (JSON).
    pub json: &'static str,
}

impl SchemaFile {
    /// The schema id used in payloads: `uns/<name>/v<N>`.
    pub fn id(&self) -> String {
        format!("uns/{}/v{}", self.name, self.version)
    }

    /// The file name in `schemas/`: `<name>.v<N>.schema.json`.
    pub fn file_name(&self) -> String {
        format!("{}.v{}.schema.json", self.name, self.version)
    }
}

macro_rules! schema_files {
    ($($name:literal),* $(,)?) => {
        /// Every schema file, one per payload type.
        pub const ALL: &[SchemaFile] = &[
            $(SchemaFile {
                name: $name,
                version: 1,
                json: include_str!(concat!("../../../schemas/", $name, ".v1.schema.json")),
            },)*
        ];
    };
}

schema_files!(
    "tag",
    "meta",
    "state",
    "state-event",
    "count",
    "count-event",
    "production-order",
    "work-order",
    "work-order-event",
    "lot",
    "genealogy-event",
    "oee-result",
    "service-health",
    "error-report",
    "cmd-reply",
);

/// The schema file with this name and version.
pub fn find(name: &str, version: u32) -> Option<&'static SchemaFile> {
    ALL.iter()
        .find(|file| file.name == name && file.version == version)
}
