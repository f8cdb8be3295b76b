#!/bin/busybox sh
# /init of the pure cgroup v2 test VM (Debian's 6.1 kernel under qemu): runs memwatch against a
# memory-limited cgroup and prints what the host-side test checks, between ===BEGIN/END=== markers.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
mount -t cgroup2 cgroup2 /sys/fs/cgroup
ip link set lo up
section() { echo "===BEGIN $1==="; cat "$2"; echo "===END $1==="; }
# Waits (up to a minute) until the file $2 has a line with $1.
wait_for() { i=0; until grep -q "$1" "$2"; do i=$((i + 1)); [ $i -gt 240 ] && break; sleep 0.25; done; }

echo "RESULT kernel $(uname -r)"
echo "RESULT thp $(cat /sys/kernel/mm/transparent_hugepage/enabled)"
echo +memory > /sys/fs/cgroup/cgroup.subtree_control
mkdir /sys/fs/cgroup/box
echo 67108864 > /sys/fs/cgroup/box/memory.max

memwatch check --json > /tmp/check.json 2>/tmp/check.err
echo "RESULT check_rc $?"
section check /tmp/check.json
section check_err /tmp/check.err
# Every probe, with BPF statistics on for a second of this VM's own activity (some page faults).
touch /tmp/busy
(while [ -e /tmp/busy ]; do memwatch-workload fill-exit 4 > /dev/null; done) &
memwatch check --json --ebpf-page-faults --stacks always --bpf-stats --bpf-stats-window 1s > /tmp/check_all.json 2>&1
echo "RESULT check_all_rc $?"
rm /tmp/busy
section check_all /tmp/check_all.json
echo "RESULT stats_after_check $(cat /proc/sys/kernel/bpf_stats_enabled)"

# Extra serve flags from the kernel command line (memwatch.serve=A,B: where fexit is refused).
serve_extra=$(tr ' ' '\n' < /proc/cmdline | sed -n 's/^memwatch\.serve=//p' | tr ',' ' ')
memwatch serve --listen 127.0.0.1:9753 --listen.api 127.0.0.1:9753 --interval 500ms --state-dir /tmp/state $serve_extra > /tmp/serve.log 2>&1 &
i=0
until wget -q -O /dev/null http://127.0.0.1:9753/readyz; do
  i=$((i + 1)); [ $i -gt 240 ] && break; sleep 0.5
done

# A process holding 40 MiB in the cgroup, its stdin a fifo kept open so it holds.
mkfifo /tmp/hold
sh -c 'echo $$ > /sys/fs/cgroup/box/cgroup.procs; exec memwatch-workload fill 40' < /tmp/hold > /tmp/fill.out &
exec 3>/tmp/hold
wait_for ready /tmp/fill.out
sleep 3
# Process RSS is read on the slow cadence (10 s) or once usage settles, a sample or two after a
# read caught the fill in motion; under TCG a sample can take longer than the interval. Wait for
# the 40 MiB to show (the README's freshness bound), at most 15 s.
i=0
until wget -q -O /tmp/metrics http://127.0.0.1:9753/metrics &&
  awk '$0 ~ /^memwatch_container_memory_rss_bytes[{]/ && index($0, "cgroup=\"/box\"") && $NF >= 41943040 { ok = 1 } END { exit !ok }' /tmp/metrics; do
  i=$((i + 1)); [ $i -gt 30 ] && break; sleep 0.5
done
echo "RESULT rss_waits $i"
echo "RESULT memory_current $(cat /sys/fs/cgroup/box/memory.current)"
wget -q -O /tmp/metrics http://127.0.0.1:9753/metrics
echo "RESULT memory_current_after $(cat /sys/fs/cgroup/box/memory.current)"
grep 'cgroup="/box"' /tmp/metrics > /tmp/box.prom
section metrics /tmp/box.prom
grep -E '^memwatch_(probe_attached|sample_errors_total)' /tmp/metrics > /tmp/self.prom
section self /tmp/self.prom
# memwatch explain, for the process holding 40 MiB and for its container, next to the kernel's
# own totals for the process.
fillpid=$(head -n 1 /sys/fs/cgroup/box/cgroup.procs)
grep -E '^Vm(Size|RSS):' /proc/$fillpid/status > /tmp/fill.status
memwatch explain --json $fillpid > /tmp/explain_pid.json 2>/tmp/explain.err
echo "RESULT explain_pid_rc $?"
grep -E '^Vm(Size|RSS):' /proc/$fillpid/status >> /tmp/fill.status
section fill_status /tmp/fill.status
section explain_pid /tmp/explain_pid.json
memwatch explain --json /box > /tmp/explain_box.json 2>>/tmp/explain.err
echo "RESULT explain_box_rc $?"
section explain_box /tmp/explain_box.json
section explain_err /tmp/explain.err

# Exact counts by fexit: the workload's known mmaps, munmaps, mremap and brk calls, alone in
# a cgroup of its own, between a snapshot taken when it is ready and one after it is done.
mkdir /sys/fs/cgroup/exact
echo 268435456 > /sys/fs/cgroup/exact/memory.max
dd if=/dev/zero of=/tmp/mapped bs=1024 count=256 2>/dev/null
mkfifo /tmp/ops_in
sh -c 'echo $$ > /sys/fs/cgroup/exact/cgroup.procs; exec memwatch-workload ops /tmp/mapped' < /tmp/ops_in > /tmp/ops.out &
exec 4>/tmp/ops_in
wait_for ready /tmp/ops.out
sleep 1.5
# Until the daemon has sampled /exact (a sample can take longer than the interval under TCG).
i=0
until wget -q -O /tmp/exact_before http://127.0.0.1:9753/api/v1/containers && grep -q '"cgroup":"/exact"' /tmp/exact_before; do
  i=$((i + 1)); [ $i -gt 40 ] && break; sleep 0.25
done
echo go >&4
wait_for done /tmp/ops.out
sleep 1.5
wget -q -O /tmp/exact_after http://127.0.0.1:9753/api/v1/containers
exec 4>&-
section exact_before /tmp/exact_before
section exact_after /tmp/exact_after

# An OOM kill in the cgroup.
sh -c 'echo $$ > /sys/fs/cgroup/box/cgroup.procs; exec memwatch-workload hog' < /dev/null
echo "RESULT hog_exit $?"
sleep 3
wget -q -O /tmp/events 'http://127.0.0.1:9753/api/v1/events?kind=oom_kill'
section events /tmp/events
echo "RESULT oom_kill_counter $(grep oom_kill /sys/fs/cgroup/box/memory.events)"
# Limit hits: the kernel's `max` count for /box (reclaim forced at memory.max before the kill),
# and memwatch's series for it.
echo "RESULT box_limit_hits_max $(awk '$1 == "max" { print $2 }' /sys/fs/cgroup/box/memory.events)"
wget -q -O /tmp/metrics_after http://127.0.0.1:9753/metrics
grep '^memwatch_container_memory_limit_hits_total{.*cgroup="/box"' /tmp/metrics_after > /tmp/limit_hits.prom
section limit_hits /tmp/limit_hits.prom
# Throttling at memory.high, no kill: /hi holds 18 MiB over a 16 MiB memory.high, far below its
# 256 MiB memory.max (no swap: the kernel reclaims what it can and counts each time in
# memory.events `high`).
mkdir /sys/fs/cgroup/hi
echo 268435456 > /sys/fs/cgroup/hi/memory.max
echo 16777216 > /sys/fs/cgroup/hi/memory.high
mkfifo /tmp/hihold
sh -c 'echo $$ > /sys/fs/cgroup/hi/cgroup.procs; exec memwatch-workload fill 18' < /tmp/hihold > /tmp/hi.out &
exec 5>/tmp/hihold
wait_for ready /tmp/hi.out
sleep 3
echo "RESULT hi_limit_hits_high $(awk '$1 == "high" { print $2 }' /sys/fs/cgroup/hi/memory.events)"
wget -q -O /tmp/metrics_hi http://127.0.0.1:9753/metrics
grep '^memwatch_container_memory_limit_hits_total{.*cgroup="/hi"' /tmp/metrics_hi > /tmp/hi.prom
section limit_hits_high /tmp/hi.prom
exec 5>&-
# The kill on a trace for Perfetto, with the container's counters.
wget -q -O /tmp/trace 'http://127.0.0.1:9753/api/v1/trace?container=/box&since=10m'
section trace /tmp/trace
# A limit inherited from a parent (a pod's): /pod has it, /pod/ctr (no limit of its own) is hit.
mkdir /sys/fs/cgroup/pod
echo 50331648 > /sys/fs/cgroup/pod/memory.max
echo +memory > /sys/fs/cgroup/pod/cgroup.subtree_control
mkdir /sys/fs/cgroup/pod/ctr
sh -c 'echo $$ > /sys/fs/cgroup/pod/ctr/cgroup.procs; exec memwatch-workload hog' < /dev/null
echo "RESULT pod_hog_exit $?"
sleep 3
wget -q -O /tmp/events_all 'http://127.0.0.1:9753/api/v1/events?kind=oom_kill'
section events_all /tmp/events_all
# memory.oom.group (the kubelet's setting for containers): two processes holding memory and a
# hog in one cgroup, all killed at once by the kernel: one incident.
mkdir /sys/fs/cgroup/grp
echo 67108864 > /sys/fs/cgroup/grp/memory.max
echo 1 > /sys/fs/cgroup/grp/memory.oom.group
mkfifo /tmp/grphold
for n in 1 2; do
  sh -c 'echo $$ > /sys/fs/cgroup/grp/cgroup.procs; exec memwatch-workload fill 8' < /tmp/grphold > /tmp/grp$n.out &
done
exec 4>/tmp/grphold
wait_for ready /tmp/grp1.out
wait_for ready /tmp/grp2.out
sleep 2
sh -c 'echo $$ > /sys/fs/cgroup/grp/cgroup.procs; exec memwatch-workload hog' < /dev/null
echo "RESULT grp_hog_exit $?"
sleep 4
echo "RESULT grp_oom_kill_counter $(grep oom_kill /sys/fs/cgroup/grp/memory.events)"
wget -q -O /tmp/events_grp 'http://127.0.0.1:9753/api/v1/events?kind=oom_kill'
section events_grp /tmp/events_grp
# Which code grew: a Go program stripped as images ship it (-s -w), growing in main.handleExport
# until its limit kills it; the default at-risk sampler attaches as it nears the limit.
mkdir /sys/fs/cgroup/gostk
echo 100663296 > /sys/fs/cgroup/gostk/memory.max
sh -c 'echo $$ > /sys/fs/cgroup/gostk/cgroup.procs; exec gomem-stripped export 10000' < /dev/null > /dev/null
echo "RESULT go_export_exit $?"
sleep 4
wget -q -O /tmp/events_go 'http://127.0.0.1:9753/api/v1/events?kind=oom_kill'
section events_go /tmp/events_go
section serve_log /tmp/serve.log
echo "RESULT done"
poweroff -f
