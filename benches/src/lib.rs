//! Criterion benches live in `benches/`. This library only sets the global allocator every bench
//! binary links (each bench has `use switchyard_benches as _;`): mimalloc, the one the shipped
//! `switchyard` server uses (see `net/src/main.rs`), so embedded figures match a deployment.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
