//! The process's C allocator (glibc's malloc): one arena for every thread. By default glibc gives
//! each thread that allocates an arena of its own, and what is freed in one arena serves no other:
//! after a restart with 1,000 finished backups each of the two runtime workers' arenas kept about
//! 5 MiB, twice the live heap (docs/design.md, "Memory"). Small allocations still go through
//! each thread's own cache (glibc's tcache), without the arena's lock.

/// Limits glibc's malloc to one arena; returns whether it took the setting (never off glibc).
/// Call it first in `main`: a thread that has already allocated keeps the arena it was given.
pub fn single_arena() -> bool {
    #[cfg(target_env = "gnu")]
    {
        // SAFETY: mallopt(3) sets one of malloc's parameters, under malloc's own lock.
        unsafe { libc::mallopt(libc::M_ARENA_MAX, 1) == 1 }
    }
    #[cfg(not(target_env = "gnu"))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    #[test]
    #[cfg(target_env = "gnu")]
    fn glibc_takes_the_arena_limit() {
        assert!(super::single_arena());
    }
}
