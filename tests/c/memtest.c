/* memtest: C workloads for memwatch's tests.
 *   memtest hog [MS]             allocate and touch 1 MiB at a time until killed (pausing MS ms
 *                                after each)
 *   memtest tmpfs PATH MIB       write MIB MiB into PATH (a tmpfs file), then hog
 *   memtest threads N KIB        N threads each malloc and touch KIB KiB (glibc gives each
 *                                its own arena), print "ready", wait for stdin to close
 *   memtest arenas N [MS]        N threads each malloc and touch 64 KiB every MS ms (10),
 *                                keeping it all (in their own glibc arenas), until killed
 *   memtest stacks N             fault N pages in, each under a distinct call stack (paths of
 *                                14 calls through two functions), 2,000 a second, then wait for
 *                                stdin to close
 */
#include <sys/mman.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <fcntl.h>

/* Where allocations go, so the compiler cannot drop them. */
static char *volatile kept[64];

__attribute__((noinline)) static void hog(unsigned pause_ms) {
    for (unsigned i = 0;; i++) {
        char *p = malloc(1 << 20);
        if (!p) continue;
        memset(p, 1, 1 << 20);
        kept[i % 64] = p;
        if (pause_ms) usleep(pause_ms * 1000);
    }
}

static size_t thread_kib;
static pthread_barrier_t all_allocated;

static void *worker(void *arg) {
    char *p = malloc(thread_kib << 10);
    if (p) memset(p, 1, thread_kib << 10);
    kept[(long)arg % 64] = p;
    pthread_barrier_wait(&all_allocated);
    for (;;) pause();
    return NULL;
}

/* A thread that keeps mallocing small blocks (below the mmap threshold: they come from its
 * own arena) and keeps them. */
static unsigned arena_pause_ms = 10;
static void *arena_grower(void *arg) {
    (void)arg;
    for (;;) {
        char *p = malloc(64 << 10);
        if (p) memset(p, 3, 64 << 10);
        usleep(arena_pause_ms * 1000);
    }
    return NULL;
}

/* Two functions calling each other along the bits of `path`: each path a distinct stack. The
 * addition after each call keeps the calls from becoming jumps. */
/* A store after each call keeps the recursion real (no sibling call, no loop): every path of
 * calls through path_a and path_b is a distinct stack. */
static volatile int path_sink;
static int path_b(int depth, unsigned path, volatile char *page);
__attribute__((noinline)) static int path_a(int depth, unsigned path, volatile char *page) {
    if (depth == 0) { *page = 1; return 1; }
    int r = (path & 1) ? path_a(depth - 1, path >> 1, page) : path_b(depth - 1, path >> 1, page);
    path_sink = r;
    return r + 1;
}
__attribute__((noinline)) static int path_b(int depth, unsigned path, volatile char *page) {
    if (depth == 0) { *page = 2; return 2; }
    int r = (path & 1) ? path_a(depth - 1, path >> 1, page) : path_b(depth - 1, path >> 1, page);
    path_sink = r;
    return r + 2;
}

int main(int argc, char **argv) {
    if (argc >= 2 && strcmp(argv[1], "hog") == 0) {
        hog(argc >= 3 ? (unsigned)atoi(argv[2]) : 0);
    } else if (argc >= 4 && strcmp(argv[1], "tmpfs") == 0) {
        int fd = open(argv[2], O_CREAT | O_WRONLY | O_TRUNC, 0600);
        if (fd < 0) { perror(argv[2]); return 1; }
        static char buf[1 << 20];
        memset(buf, 7, sizeof buf);
        for (long i = 0; i < atol(argv[3]); i++)
            if (write(fd, buf, sizeof buf) != (ssize_t)sizeof buf) { perror("write"); return 1; }
        close(fd);
        printf("written\n");
        fflush(stdout);
        hog(argc >= 3 ? (unsigned)atoi(argv[2]) : 0);
    } else if (argc >= 4 && strcmp(argv[1], "threads") == 0) {
        int n = atoi(argv[2]);
        thread_kib = (size_t)atol(argv[3]);
        pthread_barrier_init(&all_allocated, NULL, (unsigned)n + 1);
        for (int i = 0; i < n; i++) {
            pthread_t t;
            if (pthread_create(&t, NULL, worker, (void *)(long)i) != 0) { perror("pthread_create"); return 1; }
        }
        pthread_barrier_wait(&all_allocated);
        printf("ready\n");
        fflush(stdout);
        char c;
        while (read(0, &c, 1) > 0) {}
        return 0;
    } else if (argc >= 3 && strcmp(argv[1], "arenas") == 0) {
        int n = atoi(argv[2]);
        if (argc >= 4) arena_pause_ms = (unsigned)atoi(argv[3]);
        for (int i = 0; i < n; i++) {
            pthread_t t;
            if (pthread_create(&t, NULL, arena_grower, NULL) != 0) { perror("pthread_create"); return 1; }
        }
        printf("ready\n");
        fflush(stdout);
        for (;;) pause();
    } else if (argc >= 3 && strcmp(argv[1], "stacks") == 0) {
        long n = atol(argv[2]);
        char *pages = mmap(NULL, (size_t)n * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (pages == MAP_FAILED) { perror("mmap"); return 1; }
        for (long i = 0; i < n; i++) {
            path_sink = path_a(14, (unsigned)i, pages + i * 4096);
            if (i % 2000 == 1999) sleep(1);
        }
        printf("done\n");
        fflush(stdout);
        char c;
        while (read(0, &c, 1) > 0) {}
        return 0;
    }
    fprintf(stderr, "usage: memtest hog [MS] | tmpfs PATH MIB | threads N KIB | arenas N | stacks N\n");
    return 2;
}
