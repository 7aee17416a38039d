//! A global-allocator layer that keeps large buffers resident for reuse (issue 24: the memory and speed of a step).
//!
//! A training step allocates and frees the same large tensors every step. Handing them back to the OS costs a page
//! fault per 4 KiB when the next step touches them again (steps 1.6–2.2x slower, measured with mimalloc purging at
//! once); keeping them in mimalloc's arenas fragments them (resident memory 1.5–2x the bytes live at the peak,
//! measured on the MNIST-size CNN).
//!
//! [`BufferArena`] serves every request of [`THRESHOLD`] bytes or more from one address range it reserves (64 GiB,
//! nothing resident until used, transparent huge pages advised beyond its first [`SMALL_PAGES`]) as a best-fit
//! allocator: a request takes the smallest free range that holds it, from its start; a freed block merges with the
//! free ranges beside it, and with the unused top of the range. A loop that repeats its allocations (a training
//! step) runs without page faults after its first turn, and what stays resident is close to the most the program
//! held at once. A free range that nothing has reused for [`PURGE_AFTER_NS`] goes back to the OS (its pages, not
//! its addresses) at the next large request or free, so memory freed for good (a data set loaded once) does not
//! stay with the process.
//!
//! Smaller requests, those with an alignment above a page, and any the range cannot hold go to the inner
//! allocator; off Linux everything does.
//!
//! ```no_run
//! #[global_allocator]
//! static GLOBAL: optlab::alloc::BufferArena<std::alloc::System> =
//!     optlab::alloc::BufferArena::new(std::alloc::System);
//! ```

use std::alloc::{GlobalAlloc, Layout};
use std::sync::{Mutex, MutexGuard};

/// Requests of this many bytes or more are served from the reserved range.
pub const THRESHOLD: usize = 1 << 16;
/// The start of the range, where a small program's buffers live, keeps 4 KiB pages: a huge page there would
/// round a few MiB of buffers up by as much again. Beyond, transparent huge pages are advised (the MNIST-size
/// CNN's step is 8% faster with them).
pub const SMALL_PAGES: usize = 32 << 20;
/// A free range unused this long (ns) is purged at the next large request or free.
pub const PURGE_AFTER_NS: u64 = 1_000_000_000;
/// Free ranges tracked at most; beyond, the smallest is purged and forgotten (its addresses are not reused).
const SLOTS: usize = 256;
const PAGE: usize = 4096;

/// A free range: offset and bytes in the reserved range, when it was freed (ns), and whether its pages may be
/// resident.
#[derive(Clone, Copy)]
struct Range {
    off: usize,
    len: usize,
    freed: u64,
    resident: bool,
}

const EMPTY: Range = Range {
    off: 0,
    len: 0,
    freed: 0,
    resident: false,
};

/// What the cache holds, in bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// In blocks handed out now.
    pub live: usize,
    /// The most ever handed out at once.
    pub peak: usize,
    /// Freed and kept for reuse (free ranges that may be resident).
    pub cached: usize,
    /// The extent of the reserved range in use so far (live, free and purged).
    pub extent: usize,
}

/// Bookkeeping of the reserved range, in offsets; the caller does the system calls it asks for.
struct Arena {
    free: [Range; SLOTS],
    len: usize,
    /// Offset of the unused top: nothing at or above it is handed out or free.
    top: usize,
    /// Pages in `[top, dirty_top)` may be resident (blocks freed into the top); above, they are not.
    dirty_top: usize,
    /// When a block was last freed into the top (ns).
    top_freed: u64,
    /// Offset up to which the range is readable and writable.
    committed: usize,
    /// Size of the reserved range (0: not reserved yet or unavailable).
    size: usize,
    live: usize,
    peak: usize,
}

/// What the caller must do after [`Arena::take`]: make `[from, to)` writable.
struct Commit {
    from: usize,
    to: usize,
}

/// A block taken from the arena: its offset, whether its pages are untouched (read as zeros), and what to commit.
struct Taken {
    off: usize,
    fresh: bool,
    commit: Option<Commit>,
}

impl Arena {
    const fn new() -> Arena {
        Arena {
            free: [EMPTY; SLOTS],
            len: 0,
            top: 0,
            dirty_top: 0,
            top_freed: 0,
            committed: 0,
            size: 0,
            live: 0,
            peak: 0,
        }
    }

    fn stats(&self) -> CacheStats {
        let ranges: usize = self.free[..self.len]
            .iter()
            .filter(|r| r.resident)
            .map(|r| r.len)
            .sum();
        CacheStats {
            live: self.live,
            peak: self.peak,
            cached: ranges + self.dirty_top.saturating_sub(self.top),
            extent: self.committed,
        }
    }

    /// `bytes` for a request, from the smallest free range that holds them (the most recently freed on ties; the
    /// rest of the range stays free) or from the top. `None` when the reserved range is full.
    fn take(&mut self, bytes: usize) -> Option<Taken> {
        let best = (0..self.len)
            .filter(|&i| self.free[i].len >= bytes)
            .min_by_key(|&i| (self.free[i].len, u64::MAX - self.free[i].freed));
        let taken = if let Some(i) = best {
            let r = &mut self.free[i];
            let (off, resident) = (r.off, r.resident);
            r.off += bytes;
            r.len -= bytes;
            if r.len == 0 {
                self.remove(i);
            }
            Taken {
                off,
                fresh: !resident,
                commit: None,
            }
        } else {
            if self.size - self.top < bytes {
                return None;
            }
            let off = self.top;
            self.top += bytes;
            let commit = (self.top > self.committed).then_some(Commit {
                from: self.committed,
                to: self.top,
            });
            self.committed = self.committed.max(self.top);
            Taken {
                off,
                fresh: off >= self.dirty_top,
                commit,
            }
        };
        self.live += bytes;
        self.peak = self.peak.max(self.live);
        Some(taken)
    }

    /// Gives back a block taken from the top whose commit the OS refused.
    fn untake(&mut self, t: &Taken, bytes: usize) {
        if let Some(c) = &t.commit {
            self.committed = c.from;
        }
        self.top = t.off;
        self.live -= bytes;
    }

    /// Takes back a block: merged with the free ranges beside it, or into the top when it ends there; returns
    /// a range the caller must purge when there was no slot left for it.
    fn put(&mut self, off: usize, len: usize, now: u64) -> Option<Range> {
        self.live -= len;
        let mut r = Range {
            off,
            len,
            freed: now,
            resident: true,
        };
        while let Some(i) = (0..self.len).find(|&i| {
            let f = &self.free[i];
            f.off + f.len == r.off || r.off + r.len == f.off
        }) {
            let f = self.free[i];
            r.off = r.off.min(f.off);
            r.len += f.len;
            self.remove(i);
        }
        if r.off + r.len == self.top {
            // The top keeps its pages: they are reused first.
            self.dirty_top = self.dirty_top.max(self.top);
            self.top = r.off;
            self.top_freed = now;
            return None;
        }
        let mut lost = None;
        if self.len == SLOTS {
            let smallest = (0..self.len).min_by_key(|&i| self.free[i].len)?;
            lost = Some(self.free[smallest]);
            self.remove(smallest);
        }
        self.free[self.len] = r;
        self.len += 1;
        lost
    }

    /// Marks the resident free ranges (and the top's pages) freed before `cutoff` as purged and returns them,
    /// for the caller's `MADV_DONTNEED`.
    fn purge(&mut self, cutoff: u64, out: &mut Vec<Range>) {
        for r in self.free[..self.len].iter_mut() {
            if r.resident && r.freed < cutoff {
                r.resident = false;
                out.push(*r);
            }
        }
        if self.dirty_top > self.top && self.top_freed < cutoff {
            out.push(Range {
                off: self.top,
                len: self.dirty_top - self.top,
                freed: 0,
                resident: false,
            });
            self.dirty_top = self.top;
        }
    }

    fn remove(&mut self, i: usize) {
        self.len -= 1;
        self.free[i] = self.free[self.len];
    }
}

/// The allocator layer: large blocks from a reserved range it manages, the rest from `A`.
pub struct BufferArena<A> {
    inner: A,
    arena: Mutex<State>,
}

/// The arena, its base address (0 until reserved; `usize::MAX` when reserving failed) and the time of the
/// last purge check.
struct State {
    arena: Arena,
    base: usize,
    checked: u64,
}

impl State {
    /// Whether `ptr` lies in the arena.
    fn owns(&self, ptr: *mut u8) -> bool {
        let base = self.base;
        base != 0 && base != usize::MAX && (base..base + RESERVE).contains(&(ptr as usize))
    }

    /// Gives back the pages of free ranges unused for [`PURGE_AFTER_NS`], looking at most every
    /// [`CHECK_EVERY_NS`].
    fn purge_stale(&mut self, now: u64) {
        if now.saturating_sub(self.checked) <= CHECK_EVERY_NS {
            return;
        }
        self.checked = now;
        // Small (at most one entry per slot and the top), so it comes from the inner allocator.
        let mut purged = Vec::new();
        self.arena
            .purge(now.saturating_sub(PURGE_AFTER_NS), &mut purged);
        for r in purged {
            os::purge(self.base + r.off, r.len);
        }
    }
}

/// Reserved address range (nothing resident until used).
const RESERVE: usize = 64 << 30;
/// How often (ns) a large request looks for ranges to purge.
const CHECK_EVERY_NS: u64 = 100_000_000;

impl<A> BufferArena<A> {
    /// The layer over `inner`; the range is reserved at the first large request.
    pub const fn new(inner: A) -> Self {
        BufferArena {
            inner,
            arena: Mutex::new(State {
                arena: Arena::new(),
                base: 0,
                checked: 0,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing inside the lock panics; a poisoned lock still holds consistent ranges.
        self.arena.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What the cache holds now.
    pub fn stats(&self) -> CacheStats {
        self.lock().arena.stats()
    }

    /// Gives the pages of every free range back to the OS now (their addresses stay reserved for reuse).
    pub fn release(&self) {
        let mut s = self.lock();
        let mut out = Vec::new();
        s.arena.purge(u64::MAX, &mut out);
        let base = s.base;
        drop(s);
        for r in out {
            os::purge(base + r.off, r.len);
        }
    }

    /// A block of `bytes` (a multiple of the page) from the arena: `(address, fresh)`, or `None` when the arena
    /// cannot hold it (the request then goes to the inner allocator).
    fn block(&self, bytes: usize) -> Option<(usize, bool)> {
        let now = os::now_ns();
        let mut s = self.lock();
        if s.base == 0 {
            s.base = match os::reserve(RESERVE) {
                0 => usize::MAX,
                base => {
                    s.arena.size = RESERVE;
                    base
                }
            };
        }
        if s.base == usize::MAX {
            return None;
        }
        let base = s.base;
        s.purge_stale(now);
        let t = s.arena.take(bytes)?;
        if let Some(c) = &t.commit {
            if !os::commit(base + c.from, c.to - c.from) {
                // Refused (strict overcommit): the inner allocator may still find memory.
                s.arena.untake(&t, bytes);
                return None;
            }
        }
        Some((base + t.off, t.fresh))
    }

    /// Whether a layout may be served by the arena.
    fn large(layout: &Layout) -> bool {
        os::AVAILABLE && layout.size() >= THRESHOLD && layout.align() <= PAGE
    }

    /// Whether `ptr` lies in the arena.
    #[cfg(test)]
    fn owns(&self, ptr: *mut u8) -> bool {
        self.lock().owns(ptr)
    }
}

/// The arena size of a large request.
fn capacity(size: usize) -> usize {
    size.next_multiple_of(PAGE)
}

// SAFETY: an arena block is handed out once (taken from a free range or the top under the lock), is at least
// `layout.size()` bytes long, writable and page-aligned (so aligned for any `layout.align() <= PAGE`); it returns
// to the arena only through `dealloc` with the layout it was allocated for, whose size gives back the same
// capacity. Everything else is the inner allocator's, recognised by its address outside the arena.
unsafe impl<A: GlobalAlloc> GlobalAlloc for BufferArena<A> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if Self::large(&layout) {
            if let Some((addr, _)) = self.block(capacity(layout.size())) {
                return addr as *mut u8;
            }
        }
        // SAFETY: forwarded with the caller's layout.
        unsafe { self.inner.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if Self::large(&layout) {
            if let Some((addr, fresh)) = self.block(capacity(layout.size())) {
                if !fresh {
                    // SAFETY: the block holds at least `layout.size()` bytes and belongs to this request alone.
                    unsafe { std::ptr::write_bytes(addr as *mut u8, 0, layout.size()) };
                }
                return addr as *mut u8;
            }
        }
        // SAFETY: forwarded with the caller's layout.
        unsafe { self.inner.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if Self::large(&layout) {
            let mut s = self.lock();
            if s.owns(ptr) {
                let (base, now) = (s.base, os::now_ns());
                if let Some(r) = s
                    .arena
                    .put(ptr as usize - base, capacity(layout.size()), now)
                {
                    os::purge(base + r.off, r.len);
                }
                s.purge_stale(now);
                return;
            }
        }
        // SAFETY: not from the arena, so from `inner` with this layout.
        unsafe { self.inner.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller guarantees `new_size` with `layout.align()` is a valid layout.
        let new = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        let ours = Self::large(&layout) && self.lock().owns(ptr);
        if !ours && !Self::large(&new) {
            // SAFETY: both the block and the new layout belong to `inner`.
            return unsafe { self.inner.realloc(ptr, layout, new_size) };
        }
        if ours && capacity(new_size) == capacity(layout.size()) {
            return ptr;
        }
        // SAFETY: a fresh allocation of the new layout, the overlap copied, the old one freed with its layout.
        unsafe {
            let moved = self.alloc(new);
            if !moved.is_null() {
                std::ptr::copy_nonoverlapping(ptr, moved, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
            moved
        }
    }
}

#[cfg(target_os = "linux")]
mod os {
    pub const AVAILABLE: bool = true;

    /// Reserves `bytes` of address space (no access, nothing committed), with transparent huge pages advised
    /// beyond its first [`super::SMALL_PAGES`]; 0 when the OS refuses.
    pub fn reserve(bytes: usize) -> usize {
        // SAFETY: an anonymous private mapping at an address of the kernel's choosing touches no existing memory.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return 0;
        }
        let huge = (p as usize + super::SMALL_PAGES).next_multiple_of(2 << 20);
        let end = p as usize + bytes;
        // SAFETY: a hint on the range just reserved; failure (THP off) leaves small pages.
        unsafe { libc::madvise(huge as *mut libc::c_void, end - huge, libc::MADV_HUGEPAGE) };
        p as usize
    }

    /// Makes `[addr, addr + bytes)` of the reserved range readable and writable; false when refused.
    pub fn commit(addr: usize, bytes: usize) -> bool {
        // SAFETY: the range lies in the reservation and is not handed out yet.
        unsafe {
            libc::mprotect(
                addr as *mut libc::c_void,
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
            ) == 0
        }
    }

    /// Gives the pages of a free range back to the OS; the range stays writable and reads as zeros after.
    pub fn purge(addr: usize, bytes: usize) {
        if bytes > 0 {
            // SAFETY: the range is free (no block handed out overlaps it).
            unsafe { libc::madvise(addr as *mut libc::c_void, bytes, libc::MADV_DONTNEED) };
        }
    }

    /// A monotonic clock in nanoseconds.
    pub fn now_ns() -> u64 {
        let mut t = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: writes the current time into `t`.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut t) };
        t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
    }
}

#[cfg(not(target_os = "linux"))]
mod os {
    pub const AVAILABLE: bool = false;
    pub fn reserve(_: usize) -> usize {
        0
    }
    pub fn commit(_: usize, _: usize) -> bool {
        false
    }
    pub fn purge(_: usize, _: usize) {}
    pub fn now_ns() -> u64 {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::alloc::System;

    #[test]
    fn blocks_are_reused_zeroed_and_released() {
        let a = BufferArena::new(System);
        let big = Layout::from_size_align(3 * THRESHOLD + 5, 64).unwrap();
        let cap = capacity(big.size());
        unsafe {
            let p = a.alloc(big);
            assert!(!p.is_null());
            assert!(a.owns(p));
            p.write_bytes(7, big.size());
            a.dealloc(p, big);
            assert_eq!(a.stats().cached, cap);
            // The same size comes back, zeroed when asked.
            let q = a.alloc_zeroed(big);
            assert_eq!(q, p);
            assert!(std::slice::from_raw_parts(q, big.size())
                .iter()
                .all(|&b| b == 0));
            let s = a.stats();
            assert_eq!((s.live, s.peak, s.cached), (cap, cap, 0));
            // Growing keeps the contents.
            q.write_bytes(1, big.size());
            let grown = Layout::from_size_align(9 * THRESHOLD, 64).unwrap();
            let r = a.realloc(q, big, grown.size());
            assert!(std::slice::from_raw_parts(r, big.size())
                .iter()
                .all(|&b| b == 1));
            a.dealloc(r, grown);
            assert_eq!(a.stats().live, 0);
            a.release();
            assert_eq!(a.stats().cached, 0);
            // Released pages read as zeros and are writable.
            let z = a.alloc(grown);
            assert!(std::slice::from_raw_parts(z, grown.size())
                .iter()
                .all(|&b| b == 0));
            z.write_bytes(3, grown.size());
            a.dealloc(z, grown);
            // Small requests pass through.
            let small = Layout::from_size_align(100, 8).unwrap();
            let t = a.alloc(small);
            assert!(!t.is_null() && !a.owns(t));
            a.dealloc(t, small);
        }
    }

    #[test]
    fn threads_get_disjoint_blocks() {
        let a = std::sync::Arc::new(BufferArena::new(System));
        let workers: Vec<_> = (0..4u8)
            .map(|t| {
                let a = a.clone();
                std::thread::spawn(move || {
                    let mut held: Vec<(*mut u8, Layout)> = Vec::new();
                    for i in 0..300usize {
                        let size = THRESHOLD + (i * 7919 + t as usize * 104_729) % (8 * THRESHOLD);
                        let l = Layout::from_size_align(size, 64).unwrap();
                        // SAFETY: each block is written, checked and freed with its own layout, by this thread.
                        unsafe {
                            let p = a.alloc(l);
                            assert!(!p.is_null());
                            p.write_bytes(t, size);
                            held.push((p, l));
                            if i % 3 == 2 {
                                for (p, l) in held.drain(..) {
                                    let bytes = std::slice::from_raw_parts(p, l.size());
                                    assert!(bytes.iter().all(|&b| b == t), "a block was shared");
                                    a.dealloc(p, l);
                                }
                            }
                        }
                    }
                    for (p, l) in held {
                        // SAFETY: as above.
                        unsafe { a.dealloc(p, l) };
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().unwrap();
        }
        assert_eq!(a.stats().live, 0);
    }

    fn arena() -> Arena {
        let mut a = Arena::new();
        a.size = 1 << 40;
        a
    }

    #[test]
    fn free_ranges_split_and_merge_with_each_other_and_the_top() {
        let mb = 256 * PAGE;
        let mut a = arena();
        let off = |t: Option<Taken>| t.map(|t| t.off);
        assert_eq!(off(a.take(mb)), Some(0));
        assert_eq!(off(a.take(2 * mb)), Some(mb));
        assert_eq!(off(a.take(mb)), Some(3 * mb));
        // Neighbours freed: one range of 3 MiB, below the live block at 3 MiB.
        assert!(a.put(0, mb, 1).is_none());
        assert!(a.put(mb, 2 * mb, 2).is_none());
        assert_eq!((a.len, a.free[0].off, a.free[0].len), (1, 0, 3 * mb));
        assert_eq!(a.stats().cached, 3 * mb);
        // A smaller request splits it from the start, and is not fresh; a larger one goes to the top, fresh.
        let t = a.take(mb / 2).unwrap();
        assert_eq!((t.off, t.fresh), (0, false));
        let t = a.take(4 * mb).unwrap();
        assert_eq!((t.off, t.fresh), (4 * mb, true));
        assert_eq!((a.live, a.peak), (mb / 2 + 5 * mb, mb / 2 + 5 * mb));
        // Freeing the block at the top lowers the top, then the block below it joins the free range and the top.
        assert!(a.put(4 * mb, 4 * mb, 3).is_none());
        assert_eq!(a.top, 4 * mb);
        assert!(a.put(3 * mb, mb, 4).is_none());
        assert_eq!((a.top, a.len), (mb / 2, 0));
        assert_eq!(a.stats().cached, 8 * mb - mb / 2);
        // Reusing the top below its dirty mark is not fresh memory, and needs no commit.
        let t = a.take(mb).unwrap();
        assert_eq!((t.off, t.fresh, t.commit.is_none()), (mb / 2, false, true));
        // Purging takes what was freed before the cutoff, once.
        a.put(mb / 2, mb, 5);
        let mut out = Vec::new();
        a.purge(4, &mut out);
        assert!(out.is_empty(), "the top was freed at 5");
        a.purge(10, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(a.stats().cached, 0);
        let t = a.take(mb).unwrap();
        assert!(t.fresh, "purged pages read as zeros");
    }

    #[test]
    fn a_full_slot_table_purges_its_smallest_range() {
        let mut a = arena();
        for _ in 0..2 * SLOTS + 2 {
            assert!(a.take(PAGE).is_some());
        }
        // Every other block freed: no two free ranges touch.
        for i in 0..SLOTS {
            assert!(a.put(2 * i * PAGE, PAGE, i as u64).is_none());
        }
        let lost = a.put(2 * SLOTS * PAGE, PAGE, 999).expect("no slot left");
        assert_eq!(lost.len, PAGE);
        assert_eq!(a.len, SLOTS);
    }
}
