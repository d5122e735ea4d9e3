/*
 * tests/droplet/standin.c: a stand-in for `volspike run` that behaves like the
 * real binary towards systemd, for checking the unit and the droplet rig until
 * the real binary exists. Built static: `musl-gcc -static -O2 -o standin standin.c`
 * (or `gcc -static`).
 *
 *   standin run      the unit's ExecStart (the binary is installed as volspike)
 *
 * What it does, like the real service:
 *   - takes the listening socket volspike.socket passes (LISTEN_FDS=1 and
 *     LISTEN_PID naming it: fd 3), else listens on 127.0.0.1:8080 itself
 *     (TCP, VOLSPIKE_HTTP_ADDR port if set),
 *     opens AF_INET6 and AF_INET sockets (outbound HTTPS/WSS need them),
 *     reads /etc/ssl/certs (TLS roots),
 *   - writes $STATE_DIRECTORY/standin.state,
 *   - checks the hardening holds: writing /etc and /usr must fail,
 *   - sends READY=1 + STATUS= to $NOTIFY_SOCKET from the main PID,
 *   - sends WATCHDOG=1 every WATCHDOG_USEC/2 while $STATE_DIRECTORY/hang does
 *     not exist ("a wedged loop"); once it exists the pings stop and systemd's
 *     watchdog must kill and restart the service,
 *   - exits 78 at start if $STATE_DIRECTORY/exit78 exists (configuration error),
 *   - on SIGTERM sends STOPPING=1 and exits 0.
 *
 * Probes for tests/droplet/hardening-probe.sh; each exits 0 when the
 * restriction IS in effect, 1 when it is not, and says what it saw:
 *   standin probe-wx          mmap(PROT_WRITE|PROT_EXEC) refused (MemoryDenyWriteExecute)
 *   standin probe-compat      a 32-bit syscall (int $0x80) refused (SystemCallArchitectures=native)
 *   standin probe-bind PORT   bind(127.0.0.1:PORT) refused (SocketBindDeny)
 * Every check is logged to stderr as "standin: check NAME ok|FAILED ...", and
 * the process exits 1 if a must-work check fails.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/mman.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t stop;
static int failed;

static void on_term(int sig) { (void)sig; stop = 1; }

static void check(const char *name, int ok, const char *detail) {
    fprintf(stderr, "standin: check %s %s%s%s\n", name, ok ? "ok" : "FAILED",
            detail ? " " : "", detail ? detail : "");
    if (!ok) failed = 1;
}

static int notify(const char *msg) {
    const char *path = getenv("NOTIFY_SOCKET");
    if (!path || !*path) return -1;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    size_t len = strlen(path);
    if (len >= sizeof(sa.sun_path)) return -1;
    memcpy(sa.sun_path, path, len);
    if (sa.sun_path[0] == '@') sa.sun_path[0] = 0; /* abstract namespace */
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    ssize_t n = sendto(fd, msg, strlen(msg), 0, (struct sockaddr *)&sa,
                       (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len));
    int e = errno;
    close(fd);
    errno = e;
    return n < 0 ? -1 : 0;
}

static int exists_in(const char *dir, const char *name) {
    char p[4096];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return access(p, F_OK) == 0;
}

static int probe_wx(void) {
    void *m = mmap(NULL, 4096, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) { printf("W+X mmap refused: %s\n", strerror(errno)); return 0; }
    printf("W+X mmap allowed\n");
    return 1;
}

static int probe_compat(void) {
#if defined(__x86_64__)
    pid_t c = fork();
    if (c == 0) {
        long r;
        /* i386 ABI getpid is 20 */
        __asm__ volatile("int $0x80" : "=a"(r) : "a"(20L) : "memory");
        if (r < 0) { printf("32-bit syscall refused: %s\n", strerror((int)-r)); _exit(0); }
        printf("32-bit syscall allowed (returned %ld)\n", r);
        _exit(1);
    }
    int st = 0;
    waitpid(c, &st, 0);
    if (WIFSIGNALED(st)) { printf("32-bit syscall killed the process (signal %d)\n", WTERMSIG(st)); return 0; }
    return WEXITSTATUS(st);
#else
    printf("probe-compat only on x86_64\n");
    return 1;
#endif
}

static int probe_bind(int port) {
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (s < 0) { printf("socket refused: %s\n", strerror(errno)); return 0; }
    if (bind(s, (struct sockaddr *)&sin, sizeof sin) < 0) { printf("bind refused: %s\n", strerror(errno)); return 0; }
    printf("bind to 127.0.0.1:%d allowed\n", port);
    return 1;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc >= 2 && strcmp(argv[1], "probe-wx") == 0) return probe_wx();
    if (argc >= 2 && strcmp(argv[1], "probe-compat") == 0) return probe_compat();
    if (argc >= 3 && strcmp(argv[1], "probe-bind") == 0) return probe_bind(atoi(argv[2]));
    if (argc < 2 || strcmp(argv[1], "run") != 0) {
        fprintf(stderr, "usage: %s run | probe-wx | probe-compat | probe-bind PORT\n", argv[0]);
        return 2;
    }
    setvbuf(stderr, NULL, _IOLBF, 0);
    struct sigaction sa = {.sa_handler = on_term};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    const char *state = getenv("STATE_DIRECTORY");
    if (!state || !*state) state = "/var/lib/volspike";
    char detail[4200];

    if (exists_in(state, "exit78")) {
        fprintf(stderr, "standin: configuration error (exit78 present), exiting 78\n");
        return 78;
    }

    fprintf(stderr, "standin: starting pid=%d uid=%d gid=%d state=%s\n", (int)getpid(),
            (int)getuid(), (int)getgid(), state);

    /* State directory writable. */
    char p[4096];
    snprintf(p, sizeof p, "%s/standin.state", state);
    FILE *f = fopen(p, "w");
    snprintf(detail, sizeof detail, "%s: %s", p, f ? "written" : strerror(errno));
    if (f) { fprintf(f, "pid=%d started=%ld\n", (int)getpid(), (long)time(NULL)); fclose(f); }
    check("state_dir_writable", f != NULL, detail);

    /* Read-only system: writes outside the state dir must fail. */
    int fd = open("/etc/volspike-standin-probe", O_WRONLY | O_CREAT, 0600);
    snprintf(detail, sizeof detail, "(%s)", fd < 0 ? strerror(errno) : "it was writable!");
    check("etc_not_writable", fd < 0, detail);
    if (fd >= 0) { close(fd); unlink("/etc/volspike-standin-probe"); }
    fd = open("/usr/local/bin/volspike-standin-probe", O_WRONLY | O_CREAT, 0600);
    snprintf(detail, sizeof detail, "(%s)", fd < 0 ? strerror(errno) : "it was writable!");
    check("usr_not_writable", fd < 0, detail);
    if (fd >= 0) { close(fd); unlink("/usr/local/bin/volspike-standin-probe"); }

    /* TLS roots readable. */
    DIR *d = opendir("/etc/ssl/certs");
    int certs = 0;
    if (d) { struct dirent *e; while ((e = readdir(d))) certs++; closedir(d); }
    snprintf(detail, sizeof detail, "(%d entries)", certs);
    check("tls_roots_readable", certs > 2, detail);

    /* Address families needed by outbound HTTPS/WSS. */
    int s6 = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    check("af_inet6_socket", s6 >= 0, s6 < 0 ? strerror(errno) : NULL);
    if (s6 >= 0) close(s6);
    /* And one that must be refused (RestrictAddressFamilies). */
    int sn = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, 0);
    snprintf(detail, sizeof detail, "(%s)", sn < 0 ? strerror(errno) : "it was allowed");
    fprintf(stderr, "standin: info af_netlink_refused=%s %s\n", sn < 0 ? "yes" : "no", detail);
    if (sn >= 0) close(sn);

    /* Listen like the HTTP server: systemd's socket when it passes one. */
    int ls = -1;
    const char *lfds = getenv("LISTEN_FDS"), *lpid = getenv("LISTEN_PID");
    if (lfds && lpid && atoi(lfds) == 1 && atol(lpid) == (long)getpid()) {
        int accepting = 0;
        socklen_t len = sizeof accepting;
        int passed = getsockopt(3, SOL_SOCKET, SO_ACCEPTCONN, &accepting, &len) == 0 && accepting;
        snprintf(detail, sizeof detail, "fd 3 from systemd%s", passed ? "" : " is not a listening socket");
        check("listen_tcp", passed, detail);
    } else {
        int port = 8080;
        const char *addr = getenv("VOLSPIKE_HTTP_ADDR");
        if (addr && strrchr(addr, ':')) port = atoi(strrchr(addr, ':') + 1);
        ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        int one = 1;
        struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
        sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        int lok = ls >= 0 && setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) == 0 &&
                  bind(ls, (struct sockaddr *)&sin, sizeof sin) == 0 && listen(ls, 16) == 0;
        snprintf(detail, sizeof detail, "127.0.0.1:%d%s%s", port, lok ? "" : " ", lok ? "" : strerror(errno));
        check("listen_tcp", lok, detail);
    }

    if (failed) {
        fprintf(stderr, "standin: a must-work check failed, exiting 1\n");
        return 1;
    }

    if (notify("READY=1\nSTATUS=standin: ready, all checks ok") < 0) {
        fprintf(stderr, "standin: READY=1 not sent: %s\n", getenv("NOTIFY_SOCKET") ? strerror(errno) : "no NOTIFY_SOCKET");
    } else {
        fprintf(stderr, "standin: READY=1 sent\n");
    }

    /* Watchdog: every half interval, only while not "wedged". */
    long long wd_usec = 0;
    const char *wu = getenv("WATCHDOG_USEC"), *wp = getenv("WATCHDOG_PID");
    if (wu && (!wp || atoi(wp) == (int)getpid())) wd_usec = atoll(wu);
    fprintf(stderr, "standin: watchdog interval %lld us\n", wd_usec);
    long long period_ms = wd_usec > 0 ? wd_usec / 2000 : 1000;
    int hung = 0;
    unsigned long pings = 0;
    while (!stop) {
        int now_hung = exists_in(state, "hang");
        if (now_hung && !hung) fprintf(stderr, "standin: %s/hang exists: wedged, no more WATCHDOG=1\n", state);
        hung = now_hung;
        if (wd_usec > 0 && !hung) {
            if (notify("WATCHDOG=1") == 0) pings++;
            if (pings == 1) fprintf(stderr, "standin: first WATCHDOG=1 sent\n");
        }
        struct timespec ts = {period_ms / 1000, (period_ms % 1000) * 1000000L};
        nanosleep(&ts, NULL); /* EINTR on SIGTERM ends the wait early */
    }
    notify("STOPPING=1\nSTATUS=standin: stopping");
    fprintf(stderr, "standin: SIGTERM, stopping cleanly after %lu watchdog pings\n", pings);
    if (ls >= 0) close(ls);
    return 0;
}
