//! The end-to-end tests: the real `host` binary and runtime against real plugins, an Apache
//! Kafka and redis-server. One test binary with a module per area, so the suite links
//! wasmtime and rdkafka once and the tests of a run share one Kafka (tests/src/kafka.rs).

mod admin_api;
mod broker_faults;
mod cache;
mod chaos;
mod conformance;
mod console;
mod contract_conformance;
mod dlq_replay;
mod docs;
mod errors;
mod event_time;
mod exactly_once;
mod hot_swap;
mod kafka_mirror;
mod kafka_production;
mod lifecycle;
mod loading;
mod memory;
mod new_project;
mod observability;
mod offsets_cmd;
mod pipeline;
mod policies;
mod produce;
mod redis_layout;
mod redis_production;
mod redis_store;
mod redis_topologies;
mod registry;
mod robustness;
mod sandbox;
mod startup;
mod state_query;
mod topic;
mod two_hosts;
mod wordcount;
