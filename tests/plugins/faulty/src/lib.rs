//! A plugin that misbehaves on request, to test the sandbox and the failure paths.
//!
//! The value of each record says what to do: `loop` spins forever, `alloc` allocates until
//! memory runs out, `trap` executes `unreachable`, `panic` panics, `retry` / `fatal` /
//! `poison` return that error, `log` writes a log line, `sleep` takes 3 s, `flaky` fails the batch twice (after writing state) then succeeds, `flood` emits far more than any cap allows. Any other value
//! counts under the state key `ok`. With config `fail-init=true`, `init` refuses.

use exports::streamhost::plugin::{handler, lifecycle};
use streamhost::plugin::types::{
    Batch, KeyDelta, Level, OutputRecord, PluginError, PoisonRecord, StateOp,
};
use streamhost::plugin::{emit, log, state};

wit_bindgen::generate!({ path: "../../../wit/0.1.0", world: "plugin" });

struct Faulty;

thread_local! {
    /// Batches holding `flaky` fail this many times before they succeed.
    static FLAKY_FAILURES_LEFT: std::cell::Cell<u32> = const { std::cell::Cell::new(2) };
}

impl lifecycle::Guest for Faulty {
    fn init(config: Vec<(String, String)>) -> Result<(), String> {
        if config.iter().any(|(k, v)| k == "fail-init" && v == "true") {
            return Err("refusing to start: fail-init is set".to_owned());
        }
        Ok(())
    }
}

impl handler::Guest for Faulty {
    fn process(batch: Batch) -> Result<(), PluginError> {
        let mut ok = 0;
        let mut flaky = false;
        for (index, record) in batch.records.iter().enumerate() {
            let value = match record.value {
                Some(s) => &batch.data[s.start as usize..(s.start + s.len) as usize],
                None => &[],
            };
            match value {
                b"loop" => {
                    let mut n = 0u64;
                    loop {
                        n = std::hint::black_box(n.wrapping_add(1));
                    }
                }
                b"alloc" => {
                    let mut hoard: Vec<Vec<u8>> = Vec::new();
                    loop {
                        hoard.push(vec![1u8; 1 << 20]);
                        std::hint::black_box(&hoard);
                    }
                }
                b"sleep" => std::thread::sleep(std::time::Duration::from_secs(3)),
                b"flaky" => flaky = true,
                b"log" => log::log(Level::Warn, &format!("note from offset {}", record.offset)),
                b"trap" => core::arch::wasm32::unreachable(),
                b"panic" => panic!("boom at offset {}", record.offset),
                b"retry" => return Err(PluginError::Retryable("try again later".into())),
                b"fatal" => return Err(PluginError::Fatal("cannot go on".into())),
                b"poison" => {
                    return Err(PluginError::Poison(PoisonRecord {
                        index: index as u32,
                        message: "cannot parse this record".into(),
                    }));
                }
                b"flood" => loop {
                    let big = OutputRecord {
                        topic: None,
                        key: None,
                        value: Some(vec![0u8; 1 << 20]),
                        headers: Vec::new(),
                    };
                    emit::send(&[big]);
                },
                _ => ok += 1,
            }
        }
        state::apply(&[StateOp::Incr(KeyDelta {
            key: "ok".into(),
            delta: ok,
        })]);
        // Fail after the state write: the host must drop that write with the attempt.
        if flaky && FLAKY_FAILURES_LEFT.get() > 0 {
            FLAKY_FAILURES_LEFT.set(FLAKY_FAILURES_LEFT.get() - 1);
            return Err(PluginError::Retryable("flaky: failing this attempt".into()));
        }
        Ok(())
    }
}

export!(Faulty);
