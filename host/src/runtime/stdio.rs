//! A plugin's stdout and stderr, turned into the host's log lines.
//!
//! Each complete line becomes a `tracing` event tagged with the plugin and partition. The
//! last lines of stderr are kept so that a trap report can quote the panic message.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use crate::sync::Locked;
use wasmtime_wasi::async_trait;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};
use wasmtime_wasi_io::bytes::Bytes;

const MAX_LINE: usize = 16 * 1024;
const TAIL_LINES: usize = 8;

#[derive(Clone, Copy, Debug)]
pub(crate) enum Stream {
    Stdout,
    Stderr,
}

/// One of a plugin instance's output streams.
#[derive(Clone)]
pub(crate) struct LogStream {
    inner: Arc<Mutex<Lines>>,
}

struct Lines {
    plugin: Arc<str>,
    partition: Option<i32>,
    stream: Stream,
    partial: Vec<u8>,
    tail: VecDeque<String>,
}

impl LogStream {
    pub fn new(plugin: Arc<str>, partition: Option<i32>, stream: Stream) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Lines {
                plugin,
                partition,
                stream,
                partial: Vec::new(),
                tail: VecDeque::new(),
            })),
        }
    }

    /// The last lines written, oldest first, including an unterminated last line.
    pub fn tail(&self) -> Vec<String> {
        let lines = self.inner.locked();
        let mut out: Vec<String> = lines.tail.iter().cloned().collect();
        if !lines.partial.is_empty() {
            out.push(String::from_utf8_lossy(&lines.partial).into_owned());
        }
        out
    }

    /// Forgets the remembered tail (at the start of each call).
    pub fn clear_tail(&self) {
        let mut lines = self.inner.locked();
        lines.tail.clear();
    }

    fn write_bytes(&self, bytes: &[u8]) {
        let mut lines = self.inner.locked();
        for chunk in bytes.split_inclusive(|b| *b == b'\n') {
            lines.partial.extend_from_slice(chunk);
            if chunk.ends_with(b"\n") || lines.partial.len() >= MAX_LINE {
                lines.flush_line();
            }
        }
    }
}

impl Lines {
    fn flush_line(&mut self) {
        let raw = std::mem::take(&mut self.partial);
        let line = String::from_utf8_lossy(&raw);
        let line = line.trim_end_matches(['\n', '\r']);
        if line.trim().is_empty() {
            return;
        }
        let plugin = &*self.plugin;
        let partition = self.partition;
        match self.stream {
            Stream::Stdout => {
                tracing::info!(target: "plugin", plugin, partition, stream = "stdout", "{line}")
            }
            Stream::Stderr => {
                tracing::warn!(target: "plugin", plugin, partition, stream = "stderr", "{line}")
            }
        }
        if self.tail.len() == TAIL_LINES {
            self.tail.pop_front();
        }
        self.tail.push_back(line.to_owned());
    }
}

impl IsTerminal for LogStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LogStream {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[async_trait]
impl OutputStream for LogStream {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.write_bytes(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

#[async_trait]
impl Pollable for LogStream {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for LogStream {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.write_bytes(buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}
