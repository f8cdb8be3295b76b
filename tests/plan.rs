// What the workload's `ops` mode does, shared by the workload and the tests that check the
// kernel's counters against it. Sizes are page multiples (4 KiB pages).
pub(crate) const KIB: u64 = 1024;
/// Anonymous mappings, in order; the last one is touched page by page.
pub(crate) const ANON_MAPS: [u64; 4] = [64 * KIB, 128 * KIB, 1024 * KIB, 2052 * KIB];
/// How many times a file of FILE_SIZE bytes is mapped.
pub(crate) const FILE_MAPS: u64 = 3;
pub(crate) const FILE_SIZE: u64 = 256 * KIB;
/// One anonymous mapping of REMAP_FROM bytes grown to REMAP_TO with mremap.
pub(crate) const REMAP_FROM: u64 = 64 * KIB;
pub(crate) const REMAP_TO: u64 = 192 * KIB;
/// The break grows by BRK_STEP three times, then shrinks by BRK_STEP once.
pub(crate) const BRK_STEP: u64 = 64 * KIB;
/// Pages touched (one write each) in the last anonymous mapping.
pub(crate) const TOUCH_PAGES: u64 = ANON_MAPS[3] / 4096;

pub(crate) const EXPECT_MMAP_CALLS: u64 = ANON_MAPS.len() as u64 + 1 + FILE_MAPS;
pub(crate) const EXPECT_ANON_BYTES: u64 = ANON_MAPS[0] + ANON_MAPS[1] + ANON_MAPS[2] + ANON_MAPS[3] + REMAP_FROM;
pub(crate) const EXPECT_FILE_BYTES: u64 = FILE_MAPS * FILE_SIZE;
pub(crate) const EXPECT_MUNMAP_CALLS: u64 = EXPECT_MMAP_CALLS;
pub(crate) const EXPECT_MUNMAP_BYTES: u64 = EXPECT_ANON_BYTES - REMAP_FROM + REMAP_TO + EXPECT_FILE_BYTES;
/// brk(0), three grows, one shrink.
pub(crate) const EXPECT_BRK_CALLS: u64 = 5;
pub(crate) const EXPECT_BRK_BYTES: i64 = 2 * BRK_STEP as i64;
