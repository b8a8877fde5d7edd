//! A hung webhook under a burst of pushes: with `webhook_concurrency = N`, at most N
//! connections to it are ever open, and every push beyond N gets the default reply at once
//! instead of waiting, counted in `wxmp_webhook_saturated_total`.

#[path = "callback_util/mod.rs"]
mod util;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use util::*;
use wxmp::config::{AutoReply, Mode};
use wxmp::store::Store;

/// A webhook that accepts connections, reads whatever comes and never answers; it tracks
/// how many connections are open now and at most.
struct HungHook {
    url: url::Url,
    open: Arc<AtomicUsize>,
    most: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for HungHook {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn hung_hook() -> HungHook {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let open = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let (o, m) = (open.clone(), most.clone());
    let task = tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let now = o.fetch_add(1, Ordering::SeqCst) + 1;
            m.fetch_max(now, Ordering::SeqCst);
            let o = o.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                // Until the client gives up and closes.
                while matches!(socket.read(&mut buf).await, Ok(n) if n > 0) {}
                o.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    HungHook {
        url: url::Url::parse(&format!("http://{addr}/hook")).unwrap(),
        open,
        most,
        task,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_webhook_holds_at_most_n_connections_and_the_rest_fall_through_at_once() {
    const N: usize = 3;
    const PUSHES: usize = 20;
    let hook = hung_hook().await;
    let mut busy = app("busy", Mode::Plain);
    busy.forward = Some(hook.url.clone());
    busy.webhook_concurrency = N;
    busy.reply_deadline_ms = 2000;
    busy.auto_reply = AutoReply {
        default: Some("we are busy".to_owned()),
        ..AutoReply::default()
    };
    let running = start(config(NO_UPSTREAM, vec![busy]), Store::memory()).await;
    let w = Wechat::new(&running, "busy");

    let pushes: Vec<_> = (0..PUSHES)
        .map(|_| {
            let w = w.clone();
            tokio::spawn(async move { w.push_plain(&text_msg("hello", msg_id())).await })
        })
        .collect();
    let mut defaults = 0;
    let mut successes = 0;
    for push in pushes {
        let answer = push.await.unwrap();
        assert_eq!(answer.status, 200, "{}", answer.body);
        if answer.body == "success" {
            // One of the N holding a slot: the webhook never answered by the deadline.
            successes += 1;
        } else {
            // Beyond N: the default reply, passively, without waiting for the webhook (a push
            // that waited would have reached the deadline and answered `success`).
            assert_eq!(text_of(&answer.body), "we are busy");
            defaults += 1;
        }
    }
    assert_eq!((successes, defaults), (N, PUSHES - N));
    assert!(
        eventually(Duration::from_secs(10), || hook.open.load(Ordering::SeqCst)
            == N)
        .await,
        "open connections: {}",
        hook.open.load(Ordering::SeqCst)
    );
    assert_eq!(hook.most.load(Ordering::SeqCst), N, "never more than N");

    // More pushes while the webhook still hangs: still no new connection.
    for _ in 0..5 {
        let answer = w.push_plain(&text_msg("again", msg_id())).await;
        assert_eq!(text_of(&answer.body), "we are busy");
    }
    assert_eq!(hook.most.load(Ordering::SeqCst), N);
    let metrics = running.metrics().await;
    let line = format!(
        "wxmp_webhook_saturated_total{{app=\"busy\"}} {}",
        PUSHES - N + 5
    );
    assert!(metrics.contains(&line), "{line} in\n{metrics}");
}
