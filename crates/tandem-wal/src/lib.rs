//! Tandem's write-ahead log: a durable, checksummed, append-only log of opaque
//! byte records with group commit.
//!
//! The L2 gateway acknowledges a client step only once the step is durable
//! here. The WAL does not interpret payloads (the gateway encodes its own
//! records with borsh); it only promises that an acknowledged record survives a
//! crash and comes back, in order and byte-identical, from [`Wal::open`].
//!
//! # File and framing
//!
//! The log is the single file `dir/wal.log`. It is a plain concatenation of
//! records, each framed as (all integers little-endian):
//!
//! ```text
//! offset  size  field
//! 0       4     magic        u32 = RECORD_MAGIC (0x4C41_5754, the bytes "TWAL")
//! 4       4     payload_len  u32
//! 8       8     seq          u64: 1 for the first record of the file, +1 per record
//! 16      4     crc          u32: CRC-32C over bytes 4..20+payload_len,
//!                            i.e. payload_len, seq, payload (crc field excluded)
//! 20      n     payload      payload_len bytes
//! ```
//!
//! The sequence number makes every record position-aware: a stale or
//! misplaced record (same bytes, wrong place) fails the `previous + 1` check
//! even though its checksum is fine. After [`Wal::rewrite`] the file is a new
//! file and its sequence restarts at 1.
//!
//! # Durability and group commit
//!
//! All writes happen on one dedicated writer thread. Appenders put a request
//! on a bounded queue and wait on a oneshot channel. The writer takes
//! everything queued, encodes it into one buffer, writes it with one write
//! call, calls `fdatasync` once ([`std::fs::File::sync_data`]), and only then
//! completes every waiter of that group. Under load, many appends therefore
//! share one fsync, which is what makes per-step durability affordable.
//!
//! # Backpressure and reservations
//!
//! At most [`WalConfig::queue_max`] requests wait for the writer; past that a
//! request is refused at once with [`WalError::Backpressure`] and nothing is
//! queued, so a caller can shed load instead of waiting without bound.
//!
//! A caller that must not make a decision it cannot log (the gateway: its
//! memory must never be ahead of the log) takes a place in the queue first,
//! with [`Wal::reserve`], then decides, then queues the decision's records
//! with [`Reservation::enqueue`], which is never refused for backpressure: the
//! place is already its own. If it decides nothing, dropping the
//! [`Reservation`] gives the place back. So the only way a decided record
//! fails to be queued is a failure of the log itself (poisoned or closed).
//!
//! If a write or an fsync fails, the file is in an unknown state (the kernel
//! may have dropped dirty pages and cleared the error), so the writer fails
//! every waiter of that group and then refuses every later request with
//! [`WalError::Poisoned`]: the gateway is expected to stop and recover by
//! reopening.
//!
//! # Recovery
//!
//! [`Wal::open`] reads the records from the start and stops at the first one
//! that is incomplete, has a wrong magic, a wrong checksum, or a sequence
//! number other than `previous + 1`. Then it scans every byte after that spot
//! for a record that is valid on its own (magic, complete header and payload,
//! matching checksum) and has a sequence number above the last good one:
//!
//! - none found: the bad bytes are a **torn tail** left by a crash during a
//!   write that was never acknowledged. The file is truncated there, the
//!   truncation is fsynced, and the intact records are returned along with the
//!   number of bytes dropped ([`Recovered::torn_tail_bytes`]).
//! - one found: the damage is in the **middle** of the log, so acknowledged
//!   records would be lost by truncating. Open fails with
//!   [`WalError::Corrupt`] and the file is left untouched for an operator.
//!
//! A crash can only tear the last group written, and every record of a group
//! that was acknowledged was fsynced before any later group was written, so a
//! torn tail never contains an acknowledged record.
//!
//! Caveat: the kernel may persist the pages of one un-synced group write out
//! of order, so a crash can in principle leave a later record of the last
//! group intact behind a torn earlier one. Recovery then reports `Corrupt`
//! (safe, but needs an operator) even though no acknowledged record was lost.
//!
//! Recovery reads the whole file into memory; the gateway is expected to keep
//! the log short by compacting it with [`Wal::rewrite`].

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
#[cfg(test)]
use std::sync::atomic::AtomicBool;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

mod recovery;

/// Magic number at the start of every record: the ASCII bytes `TWAL` read as
/// a little-endian u32. It lets recovery find record boundaries when scanning
/// past damage.
pub const RECORD_MAGIC: u32 = 0x4C41_5754;
/// Size of the fixed record header: magic, payload_len, seq, crc.
pub const HEADER_LEN: usize = 4 + 4 + 8 + 4;
/// Default for [`WalConfig::record_bytes_max`]: 1 MiB.
pub const DEFAULT_RECORD_BYTES_MAX: usize = 1 << 20;
/// Default for [`WalConfig::queue_max`].
pub const DEFAULT_QUEUE_MAX: usize = 4096;

const LOG_FILE: &str = "wal.log";
const TMP_FILE: &str = "wal.log.tmp";

/// Metrics hook called by the writer thread after each group fsync with the
/// fsync's duration and the number of records in the group.
pub type FsyncHook = Arc<dyn Fn(Duration, usize) + Send + Sync>;

/// Errors of the write-ahead log.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    /// An operating-system error (open, read, write, fsync, rename).
    #[error("write-ahead log I/O error: {0}")]
    Io(#[from] io::Error),
    /// Recovery found damage followed by intact records: truncating would lose
    /// acknowledged records, so the log was left untouched.
    #[error("write-ahead log corrupt at byte {offset}: {reason}")]
    Corrupt { offset: u64, reason: String },
    /// A payload is larger than [`WalConfig::record_bytes_max`]; nothing was
    /// written.
    #[error("record of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge { len: usize, max: usize },
    /// The queue of pending requests is full ([`WalConfig::queue_max`]);
    /// nothing was queued. The caller should shed load rather than wait.
    #[error("write-ahead log queue is full")]
    Backpressure,
    /// The writer thread is gone.
    #[error("write-ahead log is closed")]
    Closed,
    /// An earlier write or fsync failed; the file's state is unknown, so the
    /// log refuses every further write. Reopen to recover.
    #[error("write-ahead log refuses writes after an earlier failure: {0}")]
    Poisoned(String),
}

/// Configuration of [`Wal::open`].
#[derive(Clone)]
pub struct WalConfig {
    /// Largest accepted payload in bytes; larger ones are refused with
    /// [`WalError::TooLarge`]. Capped at `u32::MAX` by the framing.
    pub record_bytes_max: usize,
    /// Capacity of the queue of pending requests (an `append_many` or a
    /// `rewrite` is one request; a held [`Reservation`] counts as one). When
    /// full, requests fail at once with [`WalError::Backpressure`]. A value
    /// of 0 is treated as 1.
    pub queue_max: usize,
    /// Optional metrics hook, see [`FsyncHook`]. It runs on the writer thread
    /// after the group's waiters were completed, so it does not delay
    /// acknowledgements, but a slow hook delays the next group.
    pub on_fsync: Option<FsyncHook>,
    /// Fault injection for crash tests: abort the process at this point of
    /// every [`Wal::rewrite`]. `None` (the default) in every real use.
    pub crash_in_rewrite: Option<RewriteCrash>,
}

impl Default for WalConfig {
    fn default() -> Self {
        WalConfig { record_bytes_max: DEFAULT_RECORD_BYTES_MAX, queue_max: DEFAULT_QUEUE_MAX, on_fsync: None, crash_in_rewrite: None }
    }
}

/// A point inside [`Wal::rewrite`] where a crash test can abort the process
/// (see [`WalConfig::crash_in_rewrite`]), in the order the rewrite reaches
/// them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RewriteCrash {
    /// The temporary file is written, not yet fsynced.
    AfterTmpWrite,
    /// The temporary file is fsynced, not yet renamed.
    AfterTmpSync,
    /// Renamed over `wal.log`, the directory not yet fsynced.
    AfterRename,
    /// The directory is fsynced: the rewrite is complete but unacknowledged.
    AfterDirSync,
}

impl RewriteCrash {
    /// Every point, in order.
    pub const ALL: [RewriteCrash; 4] =
        [RewriteCrash::AfterTmpWrite, RewriteCrash::AfterTmpSync, RewriteCrash::AfterRename, RewriteCrash::AfterDirSync];

    /// `after-tmp-write`, `after-tmp-sync`, `after-rename`, `after-dir-sync`.
    pub fn name(self) -> &'static str {
        match self {
            RewriteCrash::AfterTmpWrite => "after-tmp-write",
            RewriteCrash::AfterTmpSync => "after-tmp-sync",
            RewriteCrash::AfterRename => "after-rename",
            RewriteCrash::AfterDirSync => "after-dir-sync",
        }
    }

    /// The point named `name` (see [`RewriteCrash::name`]).
    pub fn parse(name: &str) -> Option<RewriteCrash> {
        RewriteCrash::ALL.into_iter().find(|c| c.name() == name)
    }
}

impl fmt::Debug for WalConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WalConfig")
            .field("record_bytes_max", &self.record_bytes_max)
            .field("queue_max", &self.queue_max)
            .field("on_fsync", &self.on_fsync.as_ref().map(|_| "<hook>"))
            .field("crash_in_rewrite", &self.crash_in_rewrite)
            .finish()
    }
}

/// What [`Wal::open`] found in the log.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Recovered {
    /// Every intact record, in order.
    pub records: Vec<Vec<u8>>,
    /// Bytes of torn tail that were truncated away (0 if none).
    pub torn_tail_bytes: u64,
    /// The file length after truncating a torn tail; `None` if nothing was
    /// truncated.
    pub truncated_at: Option<u64>,
}

/// Counters of a running log (since [`Wal::open`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WalStats {
    /// Records written by `append`/`append_many` and fsynced.
    pub records_appended: u64,
    /// Framed bytes (headers included) written by appends.
    pub bytes: u64,
    /// Group-commit fsyncs of appended data.
    pub fsyncs: u64,
    /// Duration of the most recent group fsync, in microseconds.
    pub last_fsync_micros: u64,
    /// Current length of `wal.log` in bytes.
    pub file_len: u64,
    /// Completed rewrites (compactions).
    pub rewrites: u64,
}

/// Handle to an open write-ahead log. Cheap to clone; all clones share one
/// writer thread, which stops (after finishing every queued request) when the
/// last handle is dropped.
#[derive(Clone)]
pub struct Wal {
    inner: Arc<Inner>,
}

impl fmt::Debug for Wal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Wal").field("dir", &self.inner.dir).field("stats", &self.stats()).finish()
    }
}

struct Inner {
    dir: PathBuf,
    record_bytes_max: usize,
    queue_max: usize,
    // Both are `Option` only so that `Drop` can close the queue before joining.
    tx: Option<Sender<Request>>,
    thread: Option<JoinHandle<()>>,
    shared: Arc<Shared>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Closing the queue lets the writer drain what is still queued and
        // then exit; joining makes "the last handle is gone" mean "the writer
        // has finished", so a reopen in the same process never races it.
        drop(self.tx.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// State shared between the handles and the writer thread.
#[derive(Default)]
struct Shared {
    /// Why the log refuses writes, set once by the writer on the first
    /// failed write or fsync.
    poisoned: OnceLock<String>,
    records_appended: AtomicU64,
    bytes: AtomicU64,
    fsyncs: AtomicU64,
    last_fsync_micros: AtomicU64,
    file_len: AtomicU64,
    rewrites: AtomicU64,
    /// Places taken in the queue: requests not yet taken by the writer plus
    /// unused reservations. At most `queue_max`.
    queued: AtomicUsize,
    /// Fault injection for the unit tests: the next group sync fails.
    #[cfg(test)]
    fail_next_sync: AtomicBool,
}

type Reply = oneshot::Sender<Result<(), WalError>>;

enum Op {
    Append(Vec<Vec<u8>>),
    Rewrite(Vec<Vec<u8>>),
}

struct Request {
    op: Op,
    reply: Reply,
}

impl Wal {
    /// Opens (creating `dir` and the file if missing) the log in `dir/wal.log`,
    /// recovers every intact record in order, truncates a torn tail (and
    /// fsyncs the truncation), and starts the writer thread.
    ///
    /// Fails with [`WalError::Corrupt`], without modifying anything, if the
    /// log is damaged anywhere but at its tail.
    pub fn open(dir: &Path, config: WalConfig) -> Result<(Wal, Recovered), WalError> {
        let record_bytes_max = config.record_bytes_max.min(u32::MAX as usize);
        fs::create_dir_all(dir)?;
        // A leftover temporary file is an interrupted rewrite that never got
        // renamed: `wal.log` is still the authoritative log.
        match fs::remove_file(dir.join(TMP_FILE)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }

        let path = dir.join(LOG_FILE);
        let existed = path.exists();
        let mut file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path)?;
        if !existed {
            // Make the new directory entry itself durable.
            sync_dir(dir)?;
        }

        let data = read_all(&mut file)?;
        let decoded = recovery::recover(&data)?;
        let file_len = data.len() as u64;
        drop(data);

        let good_len = decoded.good_len as u64;
        let torn_tail_bytes = file_len - good_len;
        let truncated_at = if torn_tail_bytes > 0 {
            file.set_len(good_len)?;
            // The shorter length is metadata: sync_all, not just sync_data.
            file.sync_all()?;
            Some(good_len)
        } else {
            None
        };
        file.seek(SeekFrom::Start(good_len))?;

        let shared = Arc::new(Shared::default());
        shared.file_len.store(good_len, Ordering::Relaxed);

        // Unbounded: `Shared::queued` bounds it, so that a place can be
        // reserved before the request exists.
        let (tx, rx) = mpsc::channel();
        let writer = Writer {
            dir: dir.to_path_buf(),
            file,
            file_len: good_len,
            next_seq: decoded.last_seq + 1,
            shared: Arc::clone(&shared),
            on_fsync: config.on_fsync,
            crash_in_rewrite: config.crash_in_rewrite,
            poisoned: None,
            buf: Vec::new(),
        };
        let thread = std::thread::Builder::new().name("tandem-wal-writer".into()).spawn(move || writer.run(rx))?;

        let wal = Wal {
            inner: Arc::new(Inner {
                dir: dir.to_path_buf(),
                record_bytes_max,
                queue_max: config.queue_max.max(1),
                tx: Some(tx),
                thread: Some(thread),
                shared,
            }),
        };
        let recovered = Recovered { records: decoded.records, torn_tail_bytes, truncated_at };
        Ok((wal, recovered))
    }

    /// Appends one record. Resolves only after the record is written and
    /// fsynced. Dropping the future does not cancel the write.
    pub async fn append(&self, payload: Vec<u8>) -> Result<(), WalError> {
        self.append_many(vec![payload]).await
    }

    /// Appends several records, consecutively and in one group; all of them
    /// are durable when this resolves. An empty list is a barrier: it resolves
    /// once every request queued before it has been completed.
    pub async fn append_many(&self, payloads: Vec<Vec<u8>>) -> Result<(), WalError> {
        // Submit before the first await point so the request is queued (or
        // refused) as soon as the future is first polled.
        let rx = self.submit(Op::Append(payloads))?;
        rx.await.map_err(|_| WalError::Closed)?
    }

    /// Compaction: atomically replaces the whole log with exactly `payloads`
    /// (write `wal.log.tmp`, fsync it, rename it over `wal.log`, fsync the
    /// directory). Requests queued before it are applied first; appends queued
    /// after it land after the new records. Sequence numbers restart at 1.
    pub async fn rewrite(&self, payloads: Vec<Vec<u8>>) -> Result<(), WalError> {
        let rx = self.submit(Op::Rewrite(payloads))?;
        rx.await.map_err(|_| WalError::Closed)?
    }

    /// Queues records at once, in call order, and returns a future that
    /// resolves when they are durable. For callers that must fix the order
    /// of records while holding a lock, and wait for the fsync after
    /// releasing it.
    pub fn enqueue(&self, payloads: Vec<Vec<u8>>) -> Result<Durable, WalError> {
        Ok(Durable(self.submit(Op::Append(payloads))?))
    }

    /// [`Wal::rewrite`], queued at once (see [`Wal::enqueue`]).
    pub fn enqueue_rewrite(&self, payloads: Vec<Vec<u8>>) -> Result<Durable, WalError> {
        Ok(Durable(self.submit(Op::Rewrite(payloads))?))
    }

    /// Takes one place in the queue for a request to come, or fails at once
    /// with [`WalError::Backpressure`] when the queue is full (or with the
    /// log's failure, if it failed). See the crate docs: reserve, decide,
    /// then [`Reservation::enqueue`].
    pub fn reserve(&self) -> Result<Reservation, WalError> {
        if let Some(reason) = self.inner.shared.poisoned.get() {
            return Err(WalError::Poisoned(reason.clone()));
        }
        self.acquire()?;
        Ok(Reservation { wal: self.clone(), placed: true })
    }

    /// Takes a place in the queue if there is one.
    fn acquire(&self) -> Result<(), WalError> {
        let max = self.inner.queue_max;
        self.inner
            .shared
            .queued
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |q| (q < max).then_some(q + 1))
            .map(|_| ())
            .map_err(|_| WalError::Backpressure)
    }

    /// Current counters.
    pub fn stats(&self) -> WalStats {
        let s = &self.inner.shared;
        WalStats {
            records_appended: s.records_appended.load(Ordering::Relaxed),
            bytes: s.bytes.load(Ordering::Relaxed),
            fsyncs: s.fsyncs.load(Ordering::Relaxed),
            last_fsync_micros: s.last_fsync_micros.load(Ordering::Relaxed),
            file_len: s.file_len.load(Ordering::Relaxed),
            rewrites: s.rewrites.load(Ordering::Relaxed),
        }
    }

    /// Directory holding the log.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    fn submit(&self, op: Op) -> Result<oneshot::Receiver<Result<(), WalError>>, WalError> {
        self.check(&op)?;
        self.acquire()?;
        self.send(op)
    }

    /// Refuses a request that can never be written: a record over the size
    /// limit, or any request once the log failed.
    fn check(&self, op: &Op) -> Result<(), WalError> {
        let payloads = match op {
            Op::Append(p) | Op::Rewrite(p) => p,
        };
        let max = self.inner.record_bytes_max;
        if let Some(p) = payloads.iter().find(|p| p.len() > max) {
            return Err(WalError::TooLarge { len: p.len(), max });
        }
        // Fail fast; the writer also checks, for requests queued before the
        // failure.
        if let Some(reason) = self.inner.shared.poisoned.get() {
            return Err(WalError::Poisoned(reason.clone()));
        }
        Ok(())
    }

    /// Queues a request into a place already taken; the writer gives the
    /// place back when it takes the request.
    fn send(&self, op: Op) -> Result<oneshot::Receiver<Result<(), WalError>>, WalError> {
        let (reply, rx) = oneshot::channel();
        let sent =
            self.inner.tx.as_ref().ok_or(WalError::Closed).and_then(|tx| tx.send(Request { op, reply }).map_err(|_| WalError::Closed));
        if sent.is_err() {
            self.inner.shared.queued.fetch_sub(1, Ordering::SeqCst);
        }
        sent.map(|()| rx)
    }
}

/// A place in the log's queue, taken by [`Wal::reserve`]. Queuing through it
/// is never refused for backpressure; dropping it unused gives the place back.
#[must_use = "a reservation holds a place in the queue until it is used or dropped"]
pub struct Reservation {
    wal: Wal,
    /// Whether the place is still this reservation's (not yet handed to a
    /// request).
    placed: bool,
}

impl Reservation {
    /// [`Wal::enqueue`] into the reserved place. Fails only if the log
    /// cannot write at all (a record over the size limit, a poisoned or
    /// closed log), never with [`WalError::Backpressure`].
    pub fn enqueue(self, payloads: Vec<Vec<u8>>) -> Result<Durable, WalError> {
        self.send(Op::Append(payloads))
    }

    /// [`Wal::enqueue_rewrite`] into the reserved place.
    pub fn enqueue_rewrite(self, payloads: Vec<Vec<u8>>) -> Result<Durable, WalError> {
        self.send(Op::Rewrite(payloads))
    }

    fn send(mut self, op: Op) -> Result<Durable, WalError> {
        // On a refusal the place goes back when `self` drops.
        self.wal.check(&op)?;
        self.placed = false;
        Ok(Durable(self.wal.send(op)?))
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.placed {
            self.wal.inner.shared.queued.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

impl fmt::Debug for Reservation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reservation").field("placed", &self.placed).finish()
    }
}

/// The writer thread's state. Only this thread touches the file after open.
struct Writer {
    dir: PathBuf,
    file: File,
    file_len: u64,
    next_seq: u64,
    shared: Arc<Shared>,
    on_fsync: Option<FsyncHook>,
    crash_in_rewrite: Option<RewriteCrash>,
    /// Set after a failed write or fsync; every later request fails.
    poisoned: Option<String>,
    /// Reused encoding buffer of the current group.
    buf: Vec<u8>,
}

/// One group being assembled: waiters to complete and records encoded into
/// `Writer::buf`.
#[derive(Default)]
struct Group {
    waiters: Vec<Reply>,
    records: usize,
}

impl Writer {
    fn run(mut self, rx: Receiver<Request>) {
        // `recv` keeps returning queued requests after every sender is gone,
        // so pending appends complete before the thread exits.
        while let Ok(first) = rx.recv() {
            self.shared.queued.fetch_sub(1, Ordering::SeqCst);
            let mut group = Group::default();
            self.buf.clear();
            let mut next = Some(first);
            while let Some(req) = next.take() {
                match req.op {
                    Op::Append(payloads) => {
                        if let Some(reason) = &self.poisoned {
                            let _ = req.reply.send(Err(WalError::Poisoned(reason.clone())));
                        } else {
                            for p in &payloads {
                                encode_record(&mut self.buf, self.next_seq, p);
                                self.next_seq += 1;
                            }
                            group.records += payloads.len();
                            group.waiters.push(req.reply);
                        }
                    }
                    Op::Rewrite(payloads) => {
                        // Everything queued before the rewrite must be in the
                        // old file (and acknowledged) before it is replaced.
                        self.commit(std::mem::take(&mut group));
                        let result = match &self.poisoned {
                            Some(reason) => Err(WalError::Poisoned(reason.clone())),
                            None => self.rewrite(&payloads),
                        };
                        let _ = req.reply.send(result);
                    }
                }
                // Empty or disconnected both end this group; a disconnected
                // queue then ends the loop at the next `recv`.
                next = rx.try_recv().ok();
                if next.is_some() {
                    self.shared.queued.fetch_sub(1, Ordering::SeqCst);
                }
            }
            self.commit(group);
        }
    }

    /// Writes `self.buf` with one write call, fsyncs once, then completes the
    /// group's waiters.
    fn commit(&mut self, group: Group) {
        if group.waiters.is_empty() {
            return;
        }
        if self.buf.is_empty() {
            // Only empty `append_many` barriers: nothing to make durable, and
            // everything before them was already acknowledged.
            for w in group.waiters {
                let _ = w.send(Ok(()));
            }
            return;
        }
        let started = Instant::now();
        let result = self.file.write_all(&self.buf).and_then(|()| self.sync_data());
        let elapsed = started.elapsed();
        let len = self.buf.len() as u64;
        self.buf.clear();
        match result {
            Ok(()) => {
                self.file_len += len;
                let s = &self.shared;
                s.records_appended.fetch_add(group.records as u64, Ordering::Relaxed);
                s.bytes.fetch_add(len, Ordering::Relaxed);
                s.fsyncs.fetch_add(1, Ordering::Relaxed);
                s.last_fsync_micros.store(u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX), Ordering::Relaxed);
                s.file_len.store(self.file_len, Ordering::Relaxed);
                for w in group.waiters {
                    let _ = w.send(Ok(()));
                }
                if let Some(hook) = &self.on_fsync {
                    hook(elapsed, group.records);
                }
            }
            Err(e) => {
                // After a failed write or fsync the kernel may have dropped
                // the dirty pages and cleared the error: retrying could report
                // success for data that is gone. Fail the group, refuse
                // everything after it.
                self.poison(format!("group commit failed: {e}"));
                for w in group.waiters {
                    let _ = w.send(Err(WalError::Io(io::Error::new(e.kind(), e.to_string()))));
                }
            }
        }
    }

    fn sync_data(&self) -> io::Result<()> {
        #[cfg(test)]
        if self.shared.fail_next_sync.swap(false, Ordering::SeqCst) {
            return Err(io::Error::other("injected fsync failure"));
        }
        self.file.sync_data()
    }

    fn poison(&mut self, reason: String) {
        let _ = self.shared.poisoned.set(reason.clone());
        self.poisoned = Some(reason);
    }

    fn rewrite(&mut self, payloads: &[Vec<u8>]) -> Result<(), WalError> {
        let tmp_path = self.dir.join(TMP_FILE);
        let mut buf = Vec::with_capacity(payloads.iter().map(|p| HEADER_LEN + p.len()).sum::<usize>());
        for (i, p) in payloads.iter().enumerate() {
            encode_record(&mut buf, i as u64 + 1, p);
        }
        // Until the rename, the old log is untouched and still open, so a
        // failure here only fails this rewrite.
        let tmp = (|| -> io::Result<File> {
            let mut tmp = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&tmp_path)?;
            tmp.write_all(&buf)?;
            self.crash_point(RewriteCrash::AfterTmpWrite);
            tmp.sync_all()?;
            self.crash_point(RewriteCrash::AfterTmpSync);
            Ok(tmp)
        })();
        let tmp = match tmp {
            Ok(tmp) => tmp,
            Err(e) => {
                let _ = fs::remove_file(&tmp_path);
                return Err(e.into());
            }
        };
        // From the rename on, which file a crash would leave is only settled
        // by the directory fsync; if either fails the state is unknown.
        let renamed = fs::rename(&tmp_path, self.dir.join(LOG_FILE)).and_then(|()| {
            self.crash_point(RewriteCrash::AfterRename);
            sync_dir(&self.dir)
        });
        if let Err(e) = renamed {
            self.poison(format!("rewrite failed after writing the new log: {e}"));
            return Err(e.into());
        }
        // The temporary file's handle now is `wal.log`, positioned at its end.
        self.file = tmp;
        self.file_len = buf.len() as u64;
        self.next_seq = payloads.len() as u64 + 1;
        self.shared.file_len.store(self.file_len, Ordering::Relaxed);
        self.shared.rewrites.fetch_add(1, Ordering::Relaxed);
        self.crash_point(RewriteCrash::AfterDirSync);
        Ok(())
    }

    /// Aborts the process here if a crash test asked for it.
    fn crash_point(&self, point: RewriteCrash) {
        if self.crash_in_rewrite == Some(point) {
            eprintln!("write-ahead log crash point {} reached; aborting", point.name());
            std::process::abort();
        }
    }
}

/// Appends one framed record to `out` (see the crate doc for the layout).
/// The caller guarantees `payload.len() <= u32::MAX`.
fn encode_record(out: &mut Vec<u8>, seq: u64, payload: &[u8]) {
    let start = out.len();
    out.extend_from_slice(&RECORD_MAGIC.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(payload);
    let crc = record_crc(&out[start + 4..start + 16], payload);
    out[start + 16..start + 20].copy_from_slice(&crc.to_le_bytes());
}

/// CRC-32C over `payload_len | seq` (the 12 header bytes after the magic)
/// followed by the payload.
fn record_crc(len_and_seq: &[u8], payload: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(len_and_seq), payload)
}

/// Encodes `payloads` as a complete log file with sequence numbers 1, 2, ...
/// (exactly what [`Wal::rewrite`] writes). Useful for tests and tools.
pub fn encode_log(payloads: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, p) in payloads.iter().enumerate() {
        encode_record(&mut out, i as u64 + 1, p);
    }
    out
}

fn read_all(file: &mut File) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let mut data = Vec::new();
    file.seek(SeekFrom::Start(0))?;
    file.read_to_end(&mut data)?;
    Ok(data)
}

/// Fsyncs a directory so that entries created or renamed in it are durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests;

/// Resolves when queued records are durable (see [`Wal::enqueue`]).
pub struct Durable(oneshot::Receiver<Result<(), WalError>>);

impl std::future::Future for Durable {
    type Output = Result<(), WalError>;

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0).poll(cx).map(|r| r.map_err(|_| WalError::Closed).and_then(|r| r))
    }
}
