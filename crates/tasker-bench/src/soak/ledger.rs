//! The ledger: the HTTP service the soak's `tasker::http` steps call. Each call's query says how
//! long to hold the request and what to answer; the ledger records every call (step, call
//! number, when it began and ended, the status, and whether the response was written in full).
//!
//! It speaks just enough HTTP/1.1 by hand, one request per connection (`connection: close`), so
//! that it can watch the socket while it holds a request: a worker killed mid-call closes its
//! connection, the read sees it at once, and the call is recorded as cut off.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::checks::Call;

/// What a call asks for, from its query string.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Plan {
    /// How long to hold the request.
    pub hold_ms: u64,
    /// The status to answer once the planned failures are spent.
    pub status: u16,
    /// The first `fail` calls of a step answer 500 (retryable).
    pub fail: u32,
    /// The first `slow` calls of a step are held `slow_ms` instead of `hold_ms`.
    pub slow: u32,
    pub slow_ms: u64,
}

impl Plan {
    /// Reads `hold=…&status=…&fail=…&slow=…&slow_ms=…`; unknown keys are an error.
    pub(crate) fn parse(query: &str) -> Result<Self, String> {
        let mut plan = Self {
            status: 200,
            ..Self::default()
        };
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let number = || {
                value
                    .parse::<u64>()
                    .map_err(|_| format!("`{key}` must be a whole number, got `{value}`"))
            };
            match key {
                "hold" => plan.hold_ms = number()?,
                "status" => {
                    plan.status = u16::try_from(number()?).map_err(|_| "status too large")?;
                }
                "fail" => plan.fail = u32::try_from(number()?).map_err(|_| "fail too large")?,
                "slow" => plan.slow = u32::try_from(number()?).map_err(|_| "slow too large")?,
                "slow_ms" => plan.slow_ms = number()?,
                _ => return Err(format!("unknown query key `{key}`")),
            }
        }
        Ok(plan)
    }

    /// The status and hold of the `number`th call of a step (from 1).
    pub(crate) fn answer(&self, number: u32) -> (u16, u64) {
        let status = if number <= self.fail {
            500
        } else {
            self.status
        };
        let hold = if number <= self.slow {
            self.slow_ms
        } else {
            self.hold_ms
        };
        (status, hold)
    }
}

#[derive(Default)]
struct State {
    calls: Vec<Call>,
    per_step: HashMap<String, u32>,
    /// Requests the ledger could not read or understand.
    refused: Vec<String>,
}

/// A running ledger.
#[derive(Clone)]
pub(crate) struct Ledger {
    state: Arc<Mutex<State>>,
    origin: Instant,
    pub port: u16,
}

impl Ledger {
    /// Listens on 127.0.0.1 (a free port) and serves until the runtime stops.
    pub(crate) async fn start(origin: Instant) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the ledger")?;
        let port = listener.local_addr()?.port();
        let ledger = Self {
            state: Arc::default(),
            origin,
            port,
        };
        let serving = ledger.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let ledger = serving.clone();
                tokio::spawn(async move { ledger.serve(stream).await });
            }
        });
        Ok(ledger)
    }

    /// The URL a step calls for `query`.
    pub(crate) fn url(&self, query: &str) -> String {
        format!("http://127.0.0.1:{}/call?{query}", self.port)
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Every call so far, and the requests it refused.
    pub(crate) fn snapshot(&self) -> (Vec<Call>, Vec<String>) {
        let state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        (state.calls.clone(), state.refused.clone())
    }

    fn refuse(&self, why: String) {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        state.refused.push(why);
    }

    async fn serve(&self, mut stream: TcpStream) {
        let begin_ms = self.now_ms();
        let head = match read_head(&mut stream).await {
            Ok(Some(head)) => head,
            // Closed before a whole request arrived: nothing to record.
            Ok(None) => return,
            Err(why) => {
                self.refuse(why);
                return;
            }
        };
        let (plan, step) = match parse_request(&head) {
            Ok(parsed) => parsed,
            Err(why) => {
                self.refuse(why);
                write_response(&mut stream, 400, "{}").await.ok();
                return;
            }
        };
        let number = {
            let mut state = self
                .state
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let n = state.per_step.entry(step.clone()).or_default();
            *n += 1;
            *n
        };
        let (status, hold) = plan.answer(number);
        // Hold the request while watching the connection: a read of 0 bytes (or an error) is the
        // caller going away.
        let mut byte = [0_u8; 1];
        let cut = tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(hold)) => false,
            _ = stream.read(&mut byte) => true,
        };
        let body = format!("{{\"step\":\"{step}\",\"call\":{number}}}");
        let delivered = !cut && write_response(&mut stream, status, &body).await.is_ok();
        let end_ms = self.now_ms();
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        state.calls.push(Call {
            step,
            number,
            begin_ms,
            end_ms,
            status,
            delivered,
        });
    }
}

/// Reads up to the blank line that ends a request's head (the soak's calls are GETs without a
/// body). `None` when the connection closed first.
async fn read_head(stream: &mut TcpStream) -> Result<Option<String>, String> {
    let mut buffer = Vec::with_capacity(1024);
    let mut chunk = [0_u8; 1024];
    loop {
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|e| format!("reading a request: {e}"))?;
        if n == 0 {
            return Ok(None);
        }
        buffer.extend_from_slice(&chunk[..n]);
        if buffer.windows(4).any(|w| w == b"\r\n\r\n") {
            return Ok(Some(String::from_utf8_lossy(&buffer).into_owned()));
        }
        if buffer.len() > 64 * 1024 {
            return Err("a request head over 64 KiB".into());
        }
    }
}

/// The plan and the step id (`idempotency-key`) of a request head.
pub(crate) fn parse_request(head: &str) -> Result<(Plan, String), String> {
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let target = request_line
        .split(' ')
        .nth(1)
        .ok_or_else(|| format!("no request target in `{request_line}`"))?;
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    if path != "/call" {
        return Err(format!("unknown path `{path}`"));
    }
    let plan = Plan::parse(query).map_err(|e| format!("`{target}`: {e}"))?;
    let step = lines
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("idempotency-key"))
        .map(|(_, value)| value.trim().to_owned())
        .ok_or_else(|| format!("`{target}` came without an idempotency-key header"))?;
    Ok((plan, step))
}

async fn write_response(stream: &mut TcpStream, status: u16, body: &str) -> std::io::Result<()> {
    let response = format!(
        "HTTP/1.1 {status} Soak\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.flush().await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_answers_failures_first_then_its_status() {
        let plan = Plan::parse("hold=20&fail=2&slow=1&slow_ms=900").unwrap();
        assert_eq!(plan.answer(1), (500, 900));
        assert_eq!(plan.answer(2), (500, 20));
        assert_eq!(plan.answer(3), (200, 20));
        assert_eq!(Plan::parse("status=422").unwrap().answer(1), (422, 0));
    }

    #[test]
    fn bad_queries_and_requests_are_refused_by_name() {
        assert_eq!(
            Plan::parse("hold=soon").unwrap_err(),
            "`hold` must be a whole number, got `soon`"
        );
        assert_eq!(
            Plan::parse("colour=red").unwrap_err(),
            "unknown query key `colour`"
        );
        assert!(
            parse_request("GET /call?hold=1 HTTP/1.1\r\nhost: x\r\n\r\n")
                .unwrap_err()
                .contains("without an idempotency-key")
        );
        let (plan, step) =
            parse_request("GET /call?hold=5 HTTP/1.1\r\nIdempotency-Key: abc\r\n\r\n").unwrap();
        assert_eq!((plan.hold_ms, step.as_str()), (5, "abc"));
    }

    /// A real client against the real ledger: a call held to the end is delivered; a client that
    /// goes away mid-call leaves a call recorded as cut off.
    #[tokio::test]
    async fn delivered_and_cut_calls_are_told_apart() {
        let ledger = Ledger::start(Instant::now()).await.unwrap();
        let client = reqwest::Client::new();
        let response = client
            .get(ledger.url("hold=10&fail=1"))
            .header("idempotency-key", "step-1")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 500);
        let body = response.text().await.unwrap();
        assert_eq!(body, "{\"step\":\"step-1\",\"call\":1}");
        // Gives up after 50 ms of a 5 s hold: the connection closes under the ledger.
        let cut = client
            .get(ledger.url("hold=5000"))
            .header("idempotency-key", "step-1")
            .timeout(Duration::from_millis(50))
            .send()
            .await;
        assert!(cut.is_err());
        // The ledger records the cut call when it sees the connection close.
        let (calls, refused) = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                let (calls, refused) = ledger.snapshot();
                if calls.len() == 2 {
                    break (calls, refused);
                }
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("the ledger records the cut call");
        assert!(refused.is_empty(), "{refused:?}");
        assert_eq!(
            calls
                .iter()
                .map(|c| (c.number, c.status, c.delivered))
                .collect::<Vec<_>>(),
            [(1, 500, true), (2, 200, false)]
        );
        assert!(calls[1].end_ms - calls[1].begin_ms < 5000, "{calls:?}");
    }
}
