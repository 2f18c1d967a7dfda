//! The three constructors have one shape: endpoint(s), then configuration,
//! and a configuration that cannot work is refused by the constructor,
//! before any socket, with the core's `ConfigError` as it is.

use std::time::Duration;

use bytes::Bytes;
use mdp_core::{BrokerConfig, ClientConfig, ConfigError, Dialect, WorkerConfig};
use mdp_zmq_adapter::{AdapterError, BrokerRunner, Client, ClientError, Worker};

/// Not an endpoint libzmq accepts: a constructor that made a socket first
/// would fail with `AdapterError::Zmq` instead of the configuration error.
const BAD_ENDPOINT: &str = "nowhere";

#[test]
fn the_broker_refuses_a_bad_configuration_with_the_cores_error() {
    let mut config = BrokerConfig::default();
    config.heartbeat_interval = Duration::ZERO;
    let refused = BrokerRunner::bind(&[BAD_ENDPOINT], config).err();
    assert!(matches!(refused, Some(AdapterError::Config(ConfigError::Zero("heartbeat_interval")))), "{refused:?}");
}

#[test]
fn the_worker_refuses_a_bad_configuration_with_the_cores_error() {
    let config = WorkerConfig::new(Bytes::new(), Dialect::V02);
    let refused = Worker::connect(BAD_ENDPOINT, config).err();
    assert!(matches!(refused, Some(AdapterError::Config(ConfigError::EmptyService))), "{refused:?}");
}

#[test]
fn the_client_refuses_a_bad_configuration_with_the_cores_error() {
    let config = ClientConfig::new(Dialect::V02).with_lanes(0);
    let refused = Client::connect(BAD_ENDPOINT, config.clone()).err();
    assert!(matches!(refused, Some(ClientError::Config(ConfigError::Zero("lanes")))), "{refused:?}");
    let refused = Client::connect_many(&[BAD_ENDPOINT, BAD_ENDPOINT], config).err();
    assert!(matches!(refused, Some(ClientError::Config(ConfigError::Zero("lanes")))), "{refused:?}");
}

#[test]
fn a_good_configuration_and_a_bad_endpoint_fail_in_libzmq() {
    let broker = BrokerRunner::bind(&[BAD_ENDPOINT], BrokerConfig::default()).err();
    assert!(matches!(broker, Some(AdapterError::Zmq { .. })), "{broker:?}");
    let worker = Worker::connect(BAD_ENDPOINT, WorkerConfig::new(Bytes::from_static(b"echo"), Dialect::V02)).err();
    assert!(matches!(worker, Some(AdapterError::Zmq { .. })), "{worker:?}");
}
