//! The startup ping against a real Synapse. A homeserver that cannot reach the bridge for its
//! first pings (here the registration's address forwards to the bridge only a moment after the
//! start, as when a restarted bridge meets a homeserver still holding the old process's
//! connection) does not stop the start; one that never can stops it, naming
//! `appservice.address`.

use std::path::Path;
use std::time::Duration;

use mimi_bridge::config::Config;

use crate::bridge_synapse::{BridgeDir, config_yaml};
use crate::synapse::Synapse;

/// The bridge's config with the registration's address at `gate` (not where the bridge listens),
/// and the registration Synapse loads.
fn gated(bridge: &BridgeDir, hs_port: u16, gate: u16) -> Config {
    let yaml = config_yaml(bridge.dir.path(), hs_port, bridge.as_port).replace(
        &format!("address: http://127.0.0.1:{}", bridge.as_port),
        &format!("address: http://127.0.0.1:{gate}"),
    );
    Config::from_yaml(&yaml, Path::new("test.yaml")).unwrap()
}

/// Forwards connections to `gate` on to `to`, starting after `after`.
async fn forward(gate: u16, to: u16, after: Duration) {
    tokio::time::sleep(after).await;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", gate)).await.unwrap();
    loop {
        let Ok((mut inbound, _)) = listener.accept().await else { return };
        tokio::spawn(async move {
            let mut outbound = tokio::net::TcpStream::connect(("127.0.0.1", to)).await.unwrap();
            let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
        });
    }
}

#[test]
fn a_homeserver_that_reaches_the_bridge_only_after_a_moment_does_not_stop_its_start() {
    let bridge = BridgeDir::new();
    let gate = crate::ports::consecutive(1);
    std::fs::write(&bridge.registration, gated(&bridge, 1, gate).registration().to_yaml()).unwrap();
    let synapse = Synapse::start(&[&bridge.registration]);
    let config = gated(&bridge, synapse.port, gate);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();

    // Never reachable: the start fails once the pings are spent, naming the setting.
    let Err(error) = runtime.block_on(mimi_bridge::daemon::start(&config)) else { panic!("the bridge started") };
    let message = error.to_string();
    assert!(message.contains("appservice.address") && message.contains("could not connect"), "{message}");

    // Reachable after 1.5 s: the start goes on.
    runtime.spawn(forward(gate, bridge.as_port, Duration::from_millis(1500)));
    let running = runtime.block_on(mimi_bridge::daemon::start(&config)).unwrap();
    assert!(runtime.block_on(running.stop()));
}
