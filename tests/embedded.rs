//! The in-process broker API: start, produce/consume through rdkafka, stop on drop.

mod common;

use std::net::TcpStream;
use std::time::Duration;

use agentlog_broker::EmbeddedBroker;
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message, Timestamp};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_broker_roundtrip_and_port_closed_after_drop() {
    let broker = EmbeddedBroker::start()
        .await
        .expect("start embedded broker");
    let bootstrap = broker.bootstrap();
    assert!(bootstrap.starts_with("127.0.0.1:"), "bootstrap {bootstrap}");

    common::create_topic(&bootstrap, "embedded", 1, &[]).await;
    let producer: FutureProducer = common::producer_config(&bootstrap)
        .set("linger.ms", "5")
        .create()
        .unwrap();
    let t0 = 1_700_000_000_000i64;
    let mut deliveries = Vec::new();
    for i in 0..50i64 {
        let key = format!("key-{i}");
        let value = format!("value-{i}");
        let headers = OwnedHeaders::new().insert(Header {
            key: "n",
            value: Some(&i.to_be_bytes()[..]),
        });
        let record = FutureRecord::to("embedded")
            .partition(0)
            .key(&key)
            .payload(&value)
            .timestamp(t0 + i)
            .headers(headers);
        deliveries.push(producer.send_result(record).expect("enqueue"));
    }
    for (i, delivery) in deliveries.into_iter().enumerate() {
        let delivered = delivery.await.expect("delivery future").expect("delivered");
        assert_eq!(delivered.partition, 0);
        assert_eq!(delivered.offset, i as i64, "delivery offset of record {i}");
    }

    let b = bootstrap.clone();
    let messages = tokio::task::spawn_blocking(move || {
        common::consume_exactly(&b, "embedded", &[(0, 0)], 50, Duration::from_secs(20))
    })
    .await
    .unwrap();
    for (i, m) in messages.iter().enumerate() {
        let i = i as i64;
        assert_eq!(m.offset(), i);
        assert_eq!(m.key(), Some(format!("key-{i}").as_bytes()));
        assert_eq!(m.payload(), Some(format!("value-{i}").as_bytes()));
        assert_eq!(m.timestamp(), Timestamp::CreateTime(t0 + i));
        let headers = m.headers().expect("headers");
        assert_eq!(headers.count(), 1);
        let h = headers.get(0);
        assert_eq!(h.key, "n");
        assert_eq!(h.value, Some(&i.to_be_bytes()[..]));
    }
    let b = bootstrap.clone();
    let marks = tokio::task::spawn_blocking(move || common::watermarks(&b, "embedded", 0))
        .await
        .unwrap();
    assert_eq!(marks, (0, 50));

    drop(producer);
    drop(broker);
    // The listener closes once the server task sees the shutdown signal.
    let address = bootstrap.clone();
    tokio::task::spawn_blocking(move || {
        common::poll_until(Duration::from_secs(10), "the listener to close", || {
            match TcpStream::connect_timeout(&address.parse().unwrap(), Duration::from_millis(200))
            {
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => Some(()),
                _ => None,
            }
        })
    })
    .await
    .unwrap();
}
