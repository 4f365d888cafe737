"""How fast a memcached memory file moves between its tmpfs and disk, on a lab host.

    make lab
    .venv/bin/python benchmarks/bench_memory_file_copy.py [--host mc1003] [--size-mb 1024] [--runs 3]

A warm in-place upgrade must carry memcached's restartable cache (`-e`, on tmpfs) across
the reboot: copied to disk after the graceful stop, and back to the tmpfs before the new
release's memcached starts. Both copies happen while the shard is out, so their rate bounds
the window. On the lab host's container this mounts a tmpfs, fills a file of --size-mb with
random bytes (memcached's slabs compress no better), then times, --runs times each:
  to disk     tmpfs -> /var/lib (the file flushed: conv=fsync)
  to tmpfs    /var/lib -> tmpfs, with the page cache dropped first, so it is read from disk
and prints the median rate of each and what it means for a shard of --shard-gb (Wikimedia's
`-m 109568`, about 107 GB). A figure, not a test.
"""

import argparse
import statistics
import subprocess
import time

MOUNT = "/run/mcfleet-bench-tmpfs"
ON_DISK = "/var/lib/mcfleet-bench-memory-file"


def in_host(host, script):
    return subprocess.run(
        ["podman", "exec", f"mcfleet-{host}", "sh", "-c", script], check=True, capture_output=True, text=True
    ).stdout


def timed(host, script):
    started = time.monotonic()
    in_host(host, script)
    return time.monotonic() - started


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--host", default="mc1003")
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--shard-gb", type=float, default=109568 / 1024)
    args = parser.parse_args()
    size = args.size_mb
    in_host(
        args.host,
        f"mkdir -p {MOUNT} && mount -t tmpfs -o size={size + 64}m mcfleet-bench {MOUNT} && "
        f"dd if=/dev/urandom of={MOUNT}/memory_file bs=1M count={size} status=none",
    )
    to_disk, to_tmpfs = [], []
    try:
        for _ in range(args.runs):
            to_disk.append(
                timed(args.host, f"dd if={MOUNT}/memory_file of={ON_DISK} bs=16M conv=fsync status=none")
            )
            # The host's page cache is the VM's: drop it, so the copy back reads the disk.
            subprocess.run(["sh", "-c", "sync; echo 3 > /proc/sys/vm/drop_caches"], check=True)
            to_tmpfs.append(timed(args.host, f"dd if={ON_DISK} of={MOUNT}/memory_file bs=16M status=none"))
    finally:
        in_host(args.host, f"rm -f {ON_DISK}; umount {MOUNT}; rmdir {MOUNT}")
    shard_mb = args.shard_gb * 1024
    for name, seconds in (("to disk", to_disk), ("to tmpfs", to_tmpfs)):
        rate = size / statistics.median(seconds)
        print(
            f"{name:9} {size} MB: median {statistics.median(seconds):.2f} s over {args.runs} runs "
            f"({', '.join(f'{s:.2f}' for s in seconds)}), {rate:.0f} MB/s; "
            f"a {args.shard_gb:.0f} GB shard: {shard_mb / rate / 60:.1f} min"
        )
    both = shard_mb / (size / statistics.median(to_disk)) + shard_mb / (size / statistics.median(to_tmpfs))
    print(f"both copies of a {args.shard_gb:.0f} GB shard add {both / 60:.1f} min to its window")


if __name__ == "__main__":
    main()
