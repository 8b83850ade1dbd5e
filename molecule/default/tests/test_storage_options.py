"""Storage edge cases: images that stay copy-on-write, a filesystem that is not btrfs, and the
plain-directory opt-out."""

from __future__ import annotations

import json

V = "virsh -c qemu:///system "


def test_existing_cow_images_are_reported_never_rewritten(host, site):
    image = "/mnt/vm/cow-test.img"
    host.run_test("chattr -C /mnt/vm && head -c 1048576 /dev/urandom > " + image)
    digest = host.check_output("sha256sum " + image)
    try:
        run = site()
        assert run.rc == 0 and run.changed == 1, run  # nodatacow back on the directory
        assert "still use copy-on-write" in run.stdout + run.stderr, run
        assert image in run.stdout + run.stderr, run
        assert host.check_output("sha256sum " + image) == digest
        assert "C" not in host.check_output("lsattr " + image).split()[0]
        assert "C" in host.check_output("lsattr -d /mnt/vm").split()[0]
        assert site().changed == 0
    finally:
        host.run("rm -f " + image)


def test_root_filesystem_that_is_not_btrfs_is_refused(host, site):
    # The container's / is overlayfs: with no device given, the role looks there.
    fstab = host.check_output("cat /etc/fstab")
    run = site("-e", "kvmlab_storage_btrfs_device=")
    assert run.rc != 0, run
    assert "kvmlab-molecule-default: The filesystem of / is overlay, not btrfs" in run.stderr, run
    assert "kvmlab_storage_btrfs_enabled: false" in run.stderr, run
    assert host.check_output("cat /etc/fstab") == fstab, "nothing written"
    assert run.changed == 0, run


def test_plain_directory_when_btrfs_is_off(host, site):
    spec = {"kvmlab_storage_btrfs_enabled": False, "kvmlab_storage_mount_point": "/srv/plain",
            "kvmlab_storage_directories": [{"path": "/srv/plain/iso"}],
            "kvmlab_storage_pools": [{"name": "plain", "path": "/srv/plain"}]}
    try:
        run = site("-e", json.dumps(spec))
        assert run.rc == 0, run
        assert host.file("/srv/plain/iso").is_directory
        assert host.run("findmnt /srv/plain").rc != 0, "a plain directory is not a mount"
        assert "State:          running" in host.check_output(V + "pool-info plain")
        assert site("-e", json.dumps(spec)).changed == 0
    finally:
        host.run(V + "pool-destroy plain; " + V + "pool-undefine plain; rm -rf /srv/plain")
