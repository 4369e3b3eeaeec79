//! What the bench binaries share: the plain rust-libp2p request-response
//! baseline they compare Cairn's protocols with, and percentiles (with
//! the `network` feature).
#![cfg(feature = "network")]

use std::time::{Duration, Instant};

use futures::StreamExt;
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::SwarmEvent;
use libp2p::{noise, tcp, yamux, StreamProtocol, SwarmBuilder};

/// Payload of the baseline's requests and responses, bytes.
pub const PAYLOAD: usize = 1024;
/// Requests in flight in the parallel figures.
pub const IN_FLIGHT: usize = 64;
/// Requests one at a time in the sequential figures.
pub const SEQUENTIAL: usize = 2_000;
/// Rounds of [`IN_FLIGHT`] requests in the parallel figures.
pub const BATCHES: usize = 60;

/// The plain baseline uses the same framing as Cairn's record protocol
/// (`u32 length ‖ bytes`), with 1 KiB requests.
fn echo_codec() -> cairn_net::RecordCodec {
    cairn_net::RecordCodec {
        max_request: 64 * 1024,
        max_response: 64 * 1024,
    }
}

type EchoBehaviour = request_response::Behaviour<cairn_net::RecordCodec>;

fn echo_swarm() -> libp2p::Swarm<EchoBehaviour> {
    SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .expect("transport")
        .with_behaviour(|_| {
            request_response::Behaviour::with_codec(
                echo_codec(),
                [(StreamProtocol::new("/bench/echo/1"), ProtocolSupport::Full)],
                request_response::Config::default().with_max_concurrent_streams(IN_FLIGHT * 2),
            )
        })
        .expect("behaviour")
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build()
}

/// Round trips per second through plain rust-libp2p request-response.
pub async fn baseline_rate() -> (f64, f64) {
    let mut server = echo_swarm();
    server
        .listen_on("/ip4/127.0.0.1/tcp/0".parse().expect("address"))
        .expect("listen");
    let addr = loop {
        if let SwarmEvent::NewListenAddr { address, .. } = server.select_next_some().await {
            break address;
        }
    };
    let server_id = *server.local_peer_id();
    tokio::spawn(async move {
        loop {
            if let SwarmEvent::Behaviour(request_response::Event::Message {
                message: request_response::Message::Request { channel, .. },
                ..
            }) = server.select_next_some().await
            {
                let _ = server
                    .behaviour_mut()
                    .send_response(channel, vec![0x5a; PAYLOAD]);
            }
        }
    });
    let mut client = echo_swarm();
    client
        .dial(addr.with(libp2p::multiaddr::Protocol::P2p(server_id)))
        .expect("dial");
    // `round(n, k)`: n requests, k in flight at most.
    async fn round(
        client: &mut libp2p::Swarm<EchoBehaviour>,
        peer: libp2p::PeerId,
        n: usize,
        k: usize,
    ) -> Duration {
        let t = Instant::now();
        let (mut sent, mut done) = (0, 0);
        while sent < k.min(n) {
            client
                .behaviour_mut()
                .send_request(&peer, vec![0x5a; PAYLOAD]);
            sent += 1;
        }
        while done < n {
            match client.select_next_some().await {
                SwarmEvent::Behaviour(request_response::Event::Message {
                    message: request_response::Message::Response { .. },
                    ..
                }) => {
                    done += 1;
                    if sent < n {
                        client
                            .behaviour_mut()
                            .send_request(&peer, vec![0x5a; PAYLOAD]);
                        sent += 1;
                    }
                }
                SwarmEvent::Behaviour(request_response::Event::OutboundFailure {
                    error, ..
                }) => {
                    panic!("baseline request failed: {error}")
                }
                _ => {}
            }
        }
        t.elapsed()
    }
    round(&mut client, server_id, 50, 1).await;
    let sequential = SEQUENTIAL as f64
        / round(&mut client, server_id, SEQUENTIAL, 1)
            .await
            .as_secs_f64();
    let n = BATCHES * IN_FLIGHT;
    let parallel = n as f64
        / round(&mut client, server_id, n, IN_FLIGHT)
            .await
            .as_secs_f64();
    (sequential, parallel)
}

/// The `p` quantile of sorted durations.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}
