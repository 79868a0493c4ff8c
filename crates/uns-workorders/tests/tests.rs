//! Integration tests of the workorders service against a real broker, real redb and real HTTP.
