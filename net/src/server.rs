//! [`lock_data_dir`] and [`run`]: the server loop. Owns the listener, the connection limit, the
//! hyper connection setup, opening the engine in the background, and shutdown.
//!
//! Start-up: [`lock_data_dir`] takes the data dir's lock before the caller binds its address, so
//! a second server on the same dir is refused before it binds or says it listens → `run` loads
//! the JWT secret and the adapters (a failure stops start-up before the listening line too) →
//! prints `switchyard listening on http://ADDR` (one line, stdout, flushed; tests read the port
//! from it) → starts opening the engine on its own thread (recovery may take a while) → serves at
//! once: `/healthz` answers, `/readyz` says `recovering`, API routes answer 503 until the engine
//! is open. If the engine fails to open, `run` returns the error: the process must not keep
//! serving without an engine.
//!
//! Shutdown, in this order (STYLE 11), when `shutdown` resolves:
//! 1. stop accepting (the listener is dropped) and mark the server draining (`/readyz` 503);
//! 2. drain: hyper finishes in-flight requests and closes idle keep-alive connections at once,
//!    bounded by `server.shutdown_deadline_ms`; connections still busy after it are abandoned;
//! 3. `engine.shutdown()`: sync the WAL, checkpoint, stop the actors;
//! 4. return `Ok(())`, so the process exits 0.
//!
//! Invariants:
//! - A connection permit is taken before `accept`, so open connections never exceed
//!   `limits.max_connections` (mini-redis style); the permit is released when the connection ends.
//! - Every connection is watched by the graceful-shutdown tracker.
//! - No blocking call runs on the async threads: the engine opens on its own thread and shuts
//!   down in `spawn_blocking`.

use std::convert::Infallible;
use std::future::Future;
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use switchyard_engine::store::DirLock;
use switchyard_engine::{Engine, EngineConfig, Error as EngineError, SystemClock};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};

use crate::adapters::Adapters;
use crate::auth::Auth;
use crate::config::{LimitsConfig, ServerConfig};
use crate::ctx::PeerAddr;
use crate::error::Error;
use crate::pipeline::Pipeline;

/// Pause after a failed `accept` (out of file descriptors, say) before trying again.
const ACCEPT_ERROR_BACKOFF_MS: u64 = 100;
/// hyper refuses a read buffer smaller than this.
const HYPER_BUFFER_BYTES_MIN: usize = 8192;

/// The data directory's lock, held from before the address is bound until the engine that
/// [`run`] opens with it is dropped.
#[derive(Debug)]
pub struct DataDirLock(DirLock);

/// Takes the lock of `server.data_dir` (creating the directory if missing). A data dir another
/// process holds is refused here, so `main` takes it before it binds: a second server on the same
/// dir stops before it binds its address or prints that it is listening.
pub fn lock_data_dir(config: &ServerConfig) -> Result<DataDirLock, Error> {
    DirLock::acquire(&config.server.data_dir)
        .map(DataDirLock)
        .map_err(Error::Engine)
}

/// Serves HTTP on `listener` until `shutdown` resolves, then shuts down in order (module docs).
/// `lock` is [`lock_data_dir`]'s for the same config. Returns an error if the engine cannot open
/// or cannot shut down cleanly.
pub async fn run(
    listener: TcpListener,
    config: ServerConfig,
    lock: DataDirLock,
    shutdown: impl Future<Output = ()>,
) -> Result<(), Error> {
    let address = listener
        .local_addr()
        .map_err(|e| Error::io("reading the listening address", e))?;
    let auth = Auth::load(
        config.secrets.jwt_secret.as_deref(),
        &config.server.data_dir,
        config.auth.token_ttl_seconds,
        config.secrets.admin_token.clone(),
    )?
    .with_verified_cache(config.auth.verified_token_cache_entries)
    .with_clock_skew(config.auth.clock_skew_seconds);
    let adapters = Adapters::from_config(&config.social)?;
    announce(address)?;
    let provided = crate::routes::compat_sets();
    for name in config.compat.names() {
        if provided.contains(&name) {
            tracing::info!(compat = name, "compatibility routes mounted");
        } else {
            tracing::warn!(
                compat = name,
                "no domain provides this compatibility set yet; nothing is mounted for it"
            );
        }
    }
    let shutdown_deadline = Duration::from_millis(config.server.shutdown_deadline_ms);
    let connection_limit = Arc::new(Semaphore::new(config.limits.max_connections));
    let builder = connection_builder(&config.limits);
    let mut opening = open_engine(config.engine_config(), lock);
    let pipeline = Pipeline::new(config, auth, adapters);
    let app = pipeline.app.clone();
    let graceful = GracefulShutdown::new();
    tracing::info!(%address, "serving; opening the engine");

    tokio::pin!(shutdown);
    let mut engine_pending = true;
    loop {
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            opened = &mut opening, if engine_pending => {
                engine_pending = false;
                match opened {
                    Ok(Ok(engine)) => {
                        tracing::info!(recovery = ?engine.recovery(), "engine open; ready");
                        app.set_engine(engine);
                    }
                    Ok(Err(error)) => {
                        tracing::error!(%error, "the engine failed to open");
                        return Err(Error::Engine(error));
                    }
                    Err(_) => {
                        tracing::error!("the engine opener thread ended without a result");
                        return Err(Error::Engine(EngineError::Unavailable(
                            "the engine opener thread panicked",
                        )));
                    }
                }
            }
            accepted = accept(&listener, &connection_limit) => match accepted {
                Ok((stream, peer, permit)) => {
                    serve_connection(&pipeline, &builder, &graceful, stream, peer, permit)
                }
                Err(error) => {
                    tracing::warn!(%error, "accept failed; retrying");
                    tokio::time::sleep(Duration::from_millis(ACCEPT_ERROR_BACKOFF_MS)).await;
                }
            },
        }
    }

    // 1. Stop accepting.
    drop(listener);
    app.set_draining();
    tracing::info!(
        connections = graceful.count(),
        deadline_ms = shutdown_deadline.as_millis() as u64,
        "shutting down: draining connections"
    );
    // 2. Drain within the deadline.
    if tokio::time::timeout(shutdown_deadline, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            connections = app.metrics.connections_open(),
            "drain deadline passed; abandoning the remaining connections"
        );
    }
    // 3. Shut the engine down.
    match app.engine().cloned() {
        Some(engine) => {
            tokio::task::spawn_blocking(move || engine.shutdown())
                .await
                .map_err(|_| {
                    Error::Engine(EngineError::Unavailable("engine shutdown panicked"))
                })??;
            tracing::info!("engine shut down; bye");
        }
        None => {
            // Recovery is crash-safe (it is what runs after a SIGKILL), so there is nothing to
            // flush: leave its thread to die with the process instead of waiting for it.
            tracing::info!("shut down during recovery; exiting without waiting for it");
        }
    }
    Ok(())
}

/// Prints the one stdout line tests and scripts read the address from.
fn announce(address: SocketAddr) -> Result<(), Error> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "switchyard listening on http://{address}")
        .and_then(|()| stdout.flush())
        .map_err(|e| Error::io("writing the listening line to stdout", e))
}

/// hyper's per-connection settings, every default that matters set explicitly.
fn connection_builder(limits: &LimitsConfig) -> http1::Builder {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .keep_alive(true)
        .header_read_timeout(Duration::from_millis(limits.header_read_timeout_ms))
        .max_header_size(limits.max_header_bytes)
        .max_buf_size(limits.max_header_bytes.max(HYPER_BUFFER_BYTES_MIN));
    builder
}

/// Opens the engine on its own thread (recovery is blocking and may be long) and reports the
/// outcome on the returned channel. The engine keeps `lock` for as long as it lives.
fn open_engine(
    config: EngineConfig,
    lock: DataDirLock,
) -> oneshot::Receiver<Result<Engine, EngineError>> {
    let (sender, receiver) = oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name("switchyard-open".into())
        .spawn(move || {
            // If the server stopped waiting, the engine is dropped here, which closes it.
            let opened = crate::domains::effect_pools(&config)
                .map_err(|error| EngineError::Unavailable(leak_reason(error)))
                .and_then(|pools| {
                    Engine::open_with_effects(config, lock.0, Arc::new(SystemClock), pools)
                });
            let _ = sender.send(opened);
        });
    if let Err(error) = spawned {
        // The sender was moved into the closure that failed to spawn and is dropped with it, so
        // the receiver reports a closed channel, which `run` turns into an error.
        tracing::error!(%error, "spawning the engine opener thread failed");
    }
    receiver
}

/// An effect pool that cannot start is reported like an engine that cannot open (the reason
/// is logged here, the engine's error variant takes a static text).
fn leak_reason(error: Error) -> &'static str {
    tracing::error!(%error, "the effect pools cannot start");
    "the effect pools cannot start (see the log)"
}

/// Waits for a connection permit, then for a connection. Cancel-safe: dropping it gives nothing
/// away (an unused permit returns to the semaphore; `accept` is cancel-safe).
async fn accept(
    listener: &TcpListener,
    connection_limit: &Arc<Semaphore>,
) -> std::io::Result<(TcpStream, SocketAddr, OwnedSemaphorePermit)> {
    let permit = connection_limit
        .clone()
        .acquire_owned()
        .await
        .map_err(|_| std::io::Error::other("connection semaphore closed"))?;
    let (stream, peer) = listener.accept().await?;
    Ok((stream, peer, permit))
}

fn serve_connection(
    pipeline: &Arc<Pipeline>,
    builder: &http1::Builder,
    graceful: &GracefulShutdown,
    stream: TcpStream,
    peer: SocketAddr,
    permit: OwnedSemaphorePermit,
) {
    // Responses are written whole; Nagle would only delay them behind the client's ACK.
    if let Err(error) = stream.set_nodelay(true) {
        tracing::debug!(%error, "set_nodelay failed");
    }
    let app = &pipeline.app;
    let open = app.metrics.connection_opened();
    if let Some(engine) = app
        .engine()
        .filter(|_| app.config.server.serve_on_actor_threads)
    {
        // Re-register the socket with the shard's own reactor (a tokio socket belongs to the
        // runtime that registered it), then serve it there.
        match stream.into_std() {
            Ok(socket) => {
                let shard = app.next_shard(engine.shards());
                let service_pipeline = pipeline.clone();
                let builder = builder.clone();
                let watcher = graceful.watcher();
                let spawned = engine.spawn_on_shard(shard, async move {
                    let stream = match TcpStream::from_std(socket) {
                        Ok(stream) => stream,
                        Err(error) => {
                            tracing::warn!(%error, "cannot move a connection to its shard");
                            return;
                        }
                    };
                    let service = service_fn(move |mut request: hyper::Request<_>| {
                        request.extensions_mut().insert(PeerAddr(peer));
                        let pipeline = service_pipeline.clone();
                        async move { Ok::<_, Infallible>(pipeline.handle(request).await) }
                    });
                    let connection =
                        watcher.watch(builder.serve_connection(TokioIo::new(stream), service));
                    if let Err(error) = connection.await {
                        tracing::debug!(%error, "connection ended with an error");
                    }
                    drop(open);
                    drop(permit);
                });
                if !spawned {
                    tracing::warn!("an actor shard has stopped; the connection is dropped");
                }
            }
            Err(error) => tracing::warn!(%error, "cannot detach a connection; dropped"),
        }
        return;
    }
    let service_pipeline = pipeline.clone();
    let service = service_fn(move |mut request: hyper::Request<_>| {
        request.extensions_mut().insert(PeerAddr(peer));
        let pipeline = service_pipeline.clone();
        async move { Ok::<_, Infallible>(pipeline.handle(request).await) }
    });
    let connection = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(%error, "connection ended with an error");
        }
        drop(open);
        drop(permit);
    });
}
