//! `ItemStore` on one SQLite file.
//!
//! WAL mode lets readers run beside the single writer. All writes go to one writer thread
//! that owns the write connection and **group-commits**: it takes every write waiting in
//! its queue (up to [`GROUP_MAX`]) into one `BEGIN IMMEDIATE` transaction, runs each, and
//! commits once. A write's caller hears back only after that commit, so an acknowledged
//! write is durable, and the cost of a commit is shared by everything queued behind it.
//! Every write checks all its conditions before it changes a row ([`ItemStore::transact`]
//! is one such write over all its rows), so a failed condition leaves nothing to undo and
//! no write needs a savepoint of its own (which would copy every page it touches). Should
//! a write fail part-way (an I/O error), its whole group is rolled back and every caller
//! in it hears the error. Callers encode attributes before queueing, so the writer only
//! reads, checks and writes rows.
//! WAL checkpoints (and their fsync) run on a separate thread, not inside a commit; the
//! writer only finishes one now and then between groups so the WAL can start over. After
//! each commit the writer asks for the WAL pages it will overwrite next ([`WalReadahead`]),
//! so a page the host evicted is read back ahead of it rather than in the middle of a group.
//! Reads run on `spawn_blocking` with a small pool of read-only connections. (A large page
//! cache or `mmap_size` measured slower here: SQLite walks the whole cache when a statement
//! rolls back, and remapping costs TLB shootdowns on every commit.)

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::types::ToSql;
use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension};
use sightline_core::ports::{
    apply_update, Attrs, Clock, Condition, Item, ItemStore, Page, Query, StoreError, StoreResult,
    Transacted, UpdateOp, Write,
};
use tokio::sync::{oneshot, Mutex, OwnedMutexGuard};

use crate::now_secs;
use sightline_core::ports::paging::{plan, Pager, SkRange};

/// Readers are cheap in WAL mode; a few let queries overlap without waiting on each other.
const READERS: usize = 4;
/// How long a connection waits for another process's lock before reporting `Unavailable`.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Rows removed per sweep transaction, so the sweeper never holds the writer for long.
const SWEEP_CHUNK: usize = 1000;
const SCHEMA_VERSION: i64 = 2;
/// Updated items the writer keeps decoded (see [`RecentItems`]).
const RECENT_ITEMS_MAX: usize = 1024;
/// Most writes committed together in one transaction.
const GROUP_MAX: usize = 512;
/// How often the checkpoint thread copies committed WAL frames into the database.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);
/// WAL pages at which the writer checkpoints by itself (SQLite's default is 1000).
const WAL_BACKSTOP_PAGES: i64 = 20_000;
/// WAL pages above which the checkpoint thread catches up and then asks the writer to
/// finish its checkpoint between two groups, so the next commit starts the WAL over.
const WAL_RESTART_PAGES: i64 = 2_000;
/// Frames a catch-up round may leave behind for the writer to copy.
const WAL_TAIL_PAGES: i64 = 64;
/// Catch-up rounds tried before waiting for the next interval.
const CATCH_UP_ROUNDS: usize = 6;
/// The WAL file is truncated back to this size after a checkpoint resets it.
const WAL_SIZE_LIMIT_BYTES: i64 = 64 * 1024 * 1024;

/// A write for the writer thread: runs inside the group's transaction and returns whether
/// it succeeded plus how to tell its caller once the group's commit outcome is known.
/// Without a connection it does not run and only prepares the answer (the group's
/// transaction could not begin).
type Job = Box<dyn FnOnce(Option<&mut WriteTx<'_>>, i64) -> Done + Send>;

/// What a write runs on: the writer's connection inside the group's transaction, and the
/// items it updated recently, decoded.
struct WriteTx<'a> {
    conn: &'a Connection,
    recent: &'a mut RecentItems,
}

impl WriteTx<'_> {
    /// The live item at `(pk, sk)`.
    fn read(&mut self, pk: &str, sk: &str, now: i64) -> StoreResult<Option<Item>> {
        match self.recent.take(pk, sk) {
            Some(item) => Ok(item.expires_at.is_none_or(|at| at > now).then_some(item)),
            None => read_item(self.conn, pk, sk, now),
        }
    }

    fn put_row(
        &mut self,
        pk: &str,
        sk: &str,
        attrs: &str,
        expires_at: Option<i64>,
    ) -> StoreResult<()> {
        self.recent.take(pk, sk);
        write_row(self.conn, pk, sk, attrs, expires_at)
    }

    /// Writes an updated item and keeps it for the row's next update.
    fn put_item(&mut self, item: &Item) -> StoreResult<()> {
        write_item(self.conn, item)?;
        self.recent.keep(item.clone());
        Ok(())
    }

    fn delete(&mut self, pk: &str, sk: &str) -> StoreResult<()> {
        self.recent.take(pk, sk);
        self.conn
            .prepare_cached("DELETE FROM items WHERE pk = ?1 AND sk = ?2")
            .db()?
            .execute(rusqlite::params![pk, sk])
            .db()?;
        Ok(())
    }
}

/// Items the writer updated, decoded, so the next update of a hot row (every capture
/// updates its breakpoint's counters and its service's totals) neither reads nor parses
/// the row again. Only the writer changes rows in this process; a commit by another
/// process shows in `PRAGMA data_version` at the start of a group and empties the set, as
/// does a group that is rolled back. A read takes the item out, so a write that reads
/// and then does not write leaves nothing stale behind.
#[derive(Default)]
struct RecentItems {
    by_pk: std::collections::HashMap<String, std::collections::HashMap<String, Item>>,
    len: usize,
}

impl RecentItems {
    fn take(&mut self, pk: &str, sk: &str) -> Option<Item> {
        let item = self.by_pk.get_mut(pk)?.remove(sk)?;
        self.len -= 1;
        Some(item)
    }

    fn keep(&mut self, item: Item) {
        if self.len >= RECENT_ITEMS_MAX {
            self.clear();
        }
        let partition = self.by_pk.entry(item.pk.clone()).or_default();
        if partition.insert(item.sk.clone(), item).is_none() {
            self.len += 1;
        }
    }

    fn clear(&mut self) {
        self.by_pk.clear();
        self.len = 0;
    }
}

struct Done {
    ok: bool,
    deliver: Box<dyn FnOnce(Result<(), String>) + Send>,
}

/// Version 2: a rowid table with a unique (pk, sk) index. Version 1 kept the rows in a
/// `WITHOUT ROWID` table, which copies whole rows (2 KB snapshots) into interior pages and
/// made every key lookup compare through them; v1 files are moved over on open.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS items (
    pk TEXT NOT NULL,
    sk TEXT NOT NULL,
    attrs TEXT NOT NULL,      -- JSON object
    expires_at INTEGER,       -- Unix seconds; NULL = never
    UNIQUE (pk, sk)
);
CREATE INDEX IF NOT EXISTS items_expires_at ON items (expires_at) WHERE expires_at IS NOT NULL;
";

/// From version 1: the same rows, in the version 2 table.
const MIGRATE_FROM_V1: &str = "
ALTER TABLE items RENAME TO items_v1;
DROP INDEX IF EXISTS items_expires_at;
CREATE TABLE items (
    pk TEXT NOT NULL,
    sk TEXT NOT NULL,
    attrs TEXT NOT NULL,
    expires_at INTEGER,
    UNIQUE (pk, sk)
);
INSERT INTO items (pk, sk, attrs, expires_at)
    SELECT pk, sk, attrs, expires_at FROM items_v1 ORDER BY pk, sk;
DROP TABLE items_v1;
";

/// `ItemStore` backed by a single SQLite database file.
pub struct SqliteItemStore {
    writer: std::sync::mpsc::Sender<Job>,
    /// Dropped with the store, which ends the checkpoint thread.
    _stop_checkpoints: std::sync::mpsc::Sender<()>,
    readers: Vec<Arc<Mutex<Connection>>>,
    next_reader: AtomicUsize,
    clock: Arc<dyn Clock>,
}

impl SqliteItemStore {
    /// Opens or creates the database at `path`. Blocking; call at startup.
    pub fn open(path: &Path, clock: Arc<dyn Clock>) -> StoreResult<Self> {
        let mut writer = Connection::open(path).db()?;
        configure(&writer).db()?;
        let mode: String = writer
            .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
            .db()?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(%mode, path = %path.display(), "SQLite refused WAL mode; reads will wait on writes");
        }
        migrate(&writer)?;
        let page_size: i64 = writer
            .pragma_query_value(None, "page_size", |r| r.get(0))
            .db()?;
        let mut readahead = WalReadahead::new(path, page_size);
        // Checkpoints run on their own thread (below), so a commit never pays for copying
        // the WAL back and its fsync. The writer checkpoints itself only as a backstop,
        // should the WAL grow this large anyway (what `wal_autocheckpoint` would do; the
        // hook replaces it).
        writer
            .wal_hook(Some(move |wal: &mut rusqlite::hooks::Wal, frames| {
                readahead.after_commit(frames);
                if i64::from(frames) >= WAL_BACKSTOP_PAGES {
                    if let Err(e) = wal.checkpoint() {
                        tracing::debug!(error = %e, "backstop WAL checkpoint failed");
                    }
                }
                // An error here would fail a statement whose commit already happened.
                Ok(())
            }))
            .db()?;
        writer
            .pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT_BYTES)
            .db()?;

        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI;
        let readers = (0..READERS)
            .map(|_| {
                let conn = Connection::open_with_flags(path, flags).db()?;
                configure(&conn).db()?;
                Ok(Arc::new(Mutex::new(conn)))
            })
            .collect::<StoreResult<Vec<_>>>()?;

        let checkpointer = Connection::open(path).db()?;
        configure(&checkpointer).db()?;
        let file_system = FileSystem::of(path);
        let (stop_checkpoints, stopped) = std::sync::mpsc::channel::<()>();
        let finish_checkpoint = Arc::new(AtomicBool::new(false));
        let asked = Arc::clone(&finish_checkpoint);
        std::thread::Builder::new()
            .name("sightline-sqlite-checkpoint".into())
            .spawn(move || checkpoint_loop(&checkpointer, &file_system, &stopped, &asked))
            .map_err(|e| {
                StoreError::Backend(format!("cannot start the sqlite checkpointer: {e}"))
            })?;

        let (jobs, queue) = std::sync::mpsc::channel::<Job>();
        let writer_clock = Arc::clone(&clock);
        std::thread::Builder::new()
            .name("sightline-sqlite-writer".into())
            .spawn(move || writer_loop(&writer, &queue, &*writer_clock, &finish_checkpoint))
            .map_err(|e| StoreError::Backend(format!("cannot start the sqlite writer: {e}")))?;

        Ok(Self {
            writer: jobs,
            _stop_checkpoints: stop_checkpoints,
            readers,
            next_reader: AtomicUsize::new(0),
            clock,
        })
    }

    /// Physically deletes expired rows (reads already hide them); returns how many.
    /// Works in chunks so concurrent writers are not starved.
    pub async fn sweep_expired(&self) -> StoreResult<usize> {
        let mut total = 0;
        loop {
            let n = self
                .write(|tx, now| {
                    tx.recent.clear();
                    let mut stmt = tx
                        .conn
                        .prepare_cached(
                            "DELETE FROM items WHERE rowid IN \
                             (SELECT rowid FROM items WHERE expires_at <= ?1 LIMIT ?2)",
                        )
                        .db()?;
                    stmt.execute(rusqlite::params![now, SWEEP_CHUNK as i64])
                        .db()
                })
                .await?;
            total += n;
            if n < SWEEP_CHUNK {
                break;
            }
        }
        if total > 0 {
            tracing::debug!(removed = total, "swept expired items");
        }
        Ok(total)
    }

    /// Runs `f` on the writer thread inside the current group transaction; `now` is the TTL
    /// clock in Unix seconds. Resolves after the group has committed.
    async fn write<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut WriteTx<'_>, i64) -> StoreResult<T> + Send + 'static,
    {
        self.write_keeping(f, Result::is_ok).await
    }

    /// [`Self::write`], with `keep` telling from the result whether the write succeeded
    /// (a write that did not must have changed nothing, or its group is rolled back).
    async fn write_keeping<T, F>(&self, f: F, keep: fn(&StoreResult<T>) -> bool) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut WriteTx<'_>, i64) -> StoreResult<T> + Send + 'static,
    {
        let (job, answer) = job(f, keep);
        self.writer
            .send(job)
            .map_err(|_| StoreError::Backend("the sqlite writer has stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Backend("the sqlite writer has stopped".into()))?
    }

    /// Runs `f` on a free reader connection (or waits for one).
    async fn read<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection, i64) -> StoreResult<T> + Send + 'static,
    {
        let guard = self.reader().await;
        let now = now_secs(&*self.clock);
        run_blocking(guard, now, f).await
    }

    async fn reader(&self) -> OwnedMutexGuard<Connection> {
        let n = self.readers.len();
        let start = self.next_reader.fetch_add(1, Ordering::Relaxed);
        for i in 0..n {
            if let Ok(guard) = Arc::clone(&self.readers[(start + i) % n]).try_lock_owned() {
                return guard;
            }
        }
        Arc::clone(&self.readers[start % n]).lock_owned().await
    }
}

async fn run_blocking<T, F>(
    mut guard: OwnedMutexGuard<Connection>,
    now: i64,
    f: F,
) -> StoreResult<T>
where
    T: Send + 'static,
    F: FnOnce(&mut Connection, i64) -> StoreResult<T> + Send + 'static,
{
    // The guard moves into the task, so a cancelled caller cannot free the connection early.
    tokio::task::spawn_blocking(move || f(&mut guard, now))
        .await
        .map_err(|e| StoreError::Backend(format!("sqlite task failed: {e}")))?
}

/// `f` as a [`Job`], and where its answer arrives once its group's outcome is known.
fn job<T, F>(f: F, keep: fn(&StoreResult<T>) -> bool) -> (Job, oneshot::Receiver<StoreResult<T>>)
where
    T: Send + 'static,
    F: FnOnce(&mut WriteTx<'_>, i64) -> StoreResult<T> + Send + 'static,
{
    let (reply, answer) = oneshot::channel();
    let job: Job = Box::new(move |tx, now| {
        let result = match tx {
            Some(tx) => f(tx, now),
            None => Err(StoreError::Unavailable(
                "sqlite: the write did not run".into(),
            )),
        };
        Done {
            ok: keep(&result),
            deliver: Box::new(move |commit| {
                let _ = reply.send(match commit {
                    Ok(()) => result,
                    Err(e) => Err(StoreError::Unavailable(e)),
                });
            }),
        }
    });
    (job, answer)
}

/// The writer thread: one group transaction per batch of queued writes (see module docs).
/// Ends when the store (the only sender) is dropped.
fn writer_loop(
    conn: &Connection,
    queue: &std::sync::mpsc::Receiver<Job>,
    clock: &dyn Clock,
    finish_checkpoint: &AtomicBool,
) {
    let mut recent = RecentItems::default();
    let mut seen_version = None;
    while let Ok(first) = queue.recv() {
        let now = now_secs(clock);
        if let Err(e) = exec(conn, "BEGIN IMMEDIATE") {
            (first(None, now).deliver)(Err(format!("sqlite: cannot begin: {e}")));
            continue;
        }
        let version = data_version(conn).ok();
        if version.is_none() || version != seen_version {
            recent.clear();
            seen_version = version;
        }
        let mut tx = WriteTx {
            conn,
            recent: &mut recent,
        };
        let mut group = Vec::with_capacity(16);
        let mut broken = None;
        let mut next = Some(first);
        while let Some(job) = next.take() {
            let changes_before = conn.total_changes();
            let done = job(Some(&mut tx), now);
            let changed = conn.total_changes() != changes_before;
            group.push(done);
            if conn.is_autocommit() {
                // SQLite rolled the transaction back by itself (an I/O error or similar).
                broken = Some("sqlite: the transaction was rolled back".to_owned());
            } else if changed && group.last().is_some_and(|d| !d.ok) {
                broken =
                    Some("sqlite: a write failed part-way; its group was rolled back".to_owned());
            }
            if broken.is_none() && group.len() < GROUP_MAX {
                next = queue.try_recv().ok();
            }
        }
        let commit = match broken {
            Some(reason) => Err(reason),
            None => exec(conn, "COMMIT").map_err(|e| format!("sqlite: commit failed: {e}")),
        };
        if commit.is_err() {
            recent.clear();
            if !conn.is_autocommit() {
                let _ = exec(conn, "ROLLBACK");
            }
        }
        for done in group {
            (done.deliver)(commit.clone());
        }
        if finish_checkpoint.swap(false, Ordering::Relaxed) {
            // Copies what the checkpoint thread has not yet copied (a few frames), so
            // the next commit can start the WAL over.
            if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                tracing::debug!(error = %e, "WAL checkpoint failed; retrying later");
            }
        }
    }
}

/// Changes whenever another connection commits (see [`RecentItems`]).
fn data_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.prepare_cached("PRAGMA data_version")?
        .query_row([], |r| r.get(0))
}

/// Runs a statement without parameters from the statement cache (the writer runs these
/// around every write; `execute_batch` would parse them each time).
fn exec(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

/// The checkpoint thread: a passive checkpoint every [`CHECKPOINT_EVERY`] (it never
/// blocks the writer or readers), until the store is dropped. Under steady writes the
/// writer keeps appending while it copies, so the WAL is never fully copied and would only
/// grow. Past [`WAL_RESTART_PAGES`] the thread therefore checkpoints again at once, each
/// round copying only what the writer appended during the one before, until a round finds
/// at most [`WAL_TAIL_PAGES`] new frames (or [`CATCH_UP_ROUNDS`] have run); only then is
/// the writer asked to copy the rest between two groups, so the WAL starts over at its
/// next commit. The writer's share is then a few frames and the checkpoint's two fsyncs,
/// not everything appended during a full round (which stalled every queued write for
/// 10–20 ms). Before it asks, the thread flushes the pages its rounds copied into the
/// database file (see [`FileSystem`]), so the writer's fsync of that file has little left
/// to write.
fn checkpoint_loop(
    conn: &Connection,
    file_system: &FileSystem,
    stop: &std::sync::mpsc::Receiver<()>,
    finish_checkpoint: &AtomicBool,
) {
    let passive = || {
        conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get::<_, i64>(1))
            .map_err(
                |e| tracing::debug!(error = %e, "background WAL checkpoint failed; retrying later"),
            )
    };
    while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = stop.recv_timeout(CHECKPOINT_EVERY)
    {
        let Ok(mut wal_pages) = passive() else {
            continue;
        };
        if wal_pages <= WAL_RESTART_PAGES {
            continue;
        }
        let mut started_over = false;
        for _ in 0..CATCH_UP_ROUNDS {
            let Ok(now_pages) = passive() else {
                break;
            };
            if now_pages < wal_pages {
                started_over = true;
                break;
            }
            let appended = now_pages - wal_pages;
            wal_pages = now_pages;
            if appended <= WAL_TAIL_PAGES {
                break;
            }
        }
        if !started_over {
            file_system.flush();
            // Copies what the writer appended during the flush.
            let _ = passive();
            finish_checkpoint.store(true, Ordering::Relaxed);
        }
    }
}

/// Reads the WAL's next pages into the page cache ahead of the writer. A WAL frame is a
/// 24-byte header plus a page, so nearly every frame write covers part of a file page;
/// when a cycle overwrites a page that the host evicted since the last one (hosts that
/// reclaim idle page cache proactively do so within seconds), the kernel reads it back
/// first and the writer, with every write queued behind it, waits on the disk. Asking
/// for the next chunk as the writer enters the current one turns that into readahead.
struct WalReadahead {
    #[cfg(target_os = "linux")]
    path: std::path::PathBuf,
    #[cfg(target_os = "linux")]
    file: Option<std::fs::File>,
    #[cfg(target_os = "linux")]
    frame_bytes: u64,
    #[cfg(target_os = "linux")]
    chunk: Option<u64>,
}

impl WalReadahead {
    /// Bytes asked for at a time.
    #[cfg(target_os = "linux")]
    const CHUNK: u64 = 256 * 1024;
    /// The WAL file's own header, before the first frame.
    #[cfg(target_os = "linux")]
    const HEADER: u64 = 32;

    fn new(db_path: &Path, page_size: i64) -> Self {
        #[cfg(target_os = "linux")]
        {
            let mut path = db_path.as_os_str().to_owned();
            path.push("-wal");
            Self {
                path: path.into(),
                file: None,
                frame_bytes: u64::try_from(page_size).unwrap_or(4096) + 24,
                chunk: None,
            }
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = (db_path, page_size);
            Self {}
        }
    }

    /// Called after each commit with the frames now in the WAL.
    fn after_commit(&mut self, frames: std::ffi::c_int) {
        #[cfg(target_os = "linux")]
        {
            let end = Self::HEADER + u64::try_from(frames).unwrap_or(0) * self.frame_bytes;
            let chunk = end / Self::CHUNK;
            if self.chunk == Some(chunk) {
                return;
            }
            if self.file.is_none() {
                // Its own descriptor: SQLite holds no locks on the WAL file, so opening and
                // closing one cannot release any.
                self.file = std::fs::File::open(&self.path).ok();
            }
            let Some(file) = &self.file else { return };
            self.chunk = Some(chunk);
            let len = std::num::NonZeroU64::new(Self::CHUNK);
            if let Err(e) = rustix::fs::fadvise(
                file,
                (chunk + 1) * Self::CHUNK,
                len,
                rustix::fs::Advice::WillNeed,
            ) {
                tracing::debug!(error = %e, "WAL readahead failed");
            }
        }
        #[cfg(not(target_os = "linux"))]
        let _ = frames;
    }
}

/// The file system of the database, flushed by the checkpoint thread. Under steady writes
/// no background checkpoint copies the whole WAL, so none of them syncs the database file
/// (SQLite does that only after copying the last frame): everything they copied stayed
/// dirty until the writer's final checkpoint, whose fsync then wrote it all while every
/// queued write waited (5–30 ms). The flush goes through the directory's file system
/// (`syncfs`), not a descriptor of the database file: closing any descriptor of a file
/// releases every POSIX lock the process holds on it, SQLite's included. Only on Linux;
/// elsewhere the writer's checkpoint writes it all, as before.
struct FileSystem {
    #[cfg(target_os = "linux")]
    dir: Option<std::fs::File>,
}

impl FileSystem {
    fn of(db_path: &Path) -> Self {
        #[cfg(target_os = "linux")]
        {
            let dir = match db_path.parent() {
                Some(p) if !p.as_os_str().is_empty() => p,
                _ => Path::new("."),
            };
            let dir = std::fs::File::open(dir)
                .map_err(
                    |e| tracing::debug!(error = %e, "cannot open the data directory to flush it"),
                )
                .ok();
            Self { dir }
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = db_path;
            Self {}
        }
    }

    fn flush(&self) {
        #[cfg(target_os = "linux")]
        if let Some(dir) = &self.dir {
            if let Err(e) = rustix::fs::syncfs(dir) {
                tracing::debug!(error = %e, "flushing the data directory's file system failed");
            }
        }
    }
}

fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // In WAL mode NORMAL survives process crashes; only an OS crash can lose the last commits.
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    // A statement that may fail after changing rows (an upsert with two indexes) saves
    // each page it touches to a statement journal first; in memory that is a copy, not a
    // write to a temp file (it is discarded when the statement ends).
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(())
}

fn migrate(conn: &Connection) -> StoreResult<()> {
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .db()?;
    if version > SCHEMA_VERSION {
        return Err(StoreError::Backend(format!(
            "database schema version {version} is newer than this build ({SCHEMA_VERSION})"
        )));
    }
    let steps = if version == 1 {
        tracing::info!("moving the store to schema version {SCHEMA_VERSION}");
        format!("{MIGRATE_FROM_V1}{SCHEMA}")
    } else {
        SCHEMA.to_owned()
    };
    // One transaction: a crash mid-way leaves the version 1 file as it was.
    conn.execute_batch(&format!(
        "BEGIN IMMEDIATE;{steps}PRAGMA user_version = {SCHEMA_VERSION};COMMIT;"
    ))
    .db()
}

/// Maps rusqlite errors onto the port's error: lock contention that outlived the busy
/// timeout is `Unavailable` (retryable), everything else `Backend`.
trait Db<T> {
    fn db(self) -> StoreResult<T>;
}

impl<T> Db<T> for rusqlite::Result<T> {
    fn db(self) -> StoreResult<T> {
        self.map_err(|e| match e.sqlite_error_code() {
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
                StoreError::Unavailable(format!("sqlite busy: {e}"))
            }
            _ => StoreError::Backend(format!("sqlite: {e}")),
        })
    }
}

fn decode_item(pk: &str, sk: String, attrs: &str, expires_at: Option<i64>) -> StoreResult<Item> {
    let attrs: Attrs = serde_json::from_str(attrs)
        .map_err(|e| StoreError::Backend(format!("corrupt attrs for ({pk}, {sk}): {e}")))?;
    Ok(Item::new(pk, sk, attrs).with_ttl(expires_at))
}

/// The live (not expired) item at `(pk, sk)`.
fn read_item(conn: &Connection, pk: &str, sk: &str, now: i64) -> StoreResult<Option<Item>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT attrs, expires_at FROM items \
             WHERE pk = ?1 AND sk = ?2 AND (expires_at IS NULL OR expires_at > ?3)",
        )
        .db()?;
    let row = stmt
        .query_row(rusqlite::params![pk, sk, now], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, Option<i64>>(1)?))
        })
        .optional()
        .db()?;
    row.map(|(attrs, exp)| decode_item(pk, sk.to_owned(), &attrs, exp))
        .transpose()
}

/// The stored form of an item's attributes. Callers encode before handing a write to the
/// writer thread, so the single writer does not spend its time serialising.
fn encode_attrs(attrs: &Attrs) -> StoreResult<String> {
    serde_json::to_string(attrs)
        .map_err(|e| StoreError::Backend(format!("cannot encode attrs: {e}")))
}

fn write_item(conn: &Connection, item: &Item) -> StoreResult<()> {
    write_row(
        conn,
        &item.pk,
        &item.sk,
        &encode_attrs(&item.attrs)?,
        item.expires_at,
    )
}

fn write_row(
    conn: &Connection,
    pk: &str,
    sk: &str,
    attrs: &str,
    expires_at: Option<i64>,
) -> StoreResult<()> {
    let mut stmt = conn
        .prepare_cached(
            "INSERT INTO items (pk, sk, attrs, expires_at) VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT (pk, sk) DO UPDATE SET attrs = excluded.attrs, expires_at = excluded.expires_at",
        )
        .db()?;
    stmt.execute(rusqlite::params![pk, sk, attrs, expires_at])
        .db()?;
    Ok(())
}

/// A write of [`ItemStore::transact`] ready for the writer thread.
enum RowWrite {
    Put {
        pk: String,
        sk: String,
        attrs: String,
        expires_at: Option<i64>,
        condition: Option<Condition>,
    },
    Update {
        pk: String,
        sk: String,
        ops: Vec<UpdateOp>,
        condition: Option<Condition>,
    },
}

impl RowWrite {
    fn prepare(write: &Write) -> StoreResult<Self> {
        Ok(match write {
            Write::Put { item, condition } => Self::Put {
                pk: item.pk.clone(),
                sk: item.sk.clone(),
                attrs: encode_attrs(&item.attrs)?,
                expires_at: item.expires_at,
                condition: condition.clone(),
            },
            Write::Update {
                pk,
                sk,
                ops,
                condition,
            } => Self::Update {
                pk: pk.clone(),
                sk: sk.clone(),
                ops: ops.clone(),
                condition: condition.clone(),
            },
        })
    }

    /// Checks the write's condition: `Ok(None)` when it does not hold, else the current
    /// item an update applies to (a put needs none).
    fn check(&self, tx: &mut WriteTx<'_>, now: i64) -> StoreResult<Option<Option<Item>>> {
        Ok(match self {
            Self::Put {
                condition: None, ..
            } => Some(None),
            Self::Put {
                pk,
                sk,
                condition: Some(condition),
                ..
            } => {
                let current = tx.read(pk, sk, now)?;
                condition.matches(current.as_ref()).then_some(None)
            }
            Self::Update {
                pk, sk, condition, ..
            } => {
                let current = tx.read(pk, sk, now)?;
                let holds = condition
                    .as_ref()
                    .is_none_or(|c| c.matches(current.as_ref()));
                holds.then_some(current)
            }
        })
    }

    /// [`Self::check`], then [`Self::write`]: `Ok(None)` when the condition does not hold.
    fn apply(self, tx: &mut WriteTx<'_>, now: i64) -> StoreResult<Option<Option<Item>>> {
        match self.check(tx, now)? {
            Some(current) => self.write(tx, current).map(Some),
            None => Ok(None),
        }
    }

    /// Writes the row; returns the item after an update (`None` for a put).
    fn write(self, tx: &mut WriteTx<'_>, current: Option<Item>) -> StoreResult<Option<Item>> {
        match self {
            Self::Put {
                pk,
                sk,
                attrs,
                expires_at,
                ..
            } => {
                tx.put_row(&pk, &sk, &attrs, expires_at)?;
                Ok(None)
            }
            Self::Update { pk, sk, ops, .. } => {
                let mut item = current.unwrap_or_else(|| Item::new(pk, sk, Attrs::new()));
                apply_update(&mut item, &ops);
                tx.put_item(&item)?;
                Ok(Some(item))
            }
        }
    }
}

/// One batch of live rows of `pk` within `range`, in scan order.
fn fetch(
    conn: &Connection,
    pk: &str,
    range: &SkRange,
    descending: bool,
    now: i64,
    batch: usize,
) -> StoreResult<Vec<Item>> {
    use std::ops::Bound::{Excluded, Included, Unbounded};
    let batch = i64::try_from(batch).unwrap_or(i64::MAX);
    let mut args: Vec<&dyn ToSql> = vec![&pk, &now, &batch];
    let mut sql = String::from(
        "SELECT sk, attrs, expires_at FROM items \
         WHERE pk = ?1 AND (expires_at IS NULL OR expires_at > ?2)",
    );
    for (bound, incl, excl) in [(&range.lower, ">=", ">"), (&range.upper, "<=", "<")] {
        let (op, value) = match bound {
            Included(v) => (incl, v),
            Excluded(v) => (excl, v),
            Unbounded => continue,
        };
        args.push(value);
        sql.push_str(&format!(" AND sk {op} ?{}", args.len()));
    }
    sql.push_str(if descending {
        " ORDER BY sk DESC LIMIT ?3"
    } else {
        " ORDER BY sk ASC LIMIT ?3"
    });
    // At most 18 distinct statements, so all of them stay in the statement cache.
    let mut stmt = conn.prepare_cached(&sql).db()?;
    let rows = stmt
        .query_map(args.as_slice(), |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Option<i64>>(2)?,
            ))
        })
        .db()?;
    rows.map(|row| {
        let (sk, attrs, exp) = row.db()?;
        decode_item(pk, sk, &attrs, exp)
    })
    .collect()
}

#[async_trait]
impl ItemStore for SqliteItemStore {
    async fn get(&self, pk: &str, sk: &str) -> StoreResult<Option<Item>> {
        let (pk, sk) = (pk.to_owned(), sk.to_owned());
        self.read(move |conn, now| read_item(conn, &pk, &sk, now))
            .await
    }

    async fn put(&self, item: Item, condition: Option<Condition>) -> StoreResult<()> {
        let row = RowWrite::Put {
            attrs: encode_attrs(&item.attrs)?,
            pk: item.pk,
            sk: item.sk,
            expires_at: item.expires_at,
            condition,
        };
        self.write(move |tx, now| match row.apply(tx, now)? {
            Some(_) => Ok(()),
            None => Err(StoreError::ConditionFailed),
        })
        .await
    }

    async fn update(
        &self,
        pk: &str,
        sk: &str,
        ops: &[UpdateOp],
        condition: Option<Condition>,
    ) -> StoreResult<Item> {
        let row = RowWrite::Update {
            pk: pk.to_owned(),
            sk: sk.to_owned(),
            ops: ops.to_vec(),
            condition,
        };
        self.write(move |tx, now| match row.apply(tx, now)? {
            Some(Some(item)) => Ok(item),
            _ => Err(StoreError::ConditionFailed),
        })
        .await
    }

    async fn delete(
        &self,
        pk: &str,
        sk: &str,
        condition: Option<Condition>,
    ) -> StoreResult<Option<Item>> {
        let (pk, sk) = (pk.to_owned(), sk.to_owned());
        self.write(move |tx, now| {
            let current = tx.read(&pk, &sk, now)?;
            if condition.is_some_and(|c| !c.matches(current.as_ref())) {
                return Err(StoreError::ConditionFailed);
            }
            // Also removes an expired row, which callers already treat as absent.
            tx.delete(&pk, &sk)?;
            Ok(current)
        })
        .await
    }

    /// One job on the writer thread: every condition is checked (against the rows as they
    /// were before the transaction, as in DynamoDB) before any row is written, so a failed
    /// one has nothing to undo.
    async fn transact(&self, writes: &[Write]) -> StoreResult<Transacted> {
        let rows = writes
            .iter()
            .map(RowWrite::prepare)
            .collect::<StoreResult<Vec<_>>>()?;
        self.write_keeping(
            move |tx, now| {
                let mut current = Vec::with_capacity(rows.len());
                for (index, row) in rows.iter().enumerate() {
                    match row.check(tx, now)? {
                        Some(item) => current.push(item),
                        None => return Ok(Transacted::ConditionFailed(index)),
                    }
                }
                let written = rows
                    .into_iter()
                    .zip(current)
                    .map(|(row, current)| row.write(tx, current))
                    .collect::<StoreResult<_>>()?;
                Ok(Transacted::Written(written))
            },
            |r| matches!(r, Ok(Transacted::Written(_))),
        )
        .await
    }

    async fn query(&self, pk: &str, query: Query) -> StoreResult<Page> {
        let mut range = plan(&query)?;
        let pk = pk.to_owned();
        self.read(move |conn, now| {
            // One read transaction: every batch of this page sees the same snapshot.
            let tx = conn.transaction().db()?;
            let mut pager = Pager::new(&query);
            while !range.is_empty() {
                let batch = pager.batch_hint();
                let rows = fetch(&tx, &pk, &range, query.descending, now, batch)?;
                let full_batch = rows.len() >= batch;
                let last = rows.last().map(|i| i.sk.clone());
                for item in rows {
                    if pager.offer(item).is_break() {
                        return Ok(pager.finish());
                    }
                }
                match last {
                    Some(last) if full_batch => range.advance(last, query.descending),
                    _ => break,
                }
            }
            Ok(pager.finish())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn put(tx: &mut WriteTx<'_>, sk: &str) -> StoreResult<()> {
        tx.put_row("pk", sk, "{}", None)
    }

    fn count(path: &Path) -> i64 {
        Connection::open(path)
            .unwrap()
            .query_row("SELECT count(*) FROM items", [], |r| r.get(0))
            .unwrap()
    }

    /// Runs the writer over `jobs`, all queued before it starts: one group.
    fn run_group(path: &Path, jobs: Vec<Job>) {
        let conn = Connection::open(path).unwrap();
        configure(&conn).unwrap();
        let (send, queue) = std::sync::mpsc::channel();
        for job in jobs {
            send.send(job).unwrap();
        }
        drop(send);
        writer_loop(&conn, &queue, &crate::SystemClock, &AtomicBool::new(false));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_wal_readahead_follows_the_end_of_the_wal_and_survives_a_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("r.db");
        let mut ahead = WalReadahead::new(&db, 4096);
        // No WAL file yet: nothing to read, and no error.
        ahead.after_commit(10);
        assert!(ahead.file.is_none() && ahead.chunk.is_none());
        std::fs::write(dir.path().join("r.db-wal"), vec![0u8; 1 << 20]).unwrap();
        ahead.after_commit(11);
        assert_eq!(
            ahead.chunk,
            Some(0),
            "frame 11 ends inside the first 256 KiB"
        );
        assert!(ahead.file.is_some());
        // 64 frames of 4,120 bytes end past the first chunk; a restarted WAL is back at 0.
        ahead.after_commit(64);
        assert_eq!(ahead.chunk, Some(1));
        ahead.after_commit(1);
        assert_eq!(ahead.chunk, Some(0));
    }

    fn store_file() -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        drop(SqliteItemStore::open(&path, Arc::new(crate::SystemClock)).unwrap());
        (dir, path)
    }

    #[test]
    fn a_write_failing_part_way_rolls_back_its_whole_group() {
        let (_dir, path) = store_file();
        let (first, first_answer) = job(|c, _| put(c, "a"), Result::is_ok);
        let (broken, broken_answer) = job(
            |c, _| {
                put(c, "b")?;
                Err::<(), _>(StoreError::Backend("disk gone".into()))
            },
            Result::is_ok,
        );
        run_group(&path, vec![first, broken]);
        assert!(matches!(
            first_answer.blocking_recv().unwrap(),
            Err(StoreError::Unavailable(_))
        ));
        assert!(broken_answer.blocking_recv().unwrap().is_err());
        assert_eq!(count(&path), 0, "nothing of the group may stay");
    }

    #[test]
    fn a_failed_write_that_changed_nothing_leaves_its_group_alone() {
        let (_dir, path) = store_file();
        let (first, first_answer) = job(|c, _| put(c, "a"), Result::is_ok);
        let (refused, refused_answer) = job(
            |_, _| Err::<(), _>(StoreError::ConditionFailed),
            Result::is_ok,
        );
        let (last, last_answer) = job(|c, _| put(c, "c"), Result::is_ok);
        run_group(&path, vec![first, refused, last]);
        assert!(first_answer.blocking_recv().unwrap().is_ok());
        assert!(matches!(
            refused_answer.blocking_recv().unwrap(),
            Err(StoreError::ConditionFailed)
        ));
        assert!(last_answer.blocking_recv().unwrap().is_ok());
        assert_eq!(count(&path), 2);
    }

    #[tokio::test]
    async fn an_update_sees_what_another_connection_committed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let ours = SqliteItemStore::open(&path, Arc::new(crate::SystemClock)).unwrap();
        let theirs = SqliteItemStore::open(&path, Arc::new(crate::SystemClock)).unwrap();
        let add = |n: i64| vec![UpdateOp::add("count", n)];
        ours.update("pk", "sk", &add(1), None).await.unwrap();
        // Our writer now holds the item decoded; another connection changes the row.
        theirs.update("pk", "sk", &add(10), None).await.unwrap();
        let item = ours.update("pk", "sk", &add(1), None).await.unwrap();
        assert_eq!(item.attrs.get("count"), Some(&serde_json::json!(12)));
        assert_eq!(ours.get("pk", "sk").await.unwrap(), Some(item));
    }
}
