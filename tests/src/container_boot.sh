# Boots systemd as PID 1 of a throwaway container whose root is this machine's own root
# under an overlay: every write lands in a tmpfs that vanishes with the container, so the
# host's files never change. Run by container.rs as the first process of new PID, mount,
# UTS, IPC, network and cgroup namespaces (`unshare --fork`), already placed in a cgroup
# of its own.
#
#   container_boot.sh STATE SHARE [SYSTEMD_ARG...]
#
# STATE: an empty host directory; a tmpfs is mounted on it, in this mount namespace only,
#        and holds the overlay's upper layer.
# SHARE: a host directory the container sees at /srv/cairn-test (the .deb, the tests'
#        files).
#
# The namespaces are set up as systemd-nspawn sets up its containers, so that nothing in
# the container can change the host's kernel state: /sys, /proc/sys and
# /proc/sysrq-trigger are read-only (udev, sysctl and binfmt units skip themselves),
# /dev holds only the harmless devices, the cgroup tree is a fresh cgroup2 mount rooted at
# the container's own cgroup, and the capabilities that reach the whole machine (loading
# kernel modules, setting the clock, raw I/O, the kernel log, audit) leave the bounding
# set.
set -eu
state=$1
share=$2
shift 2

mount --make-rprivate /
mount -t tmpfs -o mode=0700 cairn-test "$state"
mkdir "$state/upper" "$state/work" "$state/root"
mount -t overlay -o "lowerdir=/,upperdir=$state/upper,workdir=$state/work" cairn-test \
  "$state/root"
cd "$state/root"

mount -t proc proc proc
for p in proc/sys proc/sysrq-trigger; do
  [ -e "$p" ] || continue
  mount --bind "$p" "$p"
  mount -o remount,bind,ro "$p"
done
mount -t sysfs -o ro sysfs sys
mount -t cgroup2 cgroup2 sys/fs/cgroup

mount -t tmpfs -o mode=0755,nosuid,noexec cairn-test dev
for d in null zero full random urandom tty; do
  touch "dev/$d"
  mount --bind "/dev/$d" "dev/$d"
done
# systemd writes its status to the console; here it goes nowhere (the journal has it all).
touch dev/console
mount --bind /dev/null dev/console
mkdir dev/pts dev/shm
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts dev/pts
ln -s pts/ptmx dev/ptmx
mount -t tmpfs -o mode=1777,nosuid,nodev cairn-test dev/shm

mount -t tmpfs -o mode=0755,nosuid,nodev cairn-test run
mount -t tmpfs -o mode=1777,nosuid,nodev cairn-test tmp
mkdir -p srv/cairn-test
mount --bind "$share" srv/cairn-test

# The unit the container boots: the early boot (sysinit.target: journald, tmpfiles,
# sysusers, ...) and the sockets, none of the host's own services or timers.
cat >etc/systemd/system/cairn-test.target <<'UNIT'
[Unit]
Description=A container for cairn's tests: early boot and sockets, no other services
Requires=sysinit.target sockets.target
After=sysinit.target sockets.target
UNIT

mkdir oldroot
pivot_root . oldroot
exec chroot . /bin/sh -c '
  umount -l /oldroot
  rmdir /oldroot
  exec setpriv \
    --bounding-set=-sys_module,-sys_time,-sys_rawio,-syslog,-wake_alarm,-block_suspend,-audit_control,-audit_read,-mac_admin,-mac_override,-sys_pacct \
    /lib/systemd/systemd --unit=cairn-test.target "$@"' systemd "$@"
